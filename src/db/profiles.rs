//! Writing profiles (see [`crate::profile`] for their rules): by the
//! account's owner with a live session, and by an admin inside the admin's
//! change (`admin.rs`).

use super::users::USER_COLUMNS;
use super::{Db, DbError, User};
use crate::profile::ProfileChange;
use mysql::prelude::Queryable;
use mysql::{Transaction, params};

impl Db {
    /// Applies `change` to the account of a live session (a logout or a
    /// disabling that committed first wins: `None`, nothing written), and
    /// returns the account as changed.
    pub fn update_profile(
        &self,
        user_id: u64,
        session_id: &[u8; 16],
        change: &ProfileChange,
        now: u64,
    ) -> Result<Option<User>, DbError> {
        self.transaction(|tx| {
            // Reads first (see `tx.rs`): the account, locked, through its
            // live session, held against a concurrent logout.
            let user: Option<User> = tx.exec_first(
                format!(
                    "SELECT {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.id = :sid AND s.user_id = :uid AND s.expires_at > :now
                       AND u.disabled_at IS NULL
                     FOR UPDATE"
                ),
                params! { "sid" => &session_id[..], "uid" => user_id, "now" => now },
            )?;
            let Some(user) = user else {
                return Ok(None);
            };
            apply(tx, user_id, change, now)?;
            Ok(Some(changed(user, change)))
        })
    }
}

/// Writes the members `change` sets, inside a transaction that has read
/// (and locked) the account.
pub(super) fn apply(
    tx: &mut Transaction<'_>,
    user_id: u64,
    change: &ProfileChange,
    now: u64,
) -> mysql::Result<()> {
    if let Some(name) = &change.name {
        tx.exec_drop(
            "UPDATE users SET name = :name, updated_at = :now WHERE id = :id",
            params! { "name" => name, "now" => now, "id" => user_id },
        )?;
    }
    if let Some(locale) = &change.locale {
        tx.exec_drop(
            "UPDATE users SET locale = :locale, updated_at = :now WHERE id = :id",
            params! { "locale" => locale, "now" => now, "id" => user_id },
        )?;
    }
    if let Some(metadata) = &change.metadata {
        let text = serde_json::Value::Object(metadata.clone()).to_string();
        tx.exec_drop(
            "UPDATE users SET metadata = :metadata, updated_at = :now WHERE id = :id",
            params! { "metadata" => text, "now" => now, "id" => user_id },
        )?;
    }
    Ok(())
}

/// `user` with `change` applied, as [`apply`] writes it.
pub(super) fn changed(user: User, change: &ProfileChange) -> User {
    User {
        name: change.name.clone().unwrap_or(user.name.clone()),
        locale: change.locale.clone().unwrap_or(user.locale.clone()),
        metadata: change.metadata.clone().unwrap_or(user.metadata.clone()),
        ..user
    }
}
