//! Method and path to handler: the whole public surface of the server in one
//! table.
//!
//! A path that matches no route answers 404 `not_found`; a known path with an
//! unsupported method answers 405 `method_not_allowed` with `Allow` listing
//! what the path supports. `HEAD` runs the route's `GET` handler (RFC 9110
//! sections 9.1 and 9.3.2: every GET resource answers HEAD too), so its
//! status and headers are GET's; the HTTP layer leaves the body out. Every `Err` a handler returns becomes its
//! problem+json response here, in one place. Here too, every response gets
//! its CORS headers and is counted in the metrics under its route's pattern.

use crate::error::ApiError;
use crate::handlers::{self, Context};
use crate::http::{Request, Response};
use crate::pages;
use std::time::Instant;

/// A handler: a plain function of the context and the parsed request.
pub type Handler = fn(&Context, &Request) -> Result<Response, ApiError>;

/// The methods a path supports: its `Allow` value (which names HEAD after
/// GET, as HEAD is served by the GET handler) and a handler per method, and
/// the pattern that names the route in metrics.
struct Route {
    pattern: &'static str,
    allow: &'static str,
    methods: &'static [(&'static str, Handler)],
}

/// Sessions are addressed as `/auth/sessions/{id}`.
pub const SESSIONS_PREFIX: &str = "/auth/sessions/";

/// Finds the route for `path`.
fn resolve(path: &str) -> Option<Route> {
    let route = |pattern, allow, methods| {
        Some(Route {
            pattern,
            allow,
            methods,
        })
    };
    match path {
        "/healthz" => route("/healthz", "GET, HEAD", &[("GET", handlers::healthz)]),
        "/metrics" => route("/metrics", "GET, HEAD", &[("GET", handlers::metrics_here)]),
        "/openapi.json" => route("/openapi.json", "GET, HEAD", &[("GET", handlers::openapi)]),
        "/auth/register" => route("/auth/register", "POST", &[("POST", handlers::register)]),
        "/auth/login" => route("/auth/login", "POST", &[("POST", handlers::login)]),
        "/auth/refresh" => route("/auth/refresh", "POST", &[("POST", handlers::refresh)]),
        "/auth/password" => route(
            "/auth/password",
            "POST",
            &[("POST", handlers::change_password)],
        ),
        "/auth/password/forgot" => route(
            "/auth/password/forgot",
            "POST",
            &[("POST", handlers::forgot_password)],
        ),
        "/auth/password/reset" => route(
            "/auth/password/reset",
            "POST",
            &[("POST", handlers::reset_password)],
        ),
        // The page a reset mail links to (HTML, for people; see `pages`).
        "/reset-password" => route(
            "/reset-password",
            "GET, HEAD, POST",
            &[("GET", pages::reset_page), ("POST", pages::reset_submit)],
        ),
        "/auth/email/verify" => route(
            "/auth/email/verify",
            "POST",
            &[("POST", handlers::verify_email)],
        ),
        "/auth/email/verify/resend" => route(
            "/auth/email/verify/resend",
            "POST",
            &[("POST", handlers::resend_verification)],
        ),
        "/auth/email/confirm" => route(
            "/auth/email/confirm",
            "POST",
            &[("POST", handlers::confirm_email_change)],
        ),
        // The pages the verification and confirmation mails link to.
        "/verify-email" => route(
            "/verify-email",
            "GET, HEAD, POST",
            &[("GET", pages::verify_page), ("POST", pages::verify_submit)],
        ),
        "/confirm-email" => route(
            "/confirm-email",
            "GET, HEAD, POST",
            &[
                ("GET", pages::confirm_page),
                ("POST", pages::confirm_submit),
            ],
        ),
        "/auth/me" => route(
            "/auth/me",
            "GET, HEAD, PATCH, DELETE",
            &[
                ("GET", handlers::me),
                ("PATCH", handlers::update_me),
                ("DELETE", handlers::delete_me),
            ],
        ),
        "/auth/logout" => route("/auth/logout", "POST", &[("POST", handlers::logout)]),
        "/auth/logout-all" => route(
            "/auth/logout-all",
            "POST",
            &[("POST", handlers::logout_all)],
        ),
        "/auth/sessions" => route(
            "/auth/sessions",
            "GET, HEAD",
            &[("GET", handlers::sessions)],
        ),
        // Any id shape reaches the handler, which answers 404 for ids that
        // are malformed just as for ids that are unknown.
        p if p.len() > SESSIONS_PREFIX.len() && p.starts_with(SESSIONS_PREFIX) => route(
            "/auth/sessions/{id}",
            "DELETE",
            &[("DELETE", handlers::end_session)],
        ),
        _ => None,
    }
}

/// Answers `request`: dispatches it, turns any error into its response,
/// adds CORS headers and counts it.
pub fn handle(ctx: &Context, request: &Request) -> Response {
    let started = Instant::now();
    let route = resolve(&request.path);
    let mut response = match &route {
        // Browsers' CORS preflight, answered for every API route when CORS
        // is on.
        Some(route) if request.method == "OPTIONS" && ctx.config.cors.enabled() => {
            Ok(ctx.config.cors.preflight(request, route.allow))
        }
        Some(route) => dispatch(ctx, request, route),
        None => Err(ApiError::NotFound),
    }
    .unwrap_or_else(|e| e.to_response(&request.request_id));
    ctx.config.cors.decorate(request, &mut response);
    let pattern = route.map_or("unmatched", |r| r.pattern);
    ctx.metrics
        .request(pattern, response.status, started.elapsed());
    response
}

fn dispatch(ctx: &Context, request: &Request, route: &Route) -> Result<Response, ApiError> {
    let method = match request.method.as_str() {
        "HEAD" => "GET",
        other => other,
    };
    let (_, handler) = route
        .methods
        .iter()
        .find(|(routed, _)| *routed == method)
        .ok_or(ApiError::MethodNotAllowed(route.allow))?;
    handler(ctx, request)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One path per route.
    const PATHS: &[&str] = &[
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/password",
        "/auth/password/forgot",
        "/auth/password/reset",
        "/reset-password",
        "/auth/email/verify",
        "/auth/email/verify/resend",
        "/auth/email/confirm",
        "/verify-email",
        "/confirm-email",
        "/auth/me",
        "/auth/logout",
        "/auth/logout-all",
        "/auth/sessions",
        "/auth/sessions/00112233445566778899aabbccddeeff",
    ];

    #[test]
    fn allow_lists_exactly_the_routed_methods_and_head_with_get() {
        for path in PATHS {
            let route = resolve(path).unwrap();
            let methods: Vec<&str> = route
                .methods
                .iter()
                .flat_map(|(m, _)| {
                    if *m == "GET" {
                        vec!["GET", "HEAD"]
                    } else {
                        vec![*m]
                    }
                })
                .collect();
            assert_eq!(methods.join(", "), route.allow, "{path}");
        }
        assert!(resolve("/nope").is_none());
        assert!(resolve("/healthz/").is_none());
        assert!(resolve("/auth/sessions/").is_none());
        for path in PATHS {
            let pattern = resolve(path).unwrap().pattern;
            assert!(
                pattern == *path || pattern == "/auth/sessions/{id}",
                "{path}: {pattern}"
            );
        }
    }

    /// The OpenAPI document describes every JSON route with exactly its
    /// methods, and nothing else; the HTML pages are for people, not
    /// clients, and stay out of it.
    #[test]
    fn the_openapi_document_lists_every_api_route_and_method() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../docs/openapi.json")).unwrap();
        let documented = doc["paths"].as_object().unwrap();
        let pages = ["/reset-password", "/verify-email", "/confirm-email"];
        let mut routed = Vec::new();
        for path in PATHS.iter().filter(|p| !pages.contains(p)) {
            let route = resolve(path).unwrap();
            routed.push(route.pattern);
            let operations = documented
                .get(route.pattern)
                .unwrap_or_else(|| panic!("{} is not in docs/openapi.json", route.pattern));
            let mut methods: Vec<String> = operations
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_uppercase())
                .collect();
            let mut expected: Vec<String> =
                route.methods.iter().map(|(m, _)| m.to_string()).collect();
            methods.sort();
            expected.sort();
            assert_eq!(methods, expected, "{}", route.pattern);
        }
        let extra: Vec<&String> = documented
            .keys()
            .filter(|p| !routed.contains(&p.as_str()))
            .collect();
        assert!(extra.is_empty(), "documented but not routed: {extra:?}");
    }
}
