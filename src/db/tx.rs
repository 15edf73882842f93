//! The one way statements reach the database: on a pooled connection, as a
//! whole transaction or a single autocommitted statement, rerun when it
//! meets another transaction.
//!
//! A deadlock, a lock wait timeout, or (on a Galera cluster) a certification
//! failure at commit all mean the same thing: this transaction lost a race
//! and was rolled back entirely. Running it again from its first statement
//! is correct, since every closure passed here reads what it needs inside
//! the transaction and writes only on what it read. So [`Db::transaction`]
//! and [`Db::run`] rerun the closure up to [`ATTEMPTS`] times, with a short
//! random pause in between so that two racing transactions do not meet
//! again in lockstep; only a conflict that persists through every attempt
//! (or past `DB_TIMEOUT_MS` in all) reaches the caller, as "unavailable"
//! (503), never as a 500.
//!
//! Because the closure may run more than once, it must not have effects
//! outside the database (no mail sent, no counter bumped): callers act on
//! the value it returns, after the commit.
//!
//! **Reads first, then writes.** In a transaction that writes, no `SELECT`
//! may follow the first write: every closure reads all it needs (locking
//! what it will change), then writes, and builds its answer from what it
//! read and wrote rather than reading it back. On a Galera node (MariaDB
//! 10.11.19, Galera 26.4.23, measured) a transaction aborted by a
//! conflicting write from another node while it is between statements is
//! reported to the client by its next write or its `COMMIT`, but a `SELECT`
//! after the abort answers normally and the abort is lost: the statements
//! after it run outside the transaction and `COMMIT` says OK. Of 300
//! transactions of the shape `UPDATE a; SELECT; UPDATE b; COMMIT` on one
//! node, racing a write to `a` on another, 8 reported a commit whose
//! `UPDATE a` was gone while `UPDATE b` had committed; of 300 with their
//! reads first, none. Before this rule the cluster tests saw it as a reset
//! mail sent twice, a demotion that answered 200 and vanished, and a
//! registration answered 201 that no node had.

use super::failure::{Kind, kind};
use super::{Db, DbError, PoolError};
use mysql::{Conn, Transaction, TxOpts};
use std::time::{Duration, Instant};

/// Runs of a closure before a persisting conflict is given up on. Three
/// were not always enough for twenty registrations of one address spread
/// over three Galera nodes (each rerun can meet a newer conflict).
pub const ATTEMPTS: u32 = 5;

/// Longest pause before the first rerun; it doubles for the next, so all
/// the pauses together stay under about 150 ms.
const FIRST_PAUSE_MAX: Duration = Duration::from_millis(10);

impl Db {
    /// Runs `work` in a transaction and commits it if `work` returns `Ok`
    /// (an `Err` rolls it back). Rerun on a conflict; see the module docs.
    pub(super) fn transaction<T>(
        &self,
        mut work: impl FnMut(&mut Transaction<'_>) -> mysql::Result<T>,
    ) -> Result<T, DbError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            let value = work(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })
    }

    /// Runs `work` on a pooled connection (each statement autocommits),
    /// rerunning it on a conflict. A statement on its own can deadlock too:
    /// an upsert takes gap locks, and Galera certifies every commit.
    pub(super) fn run<T>(
        &self,
        mut work: impl FnMut(&mut Conn) -> mysql::Result<T>,
    ) -> Result<T, DbError> {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match self.pool.with(&mut work) {
                // A lock wait timeout takes a second each time: rerun only
                // while the caller's time (DB_TIMEOUT_MS) is not spent.
                Err(PoolError::Mysql(e))
                    if kind(&e) == Kind::Conflict
                        && attempt < ATTEMPTS
                        && started.elapsed() < self.pool.timeout() =>
                {
                    std::thread::sleep(pause(attempt));
                    attempt += 1;
                }
                other => return other.map_err(DbError::from),
            }
        }
    }
}

/// A random pause before rerun number `attempt`: up to `FIRST_PAUSE_MAX`
/// times 2^(attempt - 1).
fn pause(attempt: u32) -> Duration {
    let mut random = [0u8; 2];
    // Without OS randomness the pause is the longest; still bounded.
    let fraction = match getrandom::fill(&mut random) {
        Ok(()) => f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX),
        Err(_) => 1.0,
    };
    FIRST_PAUSE_MAX.mul_f64(fraction) * 2u32.pow(attempt - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_bounded_and_grow() {
        for _ in 0..100 {
            assert!(pause(1) <= FIRST_PAUSE_MAX);
            assert!(pause(2) <= FIRST_PAUSE_MAX * 2);
        }
        let total: Duration = (1..ATTEMPTS)
            .map(|a| FIRST_PAUSE_MAX * 2u32.pow(a - 1))
            .sum();
        assert!(total <= Duration::from_millis(150));
    }
}
