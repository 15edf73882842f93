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
//! | `passwords.rs` | new passwords and password resets |
//! | `sessions.rs` | login sessions |
//! | `lockout.rs` | failure counts of the brute-force lockout |
//! | `pool.rs` | the bounded connection pool |
//! | `migrate.rs` | schema migrations |

mod lockout;
mod migrate;
mod passwords;
mod pool;
mod sessions;
mod users;

pub use migrate::{MIGRATIONS, MigrateError, Migration};
pub use passwords::{Mail, Reset};
pub use pool::{PING_AFTER_IDLE, Pool, PoolError};
pub use sessions::Session;
pub use users::{Credentials, EmailChange, Guarded, Import, User};

use crate::error::ApiError;
use crate::log;
use mysql::prelude::Queryable;
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
}
