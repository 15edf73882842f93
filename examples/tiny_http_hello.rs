//! The smallest fair tiny_http 0.12 "hello world" server, kept as the yardstick
//! and the test subject for `docs/tiny_http.md` and `benches/http.sh`.
//!
//! The original design named tiny_http as the HTTP layer; the auth server uses
//! its own HTTP/1.1 layer over httparse instead. This example exists so that
//! both halves of that decision can be checked on this machine: the failure
//! modes documented in `docs/tiny_http.md` are reproduced against it, and
//! the benchmark compares the auth server's throughput with it.
//!
//! It is written the way tiny_http's own documentation recommends for
//! concurrent serving (`Server::http`, an `Arc<Server>`, several worker
//! threads each calling `recv()`), with nothing added that tiny_http does not
//! do by itself: no timeouts, no connection limit, and the request body is
//! never read. Every request gets `200` with `{"status":"ok"}`.
//!
//! Usage: `tiny_http_hello [ADDR]` (default `127.0.0.1:8090`). The number of
//! worker threads is the number of cores, at least 4, as in the upstream
//! `hello-world` example. On the 2-core machine 1, 2, 4 and 8 workers gave
//! the same throughput within run-to-run noise (16 was somewhat slower in the
//! two runs tried): tiny_http runs its own thread per connection to read
//! requests, so the workers only build and write responses.

use std::sync::Arc;
use std::thread;

use tiny_http::{Header, Response, Server};

/// Address used when none is given on the command line.
const DEFAULT_ADDR: &str = "127.0.0.1:8090";

/// Fewest worker threads; tiny_http's `hello-world` example uses this many.
const MIN_WORKERS: usize = 4;

/// The body sent for every request.
const BODY: &str = r#"{"status":"ok"}"#;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());

    let server = match Server::http(addr.as_str()) {
        Ok(server) => Arc::new(server),
        Err(err) => {
            eprintln!("tiny_http_hello: cannot listen on {addr}: {err}");
            std::process::exit(1);
        }
    };

    // Built once: parsing a header per request would make tiny_http look
    // slower than it is.
    let content_type = match Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
        Ok(header) => header,
        Err(()) => {
            eprintln!("tiny_http_hello: invalid Content-Type header");
            std::process::exit(1);
        }
    };

    let workers = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(MIN_WORKERS);
    println!("tiny_http_hello: listening on {addr} with {workers} worker threads");

    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let server = Arc::clone(&server);
            let content_type = content_type.clone();
            thread::spawn(move || serve(&server, &content_type))
        })
        .collect();

    for handle in handles {
        // A worker only ends by panicking; the others keep serving, so the
        // process stays up as long as tiny_http itself does.
        let _ = handle.join();
    }
}

/// Answers requests from `server` until the process ends.
///
/// An error from `recv()` is tiny_http telling that its accept loop failed;
/// it is printed (so the experiments in `docs/tiny_http.md` can see it) and
/// the worker keeps waiting, which is the most forgiving thing user code can
/// do with it.
fn serve(server: &Server, content_type: &Header) {
    loop {
        match server.recv() {
            Ok(request) => {
                let response = Response::from_string(BODY).with_header(content_type.clone());
                // A client that went away is not this server's problem.
                let _ = request.respond(response);
            }
            Err(err) => eprintln!("tiny_http_hello: recv error: {err}"),
        }
    }
}
