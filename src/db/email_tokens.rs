//! Links that prove an address: the account's own (`verify`), or a new one
//! it is to move to (`change`). Only each token's SHA-256 is stored.
//!
//! Using a link is one conditional write (`used_at` set only if still unset
//! and unexpired), so it works once, whichever instance or node takes it.
//! A move to a new address happens only when its link is used, in one
//! transaction that locks the account, re-checks that the address is still
//! free (the unique key decides), ends every other link and reset of the
//! account, and queues the notice to the old address.

use super::audit::{self, Event};
use super::mail::{self, Mail, notice};
use super::users::{Change, Lock, Proof, lock_for_change, user_by_id, user_by_id_for_update};
use super::{Db, DbError, User};
use crate::audit::kind;
use crate::email::Address;
use mysql::params;
use mysql::prelude::Queryable;

/// A verification link about to be mailed at registration.
pub struct Verification<'a> {
    /// SHA-256 of the link's token.
    pub token_hash: &'a [u8; 32],
    /// Unix seconds when it stops working.
    pub expires_at: u64,
    /// The message carrying it.
    pub mail: &'a Mail,
}

/// A move to a new address, about to be asked for.
pub struct EmailChangeRequest<'a> {
    /// The new address.
    pub address: &'a Address,
    /// SHA-256 of the confirmation link's token.
    pub token_hash: &'a [u8; 32],
    /// Unix seconds when the link stops working.
    pub expires_at: u64,
    /// The message with the link, to the new address.
    pub link_mail: &'a Mail,
    /// Writes the notice to the account's current address (the argument).
    pub notice: &'a dyn Fn(&str) -> Mail,
    /// With `HIDE_ACCOUNT_EXISTENCE`: a taken address is answered like a
    /// free one, and this notice goes to its owner instead of the link.
    pub hide_taken: Option<&'a Mail>,
}

/// What using a confirmation link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// The account moved; as it is now, with its old address.
    Moved {
        /// The account after the move.
        user: User,
        /// The address it had.
        old_email: String,
    },
    /// Unknown, used, expired or superseded.
    Invalid,
    /// Another account took the address meanwhile.
    Taken,
}

impl Db {
    /// Proves the address of the account whose verification link has
    /// `token_hash`: uses the token up and sets `email_verified_at`, and
    /// changes nothing else. `None` for an unknown, used or expired token.
    pub fn verify_email(&self, token_hash: &[u8; 32], now: u64) -> Result<Option<User>, DbError> {
        self.transaction(|tx| {
            // Reads, then writes (see `tx.rs`).
            let found: Option<u64> = tx.exec_first(
                "SELECT user_id FROM email_tokens
                 WHERE token_hash = :hash AND purpose = 'verify' AND used_at IS NULL
                   AND expires_at > :now",
                params! { "hash" => &token_hash[..], "now" => now },
            )?;
            let Some(user_id) = found else {
                return Ok(None);
            };
            let Some(user) = user_by_id(tx, user_id)? else {
                return Ok(None);
            };
            if !use_token(tx, token_hash, "verify", now)? {
                return Ok(None);
            }
            tx.exec_drop(
                "UPDATE users SET email_verified_at = COALESCE(email_verified_at, :now)
                 WHERE id = :uid",
                params! { "now" => now, "uid" => user_id },
            )?;
            audit::record(tx, &Event::of(kind::EMAIL_VERIFIED, user_id, now))?;
            Ok(Some(User {
                email_verified_at: user.email_verified_at.or(Some(now)),
                ..user
            }))
        })
    }

    /// Asks for a move to a new address, if `proof` still holds: replaces
    /// the account's older pending moves with this one, and queues the link
    /// to the new address and the notice to the old, in one transaction.
    /// `Taken` if the address has an account (unless `hide_taken`).
    pub fn request_email_change(
        &self,
        proof: &Proof<'_>,
        request: &EmailChangeRequest<'_>,
        now: u64,
    ) -> Result<Change<()>, DbError> {
        self.transaction(|tx| {
            let email = match lock_for_change(tx, proof)? {
                Lock::Held { email, .. } => email,
                Lock::Revoked => return Ok(Change::Revoked),
                Lock::PasswordChanged => return Ok(Change::PasswordChanged),
            };
            let taken: Option<u8> = tx.exec_first(
                "SELECT 1 FROM users WHERE email_key = :key",
                params! { "key" => &request.address.key[..] },
            )?;
            let user_id = Some(proof.user_id);
            match (taken, request.hide_taken) {
                (Some(_), None) => return Ok(Change::Taken),
                (Some(_), Some(owner_notice)) => {
                    mail::queue(tx, None, notice::ADDRESS_IN_USE, owner_notice, now)?;
                }
                (None, _) => {
                    tx.exec_drop(
                        "DELETE FROM email_tokens WHERE user_id = :uid AND purpose = 'change'",
                        params! { "uid" => proof.user_id },
                    )?;
                    tx.exec_drop(
                        "INSERT INTO email_tokens
                           (token_hash, user_id, purpose, new_email, new_email_key, created_at, expires_at)
                         VALUES (:hash, :uid, 'change', :email, :key, :now, :expires)",
                        params! {
                            "hash" => &request.token_hash[..], "uid" => proof.user_id,
                            "email" => &request.address.email, "key" => &request.address.key[..],
                            "now" => now, "expires" => request.expires_at,
                        },
                    )?;
                    mail::queue(tx, user_id, mail::CONFIRM_EMAIL_CHANGE, request.link_mail, now)?;
                }
            }
            let old_notice = (request.notice)(&email);
            mail::queue(tx, user_id, notice::EMAIL_CHANGE_REQUESTED, &old_notice, now)?;
            let detail = serde_json::json!({ "new_email": request.address.email });
            let event = Event::of(kind::EMAIL_CHANGE_REQUESTED, proof.user_id, now);
            audit::record(tx, &event.with(detail))?;
            Ok(Change::Done(()))
        })
    }

    /// Moves the account whose confirmation link has `token_hash` to the
    /// link's address (see the module docs); `notice` writes the message to
    /// the old address, given the old and the new.
    pub fn confirm_email_change(
        &self,
        token_hash: &[u8; 32],
        now: u64,
        notice: &dyn Fn(&str, &str) -> Mail,
    ) -> Result<Confirmed, DbError> {
        self.transaction(|tx| {
            let pending: Option<(u64, String, Vec<u8>)> = tx.exec_first(
                "SELECT user_id, new_email, new_email_key FROM email_tokens
                 WHERE token_hash = :hash AND purpose = 'change' AND used_at IS NULL
                   AND expires_at > :now",
                params! { "hash" => &token_hash[..], "now" => now },
            )?;
            let Some((user_id, new_email, new_key)) = pending else {
                return Ok(Confirmed::Invalid);
            };
            // Everything is read before the first write (see `tx.rs`).
            let Some(user) = user_by_id_for_update(tx, user_id)? else {
                return Ok(Confirmed::Invalid);
            };
            let old_key: Option<Vec<u8>> = tx.exec_first(
                "SELECT email_key FROM users WHERE id = :uid",
                params! { "uid" => user_id },
            )?
            .flatten();
            let old_email = user.email.clone();
            if !use_token(tx, token_hash, "change", now)? {
                return Ok(Confirmed::Invalid);
            }
            let moved = tx.exec_drop(
                "UPDATE users SET email = :email, email_key = :key, email_verified_at = :now,
                   updated_at = :now
                 WHERE id = :uid",
                params! { "email" => &new_email, "key" => &new_key, "now" => now, "uid" => user_id },
            );
            match moved {
                Ok(()) => {}
                Err(e) if super::failure::is_duplicate(&e) => return Ok(Confirmed::Taken),
                Err(e) => return Err(e),
            }
            // What was mailed for the account before now must not act on it.
            for statement in [
                "DELETE FROM email_tokens WHERE user_id = :uid AND token_hash <> :hash",
                "DELETE FROM password_resets WHERE user_id = :uid",
            ] {
                tx.exec_drop(statement, params! { "uid" => user_id, "hash" => &token_hash[..] })?;
            }
            if let Some(key) = old_key {
                mail::forget_requests(tx, &key)?;
            }
            let message = notice(&old_email, &new_email);
            mail::queue(tx, Some(user_id), notice::EMAIL_CHANGED, &message, now)?;
            let detail = serde_json::json!({ "old_email": old_email, "new_email": new_email });
            audit::record(tx, &Event::of(kind::EMAIL_CHANGED, user_id, now).with(detail))?;
            let user = User {
                email: new_email,
                email_verified_at: Some(now),
                ..user
            };
            Ok(Confirmed::Moved { user, old_email })
        })
    }

    /// Deletes up to `batch` expired email tokens; returns how many.
    pub fn purge_expired_email_tokens(&self, now: u64, batch: u32) -> Result<u64, DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM email_tokens WHERE expires_at <= :now LIMIT :batch",
                params! { "now" => now, "batch" => batch },
            )?;
            Ok(conn.affected_rows())
        })
    }
}

/// The hashes of the account's verification links, read before a new one
/// replaces them ([`replace_verify_token`]; reads come before writes, see
/// `tx.rs`).
pub(super) fn verify_tokens_of(
    tx: &mut mysql::Transaction<'_>,
    user_id: u64,
) -> mysql::Result<Vec<Vec<u8>>> {
    tx.exec(
        "SELECT token_hash FROM email_tokens WHERE user_id = :uid AND purpose = 'verify'",
        params! { "uid" => user_id },
    )
}

/// Inside a transaction that holds the account's row: a new verification
/// link replaces the account's older ones, `older` as
/// [`verify_tokens_of`] read them.
///
/// The older ones are deleted by primary key. A `DELETE ... WHERE user_id
/// = ?` on the secondary index would take a gap lock even when it finds
/// nothing, as for every new account, and two registrations inserting into
/// neighbouring gaps then deadlock each other (measured: conflicts that
/// outlasted every rerun, answered 503).
pub(super) fn replace_verify_token(
    tx: &mut mysql::Transaction<'_>,
    user_id: u64,
    older: &[Vec<u8>],
    token_hash: &[u8; 32],
    now: u64,
    expires_at: u64,
) -> mysql::Result<()> {
    for hash in older {
        tx.exec_drop(
            "DELETE FROM email_tokens WHERE token_hash = :hash",
            params! { "hash" => hash },
        )?;
    }
    tx.exec_drop(
        "INSERT INTO email_tokens (token_hash, user_id, purpose, created_at, expires_at)
         VALUES (:hash, :uid, 'verify', :now, :expires)",
        params! { "hash" => &token_hash[..], "uid" => user_id, "now" => now, "expires" => expires_at },
    )
}

/// Uses up the unused, unexpired token of `purpose` with `token_hash`, by
/// a write conditioned on its still being so; false if it no longer was.
fn use_token(
    tx: &mut mysql::Transaction<'_>,
    token_hash: &[u8; 32],
    purpose: &str,
    now: u64,
) -> mysql::Result<bool> {
    tx.exec_drop(
        "UPDATE email_tokens SET used_at = :now
         WHERE token_hash = :hash AND purpose = :purpose AND used_at IS NULL AND expires_at > :now",
        params! { "hash" => &token_hash[..], "purpose" => purpose, "now" => now },
    )?;
    Ok(tx.affected_rows() == 1)
}
