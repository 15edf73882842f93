//! Accounts: creating, finding, changing and deleting `users` rows, and the
//! bulk import.

use super::{Db, DbError, PoolError, codes};
use mysql::prelude::Queryable;
use mysql::{TxOpts, params};

/// An account, as the API shows it: never with its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The account's id.
    pub id: u64,
    /// The normalised (lowercased) email.
    pub email: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// An account with its password hash and recent failed attempts, for
/// verifying a password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The account.
    pub user: User,
    /// The Argon2 PHC string.
    pub password_hash: String,
    /// Wrong passwords in the current lockout window (0 if none).
    pub failures: u32,
    /// Unix seconds when that window began.
    pub window_start: u64,
}

/// One account to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Normalised email.
    pub email: String,
    /// Argon2 PHC string.
    pub password_hash: String,
}

/// The outcome of an email change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailChange {
    /// Done; the account as it is now.
    Changed(User),
    /// Another account has the email.
    Taken,
    /// The account no longer exists (deleted meanwhile).
    Gone,
}

/// The outcome of an update guarded by the password hash the caller verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    /// Done.
    Done,
    /// The hash changed since it was verified (a concurrent password change):
    /// nothing was written.
    Stale,
}

impl Db {
    /// Creates an account. `Ok(None)` when the email is taken: the unique key
    /// decides, so of two concurrent registrations exactly one succeeds.
    pub fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        now: u64,
    ) -> Result<Option<User>, DbError> {
        let inserted = self.pool.with(|conn| {
            conn.exec_drop(
                "INSERT INTO users (email, password_hash, created_at, updated_at)
                 VALUES (:email, :hash, :now, :now)",
                params! { "email" => email, "hash" => password_hash, "now" => now },
            )?;
            Ok(conn.last_insert_id())
        });
        match inserted {
            Ok(id) => Ok(Some(User {
                id,
                email: email.to_string(),
                created_at: now,
            })),
            Err(PoolError::Mysql(mysql::Error::MySqlError(e)))
                if e.code == codes::DUPLICATE_KEY =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The account with this (normalised) email, its hash and its recent
    /// failed attempts, if any: one query.
    pub fn credentials(&self, email: &str) -> Result<Option<Credentials>, DbError> {
        type Row = (u64, String, u64, String, Option<u32>, Option<u64>);
        let row: Option<Row> = self.run(|conn| {
            conn.exec_first(
                "SELECT u.id, u.email, u.created_at, u.password_hash, f.failures, f.window_start
                 FROM users u LEFT JOIN login_failures f ON f.user_id = u.id
                 WHERE u.email = :email",
                params! { "email" => email },
            )
        })?;
        Ok(row.map(
            |(id, email, created_at, password_hash, failures, window_start)| Credentials {
                user: User {
                    id,
                    email,
                    created_at,
                },
                password_hash,
                failures: failures.unwrap_or(0),
                window_start: window_start.unwrap_or(0),
            },
        ))
    }

    /// Changes the account's email and voids its outstanding reset tokens
    /// (a link mailed to the old address must not take the account back), in
    /// one transaction. The unique key decides whether the email is taken.
    pub fn change_email(
        &self,
        user_id: u64,
        email: &str,
        now: u64,
    ) -> Result<EmailChange, DbError> {
        let updated = self.pool.with(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(
                "UPDATE users SET email = :email, updated_at = :now WHERE id = :uid",
                params! { "email" => email, "now" => now, "uid" => user_id },
            )?;
            tx.exec_drop(
                "DELETE FROM password_resets WHERE user_id = :uid",
                params! { "uid" => user_id },
            )?;
            let user = tx.exec_first::<(u64, String, u64), _, _>(
                "SELECT id, email, created_at FROM users WHERE id = :uid",
                params! { "uid" => user_id },
            )?;
            tx.commit()?;
            Ok(user)
        });
        match updated {
            Ok(Some((id, email, created_at))) => Ok(EmailChange::Changed(User {
                id,
                email,
                created_at,
            })),
            Ok(None) => Ok(EmailChange::Gone),
            Err(PoolError::Mysql(mysql::Error::MySqlError(e)))
                if e.code == codes::DUPLICATE_KEY =>
            {
                Ok(EmailChange::Taken)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the account; its sessions, reset tokens and failure counts go
    /// with it (foreign keys cascade) in one transaction. Returns the number
    /// of sessions that ended.
    pub fn delete_user(&self, user_id: u64) -> Result<u64, DbError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(
                "DELETE FROM sessions WHERE user_id = :uid",
                params! { "uid" => user_id },
            )?;
            let ended = tx.affected_rows();
            tx.exec_drop(
                "DELETE FROM users WHERE id = :uid",
                params! { "uid" => user_id },
            )?;
            tx.commit()?;
            Ok(ended)
        })
    }

    /// Replaces a hash made with old Argon2 parameters, if it is still the
    /// one just verified (a concurrent password change wins).
    pub fn upgrade_hash(
        &self,
        user_id: u64,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<Guarded, DbError> {
        let changed = self.run(|conn| {
            conn.exec_drop(
                "UPDATE users SET password_hash = :new WHERE id = :uid AND password_hash = :old",
                params! { "new" => new_hash, "uid" => user_id, "old" => old_hash },
            )?;
            Ok(conn.affected_rows())
        })?;
        Ok(if changed == 1 {
            Guarded::Done
        } else {
            Guarded::Stale
        })
    }

    /// Inserts a batch of accounts in one transaction, skipping emails that
    /// exist; returns how many were inserted.
    pub fn import_users(&self, batch: &[Import], now: u64) -> Result<u64, DbError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            let mut inserted = 0;
            for user in batch {
                // A duplicate key leaves the row as it is and counts 0 rows.
                tx.exec_drop(
                    "INSERT INTO users (email, password_hash, created_at, updated_at)
                     VALUES (:email, :hash, :now, :now)
                     ON DUPLICATE KEY UPDATE id = id",
                    params! { "email" => &user.email, "hash" => &user.password_hash, "now" => now },
                )?;
                inserted += tx.affected_rows();
            }
            tx.commit()?;
            Ok(inserted)
        })
    }
}
