//! The brute-force lockout's failure counts (`login_failures`).

use super::{Db, DbError};
use mysql::params;
use mysql::prelude::Queryable;

impl Db {
    /// The account's failed attempts now: `(failures, window_start)`, or
    /// `(0, 0)` if it has none.
    pub fn login_failures(&self, user_id: u64) -> Result<(u32, u64), DbError> {
        let row: Option<(u32, u64)> = self.run(|conn| {
            conn.exec_first(
                "SELECT failures, window_start FROM login_failures WHERE user_id = :uid",
                params! { "uid" => user_id },
            )
        })?;
        Ok(row.unwrap_or((0, 0)))
    }

    /// Counts a wrong password for the account: starts a new window at `now`
    /// if the last one (of `window` seconds) has passed, else adds to it.
    /// Atomic, so concurrent failures (from several instances) all count.
    pub fn record_login_failure(&self, user_id: u64, now: u64, window: u64) -> Result<(), DbError> {
        // MySQL applies the assignments left to right, so `failures` must be
        // computed before `window_start` changes.
        self.run(|conn| {
            conn.exec_drop(
                "INSERT INTO login_failures (user_id, failures, window_start)
                 VALUES (:uid, 1, :now)
                 ON DUPLICATE KEY UPDATE
                   failures = IF(window_start + :window <= :now, 1, failures + 1),
                   window_start = IF(window_start + :window <= :now, :now, window_start)",
                params! { "uid" => user_id, "now" => now, "window" => window },
            )
        })
    }

    /// Forgets the account's failed attempts (after a successful login).
    pub fn clear_login_failures(&self, user_id: u64) -> Result<(), DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM login_failures WHERE user_id = :uid",
                params! { "uid" => user_id },
            )
        })
    }
}
