//! CORS for browser clients: which origins may call the API from a page, and
//! the headers that tell the browser so.
//!
//! Off unless `CORS_ALLOWED_ORIGINS` lists origins: then no CORS header is
//! ever sent and browsers keep cross-origin pages out, the safe default. When
//! on, only an exactly listed origin is echoed back (never `*`), every
//! response says `Vary: Origin` so caches keep per-origin answers apart, and
//! preflight `OPTIONS` requests to API routes are answered with the route's
//! methods and the headers clients send (`Authorization`, `Content-Type`,
//! `X-Request-Id`). Credentials mode is not enabled: the API uses bearer
//! tokens, not cookies.

use crate::http::{Request, Response};

/// Headers a browser page may send.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, X-Request-Id";
/// Response headers a browser page may read besides the simple ones.
const EXPOSED_HEADERS: &str = "X-Request-Id, Retry-After, WWW-Authenticate";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE: &str = "600";

/// The allowed origins; empty means CORS is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    /// Parses a comma-separated list of origins such as
    /// `https://app.example.com, http://localhost:3000`. `None` if an item is
    /// not a bare `http(s)://host[:port]` origin (a path, `*`, or garbage),
    /// since a typo here would silently open or close the API to browsers.
    pub fn parse(list: &str) -> Option<Cors> {
        let mut origins = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let rest = item
                .strip_prefix("https://")
                .or_else(|| item.strip_prefix("http://"))?;
            let valid = !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !valid {
                return None;
            }
            origins.push(item.to_ascii_lowercase());
        }
        Some(Cors { origins })
    }

    /// True when CORS is on.
    pub fn enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    /// The request's `Origin` if it is allowed.
    fn allowed_origin<'a>(&self, request: &'a Request) -> Option<&'a str> {
        let origin = request.header("origin")?;
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then_some(origin)
    }

    /// The answer to a preflight request for a route that supports `allow`.
    pub fn preflight(&self, request: &Request, allow: &'static str) -> Response {
        let mut response = Response::empty(204);
        response.set_header("Allow", allow);
        if let Some(origin) = self.allowed_origin(request) {
            response.set_header("Access-Control-Allow-Origin", origin);
            response.set_header("Access-Control-Allow-Methods", allow);
            response.set_header("Access-Control-Allow-Headers", ALLOWED_HEADERS);
            response.set_header("Access-Control-Max-Age", MAX_AGE);
        }
        response
    }

    /// Adds the CORS headers an ordinary response needs.
    pub fn decorate(&self, request: &Request, response: &mut Response) {
        if !self.enabled() {
            return;
        }
        response.set_header("Vary", "Origin");
        if let Some(origin) = self.allowed_origin(request) {
            response.set_header("Access-Control-Allow-Origin", origin);
            response.set_header("Access-Control-Expose-Headers", EXPOSED_HEADERS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(origin: &str) -> Request {
        let mut r = Request::for_tests("OPTIONS", "/auth/login");
        r.headers
            .push(("origin".into(), origin.as_bytes().to_vec()));
        r
    }

    #[test]
    fn parses_exact_origins_only() {
        assert!(Cors::parse("").unwrap().origins.is_empty());
        let cors = Cors::parse("https://app.example.com, http://localhost:3000").unwrap();
        assert_eq!(cors.origins.len(), 2);
        for bad in [
            "*",
            "app.example.com",
            "https://x.io/path",
            "ftp://x.io",
            "https://",
        ] {
            assert!(Cors::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn echoes_only_allowed_origins_and_always_varies() {
        let cors = Cors::parse("https://app.example.com").unwrap();
        let ok = cors.preflight(&with_origin("https://app.example.com"), "POST");
        assert_eq!(ok.status, 204);
        assert_eq!(
            ok.header("Access-Control-Allow-Origin"),
            Some("https://app.example.com")
        );
        assert_eq!(ok.header("Access-Control-Allow-Methods"), Some("POST"));
        assert!(
            ok.header("Access-Control-Allow-Headers")
                .unwrap()
                .contains("Authorization")
        );
        let other = cors.preflight(&with_origin("https://evil.example"), "POST");
        assert_eq!(other.header("Access-Control-Allow-Origin"), None);

        let mut response = Response::empty(200);
        cors.decorate(&with_origin("https://evil.example"), &mut response);
        assert_eq!(response.header("Vary"), Some("Origin"));
        assert_eq!(response.header("Access-Control-Allow-Origin"), None);
        let mut response = Response::empty(200);
        cors.decorate(&with_origin("https://app.example.com"), &mut response);
        assert_eq!(
            response.header("Access-Control-Allow-Origin"),
            Some("https://app.example.com")
        );

        let mut response = Response::empty(200);
        Cors::default().decorate(&with_origin("https://app.example.com"), &mut response);
        assert!(response.headers.is_empty());
    }
}
