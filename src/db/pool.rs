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
//! - connections go to the first ready host of `DATABASE_URL` (`hosts.rs`);
//!   one to a later host is replaced, at checkout, once an earlier host may
//!   be back;
//! - each new connection gets server-side limits below the client's timeout
//!   (`node.rs`): a lock wait ends after 1 s and a statement after
//!   four fifths of `timeout`, on the server. Without them a statement the
//!   client gave up on (a held table lock, say) kept running on the server
//!   after the request had answered 503, on a connection this pool had
//!   already replaced, and the server-side connections of one instance grew
//!   past `max` toward the server's `max_connections`. With them the server
//!   ends the statement first and answers on the same connection, which is
//!   reused; an instance holds at most `max` server connections, plus, for
//!   a moment, those it just dropped for a network failure.

use super::failure::{Kind, kind};
use super::hosts::Hosts;
use super::node::Node;
use mysql::Conn;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A pooled connection idle for longer than this is pinged before reuse.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// A bounded set of database connections shared by all request threads.
pub struct Pool {
    hosts: Hosts,
    max: usize,
    timeout: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

/// A connection with what the pool knows of it.
struct Pooled {
    conn: Conn,
    /// Index of its host in `DATABASE_URL`.
    host: usize,
    /// What its server is.
    node: Node,
    /// When it was opened: a connection to a later host is replaced once
    /// an earlier one may be back (see `hosts.rs`), but not at once.
    opened: Instant,
}

struct State {
    idle: Vec<(Pooled, Instant)>,
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
    /// A pool over `hosts` that opens at most `max` connections and bounds
    /// every wait by `timeout`. Opens nothing yet.
    pub fn new(hosts: Hosts, max: usize, timeout: Duration) -> Pool {
        Pool {
            hosts,
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

    /// Runs `f` on a pooled connection. A failure that says the connection
    /// or its node cannot serve (or a panic in `f`) discards the connection
    /// and marks its host down; any other outcome returns it to the pool.
    pub fn with<T>(&self, f: impl FnOnce(&mut Conn) -> mysql::Result<T>) -> Result<T, PoolError> {
        self.with_node(|conn, _| f(conn))
    }

    /// [`Pool::with`], telling `f` what the connection's server is.
    pub fn with_node<T>(
        &self,
        f: impl FnOnce(&mut Conn, &Node) -> mysql::Result<T>,
    ) -> Result<T, PoolError> {
        let mut pooled = self.checkout()?;
        let mut slot = OpenSlot {
            pool: self,
            held: true,
        };
        let result = f(&mut pooled.conn, &pooled.node);
        match &result {
            Err(e) if kind(e) == Kind::NotReady => self.hosts.mark_down(pooled.host),
            _ => {
                slot.held = false;
                self.checkin(pooled);
            }
        }
        result.map_err(PoolError::Mysql)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The critical sections below cannot panic, so a poisoned lock still
        // guards consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkout(&self) -> Result<Pooled, PoolError> {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.lock();
        loop {
            if let Some((mut pooled, since)) = state.idle.pop() {
                drop(state);
                let moving_back = pooled.host > 0
                    && pooled.opened.elapsed() >= super::hosts::RETRY_AFTER
                    && self.hosts.better_than(pooled.host);
                if !moving_back && (since.elapsed() < PING_AFTER_IDLE || pooled.conn.ping().is_ok())
                {
                    return Ok(pooled);
                }
                self.discard();
                state = self.lock();
                continue;
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.hosts.connect() {
                    Ok((conn, host, node)) => Ok(Pooled {
                        conn,
                        host,
                        node,
                        opened: Instant::now(),
                    }),
                    Err(e) => {
                        self.discard();
                        Err(PoolError::Mysql(e))
                    }
                };
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

    /// The pool's timeout: what the session limits follow.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn checkin(&self, pooled: Pooled) {
        self.lock().idle.push((pooled, Instant::now()));
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
