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
use mysql::params;
use mysql::prelude::Queryable;

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
        self.transaction(|tx| {
            let row: Option<(u32, u64)> = tx.exec_first(
                "SELECT failures, window_start FROM login_failures WHERE user_id = :uid FOR UPDATE",
                params! { "uid" => user_id },
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
                "INSERT INTO login_failures (user_id, failures, window_start)
                 VALUES (:uid, :failures, :start)
                 ON DUPLICATE KEY UPDATE failures = :failures, window_start = :start",
                params! { "uid" => user_id, "failures" => failures + 1, "start" => window_start },
            )?;
            Ok(Attempt::Reserved)
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
