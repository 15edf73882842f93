//! The second factor's rows: an account's sealed TOTP secret and its last
//! accepted time step (`mfa_totp`), its recovery codes' HMACs
//! (`mfa_recovery_codes`), and the `mfa_token`s of logins waiting for
//! their second step (`mfa_challenges`). See `crate::mfa` for what they
//! defend against.
//!
//! **Once only.** Every use of a factor is a write conditioned on its
//! still being usable: a TOTP step is accepted only if it is newer than the
//! last accepted one (`last_step < :step`), a recovery code only while its
//! `used_at` is unset, an `mfa_token` only while its row exists. Of two
//! requests presenting the same code, on any instances or Galera nodes,
//! one write changes the row and the other changes nothing (on a cluster,
//! both write the same row and the later fails certification and is rerun,
//! then finds it used). The handler has checked the code against the
//! secret before; the database decides whether it is still unspent.
//!
//! As everywhere (`tx.rs`), each transaction reads everything before its
//! first write.

use super::audit::{self, Event};
use super::failure::lost_race;
use super::mail::{self, Mail, notice};
use super::sessions::{Session, insert_session};
use super::users::{Lock, Proof, lock_for_change};
use super::{Db, DbError};
use crate::audit::kind;
use mysql::prelude::Queryable;
use mysql::{Transaction, params};
use serde_json::json;

/// Wrong codes after which an `mfa_token` dies.
pub const MAX_CODE_FAILURES: u32 = 5;

/// An account's TOTP row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totp {
    /// The secret, sealed (`crate::mfa::seal`).
    pub sealed: Vec<u8>,
    /// Unix seconds of the confirmation; `None` while the enrolment waits.
    pub confirmed_at: Option<u64>,
}

/// A second factor, checked by the caller, to be spent.
#[derive(Debug, Clone, Copy)]
pub enum Factor<'a> {
    /// A TOTP code of this time step, from the secret sealed as `sealed`
    /// (a new enrolment since the check makes it fail).
    Totp {
        /// The sealed secret the code was checked against.
        sealed: &'a [u8],
        /// The time step the code matched.
        step: u64,
    },
    /// A recovery code, as its HMACs under the current and previous keys.
    Recovery {
        /// Candidates for the stored hash, current key first.
        hashes: &'a [[u8; 32]],
    },
}

/// A login waiting for its second step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The account.
    pub user_id: u64,
    /// Wrong codes so far.
    pub failures: u32,
}

/// What an enrolment's start found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrolment {
    /// A new secret waits for its first code.
    Started,
    /// The account has a confirmed factor: nothing written.
    AlreadyEnabled,
    /// The session or the account is gone: nothing written.
    Revoked,
    /// The password changed since it was verified: nothing written.
    PasswordChanged,
}

/// What the second step of a login did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondStep {
    /// The session was created; `true` if a recovery code was spent.
    LoggedIn {
        /// A recovery code, not a TOTP, was used.
        recovery: bool,
    },
    /// The token is unknown, expired, spent, or for another password.
    InvalidToken,
    /// The code was already spent (or the factor changed): one failure
    /// more on the token.
    Spent,
}

impl Db {
    /// The account's TOTP row, confirmed or waiting.
    pub fn totp(&self, user_id: u64) -> Result<Option<Totp>, DbError> {
        let row: Option<(Vec<u8>, Option<u64>)> = self.run(|conn| {
            conn.exec_first(
                "SELECT secret, confirmed_at FROM mfa_totp WHERE user_id = :uid",
                params! { "uid" => user_id },
            )
        })?;
        Ok(row.map(|(sealed, confirmed_at)| Totp {
            sealed,
            confirmed_at,
        }))
    }

    /// Starts an enrolment with the sealed secret `sealed`, if `proof` still
    /// holds and the account has no confirmed factor; an earlier enrolment
    /// still waiting is replaced.
    pub fn start_totp(
        &self,
        proof: &Proof<'_>,
        sealed: &[u8],
        now: u64,
    ) -> Result<Enrolment, DbError> {
        self.transaction(|tx| {
            match lock_for_change(tx, proof)? {
                Lock::Held { .. } => {}
                Lock::Revoked => return Ok(Enrolment::Revoked),
                Lock::PasswordChanged => return Ok(Enrolment::PasswordChanged),
            }
            let existing: Option<Option<u64>> = tx.exec_first(
                "SELECT confirmed_at FROM mfa_totp WHERE user_id = :uid FOR UPDATE",
                params! { "uid" => proof.user_id },
            )?;
            let values = params! { "uid" => proof.user_id, "secret" => sealed, "now" => now };
            match existing {
                Some(Some(_)) => return Ok(Enrolment::AlreadyEnabled),
                Some(None) => tx.exec_drop(
                    "UPDATE mfa_totp SET secret = :secret, created_at = :now, last_step = NULL
                     WHERE user_id = :uid AND confirmed_at IS NULL",
                    values,
                )?,
                None => match tx.exec_drop(
                    "INSERT INTO mfa_totp (user_id, secret, created_at)
                     VALUES (:uid, :secret, :now)",
                    values,
                ) {
                    Ok(()) => {}
                    // Another enrolment of the account inserted first: read again.
                    Err(e) if super::failure::is_duplicate(&e) => return Err(lost_race()),
                    Err(e) => return Err(e),
                },
            }
            let event = Event::of(kind::MFA_ENROLMENT_STARTED, proof.user_id, now);
            audit::record(tx, &event)?;
            Ok(Enrolment::Started)
        })
    }

    /// Confirms the waiting enrolment sealed as `sealed` with a code of
    /// `step` (which becomes the last accepted step), stores the recovery
    /// codes' `hashes` (replacing any), turns two-factor login on and
    /// queues the notice `notice` writes for the account's address. False
    /// (nothing written) if that enrolment is no longer waiting.
    pub fn confirm_totp(
        &self,
        user_id: u64,
        sealed: &[u8],
        step: u64,
        hashes: &[[u8; 32]],
        now: u64,
        notice: &dyn Fn(&str) -> Mail,
    ) -> Result<bool, DbError> {
        self.transaction(|tx| {
            let Some(email) = lock_email(tx, user_id)? else {
                return Ok(false);
            };
            let old = recovery_hashes(tx, user_id)?;
            tx.exec_drop(
                "UPDATE mfa_totp SET confirmed_at = :now, last_step = :step
                 WHERE user_id = :uid AND confirmed_at IS NULL AND secret = :secret
                   AND (last_step IS NULL OR last_step < :step)",
                params! { "now" => now, "step" => step, "uid" => user_id, "secret" => sealed },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(false);
            }
            tx.exec_drop(
                "UPDATE users SET mfa_enabled_at = :now WHERE id = :uid",
                params! { "now" => now, "uid" => user_id },
            )?;
            replace_recovery_codes(tx, user_id, &old, hashes, now)?;
            mail::queue(tx, Some(user_id), notice::MFA_ENABLED, &notice(&email), now)?;
            audit::record(tx, &Event::of(kind::MFA_ENABLED, user_id, now))?;
            Ok(true)
        })
    }

    /// Replaces the recovery codes of an account with two-factor login on,
    /// if `factor` is still unspent (it is spent by this); false (nothing
    /// written) if not, or if the account has no factor.
    pub fn regenerate_recovery_codes(
        &self,
        user_id: u64,
        factor: Factor<'_>,
        hashes: &[[u8; 32]],
        now: u64,
    ) -> Result<bool, DbError> {
        self.transaction(|tx| {
            if lock_email(tx, user_id)?.is_none() || !mfa_enabled(tx, user_id)? {
                return Ok(false);
            }
            let old = recovery_hashes(tx, user_id)?;
            if !spend(tx, user_id, factor, now)? {
                return Ok(false);
            }
            replace_recovery_codes(tx, user_id, &old, hashes, now)?;
            let event = Event::of(kind::RECOVERY_CODES_REGENERATED, user_id, now);
            audit::record(tx, &event)?;
            Ok(true)
        })
    }

    /// Spends `factor` for a request that needs a second factor outside
    /// login (a password change by password): false if it was spent already.
    /// A recovery code's use is an event and a notice.
    pub fn spend_factor(
        &self,
        user_id: u64,
        factor: Factor<'_>,
        now: u64,
        recovery_notice: &dyn Fn(&str) -> Mail,
    ) -> Result<bool, DbError> {
        self.transaction(|tx| {
            let Some(email) = lock_email(tx, user_id)? else {
                return Ok(false);
            };
            if !spend(tx, user_id, factor, now)? {
                return Ok(false);
            }
            if matches!(factor, Factor::Recovery { .. }) {
                recovery_used(tx, user_id, &email, now, recovery_notice)?;
            }
            Ok(true)
        })
    }

    /// Turns two-factor login off for the account: its secret, recovery
    /// codes and waiting logins go, with the notice and the event (by the
    /// admin `actor_id`, if one did it). False if it was not on.
    pub fn disable_mfa(
        &self,
        user_id: u64,
        actor_id: Option<u64>,
        now: u64,
        notice: &dyn Fn(&str) -> Mail,
    ) -> Result<bool, DbError> {
        self.transaction(|tx| {
            let Some(email) = lock_email(tx, user_id)? else {
                return Ok(false);
            };
            if !mfa_enabled(tx, user_id)? {
                return Ok(false);
            }
            let codes = recovery_hashes(tx, user_id)?;
            let challenges: Vec<Vec<u8>> = tx.exec(
                "SELECT token_hash FROM mfa_challenges WHERE user_id = :uid",
                params! { "uid" => user_id },
            )?;
            tx.exec_drop(
                "DELETE FROM mfa_totp WHERE user_id = :uid",
                params! { "uid" => user_id },
            )?;
            delete_each(
                tx,
                "DELETE FROM mfa_recovery_codes WHERE code_hash = :hash",
                &codes,
            )?;
            delete_each(
                tx,
                "DELETE FROM mfa_challenges WHERE token_hash = :hash",
                &challenges,
            )?;
            tx.exec_drop(
                "UPDATE users SET mfa_enabled_at = NULL WHERE id = :uid",
                params! { "uid" => user_id },
            )?;
            mail::queue(
                tx,
                Some(user_id),
                notice::MFA_DISABLED,
                &notice(&email),
                now,
            )?;
            let event = Event::of(kind::MFA_DISABLED, user_id, now).by(actor_id);
            audit::record(tx, &event)?;
            Ok(true)
        })
    }

    /// Records the first step of a login: the token (by its SHA-256) for
    /// `user_id`, bound to `password_hash_sha` (the SHA-256 of the hash the
    /// password was verified against), working until `expires_at`.
    pub fn create_challenge(
        &self,
        token_hash: &[u8; 32],
        user_id: u64,
        password_hash_sha: &[u8; 32],
        now: u64,
        expires_at: u64,
    ) -> Result<(), DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "INSERT INTO mfa_challenges
                   (token_hash, user_id, password_hash_sha, created_at, expires_at)
                 VALUES (:hash, :uid, :pw, :now, :expires)",
                params! {
                    "hash" => &token_hash[..], "uid" => user_id, "pw" => &password_hash_sha[..],
                    "now" => now, "expires" => expires_at,
                },
            )
        })
    }

    /// The live login waiting under this token: unexpired, with fewer than
    /// [`MAX_CODE_FAILURES`] wrong codes.
    pub fn challenge(&self, token_hash: &[u8; 32], now: u64) -> Result<Option<Challenge>, DbError> {
        let row: Option<(u64, u32)> = self.run(|conn| {
            conn.exec_first(
                "SELECT user_id, failures FROM mfa_challenges
                 WHERE token_hash = :hash AND expires_at > :now AND failures < :max",
                params! { "hash" => &token_hash[..], "now" => now, "max" => MAX_CODE_FAILURES },
            )
        })?;
        Ok(row.map(|(user_id, failures)| Challenge { user_id, failures }))
    }

    /// Counts a wrong code against the token, which dies at the
    /// [`MAX_CODE_FAILURES`]th (the caller records the event).
    pub fn challenge_failed(&self, token_hash: &[u8; 32]) -> Result<(), DbError> {
        self.transaction(|tx| count_failure(tx, token_hash))
    }

    /// Replaces the account's sealed secret `old` with `new` (the same
    /// secret sealed under the current key), unless it changed meanwhile.
    pub fn reseal_totp(&self, user_id: u64, old: &[u8], new: &[u8]) -> Result<(), DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "UPDATE mfa_totp SET secret = :new WHERE user_id = :uid AND secret = :old",
                params! { "new" => new, "uid" => user_id, "old" => old },
            )
        })
    }

    /// The second step of a login, in one transaction: if the token is
    /// live, still for the account's current password hash, and the
    /// account enabled, spends `factor`, ends the token, opens `session`
    /// (marked as having passed a second factor) and clears the account's
    /// failed attempts. A recovery code's use is an event and a notice.
    pub fn complete_login(
        &self,
        token_hash: &[u8; 32],
        session: &Session,
        factor: Factor<'_>,
        recovery_notice: &dyn Fn(&str) -> Mail,
    ) -> Result<SecondStep, DbError> {
        let now = session.created_at;
        self.transaction(|tx| {
            let challenge: Option<(u64, Vec<u8>)> = tx.exec_first(
                "SELECT user_id, password_hash_sha FROM mfa_challenges
                 WHERE token_hash = :hash AND expires_at > :now AND failures < :max FOR UPDATE",
                params! { "hash" => &token_hash[..], "now" => now, "max" => MAX_CODE_FAILURES },
            )?;
            let Some((user_id, bound_to)) = challenge else {
                return Ok(SecondStep::InvalidToken);
            };
            let account: Option<(String, String, Option<u64>)> = tx.exec_first(
                "SELECT password_hash, email, disabled_at FROM users WHERE id = :uid FOR UPDATE",
                params! { "uid" => user_id },
            )?;
            let Some((hash, email, None)) = account else {
                return Ok(SecondStep::InvalidToken);
            };
            if user_id != session.user_id || crate::secret::sha256(&hash)[..] != bound_to[..] {
                return Ok(SecondStep::InvalidToken);
            }
            if !spend(tx, user_id, factor, now)? {
                count_failure(tx, token_hash)?;
                let detail = json!({ "reason": "invalid_mfa_code" });
                audit::record(tx, &Event::of(kind::MFA_FAILED, user_id, now).with(detail))?;
                return Ok(SecondStep::Spent);
            }
            tx.exec_drop(
                "DELETE FROM mfa_challenges WHERE token_hash = :hash",
                params! { "hash" => &token_hash[..] },
            )?;
            if !insert_session(tx, session, &hash)? {
                return Err(lost_race());
            }
            tx.exec_drop(
                "DELETE FROM login_failures WHERE user_id = :uid",
                params! { "uid" => user_id },
            )?;
            let recovery = matches!(factor, Factor::Recovery { .. });
            if recovery {
                recovery_used(tx, user_id, &email, now, recovery_notice)?;
            }
            Ok(SecondStep::LoggedIn { recovery })
        })
    }

    /// Deletes up to `batch` expired login challenges; returns how many.
    pub fn purge_expired_challenges(&self, now: u64, batch: u32) -> Result<u64, DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM mfa_challenges WHERE expires_at <= :now LIMIT :batch",
                params! { "now" => now, "batch" => batch },
            )?;
            Ok(conn.affected_rows())
        })
    }
}

/// Locks the account's row; its address, `None` if it is gone.
fn lock_email(tx: &mut Transaction<'_>, user_id: u64) -> mysql::Result<Option<String>> {
    tx.exec_first(
        "SELECT email FROM users WHERE id = :uid FOR UPDATE",
        params! { "uid" => user_id },
    )
}

/// True if the account has a confirmed factor (read under the lock of
/// [`lock_email`]).
fn mfa_enabled(tx: &mut Transaction<'_>, user_id: u64) -> mysql::Result<bool> {
    let at: Option<Option<u64>> = tx.exec_first(
        "SELECT mfa_enabled_at FROM users WHERE id = :uid",
        params! { "uid" => user_id },
    )?;
    Ok(at.flatten().is_some())
}

/// The account's recovery codes' hashes, read before they are replaced.
fn recovery_hashes(tx: &mut Transaction<'_>, user_id: u64) -> mysql::Result<Vec<Vec<u8>>> {
    tx.exec(
        "SELECT code_hash FROM mfa_recovery_codes WHERE user_id = :uid",
        params! { "uid" => user_id },
    )
}

/// Replaces the codes `old` (as [`recovery_hashes`] read them) with `new`.
fn replace_recovery_codes(
    tx: &mut Transaction<'_>,
    user_id: u64,
    old: &[Vec<u8>],
    new: &[[u8; 32]],
    now: u64,
) -> mysql::Result<()> {
    delete_each(
        tx,
        "DELETE FROM mfa_recovery_codes WHERE code_hash = :hash",
        old,
    )?;
    for hash in new {
        tx.exec_drop(
            "INSERT INTO mfa_recovery_codes (code_hash, user_id, created_at)
             VALUES (:hash, :uid, :now)",
            params! { "hash" => &hash[..], "uid" => user_id, "now" => now },
        )?;
    }
    Ok(())
}

/// Runs `statement` (a delete by primary key, `:hash`) for each of `hashes`,
/// as they were read: a delete by account would take gap locks (see
/// `replace_verify_token`).
fn delete_each(tx: &mut Transaction<'_>, statement: &str, hashes: &[Vec<u8>]) -> mysql::Result<()> {
    for hash in hashes {
        tx.exec_drop(statement, params! { "hash" => hash })?;
    }
    Ok(())
}

/// Spends `factor` by a write conditioned on its being unspent (see the
/// module docs); false if it was spent, or the factor has changed.
fn spend(
    tx: &mut Transaction<'_>,
    user_id: u64,
    factor: Factor<'_>,
    now: u64,
) -> mysql::Result<bool> {
    match factor {
        Factor::Totp { sealed, step } => {
            tx.exec_drop(
                "UPDATE mfa_totp SET last_step = :step
                 WHERE user_id = :uid AND confirmed_at IS NOT NULL AND secret = :secret
                   AND (last_step IS NULL OR last_step < :step)",
                params! { "step" => step, "uid" => user_id, "secret" => sealed },
            )?;
            Ok(tx.affected_rows() == 1)
        }
        Factor::Recovery { hashes } => {
            for hash in hashes {
                tx.exec_drop(
                    "UPDATE mfa_recovery_codes SET used_at = :now
                     WHERE code_hash = :hash AND user_id = :uid AND used_at IS NULL",
                    params! { "now" => now, "hash" => &hash[..], "uid" => user_id },
                )?;
                if tx.affected_rows() == 1 {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

/// One wrong code more on the token, which dies at the limit.
fn count_failure(tx: &mut Transaction<'_>, token_hash: &[u8; 32]) -> mysql::Result<()> {
    tx.exec_drop(
        "UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = :hash",
        params! { "hash" => &token_hash[..] },
    )
}

/// A recovery code was spent: its event, and the notice to the account.
fn recovery_used(
    tx: &mut Transaction<'_>,
    user_id: u64,
    email: &str,
    now: u64,
    notice: &dyn Fn(&str) -> Mail,
) -> mysql::Result<()> {
    mail::queue(
        tx,
        Some(user_id),
        notice::RECOVERY_CODE_USED,
        &notice(email),
        now,
    )?;
    audit::record(tx, &Event::of(kind::RECOVERY_CODE_USED, user_id, now))
}
