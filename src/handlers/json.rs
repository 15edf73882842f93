//! JSON request bodies: the media type, a bounded nesting depth, and typed
//! access to members with the API's error codes.

use crate::error::ApiError;
use crate::http::Request;
use serde_json::{Map, Value};

/// The body as a JSON object. 415 unless the Content-Type is
/// `application/json` (parameters such as `charset` allowed); 400
/// `malformed_json` for anything but an object, including invalid UTF-8.
pub(super) fn json_object(request: &Request) -> Result<Map<String, Value>, ApiError> {
    let content_type = request.header("content-type").unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    // serde_json parses and drops nested values recursively; bounding the
    // depth first keeps a hostile body from exhausting a thread's stack.
    if nesting_exceeds(&request.body, MAX_JSON_DEPTH) {
        return Err(ApiError::MalformedJson);
    }
    match serde_json::from_slice(&request.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::MalformedJson),
    }
}

/// Deepest JSON nesting accepted; every body of this API is a flat object.
const MAX_JSON_DEPTH: usize = 16;

/// True if `[`/`{` nest deeper than `max` outside strings. A linear scan
/// that needs no stack, run before the recursive parser.
fn nesting_exceeds(body: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A required string member. Unknown members are ignored elsewhere.
pub(super) fn string_member<'a>(
    body: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, ApiError> {
    match body.get(name) {
        None => Err(ApiError::MissingField(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::InvalidField(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Request;

    fn with_body(content_type: Option<&str>, body: &[u8]) -> Request {
        let mut r = Request::for_tests("POST", "/auth/login");
        if let Some(ct) = content_type {
            r.headers
                .push(("content-type".into(), ct.as_bytes().to_vec()));
        }
        r.body = body.to_vec();
        r
    }

    #[test]
    fn json_bodies() {
        let ok = with_body(
            Some("Application/JSON; charset=utf-8"),
            br#"{"email": "a@b.io", "x": 1}"#,
        );
        let map = json_object(&ok).unwrap();
        assert_eq!(string_member(&map, "email"), Ok("a@b.io"));
        assert_eq!(
            string_member(&map, "password"),
            Err(ApiError::MissingField("password"))
        );
        assert_eq!(string_member(&map, "x"), Err(ApiError::InvalidField("x")));
        for ct in [
            None,
            Some("text/plain"),
            Some("application/jsonx"),
            Some(""),
        ] {
            assert_eq!(
                json_object(&with_body(ct, b"{}")),
                Err(ApiError::UnsupportedMediaType),
                "{ct:?}"
            );
        }
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"\"s\"",
            b"{\"a\":",
            b"{\"a\":\"\xff\"}",
            b"1",
        ] {
            let r = with_body(Some("application/json"), body);
            assert_eq!(json_object(&r), Err(ApiError::MalformedJson), "{body:?}");
        }
    }

    #[test]
    fn nesting_is_bounded_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a": [1, {"b": 2}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a": [1, {"b": [2]}]}"#, 3));
        // Brackets inside strings, escaped quotes included, do not count.
        assert!(!nesting_exceeds(br#"{"a": "[[[[\"{{{{"}"#, 1));
        let deep = "[".repeat(100_000);
        let r = with_body(Some("application/json"), deep.as_bytes());
        assert_eq!(json_object(&r), Err(ApiError::MalformedJson));
    }
}
