//! New passwords and password resets: changing a hash and ending what the
//! old password opened, reset tokens, and the reset mail in the outbox.

use super::{Db, DbError, User};
use mysql::prelude::Queryable;
use mysql::{TxOpts, params};

/// A message for the mailer, written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The address it goes to.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

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
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(
                "UPDATE users SET password_hash = :new_hash, updated_at = :now
                 WHERE id = :id AND password_hash = :old_hash",
                params! { "new_hash" => new_hash, "now" => now, "id" => user_id, "old_hash" => verified_hash },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(None);
            }
            let ended = end_everything_after_new_password(&mut tx, user_id)?;
            tx.commit()?;
            Ok(Some(ended))
        })
    }

    /// Starts a password reset: replaces the account's earlier reset tokens
    /// (so only the newest works) with `token_hash`, valid until
    /// `expires_at`, and queues `mail`, in one transaction: there is never a
    /// token without its message, or a message without its token.
    pub fn start_reset(
        &self,
        user_id: u64,
        token_hash: &[u8; 32],
        now: u64,
        expires_at: u64,
        mail: &Mail,
    ) -> Result<(), DbError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop("DELETE FROM password_resets WHERE user_id = :uid", params! { "uid" => user_id })?;
            tx.exec_drop(
                "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at)
                 VALUES (:hash, :uid, :now, :expires)",
                params! { "hash" => &token_hash[..], "uid" => user_id, "now" => now, "expires" => expires_at },
            )?;
            tx.exec_drop(
                "INSERT INTO mail_outbox (recipient, subject, body, created_at)
                 VALUES (:recipient, :subject, :body, :now)",
                params! { "recipient" => &mail.recipient, "subject" => &mail.subject, "body" => &mail.body, "now" => now },
            )?;
            tx.commit()
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

    /// Completes a reset in one transaction: marks the token used (only if
    /// it still is unused and unexpired, so it works once even under
    /// concurrent use), sets the new hash and ends what the old password
    /// opened (see `end_everything_after_new_password`). `Some` with the number of sessions ended, `None` if the
    /// token was used meanwhile.
    pub fn complete_reset(
        &self,
        token_hash: &[u8; 32],
        user_id: u64,
        new_hash: &str,
        now: u64,
    ) -> Result<Option<u64>, DbError> {
        self.run(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            tx.exec_drop(
                "UPDATE password_resets SET used_at = :now
                 WHERE token_hash = :hash AND user_id = :uid AND used_at IS NULL AND expires_at > :now",
                params! { "now" => now, "hash" => &token_hash[..], "uid" => user_id },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(None);
            }
            tx.exec_drop(
                "UPDATE users SET password_hash = :hash, updated_at = :now WHERE id = :uid",
                params! { "hash" => new_hash, "now" => now, "uid" => user_id },
            )?;
            let ended = end_everything_after_new_password(&mut tx, user_id)?;
            tx.commit()?;
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

/// Within a transaction that just set a new password: ends every session,
/// voids every reset token (a link mailed before must not undo the change)
/// and clears the login lockout. Returns the number of sessions ended.
fn end_everything_after_new_password(
    tx: &mut mysql::Transaction<'_>,
    user_id: u64,
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
    Ok(ended)
}
