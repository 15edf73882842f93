//! What a failed statement means for the server, decided in one place.
//!
//! Every database error falls into one of four kinds, and each kind has one
//! answer everywhere:
//!
//! | kind | examples | what happens |
//! |---|---|---|
//! | [`Kind::Conflict`] | deadlock or Galera certification failure (1213), lock wait timeout (1205), Group Replication rollback (3101) | the whole transaction is rerun a few times ([`super::tx`]); if it keeps failing, 503 |
//! | [`Kind::NotReady`] | broken connection, a Galera node that is not ready (1047), server shutting down (1053), statement time limit (1969, 3024), too many connections (1040) | the connection is dropped from the pool; 503 with `Retry-After` |
//! | [`Kind::Duplicate`] | unique key violated (1062) | the caller decides (409 `email_taken`, or "already there") |
//! | [`Kind::Other`] | anything else: a bug or a schema out of step | 500, with the driver's message in the log only |
//!
//! A conflict is never a 500: it says nothing about the request, only that
//! two transactions met, and running it again is correct because every
//! transaction here is rerun from its first statement.

use crate::error::ApiError;
use crate::log;
use std::fmt;

/// MySQL and MariaDB error codes the server tells apart.
pub(super) mod codes {
    /// ER_DBACCESS_DENIED_ERROR
    pub const DB_ACCESS_DENIED: u16 = 1044;
    /// ER_ACCESS_DENIED_ERROR
    pub const ACCESS_DENIED: u16 = 1045;
    /// ER_BAD_DB_ERROR
    pub const UNKNOWN_DATABASE: u16 = 1049;
    /// ER_DUP_ENTRY
    pub const DUPLICATE_KEY: u16 = 1062;
    /// ER_LOCK_WAIT_TIMEOUT
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    /// ER_LOCK_DEADLOCK; also what a Galera certification failure reports.
    pub const DEADLOCK: u16 = 1213;
    /// ER_TRANSACTION_ROLLBACK_DURING_COMMIT (MySQL Group Replication).
    pub const GROUP_REPLICATION_ROLLBACK: u16 = 3101;
    /// ER_CON_COUNT_ERROR: the server is at `max_connections`.
    pub const TOO_MANY_CONNECTIONS: u16 = 1040;
    /// ER_UNKNOWN_COM_ERROR: "WSREP has not yet prepared node for
    /// application use" on a Galera node that is not synced.
    pub const NODE_NOT_READY: u16 = 1047;
    /// ER_SERVER_SHUTDOWN
    pub const SERVER_SHUTDOWN: u16 = 1053;
    /// ER_STATEMENT_TIMEOUT (MariaDB `max_statement_time`).
    pub const STATEMENT_TIMEOUT: u16 = 1969;
    /// ER_QUERY_TIMEOUT (MySQL `MAX_EXECUTION_TIME`).
    pub const QUERY_TIMEOUT: u16 = 3024;
}

/// What a database error means; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Two transactions met; running this one again may succeed.
    Conflict,
    /// The connection or the server cannot serve now; the connection must
    /// not be reused.
    NotReady,
    /// A unique key refused the write.
    Duplicate,
    /// Unexpected.
    Other,
}

/// The kind of `e`.
pub fn kind(e: &mysql::Error) -> Kind {
    if e.is_connectivity_error() {
        return Kind::NotReady;
    }
    let mysql::Error::MySqlError(e) = e else {
        return Kind::Other;
    };
    match e.code {
        codes::DEADLOCK | codes::LOCK_WAIT_TIMEOUT | codes::GROUP_REPLICATION_ROLLBACK => {
            Kind::Conflict
        }
        codes::NODE_NOT_READY
        | codes::SERVER_SHUTDOWN
        | codes::STATEMENT_TIMEOUT
        | codes::QUERY_TIMEOUT
        | codes::TOO_MANY_CONNECTIONS => Kind::NotReady,
        codes::DUPLICATE_KEY => Kind::Duplicate,
        _ => Kind::Other,
    }
}

/// True if `e` is a unique-key violation.
pub fn is_duplicate(e: &mysql::Error) -> bool {
    kind(e) == Kind::Duplicate
}

/// The error a transaction returns when a write conditioned on what it read
/// finds the row changed meanwhile: it lost a race, exactly as a deadlock
/// means, so it is made one (1213, SQLSTATE 40001) and [`super::tx`] reruns
/// the transaction from its first read.
pub fn lost_race() -> mysql::Error {
    mysql::Error::MySqlError(mysql::MySqlError {
        state: "40001".into(),
        message: "a conditioned write found the row changed since it was read".into(),
        code: codes::DEADLOCK,
    })
}

/// A failed database operation, as much as a caller needs to know.
#[derive(Debug)]
pub enum DbError {
    /// The database could not be reached in time, the connection broke, or
    /// the node is not ready: the request may succeed later (503).
    Unavailable(String),
    /// A conflict with other transactions persisted through every rerun:
    /// the row is contended right now (503, unless the caller knows better:
    /// a contended lockout row means the account is being hammered).
    Busy(String),
    /// The database answered with an error the server did not expect: a bug
    /// or a schema out of step. The text is for the log, never a response.
    Query(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            DbError::Busy(why) => write!(f, "database busy: {why}"),
            DbError::Query(why) => write!(f, "database error: {why}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<super::PoolError> for DbError {
    fn from(e: super::PoolError) -> Self {
        match e {
            super::PoolError::Exhausted => {
                DbError::Unavailable("no free connection in the pool".into())
            }
            super::PoolError::Mysql(e) => DbError::from(e),
        }
    }
}

impl From<mysql::Error> for DbError {
    fn from(e: mysql::Error) -> Self {
        match kind(&e) {
            Kind::Conflict => DbError::Busy(e.to_string()),
            Kind::NotReady => DbError::Unavailable(e.to_string()),
            Kind::Duplicate | Kind::Other => DbError::Query(e.to_string()),
        }
    }
}

impl From<DbError> for ApiError {
    /// Logs the cause (the request id comes from the log context) and keeps
    /// it out of the response.
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(why) => {
                log::error("database unavailable", &[("error", why.into())]);
                ApiError::DatabaseUnavailable
            }
            DbError::Busy(why) => {
                log::warn("database conflict persisted", &[("error", why.into())]);
                ApiError::DatabaseUnavailable
            }
            DbError::Query(why) => {
                log::error("database failure", &[("error", why.into())]);
                ApiError::Internal
            }
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
    Migrate(super::MigrateError),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u16) -> mysql::Error {
        mysql::Error::MySqlError(mysql::MySqlError {
            state: "HY000".into(),
            code,
            message: "test".into(),
        })
    }

    #[test]
    fn every_kind_has_its_codes() {
        for code in [1213, 1205, 3101] {
            assert_eq!(kind(&server_error(code)), Kind::Conflict, "{code}");
        }
        for code in [1047, 1053, 1969, 3024, 1040] {
            assert_eq!(kind(&server_error(code)), Kind::NotReady, "{code}");
        }
        assert_eq!(kind(&server_error(1062)), Kind::Duplicate);
        assert_eq!(kind(&server_error(1146)), Kind::Other);
        let broken = mysql::Error::IoError(std::io::Error::other("reset"));
        assert_eq!(kind(&broken), Kind::NotReady);
    }

    #[test]
    fn conflicts_and_unready_nodes_are_503_never_500() {
        for code in [1213, 1205, 1047, 1053, 1969] {
            let api: ApiError = DbError::from(server_error(code)).into();
            assert_eq!(api, ApiError::DatabaseUnavailable, "{code}");
        }
        let api: ApiError = DbError::from(server_error(1146)).into();
        assert_eq!(api, ApiError::Internal);
    }
}
