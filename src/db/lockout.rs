//! The brute-force lockout's failure counts (`login_failures`).
//!
//! A password check first reserves its attempt: one transaction reads the
//! account's count (locking the row) and, unless the account is locked,
//! adds one. Only then is the password hashed; a right password clears the
//! count, a wrong one leaves its reservation standing as the failure it is.
//! So the count bounds the checks themselves, not only the failures already
//! recorded: of guesses sent at once, from any number of instances on any
//! nodes of a cluster, at most `LOCKOUT_THRESHOLD` in a window are ever
//! verified. On one server the row lock orders the reservations; on a
//! Galera cluster two nodes that reserve at once both write the row, one
//! commit fails certification, and its rerun (`tx.rs`) sees the other's
//! reservation. Because a locking read of a row that does not exist yet
//! does not hold off another node's insert, every write is also
//! conditioned on the row as it was read ([`reserve`]).

use super::failure::{Kind, kind};
use super::{Db, DbError};
use mysql::prelude::Queryable;
use mysql::{Transaction, params};

/// Where failures are counted: real accounts by id, or decoys by mailbox.
#[derive(Clone, Copy)]
enum Ledger {
    Accounts,
    Decoys,
}

impl Ledger {
    /// The table and its key column; fixed strings, never input.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Ledger::Accounts => ("login_failures", "user_id"),
            Ledger::Decoys => ("login_decoys", "email_key"),
        }
    }
}

/// The outcome of reserving a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead; the attempt is counted as a failure until it succeeds.
    Reserved,
    /// The account is locked until this Unix second.
    Locked {
        /// When the lock lifts.
        until: u64,
    },
}

impl Db {
    /// Reserves one password check for the account (see the module docs):
    /// a new window starts at `now` if the last one (of `window` seconds)
    /// has passed; within a window, at most `threshold` checks are reserved.
    pub fn reserve_attempt(
        &self,
        user_id: u64,
        now: u64,
        window: u64,
        threshold: u32,
    ) -> Result<Attempt, DbError> {
        let id = mysql::Value::from(user_id);
        self.transaction(|tx| reserve(tx, Ledger::Accounts, &id, now, window, threshold))
    }

    /// [`Db::reserve_attempt`] for an address without an account, keyed by
    /// its mailbox key (`login_decoys`): with `HIDE_ACCOUNT_EXISTENCE` the
    /// same work, and the same lockout, as for a real account.
    pub fn reserve_decoy_attempt(
        &self,
        email_key: &[u8; 32],
        now: u64,
        window: u64,
        threshold: u32,
    ) -> Result<Attempt, DbError> {
        let key = mysql::Value::from(&email_key[..]);
        self.transaction(|tx| reserve(tx, Ledger::Decoys, &key, now, window, threshold))
    }

    /// Deletes up to `batch` decoy rows whose window ended before `now -
    /// window`; returns how many.
    pub fn purge_old_decoys(&self, now: u64, window: u64, batch: u32) -> Result<u64, DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM login_decoys WHERE window_start + :window <= :now LIMIT :batch",
                params! { "window" => window, "now" => now, "batch" => batch },
            )?;
            Ok(conn.affected_rows())
        })
    }

    /// Forgets the account's failed attempts (after a right password).
    pub fn clear_login_failures(&self, user_id: u64) -> Result<(), DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM login_failures WHERE user_id = :uid",
                params! { "uid" => user_id },
            )
        })
    }
}

/// Rounds of reading and conditionally writing before [`reserve`] gives up
/// on a row that other reservations keep changing.
const ROUNDS: u32 = 3;

/// The reservation itself, in one transaction, on either ledger.
///
/// Every write is conditioned on the row as it was read: a new row is a
/// plain `INSERT` (a duplicate key means another reservation made it
/// meanwhile), a counted one an `UPDATE` of exactly the values read (no
/// row changed means another reservation wrote first). Either way this
/// round lost a race and the next reads again. The locking read alone is
/// not enough on Galera: a node applying another node's insert does not
/// wait for the gap lock that a locking read of a missing row takes, so a
/// blind upsert computed from that read could overwrite the other
/// reservation, and certification would not notice (the row existed by the
/// time this transaction replicated). Measured before this
/// on a three-node cluster: 6 checks in 5 of 240 bursts of 30.
fn reserve(
    tx: &mut Transaction<'_>,
    ledger: Ledger,
    key: &mysql::Value,
    now: u64,
    window: u64,
    threshold: u32,
) -> mysql::Result<Attempt> {
    let (table, column) = ledger.table();
    for _ in 0..ROUNDS {
        let row: Option<(u32, u64)> = tx.exec_first(
            format!("SELECT failures, window_start FROM {table} WHERE {column} = :key FOR UPDATE"),
            params! { "key" => key },
        )?;
        let Some((failures, start)) = row else {
            let inserted = tx.exec_drop(
                format!(
                    "INSERT INTO {table} ({column}, failures, window_start) VALUES (:key, 1, :now)"
                ),
                params! { "key" => key, "now" => now },
            );
            match inserted {
                Ok(()) => return Ok(Attempt::Reserved),
                // Only the statement is rolled back; the transaction goes on.
                Err(e) if kind(&e) == Kind::Duplicate => continue,
                Err(e) => return Err(e),
            }
        };
        let (counted, window_start) = if start + window > now {
            (failures, start)
        } else {
            (0, now)
        };
        if counted >= threshold {
            return Ok(Attempt::Locked {
                until: window_start + window,
            });
        }
        // `window` is at least one second, so a new window always moves
        // `window_start`, and a counted one always raises `failures`: a
        // write that goes ahead changes the row, and `affected_rows` is 1.
        tx.exec_drop(
            format!(
                "UPDATE {table} SET failures = :counted + 1, window_start = :window_start
                 WHERE {column} = :key AND failures = :failures AND window_start = :start"
            ),
            params! {
                "counted" => counted, "window_start" => window_start,
                "key" => key, "failures" => failures, "start" => start,
            },
        )?;
        if tx.affected_rows() == 1 {
            return Ok(Attempt::Reserved);
        }
    }
    // Still losing after every round: many checks at once. Refuse this one
    // as the lock would, without hashing.
    Ok(Attempt::Locked { until: now + 1 })
}
