//! The account itself: registering it, and what its owner can do with it
//! through `/auth/me` (read it, change its email, delete it).

use super::auth::authenticate;
use super::credentials::{confirm_password, hash_password};
use super::json::{json_object, string_member};
use super::{Context, rate_limit};
use crate::db::{Change, Proof, User};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::{email, log, password, time};
use serde_json::{Value, json};

/// `POST /auth/register {email, password}`: creates an account.
///
/// 201 `{"user"}`; 422 `invalid_email` or `weak_password` (the detail says
/// which rule failed); 409 `email_taken`, decided by the database's unique
/// key so that concurrent registrations of one email yield exactly one 201.
pub fn register(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let body = json_object(request)?;
    let raw_email = string_member(&body, "email")?;
    let new_password = string_member(&body, "password")?;
    let address = email::normalize(raw_email).map_err(|e| ApiError::InvalidEmail(e.to_string()))?;
    password::check_strength(new_password, &address.email)
        .map_err(|e| ApiError::WeakPassword(e.to_string()))?;
    let hash = hash_password(ctx, new_password)?;
    let user = ctx
        .db
        .create_user(&address, &hash, ctx.now())?
        .ok_or(ApiError::EmailTaken)?;
    log::info("user registered", &[("user_id", user.id.into())]);
    Ok(Response::json(201, &json!({ "user": user_json(&user) })))
}

/// `PATCH /auth/me {email, current_password}` (Bearer): changes the email.
/// 200 `{"user"}`; 422 `invalid_email`; 401 `wrong_password` (under the
/// same lockout as login); 409 `email_taken`.
pub fn update_me(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let auth = authenticate(ctx, request)?;
    let body = json_object(request)?;
    let raw_email = string_member(&body, "email")?;
    let current = string_member(&body, "current_password")?;
    let address = email::normalize(raw_email).map_err(|e| ApiError::InvalidEmail(e.to_string()))?;
    let account = confirm_password(ctx, &auth, current)?;
    let proof = Proof {
        user_id: auth.user.id,
        session_id: &auth.session_id,
        verified_hash: &account.password_hash,
        now: ctx.now(),
    };
    let user = match ctx.db.change_email(&proof, &address)? {
        Change::Done(user) => user,
        Change::Taken => return Err(ApiError::EmailTaken),
        // The session ended (or the account went) while the password was
        // being checked: its tokens are dead.
        Change::Revoked => return Err(ApiError::TokenRevoked),
        Change::PasswordChanged => return Err(ApiError::WrongPassword),
    };
    log::info("email changed", &[("user_id", user.id.into())]);
    Ok(Response::json(200, &json!({ "user": user_json(&user) })))
}

/// `DELETE /auth/me {password}` (Bearer): 204; deletes the account with
/// every session, reset token and failure count of it. 401 `wrong_password`.
pub fn delete_me(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let auth = authenticate(ctx, request)?;
    let body = json_object(request)?;
    let given = string_member(&body, "password")?;
    let account = confirm_password(ctx, &auth, given)?;
    let proof = Proof {
        user_id: auth.user.id,
        session_id: &auth.session_id,
        verified_hash: &account.password_hash,
        now: ctx.now(),
    };
    let ended = match ctx.db.delete_user(&proof)? {
        Change::Done(ended) => ended,
        Change::Revoked | Change::Taken => return Err(ApiError::TokenRevoked),
        Change::PasswordChanged => return Err(ApiError::WrongPassword),
    };
    ctx.metrics.sessions_ended(ended);
    log::info("user deleted", &[("user_id", auth.user.id.into())]);
    Ok(Response::empty(204))
}

/// `GET /auth/me` (Bearer): 200 `{"user"}` for the token's account.
pub fn me(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    Ok(Response::json(
        200,
        &json!({ "user": user_json(&auth.user) }),
    ))
}

/// The public form of an account: never the hash.
pub(super) fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "created_at": time::rfc3339(user.created_at),
    })
}
