//! The account itself: registering it, and what its owner can do with it
//! through `/auth/me` (read it, ask to move it to a new address, delete it).

use super::auth::authenticate;
use super::credentials::{confirm_password, hash_password};
use super::json::{json_object, string_member};
use super::{Context, rate_limit};
use crate::db::{Change, EmailChangeRequest, Proof, User, Verification, notice};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::mail::{mail_queued, texts};
use crate::{email, log, password, profile, secret, time};
use serde_json::{Value, json};

/// `POST /auth/register {email, password, name?, locale?, metadata?}`:
/// creates an account with its profile, and queues the link that verifies
/// its address in the same transaction.
///
/// 201 `{"user"}`; 422 `invalid_email`, `weak_password` or
/// `invalid_profile` (the detail says which rule failed); 409
/// `email_taken`, decided by the database's unique
/// key so that concurrent registrations of one email yield exactly one 201.
/// With `HIDE_ACCOUNT_EXISTENCE`, a taken address answers 201 too, with a
/// body of the same shape, and its owner is mailed a notice instead; the
/// `user` then never carries an `id`, for a new account or not, so the body
/// cannot tell them apart.
pub fn register(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let body = json_object(request)?;
    let raw_email = string_member(&body, "email")?;
    let new_password = string_member(&body, "password")?;
    let profile = profile::change_from(&body)?;
    let address = email::normalize(raw_email).map_err(|e| ApiError::InvalidEmail(e.to_string()))?;
    password::check_strength(new_password, &address.email)
        .map_err(|e| ApiError::WeakPassword(e.to_string()))?;
    let hash = hash_password(ctx, new_password)?;
    let now = ctx.now();
    let token = secret::token()?;
    let config = &ctx.config;
    let link = format!("{}/verify-email?token={token}", config.public_url);
    let mail = texts::verify_email(
        &config.app_name,
        &address.email,
        &link,
        config.verify_token_ttl,
    );
    let verification = Verification {
        token_hash: &secret::sha256(&token),
        expires_at: now + config.verify_token_ttl,
        mail: &mail,
    };
    let hide = config.hide_account_existence;
    let user = match ctx
        .db
        .create_user(&address, &hash, &profile, now, &verification)?
    {
        Some(user) => user,
        None if hide => {
            let notice = texts::address_in_use(&config.app_name, &address.email, now);
            ctx.db.queue_notice(notice::ADDRESS_IN_USE, &notice, now)?;
            mail_queued(ctx, 1);
            log::info("registration of a taken address answered as new", &[]);
            let lookalike = User::new(0, &address.email, now, &profile);
            return Ok(Response::json(
                201,
                &json!({ "user": registered_json(ctx, &lookalike) }),
            ));
        }
        None => return Err(ApiError::EmailTaken),
    };
    mail_queued(ctx, 1);
    log::info("user registered", &[("user_id", user.id.into())]);
    Ok(Response::json(
        201,
        &json!({ "user": registered_json(ctx, &user) }),
    ))
}

/// The `user` of a registration's answer: without its `id` when
/// `HIDE_ACCOUNT_EXISTENCE` is on (see [`register`]).
fn registered_json(ctx: &Context, user: &User) -> Value {
    let mut value = user_json(user);
    if ctx.config.hide_account_existence {
        if let Value::Object(map) = &mut value {
            map.remove("id");
        }
    }
    value
}

/// `PATCH /auth/me {name?, locale?, metadata?, email?, current_password?}`
/// (Bearer): changes the profile at once (no password needed: 200
/// `{"user"}`), and with `email` (which needs `current_password`) asks to
/// move the account to a new address. Nothing changes for the address yet:
/// a confirmation link goes to the new address (`/confirm-email`) and a
/// notice to the old one, and the move happens only when the link is used.
/// With `email`, the profile is changed only if the request goes through.
///
/// 422 `invalid_profile`; 202 `{"status": "pending", "email"}`; 422 `invalid_email`; 401
/// `wrong_password` (under the same lockout as login); 409 `email_taken` if
/// the new address has an account (with `HIDE_ACCOUNT_EXISTENCE`: 202, and
/// its owner gets a notice instead of a link). A newer request supersedes
/// older pending ones.
pub fn update_me(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let auth = authenticate(ctx, request)?;
    let body = json_object(request)?;
    let profile = profile::change_from(&body)?;
    if !body.contains_key("email") && !profile.is_empty() {
        let user = ctx
            .db
            .update_profile(auth.user.id, &auth.session_id, &profile, ctx.now())?
            .ok_or(ApiError::TokenRevoked)?;
        return Ok(Response::json(200, &json!({ "user": user_json(&user) })));
    }
    let raw_email = string_member(&body, "email")?;
    let current = string_member(&body, "current_password")?;
    let address = email::normalize(raw_email).map_err(|e| ApiError::InvalidEmail(e.to_string()))?;
    let account = confirm_password(ctx, &auth, current)?;
    let now = ctx.now();
    let proof = Proof {
        user_id: auth.user.id,
        session_id: &auth.session_id,
        verified_hash: &account.password_hash,
        now,
    };
    let token = secret::token()?;
    let config = &ctx.config;
    let app = &config.app_name;
    let link = format!("{}/confirm-email?token={token}", config.public_url);
    let link_mail =
        texts::confirm_email_change(app, &address.email, &link, config.verify_token_ttl);
    let ip = ctx.client_ip(request).to_string();
    let notice = |old: &str| texts::email_change_requested(app, old, &address.email, now, &ip);
    let owner_notice = texts::address_in_use(app, &address.email, now);
    let change = EmailChangeRequest {
        address: &address,
        token_hash: &secret::sha256(&token),
        expires_at: now + config.verify_token_ttl,
        link_mail: &link_mail,
        notice: &notice,
        hide_taken: config.hide_account_existence.then_some(&owner_notice),
    };
    match ctx.db.request_email_change(&proof, &change, now)? {
        Change::Done(()) => {}
        Change::Taken => return Err(ApiError::EmailTaken),
        // The session ended (or the account went) while the password was
        // being checked: its tokens are dead.
        Change::Revoked | Change::LastAdmin => return Err(ApiError::TokenRevoked),
        Change::PasswordChanged => return Err(ApiError::WrongPassword),
    }
    if !profile.is_empty() {
        ctx.db
            .update_profile(auth.user.id, &auth.session_id, &profile, now)?
            .ok_or(ApiError::TokenRevoked)?;
    }
    mail_queued(ctx, 2);
    log::info(
        "email change requested",
        &[("user_id", auth.user.id.into())],
    );
    Ok(Response::json(
        202,
        &json!({"status": "pending", "email": address.email}),
    ))
}

/// `DELETE /auth/me {password}` (Bearer): 204; deletes the account with
/// every session, reset token and failure count of it, and mails its
/// address a notice. 401 `wrong_password`; 409 `last_admin` for the last
/// enabled admin.
pub fn delete_me(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let auth = authenticate(ctx, request)?;
    let body = json_object(request)?;
    let given = string_member(&body, "password")?;
    let account = confirm_password(ctx, &auth, given)?;
    let now = ctx.now();
    let proof = Proof {
        user_id: auth.user.id,
        session_id: &auth.session_id,
        verified_hash: &account.password_hash,
        now,
    };
    let ip = ctx.client_ip(request).to_string();
    let notice = |email: &str| texts::account_deleted(&ctx.config.app_name, email, now, &ip);
    let ended = match ctx.db.delete_user(&proof, &notice)? {
        Change::Done(ended) => ended,
        Change::Revoked | Change::Taken => return Err(ApiError::TokenRevoked),
        Change::PasswordChanged => return Err(ApiError::WrongPassword),
        Change::LastAdmin => return Err(ApiError::LastAdmin),
    };
    mail_queued(ctx, 1);
    ctx.metrics.sessions_ended(ended);
    log::info("user deleted", &[("user_id", auth.user.id.into())]);
    Ok(Response::empty(204))
}

/// `GET /auth/me` (Bearer): 200 `{"user", "mfa"}` for the token's account;
/// `mfa` says whether this session's login passed a second factor.
pub fn me(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    Ok(Response::json(
        200,
        &json!({ "user": user_json(&auth.user), "mfa": auth.mfa }),
    ))
}

/// The public form of an account: never the hash.
pub(crate) fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "email_verified": user.email_verified_at.is_some(),
        "role": user.role.as_str(),
        "name": user.name,
        "locale": user.locale,
        "metadata": user.metadata,
        "mfa_enabled": user.mfa_enabled_at.is_some(),
        "created_at": time::rfc3339(user.created_at),
    })
}
