//! Request framing and the message rules of RFC 9110/9112, byte for byte
//! against the real binary: the shapes an outside review found accepted
//! (each must answer 400 and close, and a request pipelined behind it must
//! never run), HEAD, 204 without `Content-Length`, `Expect` on HTTP/1.0,
//! absolute-form targets, and the client's `X-Request-Id` on errors answered
//! after the head.

mod common;

use common::{Client, Server};
use std::io::Read;
use std::time::{Duration, Instant};

/// A request that must never run: it hides behind a smuggling shape.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

/// Sends `shape` with [`SMUGGLED`] right behind it and checks the server
/// answered 400 `bad_request` once, closed, and never ran the smuggled
/// request.
#[track_caller]
fn assert_rejected_and_closed(server: &Server, shape: &[u8]) {
    let name = String::from_utf8_lossy(shape).into_owned();
    let mut client = server.connect();
    client.send(&[shape, SMUGGLED].concat());
    let reply = client
        .read_reply()
        .unwrap_or_else(|| panic!("no reply: {name:?}"));
    assert_eq!(reply.status, 400, "{name:?}: {}", reply.text());
    reply.assert_problem(400, "bad_request");
    assert_eq!(reply.header("connection"), Some("close"), "{name:?}");
    assert!(
        client.closed_within(Duration::from_secs(3)),
        "left open: {name:?}"
    );
    assert!(
        client.read_reply().is_none(),
        "a second reply came: {name:?}"
    );
    assert!(
        !server.log().contains("/smuggled"),
        "the smuggled request ran after {name:?}:\n{}",
        server.log()
    );
}

#[test]
fn an_empty_content_length_answers_400_and_closes() {
    let server = Server::start();
    let shapes: [&[u8]; 4] = [
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: \r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: ,\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        // Without Transfer-Encoding the "body" is the smuggled request.
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: \r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 3,\r\n\r\nabc",
    ];
    for shape in shapes {
        assert_rejected_and_closed(&server, shape);
    }
}

#[test]
fn malformed_chunk_lines_answer_400_and_close() {
    let server = Server::start();
    let shapes: [&[u8]; 7] = [
        // TERM.EXT: a parser that ends the line at the bare LF reads a
        // 2-byte chunk "xx", then a 0xab-byte chunk holding the rest and the
        // smuggled request; one that reads the extension on to the CRLF
        // reads "ab", the end of the body, and the smuggled request.
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\nab\r\n0\r\n\r\n",
        // An empty chunk-size line, and one of a single space: no size at all.
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n \r\n\r\n",
        // Trailers ended by a bare LF: the next request would become trailers.
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
        // A bare LF after the size, and a control character in an extension.
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\nxx\r\n0\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2;a\x01b\r\nxx\r\n0\r\n\r\n",
        // A trailer line ended by a bare LF.
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: v\n\r\n",
    ];
    for shape in shapes {
        assert_rejected_and_closed(&server, shape);
    }
    // Well-formed extensions and trailers still work, and keep the
    // connection.
    let mut client = server.connect();
    client.send(
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          2 ; a=1 ; b = \"q \\\" x\"\r\nxx\r\n0;last\r\nT: v\r\n\r\n",
    );
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_reply().unwrap().status, 405);
    assert_eq!(client.read_reply().unwrap().status, 200);
}

/// Everything the server sends on `client` until it closes; fails the test
/// if it does not close within 5 s.
fn read_to_close(client: &mut Client) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut all = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "still open; so far: {:?}",
            String::from_utf8_lossy(&all)
        );
        client.stream.set_read_timeout(Some(left)).unwrap();
        match client.stream.read(&mut chunk) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A response head at the start of `raw`: status, headers (names
/// lowercased) and the head's length.
fn head_of(raw: &[u8]) -> (u16, Vec<(String, String)>, usize) {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut fields);
    let Ok(httparse::Status::Complete(len)) = parsed.parse(raw) else {
        panic!("no complete head in {:?}", String::from_utf8_lossy(raw));
    };
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    (parsed.code.unwrap(), headers, len)
}

fn field<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Sends `request` then a `GET /healthz` with `Connection: close` on one
/// connection, and returns the head of the first response and what came
/// right after it, which must be the second response: so the first one
/// carried no body, whatever its `Content-Length` said.
fn answer_without_body(server: &Server, request: &[u8]) -> (u16, Vec<(String, String)>) {
    let mut client = server.connect();
    client.send(request);
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let raw = read_to_close(&mut client);
    let (status, headers, len) = head_of(&raw);
    assert!(
        raw[len..].starts_with(b"HTTP/1.1 200 OK\r\n"),
        "content after the head of {:?}: {:?}",
        String::from_utf8_lossy(request),
        String::from_utf8_lossy(&raw[len..])
    );
    (status, headers)
}

#[test]
fn head_is_get_without_the_body() {
    let server = Server::start();
    let get = server.get("/healthz");
    let (status, headers) =
        answer_without_body(&server, b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(field(&headers, "content-type"), Some("application/json"));
    assert_eq!(
        field(&headers, "content-length"),
        get.header("content-length")
    );
    assert_eq!(field(&headers, "connection"), Some("keep-alive"));

    // Authentication runs as for GET: 401 with its headers, no body.
    let (status, headers) =
        answer_without_body(&server, b"HEAD /auth/me HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 401);
    assert_eq!(field(&headers, "www-authenticate"), Some("Bearer"));

    // A route without GET answers 405 listing its methods; still no body.
    let (status, headers) =
        answer_without_body(&server, b"HEAD /auth/login HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 405);
    assert_eq!(field(&headers, "allow"), Some("POST"));
    let (status, _) = answer_without_body(&server, b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 404);

    // GET routes list HEAD among their methods.
    let wrong = server.request("DELETE", "/healthz", &[], "");
    wrong.assert_problem(405, "method_not_allowed");
    assert_eq!(wrong.header("allow"), Some("GET, HEAD"));
}

#[test]
fn no_content_answers_carry_no_content_length() {
    let server = Server::builder()
        .env("CORS_ALLOWED_ORIGINS", "https://app.example.com")
        .start();
    common::register(&server, "nc@example.com", "correct horse battery");
    let token = common::login(&server, "nc@example.com", "correct horse battery");
    let logout = format!(
        "POST /auth/logout HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
    );
    let preflight =
        b"OPTIONS /auth/login HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example.com\r\n\
                      Access-Control-Request-Method: POST\r\n\r\n";
    for request in [logout.as_bytes(), preflight] {
        let (status, headers) = answer_without_body(&server, request);
        assert_eq!(status, 204, "{:?}", String::from_utf8_lossy(request));
        assert_eq!(field(&headers, "content-length"), None, "{headers:?}");
        assert!(field(&headers, "x-request-id").is_some());
    }
}

#[test]
fn expectations_on_http10_are_ignored() {
    let server = Server::start();
    let mut client = server.connect();
    client.send(b"POST /nope HTTP/1.0\r\nExpect: something-else\r\nContent-Length: 2\r\n\r\n{}");
    client
        .read_reply()
        .unwrap()
        .assert_problem(404, "not_found");
    let mut client = server.connect();
    client.send(b"GET /healthz HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(client.read_reply().unwrap().status, 200);
    // HTTP/1.1 still refuses what it cannot meet.
    let mut client = server.connect();
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: something-else\r\n\r\n");
    client
        .read_reply()
        .unwrap()
        .assert_problem(417, "expectation_failed");
}

#[test]
fn absolute_form_targets_keep_their_query_and_any_scheme_case() {
    let server = Server::start();
    let target = |t: &str| {
        let mut client = server.connect();
        client.send(format!("GET {t} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        client.read_reply().unwrap()
    };
    assert_eq!(target("HTTP://t/healthz").status, 200);
    assert_eq!(target("hTtPs://t/healthz?x=1").status, 200);
    // No path: the query belongs to "/", even when it holds a slash.
    target("http://t?x=1").assert_problem(404, "not_found");
    target("http://t?next=/healthz").assert_problem(404, "not_found");
    target("ftp://t/healthz").assert_problem(400, "bad_request");
}

#[test]
fn errors_after_the_head_echo_the_clients_request_id() {
    let server = Server::builder().env("BODY_TIMEOUT_MS", "500").start();
    let cases: [(&[u8], u16, &str); 5] = [
        (
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-413\r\nContent-Length: 1000000\r\n\r\n",
            413,
            "payload_too_large",
        ),
        (
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-400\r\nContent-Length: \r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-chunk\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-408\r\nContent-Length: 5\r\n\r\nab",
            408,
            "request_timeout",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-417\r\nExpect: nothing\r\n\r\n",
            417,
            "expectation_failed",
        ),
    ];
    for (raw, status, code) in cases {
        let mut client = server.connect();
        client.send(raw);
        let reply = client.read_reply().expect("no reply");
        reply.assert_problem(status, code);
        let sent = String::from_utf8_lossy(raw);
        let expected = sent
            .lines()
            .find_map(|l| l.strip_prefix("X-Request-Id: "))
            .unwrap();
        assert_eq!(reply.header("x-request-id"), Some(expected), "{code}");
        assert_eq!(reply.json()["request_id"], expected, "{code}");
    }
    // A head that could not be parsed has no id to echo: one is generated.
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-bad\r\nBad Header: x\r\n\r\n");
    let reply = client.read_reply().expect("no reply");
    reply.assert_problem(400, "bad_request");
    assert_ne!(reply.header("x-request-id"), Some("trace-bad"));
}
