//! A small, bounded pool of blocking MySQL connections.
//!
//! Why not `mysql::Pool`: in mysql 28 its `get_conn` opens new connections
//! while holding the pool's mutex (`src/conn/pool/mod.rs`, `_get_conn`), and
//! the threads queued behind that mutex wait without a timeout. With the
//! database down behind a firewall, each connect attempt holds everyone for
//! the full connect timeout in turn, so the wait grows with the queue: the
//! "hang" an auth server must not have. Its defaults also open 10 connections
//! eagerly, ping on every checkout and reset on every return (a round trip
//! each). This pool is sixty lines that make those choices explicitly:
//!
//! - at most `max` connections, opened lazily, never while holding the lock;
//! - a checkout waits at most `timeout` for a free connection, and connects,
//!   reads and writes are bounded by the same timeout, so a dead or stalled
//!   database turns into an error within a few seconds, never a hang;
//! - a connection that failed at the network level is discarded, never reused;
//! - a connection idle for longer than [`PING_AFTER_IDLE`] is pinged before
//!   reuse, so the first request after a database restart does not fail, while
//!   busy connections skip the extra round trip;
//! - connections are not reset on return: the server keeps no session state
//!   in them (no temporary tables, variables or open transactions survive a
//!   checkout, since [`Pool::with`] scopes each use), so reset would be a
//!   round trip for nothing.

use mysql::{Conn, Opts, OptsBuilder};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A pooled connection idle for longer than this is pinged before reuse.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// A bounded set of database connections shared by all request threads.
pub struct Pool {
    opts: Opts,
    max: usize,
    timeout: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<(Conn, Instant)>,
    open: usize,
}

/// Why a connection could not be had or used.
#[derive(Debug)]
pub enum PoolError {
    /// No connection became free within the timeout.
    Exhausted,
    /// The database could not be reached or stopped answering.
    Mysql(mysql::Error),
}

impl Pool {
    /// A pool for `opts` that opens at most `max` connections and bounds every
    /// wait by `timeout`. Opens nothing yet.
    pub fn new(opts: Opts, max: usize, timeout: Duration) -> Pool {
        let opts = OptsBuilder::from_opts(opts)
            .tcp_connect_timeout(Some(timeout))
            .read_timeout(Some(timeout))
            .write_timeout(Some(timeout))
            // The crate otherwise re-connects over the Unix socket when the
            // host is local, which the timeouts above do not govern the same
            // way; TCP everywhere keeps behaviour identical in every setup.
            .prefer_socket(false)
            .into();
        Pool {
            opts,
            max,
            timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// Connections checked out right now.
    pub fn in_use(&self) -> usize {
        let state = self.lock();
        state.open - state.idle.len()
    }

    /// Runs `f` on a pooled connection. A network-level failure (or a panic
    /// in `f`) discards the connection; any other outcome returns it to the
    /// pool.
    pub fn with<T>(&self, f: impl FnOnce(&mut Conn) -> mysql::Result<T>) -> Result<T, PoolError> {
        let mut conn = self.checkout()?;
        let mut slot = OpenSlot {
            pool: self,
            held: true,
        };
        let result = f(&mut conn);
        if !matches!(&result, Err(e) if e.is_connectivity_error()) {
            slot.held = false;
            self.checkin(conn);
        }
        result.map_err(PoolError::Mysql)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The critical sections below cannot panic, so a poisoned lock still
        // guards consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkout(&self) -> Result<Conn, PoolError> {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.lock();
        loop {
            if let Some((mut conn, since)) = state.idle.pop() {
                drop(state);
                if since.elapsed() < PING_AFTER_IDLE || conn.ping().is_ok() {
                    return Ok(conn);
                }
                self.discard();
                state = self.lock();
                continue;
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return Conn::new(self.opts.clone()).map_err(|e| {
                    self.discard();
                    PoolError::Mysql(e)
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PoolError::Exhausted);
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn checkin(&self, conn: Conn) {
        self.lock().idle.push((conn, Instant::now()));
        self.freed.notify_one();
    }

    /// Forgets a connection that was checked out (it is dropped by the
    /// caller), making room for a new one.
    fn discard(&self) {
        self.lock().open -= 1;
        self.freed.notify_one();
    }
}

/// Gives a checked-out connection's place back to the pool if the connection
/// is dropped instead of checked in, however the use ended.
struct OpenSlot<'a> {
    pool: &'a Pool,
    held: bool,
}

impl Drop for OpenSlot<'_> {
    fn drop(&mut self) {
        if self.held {
            self.pool.discard();
        }
    }
}
