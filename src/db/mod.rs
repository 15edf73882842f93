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
//!
//! The statements are grouped by what they touch, one file per area:
//!
//! | file | owns |
//! |---|---|
//! | `users.rs` | accounts: create, find, change email, delete, import |
//! | `passwords.rs` | new passwords and using reset tokens |
//! | `mail.rs` | mail requests, and reset tokens with their message |
//! | `outbox.rs` | the courier's claims on outbox rows and their outcome |
//! | `sessions.rs` | login sessions |
//! | `lockout.rs` | failure counts of the brute-force lockout |
//! | `tx.rs` | *shared:* transactions, and rerunning them after a conflict |
//! | `failure.rs` | *shared:* what each database error means (retry, 503, 500) |
//! | `pool.rs` | the bounded connection pool |
//! | `migrate.rs` | schema migrations |

mod failure;
mod lockout;
mod mail;
mod migrate;
mod outbox;
mod passwords;
mod pool;
mod sessions;
mod tx;
mod users;

pub use failure::{DbError, StartupError};

pub use mail::{Mail, MailRequest, PASSWORD_RESET, ResetPolicy, Resolved};
pub use migrate::{MIGRATIONS, MigrateError, Migration};
pub use outbox::{Backlog, Outgoing};
pub use passwords::Reset;
pub use pool::{PING_AFTER_IDLE, Pool, PoolError};
pub use sessions::Session;
pub use users::{Change, Credentials, Guarded, Import, Proof, User};

use crate::log;
use failure::codes;
use mysql::prelude::Queryable;
use std::time::{Duration, Instant};

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
                Ok(Ok(applied)) => {
                    self.key_old_accounts();
                    return Ok(applied);
                }
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

    /// Keys the accounts that predate mailbox keys (see
    /// [`Db::backfill_email_keys`]). A failure is logged and left for the
    /// next start: those accounts cannot log in meanwhile, everyone else can.
    fn key_old_accounts(&self) {
        match self.backfill_email_keys() {
            Ok(0) => {}
            Ok(n) => log::info("accounts given mailbox keys", &[("accounts", n.into())]),
            Err(e) => log::error(
                "giving old accounts their mailbox keys failed; retried at the next start",
                &[("error", e.to_string().into())],
            ),
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
        self.pool.with(|conn| {
            // DDL on a big table may take longer than a request's statements.
            pool::limit_session(conn, None)?;
            let result = migrate::run(conn);
            pool::limit_session(conn, Some(self.pool.timeout()))?;
            match result {
                // Network failures go up as such, so the pool drops the connection.
                Err(MigrateError::Database(e)) if e.is_connectivity_error() => Err(e),
                other => Ok(other),
            }
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
}
