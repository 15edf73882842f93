//! Logging in: a verified password becomes a session and its token.

use super::credentials::{check_credentials, upgrade_hash_if_stale};
use super::json::{json_object, string_member};
use super::{Context, account::user_json, rate_limit};
use crate::db::{Guarded, Session};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::secret::{self, hex};
use crate::token::Claims;
use crate::{log, time};
use serde_json::json;

/// `POST /auth/login {email, password}`: verifies the password, records a
/// session and returns its token.
///
/// 200 `{"token", "token_type": "Bearer", "expires_at", "expires_in",
/// "user"}`; 404 `unknown_email`; 401 `wrong_password`. Telling the two
/// failures apart is a product requirement; the README's security notes say
/// what it reveals.
pub fn login(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let outcome = attempt_login(ctx, request);
    ctx.metrics.login(match &outcome {
        Ok(_) => "ok",
        Err(e) => e.code(),
    });
    outcome
}

fn attempt_login(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let body = json_object(request)?;
    let raw_email = string_member(&body, "email")?;
    let given = string_member(&body, "password")?;
    let account = check_credentials(ctx, raw_email, given)?;
    // Only after the password, so an unverified account tells a guesser
    // nothing a wrong password would not.
    if ctx.config.require_verified_email && account.user.email_verified_at.is_none() {
        return Err(ApiError::EmailNotVerified);
    }

    let now = ctx.now();
    let session = Session {
        id: secret::bytes::<16>()?,
        user_id: account.user.id,
        created_at: now,
        expires_at: now + ctx.config.token_ttl,
        ip: ctx.client_ip(request).to_string(),
        user_agent: request
            .header("user-agent")
            .unwrap_or("")
            .chars()
            .take(255)
            .collect(),
    };
    // The password changed between our read and this insert: the password
    // just verified is no longer the account's.
    if ctx.db.create_session(&session, &account.password_hash)? == Guarded::Stale {
        return Err(ApiError::WrongPassword);
    }
    ctx.metrics.session_created();
    log::set_user_id(account.user.id);
    upgrade_hash_if_stale(ctx, given, &account);
    let token = ctx.config.keyring.sign(&Claims {
        user_id: session.user_id,
        session_id: session.id,
        issued_at: session.created_at,
        expires_at: session.expires_at,
    });
    log::info(
        "login",
        &[
            ("user_id", account.user.id.into()),
            ("session", hex(&session.id).into()),
        ],
    );
    Ok(Response::json(
        200,
        &json!({
            "token": token,
            "token_type": "Bearer",
            "expires_at": time::rfc3339(session.expires_at),
            "expires_in": ctx.config.token_ttl,
            "user": user_json(&account.user),
        }),
    ))
}
