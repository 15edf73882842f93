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
//! | `audit.rs` | the audit log: an event in its change's transaction, listings, retention |
//! | `admin.rs` | what operators do: the first admin, roles, disabling, the last-admin rule |
//! | `invitations.rs` | accounts an admin creates, with a password or an invitation |
//! | `listing.rs` | the admin API's view of accounts: one with its state, and pages of them |
//! | `profiles.rs` | writing profiles: by the owner, and inside an admin's change |
//! | `passwords.rs` | new passwords and using reset tokens |
//! | `mfa.rs` | the second factor: sealed TOTP secrets, recovery codes, logins waiting for a code |
//! | `mail.rs` | mail requests, reset tokens with their message, queueing any message |
//! | `email_tokens.rs` | links that verify an address or confirm a move to a new one |
//! | `outbox.rs` | the courier's claims on outbox rows and their outcome |
//! | `sessions.rs` | login sessions |
//! | `lockout.rs` | failure counts of the brute-force lockout |
//! | `tx.rs` | *shared:* transactions, and rerunning them after a conflict |
//! | `failure.rs` | *shared:* what each database error means (retry, 503, 500) |
//! | `pool.rs` | the bounded connection pool |
//! | `hosts.rs` | several hosts in `DATABASE_URL`, preferring the first ready one |
//! | `node.rs` | each new connection's limits, readiness check and causal reads |
//! | `migrate.rs` | schema migrations |

mod admin;
mod audit;
mod email_tokens;
mod failure;
mod hosts;
mod invitations;
mod listing;
mod lockout;
mod mail;
mod mfa;
mod migrate;
mod node;
mod outbox;
mod passwords;
mod pool;
mod profiles;
mod sessions;
mod tx;
mod users;

pub use failure::{DbError, StartupError};
pub use hosts::parse as parse_url;
pub use listing::{AdminUser, Listing, SCAN_WINDOW, UserFilter};
pub use node::CausalReads;

pub use admin::{Actor, AdminChange, AdminPatch, Bootstrap, Patched};
pub use audit::{AuditEvent, Event, EventFilter};
pub use email_tokens::{Confirmed, EmailChangeRequest, Verification};
pub use invitations::{Invitation, NewAccount};
pub use lockout::Attempt;
pub use mail::{
    CONFIRM_EMAIL_CHANGE, LinkPolicy, Mail, MailRequest, PASSWORD_RESET, Resolved, VERIFY_EMAIL,
    notice,
};
pub use mfa::{Challenge, Enrolment, Factor, MAX_CODE_FAILURES, SecondStep, Totp};
pub use migrate::{MIGRATIONS, MigrateError, Migration};
pub use outbox::{Backlog, Outgoing};
pub use passwords::Reset;
pub use pool::{PING_AFTER_IDLE, Pool, PoolError};
pub use sessions::{Presented, Refreshed, Session};
pub use users::{Change, Credentials, Guarded, Import, Proof, Role, User};

use crate::log;
use failure::codes;
use hosts::Hosts;
use mysql::prelude::Queryable;
use std::time::{Duration, Instant};

/// The database handle the handlers use.
pub struct Db {
    pool: Pool,
    /// Who this process is in the leases it takes (migrations, mail
    /// claims): the process id and random bytes, unique per process.
    holder: String,
}

impl Db {
    /// A handle over `url` (one host or several, see `hosts.rs`) with at
    /// most `pool_max` connections, each wait and network operation bounded
    /// by `timeout`, and reads as causal as `causal` says. Connects lazily.
    pub fn new(
        url: &str,
        pool_max: usize,
        timeout: Duration,
        causal: CausalReads,
    ) -> Result<Db, DbError> {
        let opts = hosts::parse(url).map_err(|e| DbError::Query(format!("DATABASE_URL {e}")))?;
        let random: [u8; 6] = crate::secret::bytes()
            .map_err(|_| DbError::Query("no OS randomness for the instance id".into()))?;
        Ok(Db {
            pool: Pool::new(Hosts::new(opts, timeout, causal), pool_max, timeout),
            holder: format!("{}-{}", std::process::id(), crate::secret::hex(&random)),
        })
    }

    /// This process's name in leases and claims (at most 64 characters).
    pub fn holder(&self) -> &str {
        &self.holder
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
        self.pool.with_node(|conn, server| {
            // DDL on a big table may take longer than a request's statements.
            node::limit(conn, server, None)?;
            let result = migrate::run(conn, &self.holder);
            node::limit(conn, server, Some(self.pool.timeout()))?;
            match result {
                // A broken connection or a node that is not ready goes up as
                // such: the pool drops the connection and start-up retries.
                Err(MigrateError::Database(e)) if failure::kind(&e) == failure::Kind::NotReady => {
                    Err(e)
                }
                other => Ok(other),
            }
        })
    }

    /// Connections checked out right now.
    pub fn connections_in_use(&self) -> usize {
        self.pool.in_use()
    }

    /// Succeeds when the database can serve: a trivial query round-trips
    /// and, on a Galera node, the node is synced, primary and ready (a node
    /// cut off from the cluster still answers `SELECT 1`). The health check.
    pub fn ping(&self) -> Result<(), DbError> {
        self.pool
            .with_node(|conn, server| {
                conn.query_drop("SELECT 1")?;
                if server.galera {
                    node::check_ready(conn)?;
                }
                Ok(())
            })
            .map_err(DbError::from)
    }
}
