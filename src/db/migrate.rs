//! Schema migrations: the numbered files in `sql/`, embedded in the binary and
//! applied in order, each once.
//!
//! - Applied versions are recorded in `schema_migrations` with the SHA-256 of
//!   the file. A file changed after it was applied stops start-up: the schema
//!   in the database would no longer be what the file says. Fix forward with a
//!   new file instead.
//! - Several instances starting at once serialise on a lease: a row in
//!   `schema_lock` that names its holder and when its claim expires, taken
//!   by a conditional write. Exactly one instance applies what is pending,
//!   renewing the lease after each statement; the others wait, then find
//!   nothing left to do. A holder that dies leaves the lease to expire. Not
//!   `GET_LOCK`: on a Galera cluster named locks are local to a node, so two
//!   instances on two nodes both got it (measured: of three instances
//!   started together, two exited with a deadlock or a duplicate key in
//!   `schema_migrations`). A write to one row is what certification orders
//!   cluster-wide.
//! - MySQL commits DDL implicitly, so a migration is not atomic: each file is
//!   written so that it can be re-run after a failure part way, and is
//!   recorded only once all its statements succeeded. `CREATE TABLE` says
//!   `IF NOT EXISTS`; MySQL 8.4 has no `ADD COLUMN IF NOT EXISTS`, so each
//!   `ALTER TABLE` is one statement (InnoDB applies it whole or not at all),
//!   and on a re-run the errors that say it was already applied (duplicate
//!   column, duplicate key name, table exists) are taken as done.
//! - Statements within a file end with `;` at the end of a line; `--` lines
//!   are comments. The files are ours, so this simple rule is enough.

use mysql::prelude::Queryable;
use mysql::{Conn, params};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::{Duration, Instant};

/// One embedded migration file.
pub struct Migration {
    /// The number the file name starts with; applied in ascending order.
    pub version: u32,
    /// The file name, for messages.
    pub name: &'static str,
    /// The file's text.
    pub sql: &'static str,
}

/// Every migration, in order. A unit test checks this list against `sql/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_users.sql",
        sql: include_str!("../../sql/0001_users.sql"),
    },
    Migration {
        version: 2,
        name: "0002_sessions.sql",
        sql: include_str!("../../sql/0002_sessions.sql"),
    },
    Migration {
        version: 3,
        name: "0003_login_failures.sql",
        sql: include_str!("../../sql/0003_login_failures.sql"),
    },
    Migration {
        version: 4,
        name: "0004_password_resets.sql",
        sql: include_str!("../../sql/0004_password_resets.sql"),
    },
    Migration {
        version: 5,
        name: "0005_email_keys.sql",
        sql: include_str!("../../sql/0005_email_keys.sql"),
    },
    Migration {
        version: 6,
        name: "0006_mail_requests.sql",
        sql: include_str!("../../sql/0006_mail_requests.sql"),
    },
    Migration {
        version: 7,
        name: "0007_mail_delivery.sql",
        sql: include_str!("../../sql/0007_mail_delivery.sql"),
    },
    Migration {
        version: 8,
        name: "0008_email_verification.sql",
        sql: include_str!("../../sql/0008_email_verification.sql"),
    },
    Migration {
        version: 9,
        name: "0009_login_decoys.sql",
        sql: include_str!("../../sql/0009_login_decoys.sql"),
    },
    Migration {
        version: 10,
        name: "0010_refresh_tokens.sql",
        sql: include_str!("../../sql/0010_refresh_tokens.sql"),
    },
    Migration {
        version: 11,
        name: "0011_roles_and_disabling.sql",
        sql: include_str!("../../sql/0011_roles_and_disabling.sql"),
    },
    Migration {
        version: 12,
        name: "0012_audit_events.sql",
        sql: include_str!("../../sql/0012_audit_events.sql"),
    },
    Migration {
        version: 13,
        name: "0013_profiles.sql",
        sql: include_str!("../../sql/0013_profiles.sql"),
    },
    Migration {
        version: 14,
        name: "0014_mail_request_actor.sql",
        sql: include_str!("../../sql/0014_mail_request_actor.sql"),
    },
    Migration {
        version: 15,
        name: "0015_two_factor.sql",
        sql: include_str!("../../sql/0015_two_factor.sql"),
    },
];

/// ER_TABLE_EXISTS_ERROR, ER_DUP_FIELDNAME, ER_DUP_KEYNAME: what a DDL
/// statement that already ran answers when it runs again.
const ALREADY_APPLIED: [u16; 3] = [1050, 1060, 1061];

/// Seconds to wait for the lease while another instance holds it without
/// renewing (a holder that renews is waited for as long as it migrates).
const LOCK_WAIT_SECONDS: u64 = 60;
/// Seconds a lease lasts unless renewed.
const LEASE_SECONDS: u64 = 60;

/// Why migrating failed.
#[derive(Debug)]
pub enum MigrateError {
    /// The database failed or refused a statement.
    Database(mysql::Error),
    /// Another instance held the migration lock for too long.
    LockTimeout,
    /// An applied migration's file changed since.
    Changed(&'static str),
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Database(e) => write!(f, "migration failed: {e}"),
            MigrateError::LockTimeout => write!(
                f,
                "another instance held the migration lease for {LOCK_WAIT_SECONDS} s without progress"
            ),
            MigrateError::Changed(name) => write!(
                f,
                "sql/{name} changed after it was applied to this database; \
                 restore it and put schema changes in a new migration file"
            ),
        }
    }
}

impl std::error::Error for MigrateError {}

impl From<mysql::Error> for MigrateError {
    fn from(e: mysql::Error) -> Self {
        MigrateError::Database(e)
    }
}

/// Applies the pending migrations on `conn` and returns the names applied,
/// holding the migration lease as `holder` (unique per process) meanwhile.
pub fn run(conn: &mut Conn, holder: &str) -> Result<Vec<&'static str>, MigrateError> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_lock (
            id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
            holder VARCHAR(64) NOT NULL,
            expires_at BIGINT UNSIGNED NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin",
    )?;
    take_lease(conn, holder)?;
    let result = apply_pending(conn, holder);
    // Also expires by itself, should this fail.
    let _ = conn.exec_drop(
        "DELETE FROM schema_lock WHERE id = 1 AND holder = :holder",
        params! { "holder" => holder },
    );
    result
}

/// Takes the lease, waiting while someone else holds it and renews it:
/// `LockTimeout` after [`LOCK_WAIT_SECONDS`] without the holder renewing.
fn take_lease(conn: &mut Conn, holder: &str) -> Result<(), MigrateError> {
    let mut last_seen: Option<(String, u64)> = None;
    let mut waiting_since = Instant::now();
    loop {
        let now = crate::time::unix_now();
        // Assignments apply left to right: `holder` changes only if the
        // lease expired, then `expires_at` follows whoever holds it now.
        let claimed = conn.exec_drop(
            "INSERT INTO schema_lock (id, holder, expires_at) VALUES (1, :holder, :expires)
             ON DUPLICATE KEY UPDATE
               holder = IF(expires_at <= :now, :holder, holder),
               expires_at = IF(holder = :holder, :expires, expires_at)",
            params! { "holder" => holder, "expires" => now + LEASE_SECONDS, "now" => now },
        );
        match claimed {
            // Two nodes claiming at once: one loses certification; ask again.
            Err(e) if super::failure::kind(&e) == super::failure::Kind::Conflict => {}
            other => other?,
        }
        let current: Option<(String, u64)> =
            conn.query_first("SELECT holder, expires_at FROM schema_lock WHERE id = 1")?;
        match current {
            Some((who, _)) if who == holder => return Ok(()),
            // A renewal by the holder is progress: keep waiting.
            seen if seen != last_seen => {
                last_seen = seen;
                waiting_since = Instant::now();
            }
            _ => {}
        }
        if waiting_since.elapsed() > Duration::from_secs(LOCK_WAIT_SECONDS) {
            return Err(MigrateError::LockTimeout);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Extends the lease of `holder`, after each statement it applied.
fn renew_lease(conn: &mut Conn, holder: &str) -> Result<(), MigrateError> {
    conn.exec_drop(
        "UPDATE schema_lock SET expires_at = :expires WHERE id = 1 AND holder = :holder",
        params! { "expires" => crate::time::unix_now() + LEASE_SECONDS, "holder" => holder },
    )?;
    Ok(())
}

fn apply_pending(conn: &mut Conn, holder: &str) -> Result<Vec<&'static str>, MigrateError> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INT UNSIGNED NOT NULL PRIMARY KEY,
            name VARCHAR(255) NOT NULL,
            checksum CHAR(64) NOT NULL,
            applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    )?;
    let applied: Vec<(u32, String)> =
        conn.query("SELECT version, checksum FROM schema_migrations ORDER BY version")?;
    let mut done = Vec::new();
    for migration in MIGRATIONS {
        let checksum = sha256_hex(migration.sql);
        match applied.iter().find(|(v, _)| *v == migration.version) {
            Some((_, recorded)) if *recorded == checksum => continue,
            Some(_) => return Err(MigrateError::Changed(migration.name)),
            None => {}
        }
        for statement in statements(migration.sql) {
            match conn.query_drop(&statement) {
                Err(mysql::Error::MySqlError(e)) if ALREADY_APPLIED.contains(&e.code) => {}
                other => other?,
            }
            renew_lease(conn, holder)?;
        }
        conn.exec_drop(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (:version, :name, :checksum)",
            params! { "version" => migration.version, "name" => migration.name, "checksum" => &checksum },
        )?;
        done.push(migration.name);
    }
    Ok(done)
}

/// The statements of a migration file: text up to each `;` that ends a line,
/// with `--` comment lines removed.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_string());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_sql_is_embedded_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, embedded);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{} out of sequence", m.name);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }

    #[test]
    fn splits_statements_and_drops_comments() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE a (\n  x INT\n);\nINSERT INTO a VALUES (1);\n";
        assert_eq!(
            statements(sql),
            ["CREATE TABLE a (\n  x INT\n)", "INSERT INTO a VALUES (1)"]
        );
    }
}
