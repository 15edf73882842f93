//! Password checks and hashing, shared by every endpoint that takes a
//! password: the brute-force lockout, the hashing gate, and the upgrade of
//! hashes made with old parameters.

use super::Context;
use super::auth::Authenticated;
use crate::audit::kind;
use crate::db::{Attempt, Credentials, DbError, Event, Guarded};
use crate::error::ApiError;
use crate::limits::HashPermit;
use crate::{email, log};
use std::time::Instant;

/// Asks an authenticated caller for their password again before a sensitive
/// change, so a stolen token alone is not enough (same lockout and limits
/// as login). Returns the account as verified: the change must then be
/// conditioned on its hash (see [`crate::db::Proof`]).
pub(super) fn confirm_password(
    ctx: &Context,
    auth: &Authenticated,
    given: &str,
) -> Result<Credentials, ApiError> {
    let account = ctx
        .db
        .credentials_by_id(auth.user.id)?
        .ok_or(ApiError::TokenRevoked)?;
    // The session passed whatever factors its login needed: a right
    // password here clears the count.
    verify_password(ctx, given, &account, true)?;
    Ok(account)
}

/// The account of a login or password change whose password `given` is
/// right. An address that cannot be valid cannot have an account either, so
/// it is `unknown_email` too.
///
/// With `HIDE_ACCOUNT_EXISTENCE` every failure is 401 `invalid_credentials`
/// after the same work: an unknown address (and a locked account, whose
/// 429 would otherwise say it exists) spends its rate limit, a hashing
/// slot, a durable reservation of the attempt (`login_decoys`, so unknown
/// addresses lock as accounts do) and one verification of `given` against
/// a decoy hash made at start-up with the current parameters, as a wrong
/// password for a real account does.
pub(super) fn check_credentials(
    ctx: &Context,
    raw_email: &str,
    given: &str,
) -> Result<Credentials, ApiError> {
    let hide = ctx.config.hide_account_existence;
    let address = email::normalize(raw_email).ok();
    let account = match &address {
        Some(address) => ctx.db.credentials(&address.key)?,
        None => None,
    };
    let Some(account) = account else {
        // The address tried, if it is one: an admin reading the audit log
        // sees what was guessed.
        let tried = address.as_ref().map(|a| a.email.as_str());
        refused(ctx, kind::LOGIN_FAILED, None, "unknown_email", tried);
        if !hide {
            return Err(ApiError::UnknownEmail);
        }
        // The same steps as for a real account's wrong password: its rate
        // limit, a hashing slot, a durable reservation, one verification.
        if let Some(address) = &address {
            rate_limit_mailbox(ctx, &address.key)?;
        }
        let slot = ctx.hash_gate.acquire().ok_or(ApiError::Overloaded)?;
        if let Some(address) = &address {
            let (threshold, window) = (ctx.config.lockout_threshold, ctx.config.lockout_window);
            ctx.db
                .reserve_decoy_attempt(&address.key, ctx.now(), window, threshold)?;
        }
        verify_decoy(ctx, slot, given);
        return Err(ApiError::InvalidCredentials);
    };
    // With a second factor to come, the count stands until it is passed:
    // the password alone must not reset a guesser's count of codes.
    let clear = account.user.mfa_enabled_at.is_none();
    match verify_password(ctx, given, &account, clear) {
        // Only after the password, so a guesser learns nothing from it.
        Ok(()) if account.user.disabled_at.is_some() => {
            refused(
                ctx,
                kind::LOGIN_FAILED,
                Some(account.user.id),
                "account_disabled",
                None,
            );
            Err(ApiError::AccountDisabled)
        }
        Ok(()) => Ok(account),
        Err(ApiError::WrongPassword) if hide => Err(ApiError::InvalidCredentials),
        Err(ApiError::TooManyAttempts(_)) if hide => {
            let slot = ctx.hash_gate.acquire().ok_or(ApiError::Overloaded)?;
            verify_decoy(ctx, slot, given);
            Err(ApiError::InvalidCredentials)
        }
        Err(e) => Err(e),
    }
}

/// Verifies `given` against the decoy hash on `slot`, for the time it takes.
fn verify_decoy(ctx: &Context, slot: HashPermit<'_>, given: &str) {
    let Some(decoy) = ctx.decoy_hash.clone() else {
        return;
    };
    let (hasher, given) = (ctx.config.hasher.clone(), given.to_string());
    let started = Instant::now();
    // The outcome does not matter: no password matches a random one.
    let _ = slot.run(move || hasher.verify(&given, &decoy));
    ctx.metrics.hash_took(started.elapsed());
}

/// [`rate_limit_account`] for an address without an account, so that with
/// `HIDE_ACCOUNT_EXISTENCE` it meets a bucket as a real account would. The
/// key is taken from the mailbox key with the top bit set, apart from every
/// account id.
fn rate_limit_mailbox(ctx: &Context, key: &[u8; 32]) -> Result<(), ApiError> {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[..8]);
    rate_limit_account(ctx, u64::from_be_bytes(first) | 1 << 63)
}

/// Spends one request of the account's rate-limit bucket: every request
/// that will hash for an account pays here, on top of the client address's
/// bucket, so spreading guesses over many addresses does not help.
pub(super) fn rate_limit_account(ctx: &Context, user_id: u64) -> Result<(), ApiError> {
    ctx.account_limiter
        .check(user_id, Instant::now())
        .map_err(ApiError::RateLimited)
}

/// Checks a password against the account, under the brute-force lockout:
/// a locked account answers 429 `too_many_attempts` before any hashing, even
/// for the right password; every check is counted before it is hashed
/// ([`reserve_check`]), so guesses sent in parallel, to any instance,
/// cannot get more than `LOCKOUT_THRESHOLD` checks; a right password
/// clears the count if `clear` (not when a second factor must follow).
pub(super) fn verify_password(
    ctx: &Context,
    given: &str,
    account: &Credentials,
    clear: bool,
) -> Result<(), ApiError> {
    let (threshold, window) = (ctx.config.lockout_threshold, ctx.config.lockout_window);
    // Cheap path: already locked when the account was read.
    let lock_ends = account.window_start + window;
    let user_id = Some(account.user.id);
    if account.failures >= threshold && lock_ends > ctx.now() {
        refused(ctx, kind::LOGIN_LOCKED, user_id, "too_many_attempts", None);
        return Err(ApiError::TooManyAttempts(lock_ends - ctx.now()));
    }
    rate_limit_account(ctx, account.user.id)?;
    // The hashing slot first, then the reservation: the slot's wait is
    // bounded (503 after HASH_QUEUE_TIMEOUT_MS), and a reservation made
    // while waiting for it would count a check that may never run.
    let slot = ctx.hash_gate.acquire().ok_or(ApiError::Overloaded)?;
    reserve_check(ctx, account.user.id)?;
    // A hash imported from elsewhere while a pepper is set was made
    // without it; the login that verifies it replaces it.
    let hasher = if account.unpeppered {
        ctx.config.hasher.without_pepper()
    } else {
        ctx.config.hasher.clone()
    };
    let (given, stored) = (given.to_string(), account.password_hash.clone());
    let started = Instant::now();
    let verified = slot
        .run(move || hasher.verify(&given, &stored))
        .ok_or(ApiError::Internal)?;
    ctx.metrics.hash_took(started.elapsed());
    match verified {
        Ok(true) => {
            if clear {
                ctx.db.clear_login_failures(account.user.id)?;
            }
            Ok(())
        }
        // Counted already, by the reservation.
        Ok(false) => {
            refused(ctx, kind::LOGIN_FAILED, user_id, "wrong_password", None);
            Err(ApiError::WrongPassword)
        }
        Err(e) => {
            // A stored hash we cannot parse is corrupt data, not a wrong
            // password; say so in the log, not to the client.
            log::error(
                "stored password hash is not valid",
                &[
                    ("user_id", account.user.id.into()),
                    ("error", e.to_string().into()),
                ],
            );
            Err(ApiError::Internal)
        }
    }
}

/// Counts one check of a secret of the account (a password or a second
/// factor's code) before it is made, under the lockout: 429
/// `too_many_attempts` if the account is locked. The count stands as a
/// failure until a success clears it.
pub(super) fn reserve_check(ctx: &Context, user_id: u64) -> Result<(), ApiError> {
    let (threshold, window) = (ctx.config.lockout_threshold, ctx.config.lockout_window);
    let now = ctx.now();
    let reserved = match ctx.db.reserve_attempt(user_id, now, window, threshold) {
        // Reservations for this account conflicting past every rerun: many
        // guesses at once, from several nodes. Refuse this one as the lock
        // would, without checking.
        Err(DbError::Busy(_)) => return Err(ApiError::TooManyAttempts(1)),
        other => other?,
    };
    if let Attempt::Locked { until } = reserved {
        let reason = "too_many_attempts";
        refused(ctx, kind::LOGIN_LOCKED, Some(user_id), reason, None);
        return Err(ApiError::TooManyAttempts(until.saturating_sub(now).max(1)));
    }
    Ok(())
}

/// Records a refused password check in the audit log: `reason` is the
/// error code, `tried` the address for an unknown one. No other write goes
/// with a refusal, so the event is written on its own (at most one per
/// attempt, which the rate limits bound), and a failure to write it is
/// logged rather than turned into a 503: the refusal stands either way.
pub(super) fn refused(
    ctx: &Context,
    kind: &'static str,
    user_id: Option<u64>,
    reason: &str,
    tried: Option<&str>,
) {
    let mut detail = serde_json::json!({ "reason": reason });
    if let Some(email) = tried {
        detail["email"] = email.into();
    }
    let event = Event {
        kind,
        user_id,
        actor_id: None,
        detail,
        at: ctx.now(),
    };
    if let Err(e) = ctx.db.record_event(&event) {
        log::warn(
            "audit event not recorded",
            &[("type", kind.into()), ("error", e.to_string().into())],
        );
    }
}

pub(super) fn hash_password(ctx: &Context, plain: &str) -> Result<String, ApiError> {
    let slot = ctx.hash_gate.acquire().ok_or(ApiError::Overloaded)?;
    let (hasher, plain) = (ctx.config.hasher.clone(), plain.to_string());
    let started = Instant::now();
    let hashed = slot
        .run(move || hasher.hash(&plain))
        .ok_or(ApiError::Internal)?;
    ctx.metrics.hash_took(started.elapsed());
    hashed.map_err(|e| {
        log::error("hashing failed", &[("error", e.to_string().into())]);
        ApiError::Internal
    })
}

/// After a successful login: if the stored hash was made with other Argon2
/// parameters than the configured ones, or without the pepper, store a new
/// hash of the password just verified. Best effort: a failure here must not
/// fail the login. Returns the hash the account has now, as far as this
/// request knows.
pub(super) fn upgrade_hash_if_stale(ctx: &Context, plain: &str, account: &Credentials) -> String {
    let old = account.password_hash.clone();
    if !account.unpeppered && !ctx.config.hasher.needs_rehash(&account.password_hash) {
        return old;
    }
    let Ok(new_hash) = hash_password(ctx, plain) else {
        return old;
    };
    match ctx
        .db
        .upgrade_hash(account.user.id, &account.password_hash, &new_hash)
    {
        Ok(Guarded::Done) => {
            log::info(
                "password hash upgraded",
                &[("user_id", account.user.id.into())],
            );
            new_hash
        }
        Ok(Guarded::Stale) => old,
        Err(e) => {
            log::warn(
                "password hash upgrade failed",
                &[("error", e.to_string().into())],
            );
            old
        }
    }
}
