//! Reading one request off a connection: head, framing, body, under limits
//! and deadlines.
//!
//! The reader works on any [`Stream`] (a `TcpStream` in production, a byte
//! slice in the tests) and keeps unread bytes in a caller-owned buffer, so
//! pipelined requests that arrive in one packet are read in order.
//!
//! Deadlines are absolute: before every `read` the socket timeout is set to
//! the time left until the deadline, so the total time a request may take is
//! bounded however slowly its bytes trickle in. The clocks are:
//!
//! | waiting for | deadline |
//! |---|---|
//! | the first byte of a request | `KEEPALIVE_TIMEOUT_MS` after the previous response (or the accept); on expiry the connection closes silently |
//! | the rest of the head | `HEADER_TIMEOUT_MS` after its first byte; then 408 |
//! | the body | `BODY_TIMEOUT_MS` after the head; then 408 |
//!
//! Framing follows RFC 9112 section 6 strictly, refusing every shape that two
//! parsers could read differently (request smuggling): `Content-Length` and
//! `Transfer-Encoding` together, differing lengths, lengths that are not plain
//! digits, transfer codings other than a lone `chunked`, and
//! `Transfer-Encoding` on HTTP/1.0. Each of these answers 400 and the
//! connection closes, because the next request's start can no longer be known.

use super::chunked;
use super::server::Limits;
use super::{MAX_BODY, MAX_HEAD, MAX_HEADERS};
use crate::error::ApiError;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

/// Bytes asked of the socket per `read`.
const READ_CHUNK: usize = 8 * 1024;

/// The byte source a request is read from: a socket whose read timeout can be
/// set before each read.
pub(crate) trait Stream: Read + Write {
    /// Bounds the next reads to `timeout` (never zero).
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
}

// On a shared reference, so the acceptor can shut the same socket down for
// eviction without a second descriptor (see `super::server`).
impl Stream for &TcpStream {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout))
    }
}

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless the client
    /// asked for `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: the connection stays open unless either side says `close`.
    Http11,
}

/// A complete request: head and body, read and validated.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method token as sent (methods are case-sensitive).
    pub method: String,
    /// The path of the request target, without the query.
    pub path: String,
    /// The query string after `?`, if any, undecoded.
    pub query: Option<String>,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Header fields in order, names lowercased, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked; empty when there was none.
    pub body: Vec<u8>,
    /// The address of the peer that sent the request.
    pub peer: IpAddr,
    /// Identifies the request in logs and problem bodies.
    pub request_id: String,
    /// Whether the connection may carry another request after this one.
    pub(crate) keep_alive: bool,
}

impl Request {
    /// The first value of header `name` (case-insensitive), if present and
    /// valid UTF-8. Non-UTF-8 values are treated as absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every value of header `name` joined with `", "`, as RFC 9110 section
    /// 5.3 says several field lines of one name mean; `None` if absent.
    /// Lists such as `X-Forwarded-For` must be read this way, or a client
    /// could hide an entry from the reader in a second line.
    pub fn header_list(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| std::str::from_utf8(v).unwrap_or(""))
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// A request with the given method and path and nothing else; for tests
    /// of code that takes a `Request`.
    pub fn for_tests(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: None,
            version: Version::Http11,
            headers: Vec::new(),
            body: Vec::new(),
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            request_id: "test".to_string(),
            keep_alive: true,
        }
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(usize),
    Chunked,
}

/// Why filling the buffer stopped.
enum Fill {
    Timeout,
    Eof,
    Broken,
}

/// Reads the next request from `stream`. Bytes already in `buf` (left over
/// from a previous request) are used first; bytes past this request stay in
/// `buf` for the next call.
///
/// Returns `Ok(None)` when the connection ended cleanly between requests (the
/// peer closed it, or it was idle for the keep-alive timeout), and `Err` with
/// the error to answer, after which the caller must close the connection.
pub(crate) fn read_request<S: Stream>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limits: &Limits,
    peer: IpAddr,
) -> Result<Option<Request>, ApiError> {
    let idle_deadline = Instant::now() + limits.keepalive_timeout;
    let mut head_deadline = (!buf.is_empty()).then(|| Instant::now() + limits.header_timeout);
    let (mut request, head_len, body) = loop {
        if !buf.is_empty() {
            if let Some(parsed) = parse_head(buf, peer)? {
                break parsed;
            }
        }
        match fill(stream, buf, head_deadline.unwrap_or(idle_deadline)) {
            Ok(()) => {
                head_deadline.get_or_insert_with(|| Instant::now() + limits.header_timeout);
            }
            Err(_) if buf.is_empty() => return Ok(None),
            Err(Fill::Timeout) => return Err(ApiError::RequestTimeout),
            Err(Fill::Eof | Fill::Broken) => {
                return Err(ApiError::BadRequest(
                    "The connection closed in the middle of the request head.".into(),
                ));
            }
        }
    };
    buf.drain(..head_len);

    let body_deadline = Instant::now() + limits.body_timeout;
    let expect_continue = expects_continue(&request)?;
    let wants_body = match body {
        Body::None => false,
        Body::Length(n) => n > 0,
        Body::Chunked => true,
    };
    if expect_continue && wants_body && buf.is_empty() && request.version == Version::Http11 {
        // The client waits for this before sending the body (RFC 9110
        // section 10.1.1); a failed write shows up as a failed body read.
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    request.body = match body {
        Body::None => Vec::new(),
        Body::Length(n) => {
            while buf.len() < n {
                fill(stream, buf, body_deadline).map_err(body_error)?;
            }
            buf.drain(..n).collect()
        }
        Body::Chunked => chunked::decode(buf, |buf| {
            fill(stream, buf, body_deadline).map_err(body_error)
        })?,
    };
    Ok(Some(request))
}

/// Reads once from `stream` into the end of `buf`, waiting until `deadline`
/// at most.
fn fill<S: Stream>(stream: &mut S, buf: &mut Vec<u8>, deadline: Instant) -> Result<(), Fill> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(Fill::Timeout);
    }
    stream
        .set_read_timeout(remaining)
        .map_err(|_| Fill::Broken)?;
    let start = buf.len();
    buf.resize(start + READ_CHUNK, 0);
    let result = loop {
        match stream.read(&mut buf[start..]) {
            Ok(0) => break Err(Fill::Eof),
            Ok(n) => {
                buf.truncate(start + n);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break Err(Fill::Timeout);
            }
            Err(_) => break Err(Fill::Broken),
        }
    };
    buf.truncate(start);
    result
}

fn body_error(fill: Fill) -> ApiError {
    match fill {
        Fill::Timeout => ApiError::RequestTimeout,
        Fill::Eof | Fill::Broken => {
            ApiError::BadRequest("The connection closed before the body was complete.".into())
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` if it is incomplete,
/// otherwise the request (without body), the head's length and the framing.
fn parse_head(buf: &[u8], peer: IpAddr) -> Result<Option<(Request, usize, Body)>, ApiError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Complete(_)) => return Err(ApiError::HeadersTooLarge),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ApiError::HeadersTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ApiError::HeadersTooLarge),
        Err(e) => {
            return Err(ApiError::BadRequest(format!(
                "Malformed request head: {e}."
            )));
        }
    };
    let bad = |why: &str| ApiError::BadRequest(why.to_string());
    // httparse returns these once the head is complete.
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(bad("Malformed request line."));
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
    let (path, query) = split_target(method, target)?;

    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    };
    let hosts = values("host").count();
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(bad("HTTP/1.1 requires exactly one Host header."));
    }

    let mut length: Option<usize> = None;
    for value in values("content-length") {
        for item in list_items(value) {
            let n = parse_length(item).ok_or_else(|| bad("Content-Length must be a number."))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("Conflicting Content-Length values."));
            }
            length = Some(n);
        }
    }
    let codings: Vec<String> = values("transfer-encoding")
        .flat_map(list_items)
        .map(|c| String::from_utf8_lossy(c).to_ascii_lowercase())
        .collect();
    let body = if values("transfer-encoding").next().is_some() {
        if length.is_some() {
            return Err(bad(
                "Content-Length and Transfer-Encoding must not both be sent.",
            ));
        }
        if version == Version::Http10 {
            return Err(bad("Transfer-Encoding is not allowed in HTTP/1.0."));
        }
        if codings != ["chunked"] {
            return Err(bad("The only supported Transfer-Encoding is chunked."));
        }
        Body::Chunked
    } else {
        match length {
            Some(n) if n > MAX_BODY => return Err(ApiError::PayloadTooLarge),
            Some(0) | None => Body::None,
            Some(n) => Body::Length(n),
        }
    };

    let connection: Vec<String> = values("connection")
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
    Ok(Some((request, head_len, body)))
}

/// Splits a request target into path and query. Accepts origin-form
/// (`/path?q`), absolute-form (`http://host/path`, which RFC 9112 section
/// 3.2.2 requires servers to accept) and `*` for OPTIONS.
fn split_target(method: &str, target: &str) -> Result<(String, Option<String>), ApiError> {
    let origin = if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
        target
    } else if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        rest.find('/').map_or("/", |i| &rest[i..])
    } else {
        return Err(ApiError::BadRequest("Unsupported request target.".into()));
    };
    Ok(match origin.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (origin.to_string(), None),
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

fn expects_continue(request: &Request) -> Result<bool, ApiError> {
    match request.headers.iter().find(|(n, _)| n == "expect") {
        None => Ok(false),
        Some((_, v)) if v.trim_ascii().eq_ignore_ascii_case(b"100-continue") => Ok(true),
        Some(_) => Err(ApiError::ExpectationFailed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An in-memory stream that hands out at most `chunk` bytes per read and
    /// records what is written to it.
    struct Mock {
        input: Vec<u8>,
        pos: usize,
        chunk: usize,
        written: Vec<u8>,
    }

    impl Mock {
        fn new(input: &[u8], chunk: usize) -> Mock {
            Mock {
                input: input.to_vec(),
                pos: 0,
                chunk,
                written: Vec::new(),
            }
        }
    }

    impl Read for Mock {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(self.chunk).min(self.input.len() - self.pos);
            out[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Mock {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Mock {
        fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    fn limits() -> Limits {
        Limits {
            max_connections: 8,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        }
    }

    fn peer() -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    /// Reads every request in `input`, `chunk` bytes per read; stops at the
    /// first error.
    fn read_all(input: &[u8], chunk: usize) -> (Vec<Request>, Option<ApiError>, Mock) {
        let mut mock = Mock::new(input, chunk);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_request(&mut mock, &mut buf, &limits(), peer()) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => return (out, None, mock),
                Err(e) => return (out, Some(e), mock),
            }
        }
    }

    fn one(input: &str) -> Result<Request, ApiError> {
        let (mut requests, err, _) = read_all(input.as_bytes(), usize::MAX);
        match err {
            Some(e) => Err(e),
            None => Ok(requests.remove(0)),
        }
    }

    fn is_bad_request(r: Result<Request, ApiError>) -> bool {
        matches!(r, Err(ApiError::BadRequest(_)))
    }

    #[test]
    fn simple_get() {
        let r = one("GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing: V\r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/healthz");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.header("x-thing"), Some("V"));
        assert_eq!(r.header("X-THING"), Some("V"));
        let two = one("GET / HTTP/1.1\r\nHost: a\r\nX-F: 1\r\nX-F: 2, 3\r\n\r\n").unwrap();
        assert_eq!(two.header_list("x-f").as_deref(), Some("1, 2, 3"));
        assert_eq!(two.header_list("absent"), None);
        assert!(r.keep_alive);
        assert!(r.body.is_empty());
    }

    #[test]
    fn pipelined_requests_come_out_in_order_at_any_read_size() {
        let input = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n\
                     POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz\
                     POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
                     GET /d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        for chunk in [1, 2, 7, 64, usize::MAX] {
            let (requests, err, _) = read_all(input.as_bytes(), chunk);
            assert!(err.is_none(), "chunk {chunk}: {err:?}");
            let paths: Vec<_> = requests.iter().map(|r| r.path.as_str()).collect();
            assert_eq!(paths, ["/a", "/b", "/c", "/d"], "chunk {chunk}");
            assert_eq!(requests[1].body, b"xyz");
            assert_eq!(requests[2].body, b"hi");
            assert!(!requests[3].keep_alive);
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let r = one(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n\
             5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: x\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"hello!");
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabcd",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET relative HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        ];
        for case in cases {
            assert!(is_bad_request(one(case)), "accepted: {case:?}");
        }
    }

    #[test]
    fn equal_duplicate_lengths_are_accepted() {
        let r = one(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabc",
        )
        .unwrap();
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn limits_give_413_and_431() {
        let huge = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000\r\n\r\nabc";
        assert_eq!(one(huge).unwrap_err(), ApiError::PayloadTooLarge);
        let just_over = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(one(&just_over).unwrap_err(), ApiError::PayloadTooLarge);
        let at_limit = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {MAX_BODY}\r\n\r\n{}",
            "x".repeat(MAX_BODY)
        );
        assert_eq!(one(&at_limit).unwrap().body.len(), MAX_BODY);

        let chunk = format!(
            "{:x}\r\n{}\r\n",
            MAX_BODY / 2 + 1,
            "y".repeat(MAX_BODY / 2 + 1)
        );
        let chunked = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n"
        );
        assert_eq!(one(&chunked).unwrap_err(), ApiError::PayloadTooLarge);

        let long_head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(MAX_HEAD)
        );
        assert_eq!(one(&long_head).unwrap_err(), ApiError::HeadersTooLarge);
        let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let too_many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(one(&too_many).unwrap_err(), ApiError::HeadersTooLarge);
        let endless = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}",
            "v".repeat(3 * MAX_HEAD)
        );
        assert_eq!(one(&endless).unwrap_err(), ApiError::HeadersTooLarge);
    }

    #[test]
    fn expect_100_continue() {
        let input =
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let mut mock = Mock::new(input.as_bytes(), usize::MAX);
        let mut buf = Vec::new();
        // The body is not in the input, so after "100 Continue" the read hits EOF.
        let r = read_request(&mut mock, &mut buf, &limits(), peer());
        assert!(matches!(r, Err(ApiError::BadRequest(_))));
        assert_eq!(mock.written, b"HTTP/1.1 100 Continue\r\n\r\n");

        let (requests, err, mock) = read_all(format!("{input}ok").as_bytes(), usize::MAX);
        assert!(err.is_none());
        assert_eq!(requests[0].body, b"ok");
        // The body came with the head: no interim response is needed.
        assert!(mock.written.is_empty());

        let other =
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(one(other).unwrap_err(), ApiError::ExpectationFailed);
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &str| one(s).unwrap().keep_alive;
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
    fn absolute_form_and_asterisk() {
        let r =
            one("GET http://example.com/healthz?a HTTP/1.1\r\nHost: example.com\r\n\r\n").unwrap();
        assert_eq!(
            (r.path.as_str(), r.query.as_deref()),
            ("/healthz", Some("a"))
        );
        assert_eq!(
            one("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().path,
            "*"
        );
        assert!(is_bad_request(one("GET * HTTP/1.1\r\nHost: a\r\n\r\n")));
    }

    #[test]
    fn eof_between_requests_is_clean_and_inside_one_is_not() {
        let (requests, err, _) = read_all(b"", usize::MAX);
        assert!(requests.is_empty() && err.is_none());
        assert!(is_bad_request(one("GET / HTTP/1.1\r\nHo")));
        assert!(is_bad_request(one(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab"
        )));
        assert!(is_bad_request(one(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
        )));
    }

    fn valid_request() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
            Just(b"POST /auth/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_vec()),
            Just(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: v\r\n\r\n".to_vec()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..600), chunk in 1usize..64) {
            let _ = read_all(&input, chunk);
        }

        #[test]
        fn mutated_requests_never_panic(
            base in valid_request(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
            chunk in 1usize..64,
        ) {
            let mut input = base;
            for (at, byte, op) in edits {
                let at = at % (input.len() + 1);
                match op {
                    0 => input.insert(at, byte),
                    1 if at < input.len() => { input.remove(at); }
                    _ if at < input.len() => input[at] = byte,
                    _ => {}
                }
            }
            let (requests, _, _) = read_all(&input, chunk);
            for r in requests {
                prop_assert!(r.body.len() <= MAX_BODY);
            }
        }
    }
}
