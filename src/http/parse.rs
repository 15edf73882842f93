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
//! The head is parsed and checked in `head.rs` (framing rules included),
//! chunked bodies are decoded in `chunked.rs`; this module strings them
//! together on a connection.

use super::chunked;
use super::head::{Body, Head, field_values, parse_head};
use super::request::Request;
use super::server::Limits;
use crate::error::ApiError;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
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

/// Why filling the buffer stopped.
enum Fill {
    Timeout,
    Eof,
    Broken,
}

/// Why a request could not be read: the error to answer, and what the answer
/// needs to know of the request, when its head was parsed.
#[derive(Debug)]
pub(crate) struct ReadError {
    /// What to answer; the connection closes after it.
    pub(crate) error: ApiError,
    /// The client's `X-Request-Id`, if the head was parsed and carried one,
    /// so that the answer names the request as the client does.
    pub(crate) client_request_id: Option<String>,
    /// The request was a `HEAD`, so the answer must carry no body.
    pub(crate) head: bool,
}

impl ReadError {
    /// An error found before the head was parsed: nothing of the request is
    /// known.
    pub(super) fn before_head(error: ApiError) -> ReadError {
        ReadError {
            error,
            client_request_id: None,
            head: false,
        }
    }

    /// An error found once the head was parsed, from its fields.
    pub(super) fn after_head(
        method: &str,
        headers: &[(String, Vec<u8>)],
        error: ApiError,
    ) -> ReadError {
        ReadError {
            error,
            client_request_id: field_values(headers, "x-request-id")
                .next()
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string),
            head: method == "HEAD",
        }
    }
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
) -> Result<Option<Request>, ReadError> {
    let idle_deadline = Instant::now() + limits.keepalive_timeout;
    let mut head_deadline = (!buf.is_empty()).then(|| Instant::now() + limits.header_timeout);
    let Head {
        mut request,
        len,
        body,
        expect_continue,
    } = loop {
        if !buf.is_empty() {
            if let Some(parsed) = parse_head(buf, peer)? {
                break parsed;
            }
        }
        let error = match fill(stream, buf, head_deadline.unwrap_or(idle_deadline)) {
            Ok(()) => {
                head_deadline.get_or_insert_with(|| Instant::now() + limits.header_timeout);
                continue;
            }
            Err(_) if buf.is_empty() => return Ok(None),
            Err(Fill::Timeout) => ApiError::RequestTimeout,
            Err(Fill::Eof | Fill::Broken) => ApiError::BadRequest(
                "The connection closed in the middle of the request head.".into(),
            ),
        };
        return Err(ReadError::before_head(error));
    };
    buf.drain(..len);
    let deadline = Instant::now() + limits.body_timeout;
    match read_body(stream, buf, body, expect_continue, deadline) {
        Ok(bytes) => {
            request.body = bytes;
            Ok(Some(request))
        }
        Err(error) => Err(ReadError::after_head(
            &request.method,
            &request.headers,
            error,
        )),
    }
}

/// Reads a body framed as `body` by `deadline`, first answering
/// `Expect: 100-continue` when the client waits for that.
fn read_body<S: Stream>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    body: Body,
    expect_continue: bool,
    deadline: Instant,
) -> Result<Vec<u8>, ApiError> {
    let wants_body = match body {
        Body::None => false,
        Body::Length(n) => n > 0,
        Body::Chunked => true,
    };
    if expect_continue && wants_body && buf.is_empty() {
        // The client waits for this before sending the body (RFC 9110
        // section 10.1.1); a failed write shows up as a failed body read.
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let more = |buf: &mut Vec<u8>| fill(stream, buf, deadline).map_err(body_error);
    match body {
        Body::None => Ok(Vec::new()),
        Body::Length(n) => read_exactly(buf, n, more),
        Body::Chunked => chunked::decode(buf, more),
    }
}

/// Takes the first `n` bytes off `buf`, reading `more` until they are there.
fn read_exactly(
    buf: &mut Vec<u8>,
    n: usize,
    mut more: impl FnMut(&mut Vec<u8>) -> Result<(), ApiError>,
) -> Result<Vec<u8>, ApiError> {
    while buf.len() < n {
        more(buf)?;
    }
    Ok(buf.drain(..n).collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{MAX_BODY, MAX_HEAD, MAX_HEADERS};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

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
                Err(e) => return (out, Some(e.error), mock),
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
            // A Content-Length with an empty item is no length: with
            // Transfer-Encoding it is still a conflict, and alone it must not
            // be taken for "no body".
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,\r\n\r\nabc",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: \r\n\r\nabc",
            // Chunked framing with a bare LF (TERM.EXT), without a size, or
            // with trailers ended by a bare LF (chunked.rs has the rest).
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\nab\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
        ];
        for case in cases {
            assert!(is_bad_request(one(case)), "accepted: {case:?}");
        }
    }

    /// Each shape with a request pipelined behind it: the reader stops at
    /// the error, so the smuggled request is never read as one.
    #[test]
    fn nothing_is_read_past_a_framing_error() {
        let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
        let shapes = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\nab\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
        ];
        for shape in shapes {
            for chunk in [1, 5, usize::MAX] {
                let (requests, err, _) = read_all(format!("{shape}{smuggled}").as_bytes(), chunk);
                assert!(
                    requests.is_empty(),
                    "{shape:?}: read {:?}",
                    requests[0].path
                );
                assert!(
                    matches!(err, Some(ApiError::BadRequest(_))),
                    "{shape:?}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn body_errors_carry_the_clients_request_id() {
        let rejected = |input: &str| {
            let mut mock = Mock::new(input.as_bytes(), usize::MAX);
            match read_request(&mut mock, &mut Vec::new(), &limits(), peer()) {
                Err(e) => e,
                Ok(r) => panic!("accepted {input:?}: {r:?}"),
            }
        };
        // The head's own errors are in head.rs; body errors carry the id
        // too, and a HEAD is known as one.
        let e = rejected(
            "HEAD / HTTP/1.1\r\nHost: a\r\nX-Request-Id: t2\r\nContent-Length: 5\r\n\r\nab",
        );
        assert!(matches!(e.error, ApiError::BadRequest(_)));
        assert_eq!((e.client_request_id.as_deref(), e.head), (Some("t2"), true));
        // Before the head is parsed, nothing is known.
        let e = rejected("GET / HTTP/1.1\r\nX-Request-Id: t3\r\nBad Name: v\r\n\r\n");
        assert_eq!((e.client_request_id, e.head), (None, false));
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
        assert!(matches!(
            r,
            Err(ReadError {
                error: ApiError::BadRequest(_),
                ..
            })
        ));
        assert_eq!(mock.written, b"HTTP/1.1 100 Continue\r\n\r\n");

        let (requests, err, mock) = read_all(format!("{input}ok").as_bytes(), usize::MAX);
        assert!(err.is_none());
        assert_eq!(requests[0].body, b"ok");
        // The body came with the head: no interim response is needed.
        assert!(mock.written.is_empty());

        // HTTP/1.0 predates Expect: ignored, and no interim response
        // (head.rs tests which expectations answer 417).
        for expect in ["something", "100-continue"] {
            let old = format!("POST / HTTP/1.0\r\nExpect: {expect}\r\nContent-Length: 2\r\n\r\nok");
            let (requests, err, mock) = read_all(old.as_bytes(), usize::MAX);
            assert!(err.is_none(), "{expect}: {err:?}");
            assert_eq!(requests[0].body, b"ok");
            assert!(mock.written.is_empty());
        }
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
