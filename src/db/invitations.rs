//! Accounts an operator creates (`POST /admin/users`): with a password the
//! admin chose, or with an invitation, a set-password link mailed to the
//! new address.
//!
//! An invitation is a password-reset token with a longer life
//! (`INVITE_TOKEN_TTL_SECONDS`), so the reset page and `POST /auth/reset`
//! set the first password exactly as they set a new one, and using the
//! link proves the address (`passwords.rs`). Until then the account holds
//! the Argon2 hash of a random secret nobody was told: a login for it is a
//! wrong password like any other, with no special case that could fail
//! differently or take a different time.
//!
//! The account, its token, its mail and its audit event are one
//! transaction: an invitation is mailed if and only if the account exists.

use super::admin::{Actor, AdminChange, still_admin};
use super::audit::{self, Event};
use super::failure::is_duplicate;
use super::mail::{self, INVITATION, Mail};
use super::{Db, DbError, Role, User};
use crate::audit::kind;
use crate::email::Address;
use crate::profile::ProfileChange;
use mysql::params;
use mysql::prelude::Queryable;
use serde_json::json;

/// An account about to be created by an admin.
pub struct NewAccount<'a> {
    /// Its address.
    pub address: &'a Address,
    /// The hash of the password the admin chose, or of a random secret for
    /// an invitation.
    pub password_hash: &'a str,
    /// Its role.
    pub role: Role,
    /// True if the admin vouches for the address: verified from the start.
    pub email_verified: bool,
    /// Its profile.
    pub profile: &'a ProfileChange,
    /// The set-password link to mail, for an account without a password.
    pub invitation: Option<Invitation<'a>>,
}

/// The set-password link of an invitation, and the message carrying it.
pub struct Invitation<'a> {
    /// SHA-256 of the link's token.
    pub token_hash: &'a [u8; 32],
    /// Unix seconds when it stops working.
    pub expires_at: u64,
    /// The invitation mail.
    pub mail: &'a Mail,
}

impl Db {
    /// Creates `account` for the admin `actor` (checked again in the
    /// transaction), with its invitation if it has one and its
    /// `user_created_by_admin` event. `Done` with the new account's id;
    /// `EmailTaken` if the mailbox has an account (the unique key decides).
    pub fn admin_create_user(
        &self,
        account: &NewAccount<'_>,
        now: u64,
        actor: Actor<'_>,
    ) -> Result<AdminChange<u64>, DbError> {
        let user = User::new(0, &account.address.email, now, account.profile);
        let metadata = serde_json::Value::Object(user.metadata.clone()).to_string();
        let verified_at = account.email_verified.then_some(now);
        self.transaction(|tx| {
            // The only read comes before the first write (see `tx.rs`).
            if !still_admin(tx, Some(actor), now)? {
                return Ok(AdminChange::NotAnAdmin);
            }
            let inserted = tx.exec_drop(
                "INSERT INTO users (email, email_key, password_hash, email_verified_at, role,
                   name, locale, metadata, created_at, updated_at)
                 VALUES (:email, :key, :hash, :verified, :role, :name, :locale, :metadata,
                   :now, :now)",
                params! {
                    "email" => &account.address.email, "key" => &account.address.key[..],
                    "hash" => account.password_hash, "verified" => verified_at,
                    "role" => account.role.as_str(), "name" => &user.name,
                    "locale" => &user.locale, "metadata" => &metadata, "now" => now,
                },
            );
            match inserted {
                Ok(()) => {}
                Err(e) if is_duplicate(&e) => return Ok(AdminChange::EmailTaken),
                Err(e) => return Err(e),
            }
            let id = tx.last_insert_id().unwrap_or(0);
            if let Some(invitation) = &account.invitation {
                tx.exec_drop(
                    "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at)
                     VALUES (:hash, :uid, :now, :expires)",
                    params! {
                        "hash" => &invitation.token_hash[..], "uid" => id, "now" => now,
                        "expires" => invitation.expires_at,
                    },
                )?;
                mail::queue(tx, Some(id), INVITATION, invitation.mail, now)?;
            }
            let detail = json!({
                "role": account.role.as_str(),
                "email_verified": account.email_verified,
                "invited": account.invitation.is_some(),
            });
            let event = Event::of(kind::USER_CREATED_BY_ADMIN, id, now)
                .with(detail)
                .by(Some(actor.user_id));
            audit::record(tx, &event)?;
            Ok(AdminChange::Done(id))
        })
    }
}
