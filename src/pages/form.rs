//! HTML form data (`application/x-www-form-urlencoded`), from a request
//! body or a query string, read strictly.
//!
//! The `form_urlencoded` crate (rust-url's, the WHATWG algorithm) splits and
//! decodes; around it this module refuses what that algorithm forgives,
//! because a browser never sends it and two parsers may read it two ways:
//!
//! - a field name given twice (as duplicate JSON members are refused: one
//!   parser keeps the first, another the last, so a filter in front of this
//!   server could see another request than the one acted on);
//! - a `%` not followed by two hex digits (the algorithm keeps it as text,
//!   some decoders fail or guess);
//! - bytes that do not decode to UTF-8: the algorithm replaces them with
//!   U+FFFD, which would silently make a new password other than the one
//!   typed. The check is "no U+FFFD in the result", so a genuine U+FFFD,
//!   which no one types, is refused with them.

use crate::http::Request;
use std::collections::HashSet;

/// Why a form could not be read. [`FormError::sentence`] says it in words
/// for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// The body is not `application/x-www-form-urlencoded`, or names a
    /// charset other than UTF-8.
    WrongContentType,
    /// A bad `%` escape or text that is not UTF-8.
    Malformed,
    /// A field name appears more than once.
    Duplicate,
    /// A required field is absent (names it).
    Missing(&'static str),
}

impl FormError {
    /// A sentence for the person in front of the page. Names only fields
    /// of ours, never anything the request sent.
    pub fn sentence(&self) -> String {
        match self {
            FormError::WrongContentType => {
                "The form was not sent as an HTML form (application/x-www-form-urlencoded in UTF-8).".into()
            }
            FormError::Malformed => "The form data is garbled and could not be read.".into(),
            FormError::Duplicate => "A field appears more than once in the form.".into(),
            FormError::Missing(name) => format!("The form is missing its \"{name}\" field."),
        }
    }
}

/// Form fields, decoded, each name at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// The body of `request` as a form. `WrongContentType` unless its
    /// media type is `application/x-www-form-urlencoded` (any case) with no
    /// charset parameter or `charset=utf-8`; then as [`Form::parse`].
    pub fn from_body(request: &Request) -> Result<Form, FormError> {
        let content_type = request.header("content-type").unwrap_or("");
        let mut parts = content_type.split(';');
        let media_type = parts.next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(FormError::WrongContentType);
        }
        for parameter in parts {
            let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            let value = value.trim().trim_matches('"');
            if name.trim().eq_ignore_ascii_case("charset") && !value.eq_ignore_ascii_case("utf-8") {
                return Err(FormError::WrongContentType);
            }
        }
        Form::parse(&request.body)
    }

    /// Parses form data: `name=value` pairs joined by `&`, `+` for a space,
    /// `%XX` for a byte. `Malformed` or `Duplicate` as the module says.
    /// Empty pairs (`a=1&&b=2`) are skipped, and a pair without `=` has an
    /// empty value, as the WHATWG algorithm says.
    pub fn parse(data: &[u8]) -> Result<Form, FormError> {
        if !escapes_are_well_formed(data) {
            return Err(FormError::Malformed);
        }
        let mut fields = Vec::new();
        let mut names = HashSet::new();
        for (name, value) in form_urlencoded::parse(data) {
            if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
                return Err(FormError::Malformed);
            }
            if !names.insert(name.clone()) {
                return Err(FormError::Duplicate);
            }
            fields.push((name.into_owned(), value.into_owned()));
        }
        Ok(Form { fields })
    }

    /// Every field's name, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| n.as_str())
    }

    /// The value of field `name`, if present (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of field `name`; `Missing` if absent. An empty value is
    /// present: the rules that use it decide what empty means.
    pub fn required(&self, name: &'static str) -> Result<&str, FormError> {
        self.get(name).ok_or(FormError::Missing(name))
    }
}

/// True if every `%` in `data` is followed by two hex digits.
fn escapes_are_well_formed(data: &[u8]) -> bool {
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'%' {
            let hex = data.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &str) -> Result<Form, FormError> {
        Form::parse(data.as_bytes())
    }

    #[test]
    fn decodes_fields_as_browsers_send_them() {
        let form = parse("token=abc-_9&new_password=caf%C3%A9+au+lait%21&x=%26%3D%2B").unwrap();
        assert_eq!(form.get("token"), Some("abc-_9"));
        assert_eq!(form.get("new_password"), Some("café au lait!"));
        assert_eq!(form.get("x"), Some("&=+"));
        assert_eq!(form.get("nope"), None);
        assert_eq!(form.required("nope"), Err(FormError::Missing("nope")));
        // Hex digits in either case; empty pairs skipped; a bare name is empty.
        let form = parse("a=%e2%82%AC&&b&c=").unwrap();
        assert_eq!(form.get("a"), Some("€"));
        assert_eq!(form.required("b"), Ok(""));
        assert_eq!(form.required("c"), Ok(""));
        assert_eq!(parse("").unwrap(), Form { fields: Vec::new() });
        // A value may hold '=': only the first splits.
        assert_eq!(parse("t=a=b").unwrap().get("t"), Some("a=b"));
    }

    #[test]
    fn refuses_duplicate_names_also_when_encoded_differently() {
        for data in [
            "token=a&token=b",
            "token=a&token=a",
            "token=a&tok%65n=b",
            "a=1&b=2&a=",
            "a&a",
        ] {
            assert_eq!(parse(data), Err(FormError::Duplicate), "{data}");
        }
    }

    #[test]
    fn refuses_bad_escapes_and_text_that_is_not_utf8() {
        for data in [
            &b"a=%"[..],
            b"a=%4",
            b"a=%zz",
            b"a=%4g",
            b"%=1",
            b"a=1&b=%%41",
            b"a=%FF",
            b"a=%C3",
            b"a=%C3%28",
            b"%FF=1",
            b"a=\xff",
            // U+FFFD itself, refused with the bytes it stands for.
            b"a=%EF%BF%BD",
        ] {
            assert_eq!(Form::parse(data), Err(FormError::Malformed), "{data:?}");
        }
        // Raw UTF-8 (not escaped) is still UTF-8.
        assert_eq!(Form::parse("a=é".as_bytes()).unwrap().get("a"), Some("é"));
    }

    fn with(content_type: Option<&str>, body: &str) -> Request {
        let mut r = Request::for_tests("POST", "/reset-password");
        if let Some(ct) = content_type {
            r.headers
                .push(("content-type".into(), ct.as_bytes().to_vec()));
        }
        r.body = body.as_bytes().to_vec();
        r
    }

    #[test]
    fn the_body_must_be_sent_as_a_utf8_form() {
        for ct in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-URLEncoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "application/x-www-form-urlencoded;charset=\"utf-8\"",
            "application/x-www-form-urlencoded; foo=bar",
        ] {
            let form = Form::from_body(&with(Some(ct), "a=1")).unwrap();
            assert_eq!(form.get("a"), Some("1"), "{ct}");
        }
        for ct in [
            None,
            Some(""),
            Some("application/json"),
            Some("multipart/form-data; boundary=x"),
            Some("text/plain"),
            Some("application/x-www-form-urlencodedx"),
            Some("application/x-www-form-urlencoded; charset=iso-8859-1"),
        ] {
            assert_eq!(
                Form::from_body(&with(ct, "a=1")),
                Err(FormError::WrongContentType),
                "{ct:?}"
            );
        }
    }

    #[test]
    fn sentences_name_only_our_fields() {
        assert!(FormError::Missing("token").sentence().contains("\"token\""));
        for e in [
            FormError::WrongContentType,
            FormError::Malformed,
            FormError::Duplicate,
        ] {
            assert!(e.sentence().ends_with('.'), "{e:?}");
        }
    }
}
