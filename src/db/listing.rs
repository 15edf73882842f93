//! The admin API's view of accounts: one account with its state (role,
//! disabling, lockout, live sessions, last login), and pages of accounts.
//!
//! Pages are keyset pages on the id, newest first, so accounts created
//! while an admin pages shift nothing. A filter that no index serves looks
//! at one window of ids per page ([`SCAN_WINDOW`]) and says where it
//! stopped, so no page reads the whole table however rare its matches
//! (measured in `docs/benchmarks.md`, at a million accounts).

use super::users::{USER_COLUMNS, take};
use super::{Db, DbError, Role, User};
use mysql::prelude::{FromRow, Queryable};
use mysql::{FromRowError, Row, params};

/// An account as the admin API shows it: the [`User`] and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser {
    /// The account.
    pub user: User,
    /// Why it was disabled, as the operator said (if they did).
    pub disabled_reason: Option<String>,
    /// Wrong passwords in the current lockout window (0 if none).
    pub failures: u32,
    /// Unix seconds when that window began (0 if none).
    pub window_start: u64,
    /// Sessions that have not ended.
    pub live_sessions: u64,
    /// Unix seconds of the last login, if any since migration 0011.
    pub last_login_at: Option<u64>,
    /// The client address of that login.
    pub last_login_ip: Option<String>,
}

/// The columns an [`AdminUser`] is read from; the query binds `:now`.
const ADMIN_COLUMNS: &str = "u.disabled_reason, u.last_login_at, u.last_login_ip,
     f.failures, f.window_start,
     (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at > :now)
       AS live_sessions";

/// The tables an [`AdminUser`] is read from.
const ADMIN_FROM: &str = "users u LEFT JOIN login_failures f ON f.user_id = u.id";

impl FromRow for AdminUser {
    fn from_row_opt(mut row: Row) -> Result<Self, FromRowError> {
        let disabled_reason = take(&mut row, "disabled_reason")?;
        let last_login_at = take(&mut row, "last_login_at")?;
        let last_login_ip = take(&mut row, "last_login_ip")?;
        let failures: Option<u32> = take(&mut row, "failures")?;
        let window_start: Option<u64> = take(&mut row, "window_start")?;
        let live_sessions = take(&mut row, "live_sessions")?;
        Ok(AdminUser {
            user: User::from_row_opt(row)?,
            disabled_reason,
            failures: failures.unwrap_or(0),
            window_start: window_start.unwrap_or(0),
            live_sessions,
            last_login_at,
            last_login_ip,
        })
    }
}

/// Which accounts a listing returns: every given filter must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Part of the email, matched literally (no wildcards).
    pub query: Option<String>,
    /// Only accounts with this role.
    pub role: Option<Role>,
    /// Only disabled (`true`) or enabled (`false`) accounts.
    pub disabled: Option<bool>,
    /// Only verified (`true`) or unverified (`false`) accounts.
    pub verified: Option<bool>,
    /// Only accounts with a smaller id: the previous page's cursor.
    pub before_id: Option<u64>,
}

/// Ids one filtered page looks at, at most: about 15 ms of scanning here.
pub const SCAN_WINDOW: u64 = 20_000;

/// A page of [`Db::list_users`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The accounts found, newest first.
    pub users: Vec<AdminUser>,
    /// For a windowed filter, the lowest id the window covered, if accounts
    /// with lower ids remain to be looked at; `None` otherwise.
    pub scanned_to: Option<u64>,
}

impl Db {
    /// True if an account has this id: one primary-key lookup.
    pub fn user_exists(&self, user_id: u64) -> Result<bool, DbError> {
        let found: Option<u8> = self.run(|conn| {
            conn.exec_first(
                "SELECT 1 FROM users WHERE id = :id",
                params! { "id" => user_id },
            )
        })?;
        Ok(found.is_some())
    }

    /// The account with its state, as the admin API shows it.
    pub fn admin_user(&self, user_id: u64, now: u64) -> Result<Option<AdminUser>, DbError> {
        self.run(|conn| {
            conn.exec_first(
                format!(
                    "SELECT {USER_COLUMNS}, {ADMIN_COLUMNS} FROM {ADMIN_FROM} WHERE u.id = :id"
                ),
                params! { "id" => user_id, "now" => now },
            )
        })
    }

    /// Up to `limit` accounts that pass `filter`, newest (highest id) first.
    ///
    /// A filter no index serves (`query`, `disabled`, `verified`) looks at
    /// one window of at most [`SCAN_WINDOW`] ids below the cursor, so that
    /// no page costs more than that however rare the matches (a substring
    /// that matches nothing would otherwise read every account: 0.7 s at a
    /// million here). [`Listing::scanned_to`] then says where the window
    /// ended, for the next page to go on from there.
    pub fn list_users(
        &self,
        filter: &UserFilter,
        limit: u32,
        now: u64,
    ) -> Result<Listing, DbError> {
        // Each condition is a fixed string; only the values are bound.
        let mut conditions = vec!["1 = 1"];
        let mut values: Vec<(String, mysql::Value)> =
            vec![("now".into(), now.into()), ("limit".into(), limit.into())];
        let windowed =
            filter.query.is_some() || filter.disabled.is_some() || filter.verified.is_some();
        let mut scanned_to = None;
        if windowed {
            let before = match filter.before_id {
                Some(before) => before,
                None => {
                    let top: Option<u64> = self.run(|conn| {
                        conn.query_first("SELECT COALESCE(MAX(id), 0) + 1 FROM users")
                    })?;
                    top.unwrap_or(1)
                }
            };
            let floor = before.saturating_sub(SCAN_WINDOW);
            conditions.push("u.id < :before AND u.id >= :floor");
            values.push(("before".into(), before.into()));
            values.push(("floor".into(), floor.into()));
            // Ids start at 1: a window down to 1 or 0 leaves nothing below.
            scanned_to = (floor > 1).then_some(floor);
        } else if let Some(before) = filter.before_id {
            conditions.push("u.id < :before");
            values.push(("before".into(), before.into()));
        }
        if let Some(query) = &filter.query {
            conditions.push("u.email LIKE :pattern ESCAPE '!'");
            values.push(("pattern".into(), like_pattern(query).into()));
        }
        if let Some(role) = filter.role {
            conditions.push("u.role = :role");
            values.push(("role".into(), role.as_str().into()));
        }
        match filter.disabled {
            Some(true) => conditions.push("u.disabled_at IS NOT NULL"),
            Some(false) => conditions.push("u.disabled_at IS NULL"),
            None => {}
        }
        match filter.verified {
            Some(true) => conditions.push("u.email_verified_at IS NOT NULL"),
            Some(false) => conditions.push("u.email_verified_at IS NULL"),
            None => {}
        }
        let sql = format!(
            "SELECT {USER_COLUMNS}, {ADMIN_COLUMNS} FROM {ADMIN_FROM}
             WHERE {} ORDER BY u.id DESC LIMIT :limit",
            conditions.join(" AND ")
        );
        let users = self.run(|conn| conn.exec(&sql, mysql::Params::from(values.clone())))?;
        Ok(Listing { users, scanned_to })
    }
}

/// A `LIKE` pattern matching `text` anywhere, its `%`, `_` and `!` escaped
/// with `!` (the statement's `ESCAPE '!'`: a backslash means different
/// things under MySQL's and MariaDB's `NO_BACKSLASH_ESCAPES`).
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_the_text_literally() {
        assert_eq!(like_pattern("bob"), "%bob%");
        assert_eq!(like_pattern("a_b%c!d"), "%a!_b!%c!!d%");
        assert_eq!(like_pattern(""), "%%");
    }
}
