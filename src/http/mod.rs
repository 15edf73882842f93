//! A small, hardened HTTP/1.1 server over `httparse`.
//!
//! Why our own: the design first named `tiny_http`, but tiny_http 0.12 aborts
//! the whole process on one request with a huge `Content-Length`, has no read
//! or write timeouts, spawns threads without bound and stops accepting after
//! one `EMFILE` (see `docs/tiny_http.md`). An auth server is attacked on
//! purpose, so the layer under it must hold these lines itself:
//!
//! - **Bounded threads.** One acceptor thread; each connection is served by
//!   one thread of its own, at most `MAX_CONNECTIONS` at once. At the cap the
//!   connection waiting longest for input is closed to make room; when all
//!   are busy in handlers the acceptor answers 503 `overloaded` and closes
//!   (`server.rs`).
//! - **Deadlines, not per-read timeouts.** The whole head must arrive within
//!   `HEADER_TIMEOUT_MS` of its first byte and the body within
//!   `BODY_TIMEOUT_MS`; a client trickling one byte at a time is cut at the
//!   deadline, not kept alive by each byte. Idle keep-alive connections close
//!   after `KEEPALIVE_TIMEOUT_MS`; writes time out too (`parse.rs`).
//! - **Fixed limits.** Head at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`]
//!   fields (431); body at most [`MAX_BODY`] bytes (413, and the connection
//!   closes without reading the rest); chunked bodies are decoded under the
//!   same limit (`chunked.rs`).
//! - **No ambiguous framing.** `Content-Length` (even empty) together with
//!   `Transfer-Encoding`, differing or empty `Content-Length`s, a transfer
//!   coding other than `chunked`, and chunked framing off the RFC grammar by
//!   one byte (a bare LF, a size line without digits) answer 400 and close:
//!   the shapes behind request smuggling (`head.rs`, `chunked.rs`).
//! - **Panics are contained.** A handler that panics answers 500 and the
//!   connection thread carries on.
//!
//! The server speaks HTTP/1.0 and 1.1 keep-alive, answers pipelined requests
//! in order, honours `Expect: 100-continue` (and ignores `Expect` on
//! HTTP/1.0, which predates it), answers `HEAD` without a body, and always
//! sends `Date`, and `Content-Length` except on 204 and 304. With
//! `TLS_CERT_FILE` and `TLS_KEY_FILE` it serves HTTPS, under the same
//! deadlines and caps, the handshake included (`tls.rs`). It does not do
//! HTTP/2 or response streaming: every body here is a small JSON document.

mod chunked;
mod closing;
mod head;
mod parse;
mod request;
mod request_id;
mod response;
mod server;
mod tls;

pub use closing::Shutdown;
pub use request::{Request, Version};
pub use response::{Response, reason_phrase};
pub use server::{Limits, Transport, bind, serve};
pub use tls::{Certificates, TlsError, pinned_client};

/// Largest accepted request head (request line and header fields), in bytes.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields accepted in one request.
pub const MAX_HEADERS: usize = 64;
/// Largest accepted request body, in bytes, after chunked decoding.
pub const MAX_BODY: usize = 64 * 1024;
