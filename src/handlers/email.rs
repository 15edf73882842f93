//! Proving addresses: the link mailed at registration (or again on
//! request) that verifies the account's address, and the link that confirms
//! a move to a new address. The JSON endpoints here and the pages those
//! links open (`crate::pages`) call the same functions, so the rules are
//! written once.
//!
//! Opening a link never changes anything (mail scanners open every link in
//! a message); only a POST, from the page's button or from a client, does.

use super::json::{json_object, string_member};
use super::{Context, account::user_json, rate_limit, request_link_mail};
use crate::db::{Confirmed, User, VERIFY_EMAIL};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::mail::{mail_queued, texts};
use crate::{log, secret};
use serde_json::json;

/// `POST /auth/email/verify {token}`: 200 `{"user"}` with `email_verified`
/// true; 400 `invalid_verification_token` for an unknown, used or expired
/// token.
pub fn verify_email(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let body = json_object(request)?;
    let token = string_member(&body, "token")?;
    let user = verify_with_token(ctx, token)?;
    Ok(Response::json(200, &json!({ "user": user_json(&user) })))
}

/// The rules of verifying an address, for the endpoint and the page: the
/// token is used up, and `email_verified_at` set if it was not; nothing
/// else about the account changes.
pub fn verify_with_token(ctx: &Context, token: &str) -> Result<User, ApiError> {
    let user = ctx
        .db
        .verify_email(&secret::sha256(token), ctx.now())?
        .ok_or(ApiError::InvalidVerificationToken)?;
    log::info("email verified", &[("user_id", user.id.into())]);
    Ok(user)
}

/// `POST /auth/email/verify/resend {email}`: 202 with the same body whether
/// the address is unknown, unverified or already verified, after the same
/// work (one insert); the mail resolver then sends an unverified account a
/// new link, which replaces the older ones, at most one per
/// `MAIL_RECIPIENT_COOLDOWN_SECONDS` (the one sent at registration counts).
pub fn resend_verification(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    request_link_mail(ctx, request, VERIFY_EMAIL)?;
    Ok(Response::json(
        202,
        &json!({
            "status": "accepted",
            "detail": "If an account with this address still needs verifying, a link is on its way."
        }),
    ))
}

/// `POST /auth/email/confirm {token}`: moves the account to the address the
/// link was sent to. 200 `{"user"}` with the new address (now verified); 400
/// `invalid_confirmation_token` for an unknown, used, expired or superseded
/// token; 409 `email_taken` if another account took the address meanwhile.
pub fn confirm_email_change(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let body = json_object(request)?;
    let token = string_member(&body, "token")?;
    let user = confirm_with_token(ctx, token)?;
    Ok(Response::json(200, &json!({ "user": user_json(&user) })))
}

/// The rules of confirming a move, for the endpoint and the page: in one
/// transaction the account moves, its address counts as verified, every
/// other link and reset of it stops working, and the old address gets a
/// notice that the move happened.
pub fn confirm_with_token(ctx: &Context, token: &str) -> Result<User, ApiError> {
    let now = ctx.now();
    let app = &ctx.config.app_name;
    let notice = |old: &str, new: &str| texts::email_changed(app, old, new, now);
    match ctx
        .db
        .confirm_email_change(&secret::sha256(token), now, &notice)?
    {
        Confirmed::Moved { user, .. } => {
            mail_queued(ctx, 1);
            log::info("email changed", &[("user_id", user.id.into())]);
            Ok(user)
        }
        Confirmed::Invalid => Err(ApiError::InvalidConfirmationToken),
        Confirmed::Taken => Err(ApiError::EmailTaken),
    }
}
