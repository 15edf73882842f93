//! JSON request bodies: the media type, a bounded nesting depth, no
//! duplicate member names, and typed access to members with the API's error
//! codes.
//!
//! Duplicate names are refused (RFC 8259 says names "SHOULD be unique", and
//! parsers disagree on which of two wins): serde_json keeps the last, so a
//! filter in front of this server that reads the first would see another
//! request than the one we act on.

use crate::error::ApiError;
use crate::http::Request;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

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
    match serde_json::from_slice::<Distinct>(&request.body) {
        Ok(Distinct(Value::Object(map))) => Ok(map),
        _ => Err(ApiError::MalformedJson),
    }
}

/// A JSON value in which no object has a member name twice, at any depth.
struct Distinct(Value);

impl<'de> Deserialize<'de> for Distinct {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DistinctVisitor).map(Distinct)
    }
}

struct DistinctVisitor;

impl<'de> Visitor<'de> for DistinctVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without duplicate member names")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, so the parser never hands us one.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Distinct(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if object.contains_key(&name) {
                return Err(de::Error::custom("duplicate member name"));
            }
            let Distinct(value) = map.next_value()?;
            object.insert(name, value);
        }
        Ok(Value::Object(object))
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
        Some(_) => Err(ApiError::InvalidField(name, "a string")),
    }
}

/// An optional member that is a string or `null` (which clears a value):
/// `None` when absent, `Some(None)` for `null`.
pub(super) fn nullable_string_member<'a>(
    body: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<Option<&'a str>>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s))),
        Some(_) => Err(ApiError::InvalidField(name, "a string or null")),
    }
}

/// An optional string member: `None` when absent.
pub(super) fn optional_string_member<'a>(
    body: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::InvalidField(name, "a string")),
    }
}

/// An optional boolean member: `None` when absent.
pub(super) fn optional_bool_member(
    body: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<bool>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::InvalidField(name, "true or false")),
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
        assert_eq!(
            string_member(&map, "x"),
            Err(ApiError::InvalidField("x", "a string"))
        );
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
    fn duplicate_member_names_are_refused_at_any_depth() {
        for body in [
            &br#"{"email": "a@b.io", "email": "c@d.io"}"#[..],
            br#"{"a": {"x": 1, "x": 2}}"#,
            br#"{"a": [{"x": 1, "x": 1}]}"#,
        ] {
            let r = with_body(Some("application/json"), body);
            assert_eq!(json_object(&r), Err(ApiError::MalformedJson), "{body:?}");
        }
        let r = with_body(
            Some("application/json"),
            br#"{"a": {"x": 1}, "b": {"x": [1, 2.5, null, true, "s"]}, "x": -3}"#,
        );
        let map = json_object(&r).unwrap();
        assert_eq!(map["b"]["x"][1], 2.5);
        assert_eq!(map["x"], -3);
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
