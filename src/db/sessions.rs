//! Login sessions: the rows that make tokens live, and the rules of
//! refreshing them.
//!
//! A session ends at `expires_at`: the earlier of its last login or refresh
//! plus the idle limit, and its absolute end (`max_expires_at`, login plus
//! the maximum lifetime). Every access-token check and the purge compare
//! with `expires_at` alone; a refresh moves it forward, never past the
//! absolute end. Ending a session (logout, password change, reset, deletion)
//! deletes the row, which kills its access and refresh tokens together.
//!
//! # Refreshing
//!
//! A session has one live refresh token, of generation `refresh_generation`
//! (1 at login). [`Db::refresh_session`] reads the row and decides by
//! [`decide`]:
//!
//! - the current generation: **rotate**: count the generation up, restart
//!   the idle clock;
//! - the one before, within the reuse grace of the rotation that replaced
//!   it: **answer with the current tokens again**, writing nothing (two tabs,
//!   or a client retrying a refresh whose answer it lost);
//! - any older one: **reuse**: someone holds a token that was rotated away,
//!   so the session is ended at once (RFC 9700, section 4.14.2).
//!
//! A rotation is a write conditioned on the generation read, so of parallel
//! refreshes with one token exactly one rotates (on one server the others
//! wait for its row lock and then match nothing; on a Galera cluster the
//! losers fail certification and are rerun); the rest read the row again,
//! find the token one generation old and within the grace, and get the same
//! new pair: the session never has two live refresh tokens.

use super::audit::{self, Event};
use super::users::{USER_COLUMNS, take};
use super::{Db, DbError, Guarded, User};
use crate::audit::kind;
use crate::config::SessionPolicy;
use mysql::prelude::{FromRow, Queryable};
use mysql::{FromRowError, Row, params};
use serde_json::json;
use subtle::ConstantTimeEq;

/// A login session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random, 16 bytes; also carried in the session's tokens.
    pub id: [u8; 16],
    /// The account it belongs to.
    pub user_id: u64,
    /// Unix seconds: the login.
    pub created_at: u64,
    /// Unix seconds: when the session ends unless it is refreshed first.
    pub expires_at: u64,
    /// Unix seconds: when it ends however often it is refreshed.
    pub max_expires_at: u64,
    /// Random, 16 bytes, part of every refresh token of the session; `None`
    /// for sessions from before refresh tokens, which cannot be refreshed.
    pub refresh_nonce: Option<[u8; 16]>,
    /// The generation of the session's live refresh token.
    pub refresh_generation: u32,
    /// Unix seconds: the last refresh, `None` before the first.
    pub refreshed_at: Option<u64>,
    /// The client address as the server saw it at login.
    pub ip: String,
    /// The client's `User-Agent` at login, cut to 255 characters.
    pub user_agent: String,
    /// True if its login passed a second factor.
    pub mfa: bool,
}

impl Session {
    /// A new session for a login at `now` under `policy`, with its nonce.
    pub fn new(
        id: [u8; 16],
        nonce: [u8; 16],
        user_id: u64,
        now: u64,
        policy: &SessionPolicy,
        ip: String,
        user_agent: String,
    ) -> Session {
        let max_expires_at = now.saturating_add(policy.max);
        Session {
            id,
            user_id,
            created_at: now,
            expires_at: now.saturating_add(policy.idle).min(max_expires_at),
            max_expires_at,
            refresh_nonce: Some(nonce),
            refresh_generation: 1,
            refreshed_at: None,
            ip,
            user_agent,
            mfa: false,
        }
    }
}

/// The columns a [`Session`] is read from, on `sessions` aliased `s`.
const SESSION_COLUMNS: &str = "s.id AS session_id, s.user_id, s.created_at AS session_created_at, \
     s.expires_at, s.max_expires_at, s.refresh_nonce, s.refresh_generation, s.refreshed_at, \
     s.ip, s.user_agent, s.mfa";

impl FromRow for Session {
    fn from_row_opt(mut row: Row) -> Result<Self, FromRowError> {
        let id: Vec<u8> = take(&mut row, "session_id")?;
        let nonce: Option<Vec<u8>> = take(&mut row, "refresh_nonce")?;
        let bad = |row: &Row| FromRowError(row.clone());
        Ok(Session {
            id: id.try_into().map_err(|_| bad(&row))?,
            user_id: take(&mut row, "user_id")?,
            created_at: take(&mut row, "session_created_at")?,
            expires_at: take(&mut row, "expires_at")?,
            max_expires_at: take(&mut row, "max_expires_at")?,
            refresh_nonce: match nonce {
                None => None,
                Some(n) => Some(n.try_into().map_err(|_| bad(&row))?),
            },
            refresh_generation: take(&mut row, "refresh_generation")?,
            refreshed_at: take(&mut row, "refreshed_at")?,
            ip: take(&mut row, "ip")?,
            user_agent: take(&mut row, "user_agent")?,
            mfa: take(&mut row, "mfa")?,
        })
    }
}

/// Inside a transaction: records `session`, if the account's hash is still
/// `verified_hash` and the account is enabled, with its login's time,
/// address and `login_succeeded` event; false (nothing written) if not.
pub(super) fn insert_session(
    tx: &mut mysql::Transaction<'_>,
    session: &Session,
    verified_hash: &str,
) -> mysql::Result<bool> {
    tx.exec_drop(
        "INSERT INTO sessions (id, user_id, created_at, expires_at, max_expires_at,
           refresh_nonce, refresh_generation, ip, user_agent, mfa)
         SELECT :id, id, :created_at, :expires_at, :max_expires_at,
           :nonce, :generation, :ip, :user_agent, :mfa
         FROM users
         WHERE id = :user_id AND password_hash = :hash AND disabled_at IS NULL",
        params! {
            "id" => &session.id[..],
            "user_id" => session.user_id,
            "created_at" => session.created_at,
            "expires_at" => session.expires_at,
            "max_expires_at" => session.max_expires_at,
            "nonce" => session.refresh_nonce.map(|n| n.to_vec()),
            "generation" => session.refresh_generation,
            "ip" => &session.ip,
            "user_agent" => &session.user_agent,
            "mfa" => session.mfa,
            "hash" => verified_hash,
        },
    )?;
    if tx.affected_rows() != 1 {
        return Ok(false);
    }
    tx.exec_drop(
        "UPDATE users SET last_login_at = :at, last_login_ip = :ip WHERE id = :user_id",
        params! {
            "at" => session.created_at, "ip" => &session.ip, "user_id" => session.user_id,
        },
    )?;
    let detail = json!({ "session": crate::secret::hex(&session.id) });
    let event = Event::of(kind::LOGIN_SUCCEEDED, session.user_id, session.created_at);
    audit::record(tx, &event.with(detail))?;
    Ok(true)
}

/// A session's account, with whether the session passed a second factor.
struct SessionUser {
    user: User,
    mfa: bool,
}

impl FromRow for SessionUser {
    fn from_row_opt(mut row: Row) -> Result<Self, FromRowError> {
        let mfa = take(&mut row, "session_mfa")?;
        Ok(SessionUser {
            user: User::from_row_opt(row)?,
            mfa,
        })
    }
}

/// A refresh token's claims, once its MAC has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presented {
    /// The session it names.
    pub session_id: [u8; 16],
    /// Its generation.
    pub generation: u32,
    /// The nonce it carries.
    pub nonce: [u8; 16],
}

/// What a refresh came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// Rotated: the session as it is now, with the account.
    Rotated(Session, User),
    /// The previous token within the grace: the session unchanged, whose
    /// current tokens are to be given again.
    Current(Session, User),
    /// A token rotated away was presented: the session was ended.
    Reused {
        /// Whose session it was.
        user_id: u64,
    },
    /// No live session for it (ended, expired, from before refresh tokens,
    /// or not ours).
    Invalid,
}

/// What to do with a presented refresh token, given its session's row; the
/// rules of the module docs, kept apart from the SQL so they can be tested
/// on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Count the generation up.
    Rotate,
    /// Give the current tokens again.
    Current,
    /// End the session.
    Reused,
    /// Refuse.
    Invalid,
}

/// Decides per the module docs. The nonce is compared in constant time.
pub fn decide(session: &Session, presented: &Presented, now: u64, grace: u64) -> Decision {
    let Some(nonce) = session.refresh_nonce else {
        return Decision::Invalid;
    };
    let nonce_matches: bool = nonce.ct_eq(&presented.nonce).into();
    if !nonce_matches || session.expires_at <= now {
        return Decision::Invalid;
    }
    let current = session.refresh_generation;
    let rotated_at = session.refreshed_at.unwrap_or(session.created_at);
    match presented.generation {
        g if g == current => Decision::Rotate,
        g if g > current => Decision::Invalid,
        g if g + 1 == current && now < rotated_at.saturating_add(grace) => Decision::Current,
        _ => Decision::Reused,
    }
}

impl Db {
    /// Records a session for a login, but only if the account's hash is still
    /// `verified_hash` and it is not disabled: a login that raced a password
    /// change or a disabling must not leave a session they did not end. The
    /// account's last login (time and address) is stored with it.
    pub fn create_session(
        &self,
        session: &Session,
        verified_hash: &str,
    ) -> Result<Guarded, DbError> {
        self.transaction(|tx| {
            Ok(if insert_session(tx, session, verified_hash)? {
                Guarded::Done
            } else {
                Guarded::Stale
            })
        })
    }

    /// Refreshes the session `presented` names: see the module docs and
    /// `decide`. The row is read, then a rotation is one conditional
    /// write, which goes ahead only if the generation is still the one
    /// presented (and the session still live), so of parallel refreshes
    /// exactly one rotates; the others read the row again and decide anew.
    /// Two statements and one commit, where a transaction around a locked
    /// read would take four (measured in `docs/benchmarks.md`).
    pub fn refresh_session(
        &self,
        presented: &Presented,
        now: u64,
        policy: &SessionPolicy,
    ) -> Result<Refreshed, DbError> {
        self.run(|conn| {
            // Each lost race means another refresh rotated meanwhile, after
            // which the token is at best the previous one: the next round
            // decides Current or Reused and writes no rotation.
            for _ in 0..3 {
                let row: Option<Row> = conn.exec_first(
                    format!(
                        "SELECT {SESSION_COLUMNS}, {USER_COLUMNS}
                         FROM sessions s JOIN users u ON u.id = s.user_id
                         WHERE s.id = :sid"
                    ),
                    params! { "sid" => &presented.session_id[..] },
                )?;
                let Some(row) = row else {
                    return Ok(Refreshed::Invalid);
                };
                let session: Session = mysql::from_row_opt(row.clone())
                    .map_err(|e| mysql::Error::FromRowError(e.0))?;
                let user: User =
                    mysql::from_row_opt(row).map_err(|e| mysql::Error::FromRowError(e.0))?;
                match decide(&session, presented, now, policy.reuse_grace) {
                    Decision::Invalid => return Ok(Refreshed::Invalid),
                    Decision::Current => return Ok(Refreshed::Current(session, user)),
                    Decision::Reused => {
                        // Whatever happened since the read, the token stays
                        // a rotated-away one: the session ends, with its
                        // event, in one transaction.
                        let mut tx = conn.start_transaction(mysql::TxOpts::default())?;
                        tx.exec_drop(
                            "DELETE FROM sessions WHERE id = :sid",
                            params! { "sid" => &session.id[..] },
                        )?;
                        let detail = json!({
                            "session": crate::secret::hex(&session.id),
                            "generation": presented.generation,
                        });
                        let event = Event::of(kind::REFRESH_TOKEN_REUSED, session.user_id, now);
                        audit::record(&mut tx, &event.with(detail))?;
                        tx.commit()?;
                        return Ok(Refreshed::Reused {
                            user_id: session.user_id,
                        });
                    }
                    Decision::Rotate => {
                        let rotated = Session {
                            refresh_generation: session.refresh_generation + 1,
                            refreshed_at: Some(now),
                            expires_at: now.saturating_add(policy.idle).min(session.max_expires_at),
                            ..session
                        };
                        conn.exec_drop(
                            "UPDATE sessions SET refresh_generation = refresh_generation + 1,
                               refreshed_at = :now, expires_at = :expires_at
                             WHERE id = :sid AND refresh_generation = :presented
                               AND expires_at > :now",
                            params! {
                                "now" => now,
                                "expires_at" => rotated.expires_at,
                                "sid" => &rotated.id[..],
                                "presented" => presented.generation,
                            },
                        )?;
                        if conn.affected_rows() == 1 {
                            return Ok(Refreshed::Rotated(rotated, user));
                        }
                    }
                }
            }
            Ok(Refreshed::Invalid)
        })
    }

    /// The account a live session belongs to, and whether the session's
    /// login passed a second factor: the session exists, belongs to
    /// `user_id` and has not ended. One primary-key lookup.
    pub fn session_user(
        &self,
        session_id: &[u8; 16],
        user_id: u64,
        now: u64,
    ) -> Result<Option<(User, bool)>, DbError> {
        let found: Option<SessionUser> = self.run(|conn| {
            conn.exec_first(
                format!(
                    "SELECT {USER_COLUMNS}, s.mfa AS session_mfa
                     FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.id = :sid AND s.user_id = :uid AND s.expires_at > :now
                       AND u.disabled_at IS NULL"
                ),
                params! { "sid" => &session_id[..], "uid" => user_id, "now" => now },
            )
        })?;
        Ok(found.map(|f| (f.user, f.mfa)))
    }

    /// The account's live sessions, newest first.
    pub fn sessions(&self, user_id: u64, now: u64) -> Result<Vec<Session>, DbError> {
        self.run(|conn| {
            conn.exec(
                format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions s
                     WHERE s.user_id = :uid AND s.expires_at > :now
                     ORDER BY s.created_at DESC, s.id"
                ),
                params! { "uid" => user_id, "now" => now },
            )
        })
    }

    /// Ends one session of the account, with its `logout` event. False if
    /// it has no such session.
    pub fn end_session(
        &self,
        session_id: &[u8; 16],
        user_id: u64,
        now: u64,
    ) -> Result<bool, DbError> {
        self.transaction(|tx| {
            tx.exec_drop(
                "DELETE FROM sessions WHERE id = :sid AND user_id = :uid",
                params! { "sid" => &session_id[..], "uid" => user_id },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(false);
            }
            let detail = json!({ "session": crate::secret::hex(session_id) });
            audit::record(tx, &Event::of(kind::LOGOUT, user_id, now).with(detail))?;
            Ok(true)
        })
    }

    /// Ends every session of the account, with its `sessions_ended` event
    /// (`actor_id` the admin who did it, if one did); returns how many
    /// there were.
    pub fn end_all_sessions(
        &self,
        user_id: u64,
        now: u64,
        actor_id: Option<u64>,
    ) -> Result<u64, DbError> {
        self.transaction(|tx| {
            tx.exec_drop(
                "DELETE FROM sessions WHERE user_id = :uid",
                params! { "uid" => user_id },
            )?;
            let ended = tx.affected_rows();
            let event = Event::of(kind::SESSIONS_ENDED, user_id, now)
                .with(json!({ "sessions": ended }))
                .by(actor_id);
            audit::record(tx, &event)?;
            Ok(ended)
        })
    }

    /// Deletes up to `batch` sessions that ended before `now` (idle or at
    /// their absolute end); returns how many. Small batches keep each
    /// delete's locks short.
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

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: SessionPolicy = SessionPolicy {
        idle: 100,
        max: 1_000,
        reuse_grace: 10,
    };
    const NONCE: [u8; 16] = [7; 16];

    fn session() -> Session {
        Session::new([1; 16], NONCE, 5, 10_000, &POLICY, "ip".into(), "ua".into())
    }

    fn presented(generation: u32) -> Presented {
        Presented {
            session_id: [1; 16],
            generation,
            nonce: NONCE,
        }
    }

    #[test]
    fn a_new_session_ends_at_the_earlier_of_its_limits() {
        let s = session();
        assert_eq!((s.expires_at, s.max_expires_at), (10_100, 11_000));
        let short_max = SessionPolicy { max: 50, ..POLICY };
        let s = Session::new([1; 16], NONCE, 5, 10_000, &short_max, "".into(), "".into());
        assert_eq!((s.expires_at, s.max_expires_at), (10_050, 10_050));
        assert_eq!(s.refresh_generation, 1);
    }

    #[test]
    fn the_current_generation_rotates_until_the_session_ends() {
        let s = session();
        assert_eq!(decide(&s, &presented(1), 10_000, 10), Decision::Rotate);
        assert_eq!(decide(&s, &presented(1), 10_099, 10), Decision::Rotate);
        assert_eq!(decide(&s, &presented(1), 10_100, 10), Decision::Invalid);
    }

    #[test]
    fn the_previous_generation_is_answered_only_within_the_grace() {
        let s = Session {
            refresh_generation: 4,
            refreshed_at: Some(10_050),
            expires_at: 10_150,
            ..session()
        };
        assert_eq!(decide(&s, &presented(3), 10_050, 10), Decision::Current);
        assert_eq!(decide(&s, &presented(3), 10_059, 10), Decision::Current);
        assert_eq!(decide(&s, &presented(3), 10_060, 10), Decision::Reused);
        assert_eq!(decide(&s, &presented(2), 10_050, 10), Decision::Reused);
        assert_eq!(decide(&s, &presented(1), 10_050, 10), Decision::Reused);
        assert_eq!(decide(&s, &presented(3), 10_050, 0), Decision::Reused);
        assert_eq!(decide(&s, &presented(5), 10_050, 10), Decision::Invalid);
    }

    #[test]
    fn another_nonce_or_none_is_invalid_whatever_the_generation() {
        let s = session();
        let other = Presented {
            nonce: [8; 16],
            ..presented(1)
        };
        assert_eq!(decide(&s, &other, 10_000, 10), Decision::Invalid);
        let old = Session {
            refresh_nonce: None,
            refresh_generation: 0,
            ..session()
        };
        assert_eq!(decide(&old, &presented(0), 10_000, 10), Decision::Invalid);
    }
}
