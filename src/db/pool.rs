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
//!   round trip for nothing;
//! - a failure that says the server cannot serve on this connection (a node
//!   that is not ready, a server shutting down; see `failure.rs`) discards
//!   it too;
//! - each new connection gets server-side limits below the client's timeout
//!   ([`limit_session`]): a lock wait ends after 1 s and a statement after
//!   four fifths of `timeout`, on the server. Without them a statement the
//!   client gave up on (a held table lock, say) kept running on the server
//!   after the request had answered 503, on a connection this pool had
//!   already replaced, and the server-side connections of one instance grew
//!   past `max` toward the server's `max_connections`. With them the server
//!   ends the statement first and answers on the same connection, which is
//!   reused; an instance holds at most `max` server connections, plus, for
//!   a moment, those it just dropped for a network failure.

use super::failure::{Kind, kind};
use mysql::prelude::Queryable;
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
        if !matches!(&result, Err(e) if kind(e) == Kind::NotReady) {
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
                return self.connect().map_err(|e| {
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

    fn connect(&self) -> mysql::Result<Conn> {
        let mut conn = Conn::new(self.opts.clone())?;
        limit_session(&mut conn, Some(self.timeout))?;
        Ok(conn)
    }

    /// The pool's timeout: what [`limit_session`] restores after a
    /// migration lifted the limits.
    pub fn timeout(&self) -> Duration {
        self.timeout
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

/// Longest wait for a row or metadata lock, on the server. Every lock here
/// is held for a few statements of one request, so a second is ample; and
/// well below the client timeout, it leaves room for a rerun (`tx.rs`).
const LOCK_WAIT_SECONDS: u64 = 1;

/// Sets the session's server-side limits for a client timeout of `timeout`
/// (see the module docs), or lifts the statement limit with `None` (for
/// migrations, whose DDL may take long on a big table). MariaDB bounds every
/// statement with `max_statement_time` (seconds); MySQL bounds `SELECT`s
/// with `max_execution_time` (milliseconds), and writes by the lock waits.
pub fn limit_session(conn: &mut Conn, timeout: Option<Duration>) -> mysql::Result<()> {
    let statement_ms = timeout.map_or(0, |t| (t.as_millis() * 4 / 5).max(1) as u64);
    let version: Option<String> = conn.query_first("SELECT VERSION()")?;
    let statement_limit = if version.is_some_and(|v| v.contains("MariaDB")) {
        format!("max_statement_time = {}", statement_ms as f64 / 1000.0)
    } else {
        format!("max_execution_time = {statement_ms}")
    };
    conn.query_drop(format!(
        "SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}, \
         lock_wait_timeout = {LOCK_WAIT_SECONDS}, {statement_limit}"
    ))
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
