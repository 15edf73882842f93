//! The database: the connection pool, the migrations, and every SQL
//! statement the server runs.
//!
//! All SQL lives in this module so that one reading shows every query the
//! server can make, each a prepared statement with bound parameters (never
//! text pasted into SQL). Callers get plain Rust values and a [`DbError`]
//! that says only what they need to decide: the database is unavailable, or
//! something unexpected happened that the log explains.
//!
//! Times are passed in as Unix seconds by the caller rather than taken from
//! `NOW()`, so the database's time zone never matters and tests control the
//! clock.

mod migrate;
mod pool;

pub use migrate::{MIGRATIONS, MigrateError, Migration};
pub use pool::{PING_AFTER_IDLE, Pool, PoolError};

use crate::error::ApiError;
use crate::log;
use mysql::prelude::Queryable;
use mysql::{TxOpts, params};
use std::fmt;
use std::time::{Duration, Instant};

/// MySQL and MariaDB error codes the server tells apart.
mod codes {
    /// ER_DBACCESS_DENIED_ERROR
    pub const DB_ACCESS_DENIED: u16 = 1044;
    /// ER_ACCESS_DENIED_ERROR
    pub const ACCESS_DENIED: u16 = 1045;
    /// ER_BAD_DB_ERROR
    pub const UNKNOWN_DATABASE: u16 = 1049;
    /// ER_DUP_ENTRY
    pub const DUPLICATE_KEY: u16 = 1062;
}

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

/// A login session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random, 16 bytes; also carried in the session's token.
    pub id: [u8; 16],
    /// The account it belongs to.
    pub user_id: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; the token expires at the same instant.
    pub expires_at: u64,
    /// The client address as the server saw it.
    pub ip: String,
    /// The client's `User-Agent`, cut to 255 characters.
    pub user_agent: String,
}

/// A message for the mailer, written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The address it goes to.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// A live password reset, found by its token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// The account to reset.
    pub user: User,
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

/// A failed database operation, as much as a caller needs to know.
#[derive(Debug)]
pub enum DbError {
    /// The database could not be reached in time or the connection broke:
    /// the request may succeed later.
    Unavailable(String),
    /// The database answered with an error the server did not expect: a bug
    /// or a schema out of step. The text is for the log, never a response.
    Query(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            DbError::Query(why) => write!(f, "database error: {why}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<PoolError> for DbError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Exhausted => DbError::Unavailable("no free connection in the pool".into()),
            PoolError::Mysql(e) if e.is_connectivity_error() => DbError::Unavailable(e.to_string()),
            PoolError::Mysql(e) => DbError::Query(e.to_string()),
        }
    }
}

impl From<DbError> for ApiError {
    /// Logs the cause (the request id comes from the log context) and keeps
    /// it out of the response.
    fn from(e: DbError) -> Self {
        log::error("database failure", &[("error", e.to_string().into())]);
        match e {
            DbError::Unavailable(_) => ApiError::DatabaseUnavailable,
            DbError::Query(_) => ApiError::Internal,
        }
    }
}

/// Why the database could not be prepared at start-up.
#[derive(Debug)]
pub enum StartupError {
    /// Still unreachable when the retry period ended.
    Unreachable(String),
    /// Reachable but refused us: wrong credentials or no such database.
    /// Retrying cannot help, so start-up stops at once.
    Refused(String),
    /// Migrating failed.
    Migrate(MigrateError),
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::Unreachable(why) => write!(f, "database unreachable: {why}"),
            StartupError::Refused(why) => write!(f, "database refused the connection: {why}"),
            StartupError::Migrate(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StartupError {}

/// The database handle the handlers use.
pub struct Db {
    pool: Pool,
}

impl Db {
    /// A handle over `url` with at most `pool_max` connections, each wait and
    /// network operation bounded by `timeout`. Connects lazily.
    pub fn new(url: &str, pool_max: usize, timeout: Duration) -> Result<Db, DbError> {
        let opts = mysql::Opts::from_url(url)
            .map_err(|_| DbError::Query("DATABASE_URL is not a valid mysql:// URL".into()))?;
        Ok(Db {
            pool: Pool::new(opts, pool_max, timeout),
        })
    }

    /// Waits until the database answers, retrying with back-off for up to
    /// `patience` (containers start in any order), then applies pending
    /// migrations. Returns the names of the migrations applied.
    pub fn prepare(&self, patience: Duration) -> Result<Vec<&'static str>, StartupError> {
        let give_up = Instant::now() + patience;
        let mut pause = Duration::from_millis(250);
        loop {
            let why = match self.migrate_once() {
                Ok(Ok(applied)) => return Ok(applied),
                Ok(Err(e)) => return Err(StartupError::Migrate(e)),
                Err(PoolError::Mysql(mysql::Error::MySqlError(e)))
                    if [
                        codes::ACCESS_DENIED,
                        codes::DB_ACCESS_DENIED,
                        codes::UNKNOWN_DATABASE,
                    ]
                    .contains(&e.code) =>
                {
                    return Err(StartupError::Refused(e.message));
                }
                Err(e) => DbError::from(e).to_string(),
            };
            if Instant::now() + pause > give_up {
                return Err(StartupError::Unreachable(why));
            }
            log::warn(
                "database not reachable yet; retrying",
                &[
                    ("error", why.into()),
                    ("retry_in_ms", (pause.as_millis() as u64).into()),
                ],
            );
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(4));
        }
    }

    /// Applies pending migrations once, without retrying.
    pub fn migrate(&self) -> Result<Vec<&'static str>, StartupError> {
        match self.migrate_once() {
            Ok(result) => result.map_err(StartupError::Migrate),
            Err(e) => Err(StartupError::Unreachable(DbError::from(e).to_string())),
        }
    }

    /// One attempt: the outer error is a connection failure (worth retrying),
    /// the inner one a failure of the migration itself.
    fn migrate_once(&self) -> Result<Result<Vec<&'static str>, MigrateError>, PoolError> {
        self.pool.with(|conn| match migrate::run(conn) {
            // Network failures go up as such, so the pool drops the connection.
            Err(MigrateError::Database(e)) if e.is_connectivity_error() => Err(e),
            other => Ok(other),
        })
    }

    /// Connections checked out right now.
    pub fn connections_in_use(&self) -> usize {
        self.pool.in_use()
    }

    /// Succeeds when a trivial query round-trips: the health check.
    pub fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| conn.query_drop("SELECT 1"))
    }

    fn run<T>(&self, f: impl FnOnce(&mut mysql::Conn) -> mysql::Result<T>) -> Result<T, DbError> {
        self.pool.with(f).map_err(DbError::from)
    }

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

    /// Records a session for a login, but only if the account's hash is still
    /// `verified_hash`: a login that raced a password change must not leave a
    /// session the change did not end.
    pub fn create_session(
        &self,
        session: &Session,
        verified_hash: &str,
    ) -> Result<Guarded, DbError> {
        let inserted = self.run(|conn| {
            conn.exec_drop(
                "INSERT INTO sessions (id, user_id, created_at, expires_at, ip, user_agent)
                 SELECT :id, id, :created_at, :expires_at, :ip, :user_agent
                 FROM users WHERE id = :user_id AND password_hash = :hash",
                params! {
                    "id" => &session.id[..],
                    "user_id" => session.user_id,
                    "created_at" => session.created_at,
                    "expires_at" => session.expires_at,
                    "ip" => &session.ip,
                    "user_agent" => &session.user_agent,
                    "hash" => verified_hash,
                },
            )?;
            Ok(conn.affected_rows())
        })?;
        Ok(if inserted == 1 {
            Guarded::Done
        } else {
            Guarded::Stale
        })
    }

    /// Sets a new password hash, if the current one is still `verified_hash`,
    /// and ends what the old password opened (see
    /// `end_everything_after_new_password`), in one transaction. `Some`
    /// with the number of sessions ended, or `None` if the hash had changed
    /// meanwhile (nothing written).
    pub fn change_password(
        &self,
        user_id: u64,
        verified_hash: &str,
        new_hash: &str,
        now: u64,
    ) -> Result<Option<u64>, DbError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(
                "UPDATE users SET password_hash = :new_hash, updated_at = :now
                 WHERE id = :id AND password_hash = :old_hash",
                params! { "new_hash" => new_hash, "now" => now, "id" => user_id, "old_hash" => verified_hash },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(None);
            }
            let ended = end_everything_after_new_password(&mut tx, user_id)?;
            tx.commit()?;
            Ok(Some(ended))
        })
    }

    /// The account a live session belongs to: the session exists, belongs to
    /// `user_id` and has not expired. One primary-key lookup.
    pub fn session_user(
        &self,
        session_id: &[u8; 16],
        user_id: u64,
        now: u64,
    ) -> Result<Option<User>, DbError> {
        let row: Option<(u64, String, u64)> = self.run(|conn| {
            conn.exec_first(
                "SELECT u.id, u.email, u.created_at
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.id = :sid AND s.user_id = :uid AND s.expires_at > :now",
                params! { "sid" => &session_id[..], "uid" => user_id, "now" => now },
            )
        })?;
        Ok(row.map(|(id, email, created_at)| User {
            id,
            email,
            created_at,
        }))
    }

    /// The account's live sessions, newest first.
    pub fn sessions(&self, user_id: u64, now: u64) -> Result<Vec<Session>, DbError> {
        let rows: Vec<(Vec<u8>, u64, u64, String, String)> = self.run(|conn| {
            conn.exec(
                "SELECT id, created_at, expires_at, ip, user_agent FROM sessions
                 WHERE user_id = :uid AND expires_at > :now
                 ORDER BY created_at DESC, id",
                params! { "uid" => user_id, "now" => now },
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, created_at, expires_at, ip, user_agent)| {
                Some(Session {
                    id: id.try_into().ok()?,
                    user_id,
                    created_at,
                    expires_at,
                    ip,
                    user_agent,
                })
            })
            .collect())
    }

    /// Ends one session of the account. False if it has no such session.
    pub fn end_session(&self, session_id: &[u8; 16], user_id: u64) -> Result<bool, DbError> {
        let deleted = self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM sessions WHERE id = :sid AND user_id = :uid",
                params! { "sid" => &session_id[..], "uid" => user_id },
            )?;
            Ok(conn.affected_rows())
        })?;
        Ok(deleted == 1)
    }

    /// Ends every session of the account; returns how many there were.
    pub fn end_all_sessions(&self, user_id: u64) -> Result<u64, DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM sessions WHERE user_id = :uid",
                params! { "uid" => user_id },
            )?;
            Ok(conn.affected_rows())
        })
    }

    /// Starts a password reset: replaces the account's earlier reset tokens
    /// (so only the newest works) with `token_hash`, valid until
    /// `expires_at`, and queues `mail`, in one transaction: there is never a
    /// token without its message, or a message without its token.
    pub fn start_reset(
        &self,
        user_id: u64,
        token_hash: &[u8; 32],
        now: u64,
        expires_at: u64,
        mail: &Mail,
    ) -> Result<(), DbError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop("DELETE FROM password_resets WHERE user_id = :uid", params! { "uid" => user_id })?;
            tx.exec_drop(
                "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at)
                 VALUES (:hash, :uid, :now, :expires)",
                params! { "hash" => &token_hash[..], "uid" => user_id, "now" => now, "expires" => expires_at },
            )?;
            tx.exec_drop(
                "INSERT INTO mail_outbox (recipient, subject, body, created_at)
                 VALUES (:recipient, :subject, :body, :now)",
                params! { "recipient" => &mail.recipient, "subject" => &mail.subject, "body" => &mail.body, "now" => now },
            )?;
            tx.commit()
        })
    }

    /// The account of an unused, unexpired reset token, by the token's hash.
    pub fn find_reset(&self, token_hash: &[u8; 32], now: u64) -> Result<Option<Reset>, DbError> {
        let row: Option<(u64, String, u64)> = self.run(|conn| {
            conn.exec_first(
                "SELECT u.id, u.email, u.created_at
                 FROM password_resets r JOIN users u ON u.id = r.user_id
                 WHERE r.token_hash = :hash AND r.used_at IS NULL AND r.expires_at > :now",
                params! { "hash" => &token_hash[..], "now" => now },
            )
        })?;
        Ok(row.map(|(id, email, created_at)| Reset {
            user: User {
                id,
                email,
                created_at,
            },
        }))
    }

    /// Completes a reset in one transaction: marks the token used (only if
    /// it still is unused and unexpired, so it works once even under
    /// concurrent use), sets the new hash and ends what the old password
    /// opened (see `end_everything_after_new_password`). `Some` with the number of sessions ended, `None` if the
    /// token was used meanwhile.
    pub fn complete_reset(
        &self,
        token_hash: &[u8; 32],
        user_id: u64,
        new_hash: &str,
        now: u64,
    ) -> Result<Option<u64>, DbError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(
                "UPDATE password_resets SET used_at = :now
                 WHERE token_hash = :hash AND user_id = :uid AND used_at IS NULL AND expires_at > :now",
                params! { "now" => now, "hash" => &token_hash[..], "uid" => user_id },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(None);
            }
            tx.exec_drop(
                "UPDATE users SET password_hash = :hash, updated_at = :now WHERE id = :uid",
                params! { "hash" => new_hash, "now" => now, "uid" => user_id },
            )?;
            let ended = end_everything_after_new_password(&mut tx, user_id)?;
            tx.commit()?;
            Ok(Some(ended))
        })
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

    /// Deletes up to `batch` reset tokens that expired before `now` (used or
    /// not); returns how many.
    pub fn purge_expired_resets(&self, now: u64, batch: u32) -> Result<u64, DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM password_resets WHERE expires_at <= :now LIMIT :batch",
                params! { "now" => now, "batch" => batch },
            )?;
            Ok(conn.affected_rows())
        })
    }

    /// Deletes up to `batch` sessions that expired before `now`; returns how
    /// many. Small batches keep each delete's locks short.
    pub fn purge_expired_sessions(&self, now: u64, batch: u32) -> Result<u64, DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM sessions WHERE expires_at <= :now LIMIT :batch",
                params! { "now" => now, "batch" => batch },
            )?;
            Ok(conn.affected_rows())
        })
    }
}

/// Within a transaction that just set a new password: ends every session,
/// voids every reset token (a link mailed before must not undo the change)
/// and clears the login lockout. Returns the number of sessions ended.
fn end_everything_after_new_password(
    tx: &mut mysql::Transaction<'_>,
    user_id: u64,
) -> mysql::Result<u64> {
    tx.exec_drop(
        "DELETE FROM sessions WHERE user_id = :uid",
        params! { "uid" => user_id },
    )?;
    let ended = tx.affected_rows();
    tx.exec_drop(
        "DELETE FROM password_resets WHERE user_id = :uid",
        params! { "uid" => user_id },
    )?;
    tx.exec_drop(
        "DELETE FROM login_failures WHERE user_id = :uid",
        params! { "uid" => user_id },
    )?;
    Ok(ended)
}
