//! Accounts: creating, finding, changing and deleting `users` rows, and the
//! bulk import.
//!
//! Accounts are found by their mailbox key (`email_key`, see
//! [`crate::email`]) or their id, never by the email text. Every change to
//! an account made on the strength of a session and a verified password
//! first locks the account's row and re-checks both inside its transaction
//! ([`lock_for_change`]): a logout-all, a password reset or a concurrent
//! change that committed while the password was being verified wins, and
//! the change is refused as the state now says.

use super::audit::{self, Event};
use super::email_tokens::Verification;
use super::failure::is_duplicate;
use super::mail::{self, Mail};
use super::{Db, DbError};
use crate::audit::kind;
use crate::email::Address;
use crate::log;
use crate::profile::ProfileChange;
use mysql::prelude::{FromRow, Queryable};
use mysql::{FromRowError, Row, Transaction, params};

/// An account, as the API shows it: never with its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The account's id.
    pub id: u64,
    /// The stored form of the email (see [`crate::email::Address`]).
    pub email: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds when the address was proven, by a link mailed to it;
    /// `None` until then.
    pub email_verified_at: Option<u64>,
    /// What the account may do: only admins reach the admin API.
    pub role: Role,
    /// Unix seconds when an operator disabled the account; `None` while it
    /// is enabled. A disabled account has no sessions and cannot log in.
    pub disabled_at: Option<u64>,
    /// The display name, if one was given (see [`crate::profile`]).
    pub name: Option<String>,
    /// The BCP 47 language tag, if one was given.
    pub locale: Option<String>,
    /// The application's JSON object about the account (`{}` if none).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Unix seconds when a second factor (TOTP) was confirmed; `None` while
    /// the account logs in with its password alone.
    pub mfa_enabled_at: Option<u64>,
}

impl User {
    /// A new account as it is stored: user role, enabled, unverified, with
    /// the profile `change` gives.
    pub fn new(id: u64, email: &str, created_at: u64, change: &ProfileChange) -> User {
        User {
            id,
            email: email.to_string(),
            created_at,
            email_verified_at: None,
            role: Role::User,
            disabled_at: None,
            name: change.name.clone().flatten(),
            locale: change.locale.clone().flatten(),
            metadata: change.metadata.clone().unwrap_or_default(),
            mfa_enabled_at: None,
        }
    }
}

/// An account's role, stored as its name in `users.role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every account registered through the API.
    User,
    /// May use the admin API (`/admin/*`).
    Admin,
}

impl Role {
    /// The stored and shown name: `user` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// The role named `name` (exactly `user` or `admin`), if any.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The columns a [`User`] is read from, on `users` aliased `u`. Every query
/// that returns an account selects exactly these, so a new field is added
/// in one place.
pub(super) const USER_COLUMNS: &str = "u.id, u.email, u.created_at, u.email_verified_at, u.role,
     u.disabled_at, u.name, u.locale, u.metadata, u.mfa_enabled_at";

/// Takes column `name` from `row`, as `FromRow` implementations need.
pub(super) fn take<T: mysql::prelude::FromValue>(
    row: &mut Row,
    name: &str,
) -> Result<T, FromRowError> {
    match row.take_opt(name) {
        Some(Ok(value)) => Ok(value),
        _ => Err(FromRowError(row.clone())),
    }
}

impl FromRow for User {
    fn from_row_opt(mut row: Row) -> Result<Self, FromRowError> {
        Ok(User {
            id: take(&mut row, "id")?,
            email: take(&mut row, "email")?,
            created_at: take(&mut row, "created_at")?,
            email_verified_at: take(&mut row, "email_verified_at")?,
            // Only this server writes the column, and only these names; an
            // unknown one (a hand edit) grants nothing.
            role: Role::parse(&take::<String>(&mut row, "role")?).unwrap_or(Role::User),
            disabled_at: take(&mut row, "disabled_at")?,
            name: take(&mut row, "name")?,
            locale: take(&mut row, "locale")?,
            // Only this server writes the column, always a JSON object; a
            // hand edit that is not one reads as none.
            metadata: take::<Option<String>>(&mut row, "metadata")?
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default(),
            mfa_enabled_at: take(&mut row, "mfa_enabled_at")?,
        })
    }
}

/// An account with its password hash and recent failed attempts, for
/// verifying a password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The account.
    pub user: User,
    /// The Argon2 PHC string.
    pub password_hash: String,
    /// The hash was imported while a pepper was set, and verifies without
    /// it; the next successful login rehashes it with the pepper.
    pub unpeppered: bool,
    /// Wrong passwords in the current lockout window (0 if none).
    pub failures: u32,
    /// Unix seconds when that window began.
    pub window_start: u64,
}

/// One account to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The address, normalised.
    pub address: Address,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// The hash was made elsewhere without this server's pepper.
    pub unpeppered: bool,
    /// The address counts as verified from the import on.
    pub email_verified: bool,
    /// Its profile (`name`, `locale`, `metadata`), under the usual rules.
    pub profile: ProfileChange,
}

/// The outcome of a change guarded by a session and a verified password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// Done.
    Done(T),
    /// The session ended (or the account went) since it was checked: the
    /// token is dead, and nothing was written.
    Revoked,
    /// The password changed since it was verified: nothing was written.
    PasswordChanged,
    /// Another account has the address (moves to a new address only).
    Taken,
    /// The account is the last enabled admin (deletion only): nothing was
    /// written.
    LastAdmin,
}

/// The outcome of an update guarded by the password hash the caller verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    /// Done.
    Done,
    /// The hash changed since it was verified (a concurrent password change):
    /// nothing was written.
    Stale,
}

/// What a change made with a session and a password must still find true.
pub struct Proof<'a> {
    /// The account.
    pub user_id: u64,
    /// The session the request was authenticated with.
    pub session_id: &'a [u8; 16],
    /// The hash the given password was verified against.
    pub verified_hash: &'a str,
    /// Now, in Unix seconds (the session must not have expired).
    pub now: u64,
}

impl FromRow for Credentials {
    fn from_row_opt(mut row: Row) -> Result<Self, FromRowError> {
        let password_hash = take(&mut row, "password_hash")?;
        let unpeppered = take(&mut row, "password_unpeppered")?;
        let failures: Option<u32> = take(&mut row, "failures")?;
        let window_start: Option<u64> = take(&mut row, "window_start")?;
        Ok(Credentials {
            user: User::from_row_opt(row)?,
            password_hash,
            unpeppered,
            failures: failures.unwrap_or(0),
            window_start: window_start.unwrap_or(0),
        })
    }
}

fn credentials_query(condition: &str) -> String {
    format!(
        "SELECT {USER_COLUMNS}, u.password_hash, u.password_unpeppered, f.failures, f.window_start
         FROM users u LEFT JOIN login_failures f ON f.user_id = u.id WHERE {condition}"
    )
}

impl Db {
    /// Creates an account and queues its verification link, in one
    /// transaction. `Ok(None)` when the mailbox has an account: the unique
    /// key decides, so of two concurrent registrations of one mailbox (in
    /// any spelling) exactly one succeeds.
    pub fn create_user(
        &self,
        address: &Address,
        password_hash: &str,
        profile: &ProfileChange,
        now: u64,
        verification: &Verification<'_>,
    ) -> Result<Option<User>, DbError> {
        let user = User::new(0, &address.email, now, profile);
        let metadata = serde_json::Value::Object(user.metadata.clone()).to_string();
        self.transaction(|tx| {
            let inserted = tx.exec_drop(
                "INSERT INTO users (email, email_key, password_hash, name, locale, metadata,
                   created_at, updated_at)
                 VALUES (:email, :key, :hash, :name, :locale, :metadata, :now, :now)",
                params! {
                    "email" => &address.email, "key" => &address.key[..],
                    "hash" => password_hash, "name" => &user.name, "locale" => &user.locale,
                    "metadata" => &metadata, "now" => now,
                },
            );
            match inserted {
                Ok(()) => {}
                Err(e) if is_duplicate(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
            let id = tx.last_insert_id().unwrap_or(0);
            // A new account has no older links; and its row is known, not
            // read back (writes are last, see `tx.rs`).
            super::email_tokens::replace_verify_token(
                tx,
                id,
                &[],
                verification.token_hash,
                now,
                verification.expires_at,
            )?;
            mail::queue(tx, Some(id), mail::VERIFY_EMAIL, verification.mail, now)?;
            audit::record(tx, &Event::of(kind::USER_REGISTERED, id, now))?;
            Ok(Some(User { id, ..user.clone() }))
        })
    }

    /// Queues `mail` (a notice to an address's owner) on its own.
    pub fn queue_notice(&self, kind: &str, mail: &Mail, now: u64) -> Result<(), DbError> {
        self.transaction(|tx| mail::queue(tx, None, kind, mail, now))
    }

    /// The account with this mailbox key, its hash and its recent failed
    /// attempts, if any: one query.
    pub fn credentials(&self, key: &[u8; 32]) -> Result<Option<Credentials>, DbError> {
        self.run(|conn| {
            conn.exec_first(
                credentials_query("u.email_key = :key"),
                params! { "key" => &key[..] },
            )
        })
    }

    /// The account with this id, as [`Db::credentials`].
    pub fn credentials_by_id(&self, user_id: u64) -> Result<Option<Credentials>, DbError> {
        self.run(|conn| {
            conn.exec_first(credentials_query("u.id = :id"), params! { "id" => user_id })
        })
    }

    /// Deletes the account, if `proof` still holds; its sessions, reset
    /// tokens and failure counts go with it (foreign keys cascade) in one
    /// transaction, with the notice `notice` writes for its address.
    /// `Done` with the number of sessions that ended.
    pub fn delete_user(
        &self,
        proof: &Proof<'_>,
        notice: &dyn Fn(&str) -> Mail,
    ) -> Result<Change<u64>, DbError> {
        self.transaction(|tx| {
            let (key, email) = match lock_for_change(tx, proof)? {
                Lock::Held { email_key, email } => (email_key, email),
                Lock::Revoked => return Ok(Change::Revoked),
                Lock::PasswordChanged => return Ok(Change::PasswordChanged),
            };
            // The last-admin rule's reads, before the first write (`tx.rs`).
            if is_enabled_admin(tx, proof.user_id)? {
                let guard = super::admin::guard_version(tx)?;
                if super::admin::enabled_admins(tx)? <= 1 {
                    return Ok(Change::LastAdmin);
                }
                super::admin::take_guard(tx, guard)?;
            }
            // Counted before the cascade, for the sessions-ended metric.
            tx.exec_drop(
                "DELETE FROM sessions WHERE user_id = :uid",
                params! { "uid" => proof.user_id },
            )?;
            let ended = tx.affected_rows();
            tx.exec_drop(
                "DELETE FROM users WHERE id = :uid",
                params! { "uid" => proof.user_id },
            )?;
            mail::forget_requests(tx, &key)?;
            let message = notice(&email);
            mail::queue(
                tx,
                Some(proof.user_id),
                mail::notice::ACCOUNT_DELETED,
                &message,
                proof.now,
            )?;
            let event = Event::of(kind::ACCOUNT_DELETED, proof.user_id, proof.now)
                .with(serde_json::json!({ "sessions_ended": ended }));
            audit::record(tx, &event)?;
            Ok(Change::Done(ended))
        })
    }

    /// Replaces a hash made with old Argon2 parameters (or without the
    /// pepper), if it is still the one just verified: a concurrent password
    /// change wins.
    pub fn upgrade_hash(
        &self,
        user_id: u64,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<Guarded, DbError> {
        let changed = self.run(|conn| {
            conn.exec_drop(
                "UPDATE users SET password_hash = :new, password_unpeppered = 0
                 WHERE id = :uid AND password_hash = :old",
                params! { "new" => new_hash, "uid" => user_id, "old" => old_hash },
            )?;
            Ok(conn.affected_rows())
        })?;
        Ok(if changed == 1 {
            Guarded::Done
        } else {
            Guarded::Stale
        })
    }

    /// Inserts a batch of accounts in one transaction, skipping mailboxes
    /// that have an account; returns how many were inserted.
    pub fn import_users(&self, batch: &[Import], now: u64) -> Result<u64, DbError> {
        self.transaction(|tx| {
            let mut inserted = 0;
            for user in batch {
                // A duplicate key leaves the row as it is and counts 0 rows.
                let profile = User::new(0, "", now, &user.profile);
                let metadata = serde_json::Value::Object(profile.metadata).to_string();
                tx.exec_drop(
                    "INSERT INTO users
                       (email, email_key, email_verified_at, password_hash, password_unpeppered,
                        name, locale, metadata, created_at, updated_at)
                     VALUES (:email, :key, :verified, :hash, :unpeppered,
                        :name, :locale, :metadata, :now, :now)
                     ON DUPLICATE KEY UPDATE id = id",
                    params! {
                        "email" => &user.address.email, "key" => &user.address.key[..],
                        "verified" => user.email_verified.then_some(now),
                        "hash" => &user.password_hash, "unpeppered" => user.unpeppered,
                        "name" => &profile.name, "locale" => &profile.locale,
                        "metadata" => metadata, "now" => now,
                    },
                )?;
                inserted += tx.affected_rows();
            }
            Ok(inserted)
        })
    }

    /// Gives every account without a mailbox key (rows from before keys
    /// existed) its key and its email in today's stored form, in batches.
    /// Idempotent and safe with several instances at once. An account whose
    /// mailbox already has another account keeps no key (so it cannot log
    /// in by that address) and is logged with both ids for an operator to
    /// merge; so is one whose stored email is no longer valid. Returns how
    /// many accounts were keyed.
    pub fn backfill_email_keys(&self) -> Result<u64, DbError> {
        const BATCH: u64 = 500;
        let mut keyed = 0;
        // Rows that cannot be keyed stay NULL; start past them each round.
        let mut after = 0u64;
        loop {
            let rows: Vec<(u64, String)> = self.run(|conn| {
                conn.exec(
                    "SELECT id, email FROM users WHERE email_key IS NULL AND id > :after
                     ORDER BY id LIMIT :batch",
                    params! { "after" => after, "batch" => BATCH },
                )
            })?;
            for (id, email) in &rows {
                after = *id;
                let Ok(address) = crate::email::normalize(email) else {
                    log::error(
                        "an account's stored email is not valid under today's rules; \
                         it cannot log in until an operator changes it",
                        &[("user_id", (*id).into())],
                    );
                    continue;
                };
                let updated = self.run(|conn| {
                    match conn.exec_drop(
                        "UPDATE users SET email = :email, email_key = :key
                         WHERE id = :id AND email_key IS NULL",
                        params! { "email" => &address.email, "key" => &address.key[..], "id" => id },
                    ) {
                        Ok(()) => Ok(Ok(conn.affected_rows())),
                        Err(e) if is_duplicate(&e) => Ok(Err(())),
                        Err(e) => Err(e),
                    }
                })?;
                match updated {
                    Ok(n) => keyed += n,
                    Err(()) => {
                        let other: Option<u64> = self.run(|conn| {
                            conn.exec_first(
                                "SELECT id FROM users WHERE email_key = :key OR email = :email",
                                params! { "key" => &address.key[..], "email" => &address.email },
                            )
                        })?;
                        log::error(
                            "two accounts have one mailbox under today's email rules; \
                             the later one cannot log in until an operator merges them",
                            &[("user_id", (*id).into()), ("other_user_id", other.into())],
                        );
                    }
                }
            }
            if (rows.len() as u64) < BATCH {
                return Ok(keyed);
            }
        }
    }
}

/// What [`lock_for_change`] found.
pub(super) enum Lock {
    /// The account or the session is gone.
    Revoked,
    /// The password is no longer the verified one.
    PasswordChanged,
    /// The row is locked and both still hold.
    Held {
        /// The account's mailbox key.
        email_key: [u8; 32],
        /// The account's address.
        email: String,
    },
}

/// Inside a transaction that changes an account on the strength of a
/// session and a verified password: locks the account's row, then checks
/// that the session is still live (holding it against a concurrent logout)
/// and that the hash is still the verified one.
pub(super) fn lock_for_change(tx: &mut Transaction<'_>, proof: &Proof<'_>) -> mysql::Result<Lock> {
    let account: Option<(String, Option<Vec<u8>>, String)> = tx.exec_first(
        "SELECT password_hash, email_key, email FROM users WHERE id = :uid FOR UPDATE",
        params! { "uid" => proof.user_id },
    )?;
    let Some((hash, key, email)) = account else {
        return Ok(Lock::Revoked);
    };
    let live: Option<u8> = tx.exec_first(
        "SELECT 1 FROM sessions
         WHERE id = :sid AND user_id = :uid AND expires_at > :now LOCK IN SHARE MODE",
        params! { "sid" => &proof.session_id[..], "uid" => proof.user_id, "now" => proof.now },
    )?;
    if live.is_none() {
        return Ok(Lock::Revoked);
    }
    if hash != proof.verified_hash {
        return Ok(Lock::PasswordChanged);
    }
    // A session exists only for an account that could log in, so by its key.
    let email_key = key.and_then(|k| k.try_into().ok()).unwrap_or([0; 32]);
    Ok(Lock::Held { email_key, email })
}

/// True if the account is an enabled admin.
fn is_enabled_admin(tx: &mut Transaction<'_>, user_id: u64) -> mysql::Result<bool> {
    let found: Option<u8> = tx.exec_first(
        "SELECT 1 FROM users WHERE id = :uid AND role = 'admin' AND disabled_at IS NULL",
        params! { "uid" => user_id },
    )?;
    Ok(found.is_some())
}

/// The account with id `user_id`, its row locked for the change that
/// follows, inside a transaction.
pub(super) fn user_by_id_for_update(
    tx: &mut Transaction<'_>,
    user_id: u64,
) -> mysql::Result<Option<User>> {
    tx.exec_first(
        format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = :uid FOR UPDATE"),
        params! { "uid" => user_id },
    )
}

/// The account with id `user_id`, inside a transaction.
pub(super) fn user_by_id(tx: &mut Transaction<'_>, user_id: u64) -> mysql::Result<Option<User>> {
    tx.exec_first(
        format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = :uid"),
        params! { "uid" => user_id },
    )
}
