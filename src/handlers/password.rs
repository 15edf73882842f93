//! Passwords: changing one with the current password, and the forgotten
//! password flow (a mailed single-use link, then a new password).

use super::credentials::{check_credentials, hash_password, rate_limit_account};
use super::json::{json_object, string_member};
use super::{Context, rate_limit, request_link_mail};
use crate::db::PASSWORD_RESET;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::mail::{mail_queued, texts};
use crate::secret::sha256;
use crate::{log, password};
use serde_json::json;

/// `POST /auth/password {email, current_password, new_password, code?}`:
/// changes the password, ends every session of the account, and mails its
/// address a notice. An account with two-factor login also needs `code`
/// (a TOTP or a recovery code): 401 `mfa_required` without it.
///
/// 204; 404 `unknown_email`; 401 `wrong_password` (both 401
/// `invalid_credentials` with `HIDE_ACCOUNT_EXISTENCE`); 422 `weak_password`.
/// The update only applies if the hash is still the one just verified, so a
/// concurrent change cannot be overwritten by someone who knew the old
/// password.
pub fn change_password(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let body = json_object(request)?;
    let raw_email = string_member(&body, "email")?;
    let current = string_member(&body, "current_password")?;
    let new_password = string_member(&body, "new_password")?;
    let account = check_credentials(ctx, raw_email, current)?;
    // A stolen password alone must not end the owner's sessions.
    super::mfa::require_factor(ctx, request, &body, &account)?;
    password::check_strength(new_password, &account.user.email)
        .map_err(|e| ApiError::WeakPassword(e.to_string()))?;
    let new_hash = hash_password(ctx, new_password)?;
    let now = ctx.now();
    let ip = ctx.client_ip(request).to_string();
    let notice = |email: &str| texts::password_changed(&ctx.config.app_name, email, now, &ip);
    match ctx.db.change_password(
        account.user.id,
        &account.password_hash,
        &new_hash,
        now,
        &notice,
    )? {
        Some(ended) => {
            mail_queued(ctx, 1);
            ctx.metrics.sessions_ended(ended);
            log::info("password changed", &[("user_id", account.user.id.into())]);
            Ok(Response::empty(204))
        }
        None => Err(ApiError::WrongPassword),
    }
}

/// `POST /auth/password/forgot {email}`: 202 with the same body whether or
/// not the email has an account, so the answer reveals nothing; and the
/// same database work (one insert), so its timing reveals nothing either.
///
/// The request is recorded durably before the 202; the mail worker then
/// resolves it (see [`crate::mail`]): for an account outside its cooldown
/// (`MAIL_RECIPIENT_COOLDOWN_SECONDS`) it creates a single-use reset token
/// (256 random bits; only its SHA-256 is stored) valid for
/// `RESET_TOKEN_TTL_SECONDS`, and queues the message with the link to the
/// account's address, in one transaction.
pub fn forgot_password(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    request_link_mail(ctx, request, PASSWORD_RESET)?;
    Ok(Response::json(
        202,
        &json!({"status": "accepted", "detail": "If an account has this email, a reset link is on its way."}),
    ))
}

/// `POST /auth/password/reset {token, new_password}`: 204; sets the new
/// password, ends every session, clears the login lockout and uses up the
/// token, all in one transaction. 400 `invalid_reset_token` for an unknown,
/// used or expired token; 422 `weak_password`.
pub fn reset_password(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let body = json_object(request)?;
    let token = string_member(&body, "token")?;
    let new_password = string_member(&body, "new_password")?;
    reset_with_token(ctx, request, token, new_password)?;
    Ok(Response::empty(204))
}

/// The rules of a password reset, whatever form the request came in: the
/// JSON endpoint above and the HTML page (`crate::pages`) both call this,
/// after spending the client address's rate limit and reading their body,
/// so the two cannot drift apart.
///
/// In order: the token must be live (known, unused, unexpired, not
/// retired: else `InvalidResetToken`); the password must pass
/// [`password::check_strength`] for the account's email (else
/// `WeakPassword` with the rule's sentence); the account's rate limit is
/// spent (`RateLimited`); the password is hashed under the hashing gate
/// (`Overloaded`); then one transaction uses up the token, sets the hash,
/// ends every session and clears the lockout (`InvalidResetToken` if the
/// token was used or voided meanwhile). Nothing is written unless all of it
/// succeeds.
pub fn reset_with_token(
    ctx: &Context,
    request: &Request,
    token: &str,
    new_password: &str,
) -> Result<(), ApiError> {
    // The lookup is by the token's SHA-256, so timing reveals nothing
    // about a real token's bytes.
    let token_hash = sha256(token);
    let now = ctx.now();
    let reset = ctx
        .db
        .find_reset(&token_hash, now)?
        .ok_or(ApiError::InvalidResetToken)?;
    password::check_strength(new_password, &reset.user.email)
        .map_err(|e| ApiError::WeakPassword(e.to_string()))?;
    rate_limit_account(ctx, reset.user.id)?;
    let new_hash = hash_password(ctx, new_password)?;
    let ip = ctx.client_ip(request).to_string();
    let notice = |email: &str| texts::password_reset_done(&ctx.config.app_name, email, now, &ip);
    match ctx
        .db
        .complete_reset(&token_hash, reset.user.id, &new_hash, now, &notice)?
    {
        Some(ended) => {
            mail_queued(ctx, 1);
            ctx.metrics.sessions_ended(ended);
            log::info("password reset", &[("user_id", reset.user.id.into())]);
            Ok(())
        }
        None => Err(ApiError::InvalidResetToken),
    }
}
