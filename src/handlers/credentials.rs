//! Password checks and hashing, shared by every endpoint that takes a
//! password: the brute-force lockout, the hashing gate, and the upgrade of
//! hashes made with old parameters.

use super::Context;
use super::auth::Authenticated;
use crate::db::{Credentials, Guarded};
use crate::error::ApiError;
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
    verify_password(ctx, given, &account)?;
    Ok(account)
}

/// The account for a login or password change. An address that cannot be
/// valid cannot have an account either, so it is `unknown_email` too.
pub(super) fn find_account(ctx: &Context, raw_email: &str) -> Result<Credentials, ApiError> {
    let address = email::normalize(raw_email).map_err(|_| ApiError::UnknownEmail)?;
    ctx.db
        .credentials(&address.key)?
        .ok_or(ApiError::UnknownEmail)
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
/// for the right password; a wrong password counts toward the lock; a right
/// one clears the count. Checks for one account take turns (see
/// [`AccountLocks`](crate::limits::AccountLocks)), so parallel guesses see
/// each other's failures and cannot slip past the threshold.
pub(super) fn verify_password(
    ctx: &Context,
    given: &str,
    account: &Credentials,
) -> Result<(), ApiError> {
    let (threshold, window) = (ctx.config.lockout_threshold, ctx.config.lockout_window);
    let locked = |failures: u32, window_start: u64, now: u64| {
        let lock_ends = window_start + window;
        (failures >= threshold && lock_ends > now)
            .then(|| ApiError::TooManyAttempts(lock_ends - now))
    };
    // Cheap path: already locked when the account was read.
    if let Some(e) = locked(account.failures, account.window_start, ctx.now()) {
        return Err(e);
    }
    rate_limit_account(ctx, account.user.id)?;
    // The hashing slot first, then the account's turn: the slot's wait is
    // bounded (503 after HASH_QUEUE_TIMEOUT_MS), and since only slot holders
    // take turns, a turn is never held while waiting for a slot.
    let slot = ctx.hash_gate.acquire().ok_or(ApiError::Overloaded)?;
    let _turn = ctx.account_locks.lock(account.user.id);
    // Re-read under the turn: an earlier guess may have just failed.
    let now = ctx.now();
    let (failures, window_start) = ctx.db.login_failures(account.user.id)?;
    if let Some(e) = locked(failures, window_start, now) {
        return Err(e);
    }
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
            if failures > 0 {
                ctx.db.clear_login_failures(account.user.id)?;
            }
            Ok(())
        }
        Ok(false) => {
            ctx.db.record_login_failure(account.user.id, now, window)?;
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
/// fail the login.
pub(super) fn upgrade_hash_if_stale(ctx: &Context, plain: &str, account: &Credentials) {
    if !account.unpeppered && !ctx.config.hasher.needs_rehash(&account.password_hash) {
        return;
    }
    let Ok(new_hash) = hash_password(ctx, plain) else {
        return;
    };
    match ctx
        .db
        .upgrade_hash(account.user.id, &account.password_hash, &new_hash)
    {
        Ok(Guarded::Done) => log::info(
            "password hash upgraded",
            &[("user_id", account.user.id.into())],
        ),
        Ok(Guarded::Stale) => {}
        Err(e) => log::warn(
            "password hash upgrade failed",
            &[("error", e.to_string().into())],
        ),
    }
}
