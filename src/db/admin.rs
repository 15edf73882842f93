//! What operators do to accounts: the first admin, roles, disabling and
//! deleting, under the last-admin rule (the admin API's view of accounts is
//! `listing.rs`).
//!
//! **The last admin.** No change may leave the server without an enabled
//! admin: demoting, disabling or deleting the last one answers
//! [`AdminChange::LastAdmin`]. Counting the admins and then changing one is
//! a check-then-act, and two such changes at once (two admins demoting each
//! other, on two Galera nodes) could each count two and leave none. So
//! every change to the admins (an admin's change to any account, a
//! bootstrap, an admin deleting their own account) reads the version of
//! the single `admin_guard` row first, with everything else it decides on,
//! and makes its first write bumping that version, conditioned on it being
//! unchanged ([`take_guard`]). Of two such changes one bumps first; on one
//! server the other's bump then finds the version moved, on a Galera
//! cluster both bumps write the same row and the later fails
//! certification: either way it is rerun (`tx.rs`) and counts again. Admin
//! changes are rare, so serialising them all costs nothing that matters.
//!
//! **A new address** set by an admin takes effect at once, as a confirmed
//! move would (`email_tokens.rs`): the links mailed before stop working,
//! the old address gets a notice, and the unique key decides whether the
//! address is free.
//!
//! **Disabling** ends the account's sessions and deletes the tokens of its
//! mailed links (reset, verification, a move to a new address) in the same
//! transaction; logins check `disabled_at` when they open a
//! session (`sessions.rs`), and the mail resolver mails a disabled account
//! nothing (`mail.rs`).

use super::audit::{self, Event};
use super::failure::lost_race;
use super::listing::AdminUser;
use super::mail::{self, Mail};
use super::users::USER_COLUMNS;
use super::{Db, DbError, Role, User};
use crate::audit::kind;
use crate::email::Address;
use crate::profile::ProfileChange;
use mysql::prelude::Queryable;
use mysql::{Transaction, params};
use serde_json::json;

/// What an admin changes on an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminPatch {
    /// The new role.
    pub role: Option<Role>,
    /// Disable (`true`) or enable (`false`) the account.
    pub disabled: Option<bool>,
    /// The reason shown with a disabled account: `Some(None)` clears it.
    pub disabled_reason: Option<Option<String>>,
    /// Mark the address verified (`true`) or not (`false`).
    pub email_verified: Option<bool>,
    /// Move the account to this address at once: unverified unless
    /// `email_verified` says otherwise, its mailed links void, a notice to
    /// the old address.
    pub email: Option<Address>,
    /// The profile members to change.
    pub profile: ProfileChange,
}

impl AdminPatch {
    /// True if the patch could leave one admin fewer.
    fn may_remove_an_admin(&self) -> bool {
        self.role == Some(Role::User) || self.disabled == Some(true)
    }
}

/// The outcome of an admin's change to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminChange<T> {
    /// Done.
    Done(T),
    /// No account has the id.
    NotFound,
    /// The change would leave no enabled admin; nothing was written.
    LastAdmin,
    /// The address has another account; nothing was written.
    EmailTaken,
    /// The acting admin is no longer one (demoted, disabled, or its session
    /// ended) since the request was authenticated; nothing was written.
    NotAnAdmin,
}

/// The admin a change is made by, checked again inside its transaction so
/// that an admin demoted while their request was in flight changes nothing.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// The admin's account.
    pub user_id: u64,
    /// The session the request was authenticated with.
    pub session_id: &'a [u8; 16],
}

/// Writes the notice of a move to the old address, given the old address
/// and the new.
pub type MovedNotice<'a> = dyn Fn(&str, &str) -> Mail + 'a;

/// An account after a [`Db::patch_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    /// The account as it is now.
    pub account: AdminUser,
    /// The role it had before.
    pub old_role: Role,
    /// Sessions the change ended (disabling ends them all).
    pub sessions_ended: u64,
}

/// The outcome of the start-up bootstrap of the first admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The account was created, as an admin.
    Created(User),
    /// An enabled admin exists already (this one or another): nothing done.
    AdminExists,
    /// The address belongs to an account that is not an admin: nothing
    /// done, since whoever registered it first may not be the operator.
    AddressTaken,
}

impl Db {
    /// Creates the first admin at start-up (`ADMIN_EMAIL`), verified, unless
    /// an enabled admin exists or the address has an account. Safe for many
    /// instances starting at once: the unique key and the guard row decide.
    pub fn bootstrap_admin(
        &self,
        address: &Address,
        password_hash: &str,
        now: u64,
    ) -> Result<Bootstrap, DbError> {
        self.transaction(|tx| {
            let guard = guard_version(tx)?;
            if let Some(user) = user_by_key(tx, &address.key)? {
                return Ok(if user.role == Role::Admin {
                    Bootstrap::AdminExists
                } else {
                    Bootstrap::AddressTaken
                });
            }
            if enabled_admins(tx)? > 0 {
                return Ok(Bootstrap::AdminExists);
            }
            take_guard(tx, guard)?;
            Ok(
                match insert_admin(tx, address, password_hash, now, "ADMIN_EMAIL")? {
                    Some(user) => Bootstrap::Created(user),
                    // Another instance created it between our read and insert.
                    None => Bootstrap::AdminExists,
                },
            )
        })
    }

    /// Creates a verified admin account (`create-admin`); `None` if the
    /// address has an account already.
    pub fn create_admin(
        &self,
        address: &Address,
        password_hash: &str,
        now: u64,
    ) -> Result<Option<User>, DbError> {
        self.transaction(|tx| insert_admin(tx, address, password_hash, now, "create-admin"))
    }

    /// The id of the account with this mailbox key, if any.
    pub fn user_id_by_key(&self, key: &[u8; 32]) -> Result<Option<u64>, DbError> {
        self.run(|conn| {
            conn.exec_first(
                "SELECT id FROM users WHERE email_key = :key",
                params! { "key" => &key[..] },
            )
        })
    }

    /// Applies `patch` to the account in one transaction (see the module
    /// docs for the last-admin rule); disabling ends its sessions and
    /// voids its mailed links. `actor` is the admin making it, `None` for
    /// the command line; `moved_notice` writes the notice of a new address
    /// to the old one (given the old and the new; `None` sends none).
    pub fn patch_user(
        &self,
        user_id: u64,
        patch: &AdminPatch,
        now: u64,
        actor: Option<Actor<'_>>,
        moved_notice: Option<&MovedNotice<'_>>,
    ) -> Result<AdminChange<Patched>, DbError> {
        let changed = self.transaction(|tx| {
            // Everything is read before the first write (see `tx.rs`).
            let guard = guard_version(tx)?;
            if !still_admin(tx, actor, now)? {
                return Ok(AdminChange::NotAnAdmin);
            }
            let Some(user) = lock_user(tx, user_id)? else {
                return Ok(AdminChange::NotFound);
            };
            let enabled_admin = user.role == Role::Admin && user.disabled_at.is_none();
            if enabled_admin && patch.may_remove_an_admin() && enabled_admins(tx)? <= 1 {
                return Ok(AdminChange::LastAdmin);
            }
            let old_key = email_key(tx, user_id)?;
            take_guard(tx, guard)?;
            // The move comes first: if the address is taken, nothing but
            // the guard's version has been written.
            let moving = patch
                .email
                .as_ref()
                .filter(|address| old_key != Some(address.key));
            if let Some(address) = moving {
                if !move_to(tx, &user, old_key.as_ref(), address, now)? {
                    return Ok(AdminChange::EmailTaken);
                }
                if let Some(compose) = moved_notice {
                    let notice = compose(&user.email, &address.email);
                    mail::queue(tx, Some(user_id), mail::notice::EMAIL_CHANGED, &notice, now)?;
                }
            }
            if let Some(role) = patch.role {
                tx.exec_drop(
                    "UPDATE users SET role = :role WHERE id = :id",
                    params! { "role" => role.as_str(), "id" => user_id },
                )?;
            }
            let mut sessions_ended = 0;
            match patch.disabled {
                Some(true) if user.disabled_at.is_none() => {
                    tx.exec_drop(
                        "UPDATE users SET disabled_at = :now WHERE id = :id",
                        params! { "now" => now, "id" => user_id },
                    )?;
                    tx.exec_drop(
                        "DELETE FROM sessions WHERE user_id = :id",
                        params! { "id" => user_id },
                    )?;
                    sessions_ended = tx.affected_rows();
                    // Its links stop working: a reset, a verification, a
                    // move to a new address.
                    for table in ["password_resets", "email_tokens"] {
                        tx.exec_drop(
                            format!("DELETE FROM {table} WHERE user_id = :id"),
                            params! { "id" => user_id },
                        )?;
                    }
                }
                Some(false) => tx.exec_drop(
                    "UPDATE users SET disabled_at = NULL, disabled_reason = NULL WHERE id = :id",
                    params! { "id" => user_id },
                )?,
                _ => {}
            }
            if let Some(reason) = &patch.disabled_reason {
                tx.exec_drop(
                    "UPDATE users SET disabled_reason = :reason WHERE id = :id",
                    params! { "reason" => reason, "id" => user_id },
                )?;
            }
            match patch.email_verified {
                Some(true) => tx.exec_drop(
                    "UPDATE users SET email_verified_at = COALESCE(email_verified_at, :now)
                     WHERE id = :id",
                    params! { "now" => now, "id" => user_id },
                )?,
                Some(false) => tx.exec_drop(
                    "UPDATE users SET email_verified_at = NULL WHERE id = :id",
                    params! { "id" => user_id },
                )?,
                None => {}
            }
            super::profiles::apply(tx, user_id, &patch.profile, now)?;
            let actor_id = actor.map(|a| a.user_id);
            let moved_to = moving.map(|address| address.email.as_str());
            for event in patch_events(&user, patch, moved_to, sessions_ended, now) {
                audit::record(tx, &event.by(actor_id))?;
            }
            Ok(AdminChange::Done((user.role, sessions_ended)))
        })?;
        // The account as it is now, read after the commit rather than
        // inside the transaction (no read after a write, see `tx.rs`).
        Ok(match changed {
            AdminChange::Done((old_role, sessions_ended)) => match self.admin_user(user_id, now)? {
                Some(account) => AdminChange::Done(Patched {
                    account,
                    old_role,
                    sessions_ended,
                }),
                None => AdminChange::NotFound,
            },
            AdminChange::NotFound => AdminChange::NotFound,
            AdminChange::LastAdmin => AdminChange::LastAdmin,
            AdminChange::EmailTaken => AdminChange::EmailTaken,
            AdminChange::NotAnAdmin => AdminChange::NotAnAdmin,
        })
    }

    /// Forgets the account's failed attempts, with the admin's
    /// `lockout_cleared` event; false if no account has the id.
    pub fn clear_lockout(&self, user_id: u64, now: u64, actor_id: u64) -> Result<bool, DbError> {
        self.transaction(|tx| {
            let exists: Option<u8> = tx.exec_first(
                "SELECT 1 FROM users WHERE id = :id",
                params! { "id" => user_id },
            )?;
            if exists.is_none() {
                return Ok(false);
            }
            tx.exec_drop(
                "DELETE FROM login_failures WHERE user_id = :id",
                params! { "id" => user_id },
            )?;
            let event = Event::of(kind::LOCKOUT_CLEARED, user_id, now).by(Some(actor_id));
            audit::record(tx, &event)?;
            Ok(true)
        })
    }

    /// Records the admin `actor_id`'s request for `kind` mail to the
    /// account's address, as a `forgot` does for an address (its event
    /// then names the admin); `false` if no account has the id.
    pub fn request_mail_for(
        &self,
        user_id: u64,
        kind: &str,
        now: u64,
        ip: &str,
        actor_id: u64,
    ) -> Result<bool, DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "INSERT INTO mail_requests (kind, email_key, requested_at, ip, actor_id)
                 SELECT :kind, email_key, :now, :ip, :actor FROM users
                 WHERE id = :id AND email_key IS NOT NULL",
                params! {
                    "kind" => kind, "now" => now, "ip" => ip, "actor" => actor_id, "id" => user_id,
                },
            )?;
            Ok(conn.affected_rows() == 1)
        })
    }

    /// Deletes the account (its sessions, tokens and counts cascade) unless
    /// it is the last enabled admin. `Done` with the sessions that ended.
    pub fn admin_delete_user(
        &self,
        user_id: u64,
        now: u64,
        actor: Actor<'_>,
    ) -> Result<AdminChange<u64>, DbError> {
        self.transaction(|tx| {
            // Everything is read before the first write (see `tx.rs`).
            let guard = guard_version(tx)?;
            if !still_admin(tx, Some(actor), now)? {
                return Ok(AdminChange::NotAnAdmin);
            }
            let Some(user) = lock_user(tx, user_id)? else {
                return Ok(AdminChange::NotFound);
            };
            if user.role == Role::Admin && user.disabled_at.is_none() && enabled_admins(tx)? <= 1 {
                return Ok(AdminChange::LastAdmin);
            }
            let key = email_key(tx, user_id)?;
            take_guard(tx, guard)?;
            if let Some(key) = key {
                super::mail::forget_requests(tx, &key)?;
            }
            tx.exec_drop(
                "DELETE FROM sessions WHERE user_id = :id",
                params! { "id" => user_id },
            )?;
            let ended = tx.affected_rows();
            tx.exec_drop(
                "DELETE FROM users WHERE id = :id",
                params! { "id" => user_id },
            )?;
            let event = Event::of(kind::ACCOUNT_DELETED, user_id, now)
                .with(json!({ "email": user.email, "sessions_ended": ended }))
                .by(Some(actor.user_id));
            audit::record(tx, &event)?;
            Ok(AdminChange::Done(ended))
        })
    }
}

/// The guard row's version, read first in a transaction that changes the
/// admins (see the module docs).
pub(super) fn guard_version(tx: &mut Transaction<'_>) -> mysql::Result<u64> {
    let version: Option<u64> = tx.query_first("SELECT version FROM admin_guard WHERE id = 1")?;
    Ok(version.unwrap_or(0))
}

/// Writes the guard row, if it is still at `seen` (what [`guard_version`]
/// read): the first write of a change to the admins. If another such change
/// committed since the read, the admins counted may be stale: the
/// transaction lost the race and is rerun ([`lost_race`]).
pub(super) fn take_guard(tx: &mut Transaction<'_>, seen: u64) -> mysql::Result<()> {
    tx.exec_drop(
        "UPDATE admin_guard SET version = version + 1 WHERE id = 1 AND version = :seen",
        params! { "seen" => seen },
    )?;
    if tx.affected_rows() == 1 {
        Ok(())
    } else {
        Err(lost_race())
    }
}

/// Enabled admins. Read after [`guard_version`] and before [`take_guard`],
/// which refuses to go ahead if the admins changed in between.
pub(super) fn enabled_admins(tx: &mut Transaction<'_>) -> mysql::Result<u64> {
    let count: Option<u64> =
        tx.query_first("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL")?;
    Ok(count.unwrap_or(0))
}

/// True unless `actor` is no longer an enabled admin with a live session;
/// the rows read stay share-locked to the commit.
pub(super) fn still_admin(
    tx: &mut Transaction<'_>,
    actor: Option<Actor<'_>>,
    now: u64,
) -> mysql::Result<bool> {
    let Some(actor) = actor else {
        return Ok(true);
    };
    let found: Option<u8> = tx.exec_first(
        "SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id = :sid AND u.id = :uid AND s.expires_at > :now
           AND u.role = 'admin' AND u.disabled_at IS NULL
         LOCK IN SHARE MODE",
        params! { "sid" => &actor.session_id[..], "uid" => actor.user_id, "now" => now },
    )?;
    Ok(found.is_some())
}

/// The account, its row locked for the change that follows.
fn lock_user(tx: &mut Transaction<'_>, user_id: u64) -> mysql::Result<Option<User>> {
    tx.exec_first(
        format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = :id FOR UPDATE"),
        params! { "id" => user_id },
    )
}

/// The account with this mailbox key, its row locked.
fn user_by_key(tx: &mut Transaction<'_>, key: &[u8; 32]) -> mysql::Result<Option<User>> {
    tx.exec_first(
        format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email_key = :key FOR UPDATE"),
        params! { "key" => &key[..] },
    )
}

/// The account's mailbox key.
fn email_key(tx: &mut Transaction<'_>, user_id: u64) -> mysql::Result<Option<[u8; 32]>> {
    let key: Option<Option<Vec<u8>>> = tx.exec_first(
        "SELECT email_key FROM users WHERE id = :id",
        params! { "id" => user_id },
    )?;
    Ok(key.flatten().and_then(|k| k.try_into().ok()))
}

/// Inserts a verified admin, with its event naming `via` what made it;
/// `None` if the mailbox has an account.
fn insert_admin(
    tx: &mut Transaction<'_>,
    address: &Address,
    password_hash: &str,
    now: u64,
    via: &str,
) -> mysql::Result<Option<User>> {
    let inserted = tx.exec_drop(
        "INSERT INTO users (email, email_key, password_hash, email_verified_at, role,
           created_at, updated_at)
         VALUES (:email, :key, :hash, :now, 'admin', :now, :now)",
        params! {
            "email" => &address.email, "key" => &address.key[..],
            "hash" => password_hash, "now" => now,
        },
    );
    match inserted {
        Ok(()) => {}
        Err(e) if super::failure::is_duplicate(&e) => return Ok(None),
        Err(e) => return Err(e),
    }
    let id = tx.last_insert_id().unwrap_or(0);
    let detail = json!({ "role": "admin", "via": via });
    audit::record(tx, &Event::of(kind::USER_REGISTERED, id, now).with(detail))?;
    // Known, not read back (no read after a write, see `tx.rs`).
    Ok(Some(User {
        email_verified_at: Some(now),
        role: Role::Admin,
        ..User::new(id, &address.email, now, &ProfileChange::default())
    }))
}

/// Moves the account `user` (whose mailbox key was `old_key`) to
/// `address`, unverified, and voids what was mailed for it before; false
/// (nothing written) if another account has the address.
fn move_to(
    tx: &mut Transaction<'_>,
    user: &User,
    old_key: Option<&[u8; 32]>,
    address: &Address,
    now: u64,
) -> mysql::Result<bool> {
    let moved = tx.exec_drop(
        "UPDATE users SET email = :email, email_key = :key, email_verified_at = NULL,
           updated_at = :now
         WHERE id = :id",
        params! {
            "email" => &address.email, "key" => &address.key[..], "now" => now, "id" => user.id,
        },
    );
    match moved {
        Ok(()) => {}
        Err(e) if super::failure::is_duplicate(&e) => return Ok(false),
        Err(e) => return Err(e),
    }
    for table in ["password_resets", "email_tokens"] {
        tx.exec_drop(
            format!("DELETE FROM {table} WHERE user_id = :id"),
            params! { "id" => user.id },
        )?;
    }
    if let Some(key) = old_key {
        super::mail::forget_requests(tx, key)?;
    }
    Ok(true)
}

/// The events a patch of `user` (as it was before) makes; `moved_to` is
/// the new address if the patch moved the account.
fn patch_events(
    user: &User,
    patch: &AdminPatch,
    moved_to: Option<&str>,
    sessions_ended: u64,
    now: u64,
) -> Vec<Event> {
    let mut events = Vec::new();
    let event = |kind| Event::of(kind, user.id, now);
    if let Some(new_email) = moved_to {
        let detail = json!({ "old_email": user.email, "new_email": new_email });
        events.push(event(kind::EMAIL_CHANGED).with(detail));
    }
    if let Some(role) = patch.role.filter(|r| *r != user.role) {
        let detail = json!({ "from": user.role.as_str(), "to": role.as_str() });
        events.push(event(kind::ROLE_CHANGED).with(detail));
    }
    match patch.disabled {
        Some(true) if user.disabled_at.is_none() => {
            let reason = patch.disabled_reason.clone().flatten();
            let detail = json!({ "reason": reason, "sessions_ended": sessions_ended });
            events.push(event(kind::ACCOUNT_DISABLED).with(detail));
        }
        Some(false) if user.disabled_at.is_some() => events.push(event(kind::ACCOUNT_ENABLED)),
        _ => {}
    }
    let was_verified = user.email_verified_at.is_some() && moved_to.is_none();
    if patch.email_verified == Some(true) && !was_verified {
        events.push(event(kind::EMAIL_VERIFIED));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_demoting_or_disabling_can_remove_an_admin() {
        let patch = |role, disabled| AdminPatch {
            role,
            disabled,
            ..AdminPatch::default()
        };
        assert!(patch(Some(Role::User), None).may_remove_an_admin());
        assert!(patch(None, Some(true)).may_remove_an_admin());
        assert!(!patch(Some(Role::Admin), Some(false)).may_remove_an_admin());
        assert!(!patch(None, None).may_remove_an_admin());
    }
}
