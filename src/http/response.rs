//! Responses and their serialisation.
//!
//! A response is a status, a few headers and a complete body: every body this
//! server sends is a small JSON document, so there is no streaming, and the
//! whole response goes out in one `write_all` (one syscall, no Nagle stalls).
//! The writer adds `Date`, `Content-Length` and `Connection` itself, so no
//! handler can forget them or send them twice, and it alone decides whether
//! a body goes out at all (not for `HEAD`, 204 or 304).

use serde::Serialize;

/// An HTTP response as handlers build it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100-599.
    pub status: u16,
    /// Header fields other than `Date`, `Content-Length` and `Connection`,
    /// which the writer adds.
    pub headers: Vec<(&'static str, String)>,
    /// The complete body.
    pub body: Vec<u8>,
    /// Close the connection after this response (set by errors whose request
    /// framing cannot be trusted).
    pub close: bool,
}

impl Response {
    /// A response with a status and no body.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    /// A JSON response: `value` serialised, `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        // Serialising our own response types cannot fail: they hold only
        // strings, numbers and booleans, never maps with non-string keys.
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Response {
            status,
            headers: vec![("Content-Type", "application/json".to_string())],
            body,
            close: false,
        }
    }

    /// Sets a header, replacing an earlier value of the same name.
    pub fn set_header(&mut self, name: &'static str, value: impl Into<String>) {
        let value = value.into();
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.headers.push((name, value)),
        }
    }

    /// The value of a header set on this response, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Serialises the response into `out`; `keep_alive` decides the
    /// `Connection` header, `date` is the `Date` header's value, and
    /// `to_head` says it answers a `HEAD` request.
    ///
    /// The body and its framing follow RFC 9110 sections 6.4.1 and 8.6: a
    /// 1xx, 204 or 304 response has neither a body nor `Content-Length`,
    /// whatever `body` holds; an answer to `HEAD` has the `Content-Length`
    /// of the body it would have sent to `GET`, and no body.
    pub(crate) fn write_into(
        &self,
        out: &mut Vec<u8>,
        keep_alive: bool,
        date: &str,
        to_head: bool,
    ) {
        use std::io::Write;
        let bodiless = matches!(self.status, 100..=199 | 204 | 304);
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nDate: {}\r\n",
            self.status,
            reason_phrase(self.status),
            date,
        );
        if !bodiless {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            // A header value with CR or LF would let one header become two
            // (response splitting); values here are ours, but drop such bytes
            // rather than trust every future caller.
            out.extend(value.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !bodiless && !to_head {
            out.extend_from_slice(&self.body);
        }
    }
}

/// The reason phrase of RFC 9110 for a status code ("Unknown" otherwise).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_status_line_framing_headers_and_body() {
        let mut r = Response::json(200, &serde_json::json!({"status": "ok"}));
        r.set_header("X-Evil", "a\r\nSet-Cookie: x=1");
        let mut out = Vec::new();
        r.write_into(&mut out, true, "Thu, 01 Jan 1970 00:00:00 GMT", false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"));
        assert!(text.contains("\r\nContent-Length: 15\r\n"));
        assert!(text.contains("\r\nConnection: keep-alive\r\n"));
        assert!(text.contains("\r\nX-Evil: aSet-Cookie: x=1\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"status\":\"ok\"}"));
    }

    fn written(r: &Response, to_head: bool) -> String {
        let mut out = Vec::new();
        r.write_into(&mut out, true, "Thu, 01 Jan 1970 00:00:00 GMT", to_head);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn head_answers_keep_the_length_and_drop_the_body() {
        let r = Response::json(405, &serde_json::json!({"code": "x"}));
        let text = written(&r, true);
        assert!(text.contains("\r\nContent-Length: 12\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        assert_eq!(written(&r, false), format!("{text}{{\"code\":\"x\"}}"));
    }

    #[test]
    fn no_content_has_no_length_and_no_body() {
        for status in [204, 304, 101] {
            let mut r = Response::empty(status);
            r.body = b"stray".to_vec();
            for to_head in [false, true] {
                let text = written(&r, to_head);
                assert!(!text.contains("Content-Length"), "{text}");
                assert!(text.ends_with("\r\n\r\n"), "{text}");
            }
        }
    }

    #[test]
    fn set_header_replaces() {
        let mut r = Response::empty(204);
        r.set_header("Content-Type", "a");
        r.set_header("content-type", "b");
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.header("CONTENT-TYPE"), Some("b"));
    }
}
