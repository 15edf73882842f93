//! Ending connections: the shutdown trigger, the 503 the acceptor answers
//! itself at the cap, and the lingering close after the server's last
//! answer on a connection. Split from `server.rs`, which decides when.

use crate::error::ApiError;
use crate::log;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// After the server decides to close, how long it keeps reading and
/// discarding what the client still sends, so that unread input does not turn
/// the close into a TCP reset that destroys the response in flight.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes discarded while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// Asks a running [`serve`](super::serve) to stop, from any thread (a signal handler's
/// thread, a test).
pub struct Shutdown {
    stopping: AtomicBool,
    /// The listener's address, to wake the acceptor out of `accept`.
    pub(super) wake: Mutex<Option<SocketAddr>>,
    pub(super) grace: Duration,
}

impl Shutdown {
    /// A trigger whose [`serve`](super::serve) lets requests in flight run for up to
    /// `grace` after it is pulled.
    pub fn new(grace: Duration) -> Shutdown {
        Shutdown {
            stopping: AtomicBool::new(false),
            wake: Mutex::new(None),
            grace,
        }
    }

    /// Starts the shutdown. Idempotent.
    pub fn trigger(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // The acceptor blocks in accept(); one connection wakes it up to
        // see the flag.
        if let Some(addr) = *self.wake.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Answers 503 `overloaded` on the acceptor thread and closes. The socket is
/// non-blocking so a client that does not read cannot stall the acceptor;
/// a fresh socket's send buffer always has room for these few hundred bytes.
pub(super) fn refuse(mut stream: TcpStream, request_id: &str) {
    log::warn(
        "connection refused: at MAX_CONNECTIONS",
        &[("request_id", request_id.into())],
    );
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    // Whatever request already arrived is read first, so that closing with
    // unread input does not reset the connection before the 503 is read.
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    let mut out = Vec::with_capacity(512);
    let mut response = ApiError::Overloaded.to_response(request_id);
    response.set_header("X-Request-Id", request_id);
    // Unread, the request might be a HEAD; this answer closes the
    // connection, so a body the client does not expect harms nothing.
    response.write_into(
        &mut out,
        false,
        &crate::time::http_date(crate::time::unix_now()),
        false,
    );
    let _ = stream.write_all(&out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Closes a connection the server decided to end: stops sending, then reads
/// and discards what the client still sends for a short while, so the
/// response is not lost to a reset. Bounded in time and bytes.
pub(super) fn linger_close(mut stream: &TcpStream) {
    if stream.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}
