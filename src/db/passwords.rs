//! New passwords and password resets: changing a hash and ending what the
//! old password opened, and using a reset token. (Reset tokens are created
//! by the mail worker, in `mail.rs`, together with their message.)
//!
//! Both ways to a new password lock the account's row first, so they are
//! ordered against the mail worker creating a reset token for the same
//! account: a token is either created before the new password (and voided
//! by it) or requested after it.

use super::{Db, DbError, User};
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
        self.transaction(|tx| {
            let key = lock_account(tx, user_id)?;
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
            Ok(Some(ended))
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

    /// Completes a reset in one transaction: locks the account, marks the
    /// token used (only if it still is unused and unexpired, so it works
    /// once even under concurrent use), sets the new hash and ends what the
    /// old password opened (see `end_everything_after_new_password`).
    /// `Some` with the number of sessions ended, `None` if the token was
    /// used or voided meanwhile.
    pub fn complete_reset(
        &self,
        token_hash: &[u8; 32],
        user_id: u64,
        new_hash: &str,
        now: u64,
    ) -> Result<Option<u64>, DbError> {
        self.transaction(|tx| {
            let key = lock_account(tx, user_id)?;
            tx.exec_drop(
                "UPDATE password_resets SET used_at = :now
                 WHERE token_hash = :hash AND user_id = :uid AND used_at IS NULL AND expires_at > :now",
                params! { "now" => now, "hash" => &token_hash[..], "uid" => user_id },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(None);
            }
            tx.exec_drop(
                "UPDATE users SET password_hash = :hash, password_unpeppered = 0, updated_at = :now
                 WHERE id = :uid",
                params! { "hash" => new_hash, "now" => now, "uid" => user_id },
            )?;
            let ended = end_everything_after_new_password(tx, user_id, key.as_deref())?;
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
/// key, if it exists and has one.
fn lock_account(tx: &mut mysql::Transaction<'_>, user_id: u64) -> mysql::Result<Option<Vec<u8>>> {
    let key: Option<Option<Vec<u8>>> = tx.exec_first(
        "SELECT email_key FROM users WHERE id = :uid FOR UPDATE",
        params! { "uid" => user_id },
    )?;
    Ok(key.flatten())
}

/// Within a transaction that just set a new password: ends every session,
/// voids every reset token and pending reset request (a link mailed before
/// must not undo the change) and clears the login lockout. Returns the
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
        "DELETE FROM login_failures WHERE user_id = :uid",
        params! { "uid" => user_id },
    )?;
    if let Some(key) = email_key {
        super::mail::forget_requests(tx, key)?;
    }
    Ok(ended)
}
