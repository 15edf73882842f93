//! Password checks and hashing, shared by every endpoint that takes a
//! password: the brute-force lockout, the hashing gate, and the upgrade of
//! hashes made with old parameters.

use super::Context;
use super::auth::Authenticated;
use crate::db::{Attempt, Credentials, Guarded};
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
/// for the right password; every check is counted before it is hashed
/// ([`Db::reserve_attempt`](crate::db::Db::reserve_attempt)), so guesses sent
/// in parallel, to any instance, cannot get more than `LOCKOUT_THRESHOLD`
/// checks; a right password clears the count.
pub(super) fn verify_password(
    ctx: &Context,
    given: &str,
    account: &Credentials,
) -> Result<(), ApiError> {
    let (threshold, window) = (ctx.config.lockout_threshold, ctx.config.lockout_window);
    // Cheap path: already locked when the account was read.
    let lock_ends = account.window_start + window;
    if account.failures >= threshold && lock_ends > ctx.now() {
        return Err(ApiError::TooManyAttempts(lock_ends - ctx.now()));
    }
    rate_limit_account(ctx, account.user.id)?;
    // The hashing slot first, then the reservation: the slot's wait is
    // bounded (503 after HASH_QUEUE_TIMEOUT_MS), and a reservation made
    // while waiting for it would count a check that may never run.
    let slot = ctx.hash_gate.acquire().ok_or(ApiError::Overloaded)?;
    let now = ctx.now();
    if let Attempt::Locked { until } =
        ctx.db
            .reserve_attempt(account.user.id, now, window, threshold)?
    {
        return Err(ApiError::TooManyAttempts(until.saturating_sub(now).max(1)));
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
            ctx.db.clear_login_failures(account.user.id)?;
            Ok(())
        }
        // Counted already, by the reservation.
        Ok(false) => Err(ApiError::WrongPassword),
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
