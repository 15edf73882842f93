//! The accept loop and the connection threads.
//!
//! One acceptor thread owns the listening socket. Each accepted connection is
//! served start to finish by one thread, because the handlers are plain
//! blocking functions (database calls, hashing) and a thread per connection is
//! the simplest model that keeps them so. What makes it safe is the bound:
//!
//! - at most `max_connections` connections are served at once. At the cap,
//!   the acceptor makes room by closing the connection that has been waiting
//!   longest for input (an idle keep-alive connection or a slow sender:
//!   those are what fill the cap in an attack, and a real client mid-request
//!   is never the longest waiter). Only if every connection is busy in a
//!   handler, or [`EVICTION_SLACK`] evicted ones are still closing, does it
//!   answer 503 `overloaded` and `Connection: close` itself, without a
//!   thread and without queueing;
//! - every read has a deadline (see [`super::parse`]) and every write a
//!   timeout, so no client can hold its thread longer than those allow;
//! - an accept error (`EMFILE` when out of file descriptors, `ECONNABORTED`,
//!   ...) is logged and the loop goes on after a short pause: the server
//!   never stops accepting;
//! - a panic in a handler is caught, answered with 500 `internal_error`, and
//!   the connection goes on; the thread and the process survive.
//!
//! Shutdown is graceful ([`Shutdown`]): the acceptor stops (new connections
//! are refused by the kernel), connections waiting for input are closed (a
//! half-received request is answered 503 `overloaded`, so it is refused
//! before it starts), requests already in a handler run to completion and
//! are answered with `Connection: close`, and [`serve`] returns once all
//! connections are gone or the grace period has passed.
//!
//! Threads are spawned per connection rather than pooled: with keep-alive a
//! connection carries many requests, so a spawn is paid once per connection,
//! and a pool would be one more queue to bound. `docs/benchmarks.md` measures
//! what a new connection per request costs in all (accept, handshake, spawn):
//! about 5,700 requests/s with `Connection: close` against 16,000 with
//! keep-alive. A pooled variant was not built to compare. Stacks are small
//! (512 KiB), as the handlers keep their data on the heap and JSON nesting is
//! bounded before parsing; hashing runs on threads of its own
//! ([`crate::limits::HashGate`]).

use super::closing::{Shutdown, linger_close, refuse};
use super::parse::{Stream, read_request};
use super::request::Request;
use super::request_id::RequestIds;
use super::response::Response;
use super::tls::{Certificates, TlsStream, handshake_failed};
use crate::error::ApiError;
use crate::log;
use serde_json::json;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Stack size of connection threads: room for the deepest handler call chain
/// (database driver, serde) even in a debug build. Only touched pages take
/// memory, so the cost is address space, not RAM.
const STACK_SIZE: usize = 512 * 1024;
/// Pause after an accept error, so a persistent one (out of file descriptors)
/// does not spin the acceptor.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The connection limits and deadlines, from configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections served at once (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Deadline for a request head, from its first byte (`HEADER_TIMEOUT_MS`).
    pub header_timeout: Duration,
    /// Deadline for a request body, from the end of its head (`BODY_TIMEOUT_MS`).
    pub body_timeout: Duration,
    /// How long an idle connection waits for its next request
    /// (`KEEPALIVE_TIMEOUT_MS`).
    pub keepalive_timeout: Duration,
    /// Timeout of each response write.
    pub write_timeout: Duration,
}

/// Backlog of the listening socket. `std` fixes it at 128, which overflows
/// in a burst of new connections (measured: a one-second SYN retransmit stall
/// every few hundred connections); the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds the listening socket for `addr` (`host:port`; the first address it
/// resolves to), with a deep accept backlog and `SO_REUSEADDR` so a restart
/// does not wait for old connections in TIME_WAIT.
pub fn bind(addr: &str) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    use std::net::ToSocketAddrs;
    let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "resolves to no address")
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// How a listener speaks: plain HTTP, or HTTPS with these certificates
/// (see `tls.rs`), whose answers then carry `hsts` as
/// `Strict-Transport-Security` (`None`: no header).
#[derive(Clone, Default)]
pub struct Transport {
    /// The certificates, for HTTPS.
    pub tls: Option<Arc<Certificates>>,
    /// The `Strict-Transport-Security` value, with TLS on.
    pub hsts: Option<String>,
}

/// The application: turns a request into a response. Errors are already
/// responses by the time they get here (see [`crate::router`]).
pub type App = dyn Fn(&Request) -> Response + Send + Sync;

/// Serves `app` on `listener` until `shutdown` is triggered, then drains:
/// returns once every connection has closed or the grace period is over.
///
/// The calling thread becomes the acceptor.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    transport: Transport,
    app: Arc<App>,
    shutdown: Arc<Shutdown>,
) {
    let shared = Arc::new(Shared {
        limits,
        transport,
        app,
        active: AtomicUsize::new(0),
        ids: RequestIds::new(),
        registry: Mutex::new(Vec::new()),
        started: Instant::now(),
        next_id: AtomicU64::new(1),
        shutdown: Arc::clone(&shutdown),
    });
    *lock(&shutdown.wake) = listener.local_addr().ok().map(|mut addr| {
        // A wildcard address is not connectable; its loopback is.
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        addr
    });
    let mut failing_since: Option<Instant> = None;
    loop {
        if shutdown.is_stopping() {
            break;
        }
        match listener.accept() {
            Ok(_) if shutdown.is_stopping() => break,
            Ok((stream, peer)) => {
                if let Some(since) = failing_since.take() {
                    log::warn(
                        "accepting again",
                        &[("after_ms", (since.elapsed().as_millis() as u64).into())],
                    );
                }
                admit(&shared, stream, peer);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Log the first error of a streak only: at EMFILE this loop
                // would otherwise write twenty lines a second.
                if failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    log::error("accept failed", &[("error", e.to_string().into())]);
                }
                std::thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
    drain(&shared, listener);
}

/// Stops accepting, closes the connections that wait for input, and waits
/// for the rest to finish their request, up to the grace period.
fn drain(shared: &Shared, listener: TcpListener) {
    drop(listener);
    let deadline = Instant::now() + shared.shutdown.grace;
    log::info(
        "shutting down",
        &[("connections", shared.active.load(Ordering::Acquire).into())],
    );
    loop {
        // Connections between requests are closed at once; the rest are
        // inside a handler and close themselves after answering. Repeated,
        // since a busy one becomes idle only after its answer.
        for tracked in lock(&shared.registry).iter() {
            if tracked.waiting_since.load(Ordering::Acquire) != 0 {
                let _ = tracked.stream.shutdown(std::net::Shutdown::Read);
            }
        }
        let active = shared.active.load(Ordering::Acquire);
        if active == 0 {
            log::info("shut down", &[]);
            return;
        }
        if Instant::now() >= deadline {
            log::warn(
                "grace period over; exiting with requests in flight",
                &[("connections", active.into())],
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connections the acceptor may admit beyond the cap while evicted ones are
/// still exiting (which takes microseconds); a hard bound on threads.
const EVICTION_SLACK: usize = 64;

/// State every connection thread shares.
struct Shared {
    limits: Limits,
    transport: Transport,
    app: Arc<App>,
    /// Connections being served now.
    active: AtomicUsize,
    ids: RequestIds,
    /// Every open connection, for eviction at the cap.
    registry: Mutex<Vec<Arc<Tracked>>>,
    started: Instant,
    next_id: AtomicU64,
    shutdown: Arc<Shutdown>,
}

/// What the acceptor knows of a connection: enough to pick and close the
/// one that has waited longest for input.
struct Tracked {
    id: u64,
    /// The connection's socket: read and written by its thread, shut down
    /// by the acceptor to evict it or by the shutdown to end it.
    stream: TcpStream,
    /// Milliseconds since server start when the connection began waiting for
    /// its next request; 0 while a request is being handled or once the
    /// acceptor has claimed the connection for eviction. Both sides change
    /// it atomically (compare-exchange, swap), so a connection is either
    /// evicted or handles its request, never both.
    waiting_since: AtomicU64,
}

impl Tracked {
    /// The connection thread's side, after a read: ends the wait. False if
    /// the acceptor claimed the connection first; then the socket is shut
    /// and whatever was read must not be handled.
    fn stop_waiting(&self) -> bool {
        self.waiting_since.swap(0, Ordering::AcqRel) != 0
    }

    /// The acceptor's side: claims a connection it saw waiting since
    /// `since`. False if the connection stopped waiting in the meantime.
    fn claim(&self, since: u64) -> bool {
        self.waiting_since
            .compare_exchange(since, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Shared {
    fn millis(&self) -> u64 {
        // +1 so that a connection waiting from the very start is not "busy".
        self.started.elapsed().as_millis() as u64 + 1
    }

    /// Closes the connection that has waited longest for input. False if
    /// every connection is busy handling a request.
    ///
    /// The victim is claimed by a compare-exchange of its `waiting_since` to
    /// 0 ([`Tracked::claim`]). If its request completes at that very moment,
    /// its thread's own swap gets there first, the claim fails, and the
    /// choice is made again: a request
    /// that was read is always handled and answered, and an evicted
    /// connection never runs a handler whose answer it could not deliver.
    fn evict_longest_waiting(&self) -> bool {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let victim = registry
                .iter()
                .map(|t| (t, t.waiting_since.load(Ordering::Acquire)))
                .filter(|(_, since)| *since != 0)
                .min_by_key(|(_, since)| *since);
            let Some((victim, since)) = victim else {
                return false;
            };
            if victim.claim(since) {
                log::log(log::Level::Debug, "connection evicted to make room", &[]);
                // Its thread's pending read returns at once and it exits.
                let _ = victim.stream.shutdown(std::net::Shutdown::Both);
                return true;
            }
        }
    }
}

/// Hands an accepted connection to a thread of its own. At the cap it first
/// evicts the longest-waiting connection; if none can be evicted, or evicted
/// ones have not exited yet, it refuses the newcomer with 503.
fn admit(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let max = shared.limits.max_connections;
    // Reserve the slot before spawning so the cap holds under a burst.
    let previous = shared.active.fetch_add(1, Ordering::AcqRel);
    let room =
        previous < max || (previous < max + EVICTION_SLACK && shared.evict_longest_waiting());
    if !room {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        if shared.transport.tls.is_some() {
            // A 503 would need a handshake first, a thread's worth of work:
            // the close is the answer.
            log::warn("at capacity: TLS connection closed", &[]);
        } else {
            refuse(stream, &shared.ids.next());
        }
        return;
    }
    // The registry and the connection thread share the one socket: a
    // `try_clone` would spend a second descriptor on every connection, halving
    // how many fit under the process's file limit.
    let tracked = Arc::new(Tracked {
        id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        stream,
        waiting_since: AtomicU64::new(shared.millis()),
    });
    lock(&shared.registry).push(Arc::clone(&tracked));
    let id = tracked.id;
    let worker = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("conn".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let _slot = Slot {
                shared: &worker,
                id: tracked.id,
            };
            // A panic outside a handler (which `respond` catches) would be a
            // bug in this layer; contain it to this connection anyway.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                serve_connection(&worker, &tracked, peer)
            }));
        });
    if let Err(e) = spawned {
        // The closure, and with it the slot guard, was never run.
        lock(&shared.registry).retain(|t| t.id != id);
        shared.active.fetch_sub(1, Ordering::AcqRel);
        log::error(
            "cannot start connection thread",
            &[("error", e.to_string().into())],
        );
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // No critical section here can panic, so poisoned data is still sound.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Releases a connection's slot and registry entry when its thread ends,
/// however it ends.
struct Slot<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        lock(&self.shared.registry).retain(|t| t.id != self.id);
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one connection until either side closes it: over TLS after its
/// handshake (within `HEADER_TIMEOUT_MS` of the accept), or plain.
fn serve_connection(shared: &Shared, tracked: &Tracked, peer: SocketAddr) {
    let limits = &shared.limits;
    let socket = &tracked.stream;
    // Responses go out in one write; without this, Nagle's algorithm would
    // hold back a response that follows a 100 Continue.
    let _ = socket.set_nodelay(true);
    let Some(certificates) = &shared.transport.tls else {
        if socket.set_write_timeout(Some(limits.write_timeout)).is_ok()
            && serve_requests(shared, tracked, peer, &mut { socket }) == End::Linger
        {
            linger_close(socket);
        }
        return;
    };
    let deadline = Instant::now() + limits.header_timeout;
    match certificates.handshake(socket, deadline, limits.write_timeout) {
        Ok(conn) => {
            if socket
                .set_write_timeout(Some(limits.write_timeout))
                .is_err()
            {
                return;
            }
            let mut tls = TlsStream::new(conn, socket);
            if serve_requests(shared, tracked, peer, &mut tls) == End::Linger {
                tls.close();
                linger_close(socket);
            }
        }
        Err(why) => handshake_failed(peer.ip(), &why),
    }
}

/// How a connection's requests ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The server decided to close after its answer: linger, then close.
    Linger,
    /// The client left, or the connection broke: nothing more to say.
    Gone,
}

/// Serves requests on `stream` until either side ends the connection.
fn serve_requests<S: Stream>(
    shared: &Shared,
    tracked: &Tracked,
    peer: SocketAddr,
    stream: &mut S,
) -> End {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    // `waiting_since` was set by `admit`, and is set again after each
    // response: never just before a read, where it could overwrite the
    // acceptor's claim.
    loop {
        let read = read_request(stream, &mut buf, &shared.limits, peer.ip());
        // Claimed by the acceptor to make room (see `evict_longest_waiting`):
        // the socket is shut, so there is no one to answer, even if a whole
        // request arrived; and under a flood a warning per eviction would
        // flood the log too.
        if !tracked.stop_waiting() {
            return End::Gone;
        }
        let stopping = shared.shutdown.is_stopping();
        let (mut response, keep_alive, to_head) = match read {
            Ok(None) => return End::Gone,
            Ok(Some(mut request)) => {
                request.request_id = shared.ids.for_client(request.header("x-request-id"));
                let mut response = respond(shared, &request);
                response.set_header("X-Request-Id", request.request_id.as_str());
                let keep_alive =
                    request.keep_alive && !response.close && !shared.shutdown.is_stopping();
                (response, keep_alive, request.method == "HEAD")
            }
            // Every other answer names the request as the client did, when
            // its head got far enough to say.
            Err(rejected) => {
                let request_id = shared.ids.for_client(rejected.client_request_id.as_deref());
                // Cut off mid-request by the shutdown: refuse it before it
                // starts.
                let error = if stopping {
                    ApiError::Overloaded
                } else {
                    log_rejected(&rejected.error, peer.ip(), &request_id);
                    rejected.error
                };
                let mut response = error.to_response(&request_id);
                response.set_header("X-Request-Id", request_id);
                (response, false, rejected.head)
            }
        };
        if let Some(hsts) = &shared.transport.hsts {
            response.set_header("Strict-Transport-Security", hsts.as_str());
        }
        out.clear();
        response.write_into(
            &mut out,
            keep_alive,
            &crate::time::http_date(crate::time::unix_now()),
            to_head,
        );
        if stream
            .write_all(&out)
            .and_then(|()| stream.flush())
            .is_err()
        {
            return End::Gone;
        }
        if !keep_alive {
            return End::Linger;
        }
        tracked
            .waiting_since
            .store(shared.millis(), Ordering::Release);
    }
}

/// Calls the application, turning a panic into a 500 and logging the request.
fn respond(shared: &Shared, request: &Request) -> Response {
    let started = Instant::now();
    log::take_user_id();
    let outcome = log::with_request_id(&request.request_id, || {
        catch_unwind(AssertUnwindSafe(|| (shared.app)(request)))
    });
    let user_id = log::take_user_id();
    let response = match outcome {
        Ok(response) => response,
        Err(_) => {
            log::error(
                "handler panicked",
                &[
                    ("request_id", request.request_id.as_str().into()),
                    ("method", request.method.as_str().into()),
                    ("path", request.path.as_str().into()),
                ],
            );
            ApiError::Internal.to_response(&request.request_id)
        }
    };
    if log::enabled(log::Level::Info) {
        let millis = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let mut fields = vec![
            ("request_id", request.request_id.as_str().into()),
            ("method", request.method.as_str().into()),
            ("path", request.path.as_str().into()),
            ("status", response.status.into()),
            ("duration_ms", json!(millis)),
            ("client", request.peer.to_string().into()),
        ];
        if let Some(id) = user_id {
            fields.push(("user_id", id.into()));
        }
        log::info("request", &fields);
    }
    response
}

fn log_rejected(error: &ApiError, peer: IpAddr, request_id: &str) {
    log::warn(
        "request rejected",
        &[
            ("request_id", request_id.into()),
            ("status", error.status().into()),
            ("code", error.code().into()),
            ("client", peer.to_string().into()),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(waiting_since: u64) -> Tracked {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Tracked {
            id: 1,
            stream,
            waiting_since: AtomicU64::new(waiting_since),
        }
    }

    #[test]
    fn a_connection_is_either_evicted_or_handles_its_request() {
        // The acceptor claims first: the thread must not handle what it read.
        let t = tracked(7);
        assert!(t.claim(7));
        assert!(!t.stop_waiting());
        // The thread stops waiting first: the claim fails.
        let t = tracked(7);
        assert!(t.stop_waiting());
        assert!(!t.claim(7));
        // A claim on a stale observation fails: the connection has started
        // a new wait since the acceptor looked.
        let t = tracked(9);
        assert!(!t.claim(7));
        assert!(t.stop_waiting());
    }
}
