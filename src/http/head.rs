//! Parsing and checking a request head: request line, target, `Host`, body
//! framing, `Connection` and `Expect`.
//!
//! `httparse` splits the head into its parts; the rules on top of it are
//! here. Framing follows RFC 9112 section 6 strictly, refusing every shape
//! that two parsers could read differently (request smuggling):
//! `Content-Length` and `Transfer-Encoding` together (whatever the length's
//! value, even empty), differing lengths, lengths that are not plain digits
//! (an empty item included), transfer codings other than a lone `chunked`,
//! and `Transfer-Encoding` on HTTP/1.0. Each of these answers 400 and the
//! connection closes, because the next request's start can no longer be
//! known.

use super::parse::ReadError;
use super::request::{Request, Version};
use super::{MAX_BODY, MAX_HEAD, MAX_HEADERS};
use crate::error::ApiError;
use std::net::IpAddr;

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// No body.
    None,
    /// `Content-Length` bytes, at most `MAX_BODY`.
    Length(usize),
    /// A chunked body (see `super::chunked`).
    Chunked,
}

/// A parsed, checked head.
#[derive(Debug)]
pub(super) struct Head {
    /// The request, without its body.
    pub(super) request: Request,
    /// The head's length in bytes; the body starts there.
    pub(super) len: usize,
    /// How the body is delimited.
    pub(super) body: Body,
    /// The client sent `Expect: 100-continue` (on HTTP/1.1).
    pub(super) expect_continue: bool,
}

/// Parses and checks the head at the start of `buf`: `Ok(None)` if it is
/// incomplete, otherwise the request (without body) and how to read on.
pub(super) fn parse_head(buf: &[u8], peer: IpAddr) -> Result<Option<Head>, ReadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Complete(_)) => {
            return Err(ReadError::before_head(ApiError::HeadersTooLarge));
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ReadError::before_head(ApiError::HeadersTooLarge));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::before_head(ApiError::HeadersTooLarge));
        }
        Err(e) => {
            return Err(ReadError::before_head(ApiError::BadRequest(format!(
                "Malformed request head: {e}."
            ))));
        }
    };
    // httparse returns these once the head is complete.
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(ReadError::before_head(ApiError::BadRequest(
            "Malformed request line.".into(),
        )));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let headers: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let checked = split_target(method, target).and_then(|(path, query)| {
        let hosts = field_values(&headers, "host").count();
        if hosts > 1 || (hosts == 0 && version == Version::Http11) {
            return Err(ApiError::BadRequest(
                "HTTP/1.1 requires exactly one Host header.".into(),
            ));
        }
        let body = framing(&headers, version)?;
        Ok((path, query, body, expects_continue(&headers, version)?))
    });
    let (path, query, body, expect_continue) =
        checked.map_err(|error| ReadError::after_head(method, &headers, error))?;

    let connection: Vec<String> = field_values(&headers, "connection")
        .flat_map(list_items)
        .map(|t| String::from_utf8_lossy(t).to_ascii_lowercase())
        .collect();
    let keep_alive = match version {
        Version::Http11 => !connection.iter().any(|t| t == "close"),
        Version::Http10 => connection.iter().any(|t| t == "keep-alive"),
    };

    let request = Request {
        method: method.to_string(),
        path,
        query,
        version,
        headers,
        body: Vec::new(),
        peer,
        request_id: String::new(),
        keep_alive,
    };
    Ok(Some(Head {
        request,
        len: head_len,
        body,
        expect_continue,
    }))
}

/// The values of every field named `name` (lowercase), in order.
pub(super) fn field_values<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// How the body is delimited (RFC 9112 section 6.3), refusing every shape
/// that two parsers could read differently.
fn framing(headers: &[(String, Vec<u8>)], version: Version) -> Result<Body, ApiError> {
    let bad = |why: &str| ApiError::BadRequest(why.to_string());
    // Every item of every Content-Length must be digits, all of them equal.
    // An empty item (`Content-Length:`, `Content-Length: ,` or `3,`) is
    // refused rather than skipped as in other lists: a parser that reads it
    // as 0 and one that reads it as "no length" disagree on the body.
    let mut length: Option<usize> = None;
    for value in field_values(headers, "content-length") {
        for item in value.split(|b| *b == b',') {
            let n = parse_length(item.trim_ascii())
                .ok_or_else(|| bad("Content-Length must be a number."))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("Conflicting Content-Length values."));
            }
            length = Some(n);
        }
    }
    if field_values(headers, "transfer-encoding").next().is_none() {
        return match length {
            Some(n) if n > MAX_BODY => Err(ApiError::PayloadTooLarge),
            Some(0) | None => Ok(Body::None),
            Some(n) => Ok(Body::Length(n)),
        };
    }
    // The field's presence, whatever its value, is what conflicts: some
    // parser on the way may act on it.
    if field_values(headers, "content-length").next().is_some() {
        return Err(bad(
            "Content-Length and Transfer-Encoding must not both be sent.",
        ));
    }
    if version == Version::Http10 {
        return Err(bad("Transfer-Encoding is not allowed in HTTP/1.0."));
    }
    let codings: Vec<String> = field_values(headers, "transfer-encoding")
        .flat_map(list_items)
        .map(|c| String::from_utf8_lossy(c).to_ascii_lowercase())
        .collect();
    if codings != ["chunked"] {
        return Err(bad("The only supported Transfer-Encoding is chunked."));
    }
    Ok(Body::Chunked)
}

/// Splits a request target into path and query. Accepts origin-form
/// (`/path?q`), absolute-form (`http://host/path?q`, which RFC 9112 section
/// 3.2.2 requires servers to accept; the scheme in any case, as RFC 3986
/// section 3.1 says) and `*` for OPTIONS.
fn split_target(method: &str, target: &str) -> Result<(String, Option<String>), ApiError> {
    let (path, query) = if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
        split_query(target)
    } else if let Some(rest) = strip_http_scheme(target) {
        // The authority runs to the first '/' or '?'. Without a path the
        // target means "/", and the query still belongs to it.
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        match split_query(&rest[authority_end..]) {
            ("", query) => ("/", query),
            found => found,
        }
    } else {
        return Err(ApiError::BadRequest("Unsupported request target.".into()));
    };
    Ok((path.to_string(), query.map(str::to_string)))
}

fn split_query(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// What follows `http://` or `https://`, in any case, at the start of
/// `target`.
fn strip_http_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].into_iter().find_map(|scheme| {
        let found = target.get(..scheme.len())?;
        found
            .eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// The comma-separated items of a header value, trimmed of spaces and tabs;
/// empty items are skipped (RFC 9110 section 5.6.1).
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

/// `1*DIGIT` and nothing else (no sign, no spaces, no hex), within `usize`.
fn parse_length(item: &[u8]) -> Option<usize> {
    if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(item).ok()?.parse().ok()
}

/// Whether the client waits for `100 Continue` before sending its body;
/// 417 for an expectation this server cannot meet. HTTP/1.0 predates
/// `Expect`, so there every expectation is ignored: RFC 9110 section 10.1.1
/// says so of `100-continue`, and an HTTP/1.0 client cannot mean another.
fn expects_continue(headers: &[(String, Vec<u8>)], version: Version) -> Result<bool, ApiError> {
    if version == Version::Http10 {
        return Ok(false);
    }
    let mut expects = false;
    for item in field_values(headers, "expect").flat_map(list_items) {
        if !item.eq_ignore_ascii_case(b"100-continue") {
            return Err(ApiError::ExpectationFailed);
        }
        expects = true;
    }
    Ok(expects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// The head at the start of `input`, which must be complete.
    fn head(input: &str) -> Result<Head, ReadError> {
        let parsed = parse_head(input.as_bytes(), IpAddr::V4(Ipv4Addr::LOCALHOST))?;
        Ok(parsed.unwrap_or_else(|| panic!("incomplete head: {input:?}")))
    }

    fn error(input: &str) -> ApiError {
        match head(input) {
            Err(e) => e.error,
            Ok(h) => panic!("accepted {input:?}: {h:?}"),
        }
    }

    fn is_bad_request(input: &str) -> bool {
        matches!(error(input), ApiError::BadRequest(_))
    }

    #[test]
    fn framing_from_the_fields() {
        let body = |input: &str| head(input).unwrap().body;
        assert_eq!(body("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Body::None);
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
            Body::None
        );
        // Equal duplicates, in one line or several, are one length.
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\n"),
            Body::Length(3)
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Body::Chunked
        );
        let len = head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok")
            .unwrap()
            .len;
        assert_eq!(
            len,
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n".len()
        );
    }

    #[test]
    fn ambiguous_framing_is_rejected() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            // The field's presence is the conflict, whatever its value.
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
            // An empty item is not "no length".
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        for case in cases {
            assert!(is_bad_request(case), "accepted: {case:?}");
        }
        let huge = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n";
        assert_eq!(error(huge), ApiError::PayloadTooLarge);
    }

    #[test]
    fn errors_after_the_head_carry_the_clients_request_id() {
        let cases = [
            (
                "POST / HTTP/1.1\r\nHost: a\r\nX-Request-Id: t1\r\nContent-Length: 99999999\r\n\r\n",
                ApiError::PayloadTooLarge,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nX-Request-Id: t1\r\nContent-Length: \r\n\r\n",
                ApiError::BadRequest("Content-Length must be a number.".into()),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nX-Request-Id: t1\r\nExpect: x\r\n\r\n",
                ApiError::ExpectationFailed,
            ),
            (
                "GET relative HTTP/1.1\r\nHost: a\r\nX-Request-Id: t1\r\n\r\n",
                ApiError::BadRequest("Unsupported request target.".into()),
            ),
            (
                "GET / HTTP/1.1\r\nX-Request-Id: t1\r\n\r\n",
                ApiError::BadRequest("HTTP/1.1 requires exactly one Host header.".into()),
            ),
        ];
        for (input, expected) in cases {
            let e = head(input).unwrap_err();
            assert_eq!(
                (e.error, e.client_request_id.as_deref(), e.head),
                (expected, Some("t1"), false)
            );
        }
        let e = head("HEAD / HTTP/1.1\r\nHost: a\r\nX-Request-Id: t2\r\nContent-Length: x\r\n\r\n")
            .unwrap_err();
        assert_eq!((e.client_request_id.as_deref(), e.head), (Some("t2"), true));
        // Before httparse has the fields, nothing is known.
        let e = head("GET / HTTP/1.1\r\nX-Request-Id: t3\r\nBad Name: v\r\n\r\n").unwrap_err();
        assert_eq!((e.client_request_id, e.head), (None, false));
    }

    #[test]
    fn expectations() {
        let expects = |input: &str| head(input).map(|h| h.expect_continue);
        assert!(expects("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n").unwrap());
        assert!(!expects("POST / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap());
        for other in [
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n",
            // A second field cannot hide an expectation behind the first.
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: x\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n",
        ] {
            assert_eq!(error(other), ApiError::ExpectationFailed, "{other:?}");
        }
        // HTTP/1.0 predates Expect: every expectation is ignored.
        for expect in ["something", "100-continue"] {
            let old = format!("POST / HTTP/1.0\r\nExpect: {expect}\r\n\r\n");
            assert!(!expects(&old).unwrap(), "{expect}");
        }
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &str| head(s).unwrap().request.keep_alive;
        assert!(ka("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n"
        ));
    }

    #[test]
    fn target_forms() {
        let target = |t: &str| {
            let r = head(&format!("GET {t} HTTP/1.1\r\nHost: a\r\n\r\n"))
                .unwrap()
                .request;
            (r.path, r.query)
        };
        let query = |q: &str| Some(q.to_string());
        assert_eq!(target("/healthz?x=1"), ("/healthz".into(), query("x=1")));
        assert_eq!(
            target("http://example.com/healthz?a"),
            ("/healthz".into(), query("a"))
        );
        // Without a path the target means "/", and keeps its query even
        // when that holds a slash.
        assert_eq!(target("http://a?x=1"), ("/".into(), query("x=1")));
        assert_eq!(target("http://a?next=/b"), ("/".into(), query("next=/b")));
        assert_eq!(target("http://a"), ("/".into(), None));
        // Schemes are case-insensitive.
        assert_eq!(target("HTTP://a/b?c"), ("/b".into(), query("c")));
        assert_eq!(target("hTTpS://a:8080/b"), ("/b".into(), None));
        for bad in ["ftp://a/b", "http:/a/b", "relative", "*"] {
            let input = format!("GET {bad} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert!(is_bad_request(&input), "{bad}");
        }
        let options = head("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(options.request.path, "*");
    }
}
