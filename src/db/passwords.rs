//! New passwords and password resets: changing a hash and ending what the
//! old password opened, and using a reset token. (Reset tokens are created
//! by the mail worker, in `mail.rs`, together with their message.)
//!
//! Both ways to a new password lock the account's row first, so they are
//! ordered against the mail worker creating a reset token for the same
//! account: a token is either created before the new password (and voided
//! by it) or requested after it.

use super::audit::{self, Event};
use super::mail::{self, Mail};
use super::users::USER_COLUMNS;
use super::{Db, DbError, User};
use crate::audit::kind;
use mysql::params;
use mysql::prelude::Queryable;

/// A live password reset, found by its token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// The account to reset.
    pub user: User,
}

impl Db {
    /// Sets a new password hash, if the current one is still `verified_hash`,
    /// and ends what the old password opened (see
    /// `end_everything_after_new_password`), with the notice `notice` writes
    /// for the account's address, in one transaction. `Some` with the number
    /// of sessions ended, or `None` if the hash had changed meanwhile
    /// (nothing written).
    pub fn change_password(
        &self,
        user_id: u64,
        verified_hash: &str,
        new_hash: &str,
        now: u64,
        notice: &dyn Fn(&str) -> Mail,
    ) -> Result<Option<u64>, DbError> {
        self.transaction(|tx| {
            let (key, email) = lock_account(tx, user_id)?;
            tx.exec_drop(
                "UPDATE users SET password_hash = :new_hash, password_unpeppered = 0,
                   updated_at = :now
                 WHERE id = :id AND password_hash = :old_hash",
                params! { "new_hash" => new_hash, "now" => now, "id" => user_id, "old_hash" => verified_hash },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(None);
            }
            let ended = end_everything_after_new_password(tx, user_id, key.as_deref())?;
            let message = notice(&email);
            mail::queue(tx, Some(user_id), mail::notice::PASSWORD_CHANGED, &message, now)?;
            let event = Event::of(kind::PASSWORD_CHANGED, user_id, now)
                .with(serde_json::json!({ "sessions_ended": ended }));
            audit::record(tx, &event)?;
            Ok(Some(ended))
        })
    }

    /// The account of an unused, unexpired reset token, by the token's hash.
    pub fn find_reset(&self, token_hash: &[u8; 32], now: u64) -> Result<Option<Reset>, DbError> {
        let user: Option<User> = self.run(|conn| {
            conn.exec_first(
                format!(
                    "SELECT {USER_COLUMNS}
                     FROM password_resets r JOIN users u ON u.id = r.user_id
                     WHERE r.token_hash = :hash AND r.used_at IS NULL AND r.expires_at > :now"
                ),
                params! { "hash" => &token_hash[..], "now" => now },
            )
        })?;
        Ok(user.map(|user| Reset { user }))
    }

    /// Completes a reset in one transaction: locks the account, marks the
    /// token used (only if it still is unused and unexpired, so it works
    /// once even under concurrent use), sets the new hash and ends what the
    /// old password opened (see `end_everything_after_new_password`).
    /// The link went to the account's address (a move to another voids
    /// it), so using it also proves the address, as a verification link
    /// would. The notice `notice` writes goes to the account's address in the same
    /// transaction. `Some` with the number of sessions ended, `None` if the
    /// token was used or voided meanwhile.
    pub fn complete_reset(
        &self,
        token_hash: &[u8; 32],
        user_id: u64,
        new_hash: &str,
        now: u64,
        notice: &dyn Fn(&str) -> Mail,
    ) -> Result<Option<u64>, DbError> {
        self.transaction(|tx| {
            let (key, email) = lock_account(tx, user_id)?;
            tx.exec_drop(
                "UPDATE password_resets SET used_at = :now
                 WHERE token_hash = :hash AND user_id = :uid AND used_at IS NULL AND expires_at > :now",
                params! { "now" => now, "hash" => &token_hash[..], "uid" => user_id },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(None);
            }
            tx.exec_drop(
                "UPDATE users SET password_hash = :hash, password_unpeppered = 0, updated_at = :now,
                   email_verified_at = COALESCE(email_verified_at, :now)
                 WHERE id = :uid",
                params! { "hash" => new_hash, "now" => now, "uid" => user_id },
            )?;
            let ended = end_everything_after_new_password(tx, user_id, key.as_deref())?;
            let message = notice(&email);
            mail::queue(tx, Some(user_id), mail::notice::PASSWORD_RESET, &message, now)?;
            let event = Event::of(kind::PASSWORD_RESET, user_id, now)
                .with(serde_json::json!({ "sessions_ended": ended }));
            audit::record(tx, &event)?;
            Ok(Some(ended))
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
}

/// Locks the account's row for the rest of the transaction; its mailbox
/// key (if it has one) and its address.
fn lock_account(
    tx: &mut mysql::Transaction<'_>,
    user_id: u64,
) -> mysql::Result<(Option<Vec<u8>>, String)> {
    let row: Option<(Option<Vec<u8>>, String)> = tx.exec_first(
        "SELECT email_key, email FROM users WHERE id = :uid FOR UPDATE",
        params! { "uid" => user_id },
    )?;
    Ok(row.unwrap_or((None, String::new())))
}

/// Within a transaction that just set a new password: ends every session,
/// voids every reset token, pending reset request and pending move to a new
/// address (a link mailed before must not undo the change, and a move asked
/// for with the old password must not go ahead) and clears the login
/// lockout. Returns the
/// number of sessions ended.
fn end_everything_after_new_password(
    tx: &mut mysql::Transaction<'_>,
    user_id: u64,
    email_key: Option<&[u8]>,
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
        "DELETE FROM email_tokens WHERE user_id = :uid AND purpose = 'change'",
        params! { "uid" => user_id },
    )?;
    tx.exec_drop(
        "DELETE FROM login_failures WHERE user_id = :uid",
        params! { "uid" => user_id },
    )?;
    if let Some(key) = email_key {
        super::mail::forget_requests(tx, key)?;
    }
    Ok(ended)
}
