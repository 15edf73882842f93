//! Login sessions: the rows that make tokens live.

use super::users::USER_COLUMNS;
use super::{Db, DbError, Guarded, User};
use mysql::params;
use mysql::prelude::Queryable;

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

impl Db {
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

    /// The account a live session belongs to: the session exists, belongs to
    /// `user_id` and has not expired. One primary-key lookup.
    pub fn session_user(
        &self,
        session_id: &[u8; 16],
        user_id: u64,
        now: u64,
    ) -> Result<Option<User>, DbError> {
        self.run(|conn| {
            conn.exec_first(
                format!(
                    "SELECT {USER_COLUMNS}
                     FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.id = :sid AND s.user_id = :uid AND s.expires_at > :now"
                ),
                params! { "sid" => &session_id[..], "uid" => user_id, "now" => now },
            )
        })
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
