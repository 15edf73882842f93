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
//! reservation.

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

/// The reservation itself, in one transaction, on either ledger.
fn reserve(
    tx: &mut Transaction<'_>,
    ledger: Ledger,
    key: &mysql::Value,
    now: u64,
    window: u64,
    threshold: u32,
) -> mysql::Result<Attempt> {
    let (table, column) = ledger.table();
    let row: Option<(u32, u64)> = tx.exec_first(
        format!("SELECT failures, window_start FROM {table} WHERE {column} = :key FOR UPDATE"),
        params! { "key" => key },
    )?;
    let (failures, window_start) = match row {
        Some((failures, start)) if start + window > now => (failures, start),
        _ => (0, now),
    };
    if failures >= threshold {
        return Ok(Attempt::Locked {
            until: window_start + window,
        });
    }
    tx.exec_drop(
        format!(
            "INSERT INTO {table} ({column}, failures, window_start) VALUES (:key, :failures, :start)
             ON DUPLICATE KEY UPDATE failures = :failures, window_start = :start"
        ),
        params! { "key" => key, "failures" => failures + 1, "start" => window_start },
    )?;
    Ok(Attempt::Reserved)
}
