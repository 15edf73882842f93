//! Logging in and refreshing: a verified password becomes a session, and a
//! session's refresh token its next pair of tokens. Both answer with the
//! same body, built once here.

use super::credentials::{check_credentials, refused, upgrade_hash_if_stale};
use super::json::{json_object, string_member};
use super::{Context, account::user_json, rate_limit};
use crate::audit::kind;
use crate::db::{Guarded, Presented, Refreshed, Session, User};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::secret::{self, hex};
use crate::token::Claims;
use crate::token::refresh::RefreshClaims;
use crate::{log, time};
use serde_json::json;

/// `POST /auth/login {email, password}`: verifies the password, records a
/// session and returns its tokens (`tokens_response`). For an account
/// with two-factor login, the right password opens no session yet: the
/// answer is the second step's `mfa_token` (`super::mfa`).
///
/// 404 `unknown_email`; 401 `wrong_password`. Telling the two failures
/// apart is a product requirement; the README's security notes say what it
/// reveals.
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
        let user_id = Some(account.user.id);
        refused(ctx, kind::LOGIN_FAILED, user_id, "email_not_verified", None);
        return Err(ApiError::EmailNotVerified);
    }

    if account.user.mfa_enabled_at.is_some() {
        // The token of the second step is bound to the hash as it is now.
        let hash = upgrade_hash_if_stale(ctx, given, &account);
        return super::mfa::challenge(ctx, &account, &hash);
    }
    let session = new_session(ctx, request, account.user.id, false)?;
    // The password changed between our read and this insert: the password
    // just verified is no longer the account's.
    if ctx.db.create_session(&session, &account.password_hash)? == Guarded::Stale {
        return Err(ApiError::WrongPassword);
    }
    ctx.metrics.session_created();
    log::set_user_id(account.user.id);
    upgrade_hash_if_stale(ctx, given, &account);
    log::info(
        "login",
        &[
            ("user_id", account.user.id.into()),
            ("session", hex(&session.id).into()),
        ],
    );
    Ok(tokens_response(ctx, &session, &account.user))
}

/// A new session for `user_id`, opened now by `request`'s client; `mfa`
/// if its login passed a second factor.
pub(super) fn new_session(
    ctx: &Context,
    request: &Request,
    user_id: u64,
    mfa: bool,
) -> Result<Session, ApiError> {
    let session = Session::new(
        secret::bytes::<16>()?,
        secret::bytes::<16>()?,
        user_id,
        ctx.now(),
        &ctx.config.sessions,
        ctx.client_ip(request).to_string(),
        request
            .header("user-agent")
            .unwrap_or("")
            .chars()
            .take(255)
            .collect(),
    );
    Ok(Session { mfa, ..session })
}

/// `POST /auth/refresh {refresh_token}`: the session's next tokens, by the
/// rules of `db::sessions` (rotation, the reuse grace, reuse ending the
/// session). No password, no hashing.
///
/// 200 as login; 401 `invalid_refresh_token` (malformed, forged, or its
/// session ended), 401 `refresh_token_reused` (the session is now ended).
pub fn refresh(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let outcome = attempt_refresh(ctx, request);
    ctx.metrics.refresh(match &outcome {
        Ok(_) => "ok",
        Err(e) => e.code(),
    });
    outcome
}

fn attempt_refresh(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let body = json_object(request)?;
    let token = string_member(&body, "refresh_token")?;
    let claims = ctx
        .config
        .keyring
        .verify_refresh(token)
        .map_err(|_| ApiError::InvalidRefreshToken)?;
    let presented = Presented {
        session_id: claims.session_id,
        generation: claims.generation,
        nonce: claims.nonce,
    };
    match ctx
        .db
        .refresh_session(&presented, ctx.now(), &ctx.config.sessions)?
    {
        Refreshed::Rotated(session, user) => {
            log::set_user_id(user.id);
            log::debug("session refreshed", &[("session", hex(&session.id).into())]);
            Ok(tokens_response(ctx, &session, &user))
        }
        Refreshed::Current(session, user) => {
            log::set_user_id(user.id);
            log::info(
                "refresh token of the previous generation within the grace: current tokens again",
                &[("session", hex(&session.id).into())],
            );
            Ok(tokens_response(ctx, &session, &user))
        }
        Refreshed::Reused { user_id } => {
            log::set_user_id(user_id);
            ctx.metrics.sessions_ended(1);
            log::warn(
                "refresh token reused after rotation: session ended",
                &[
                    ("user_id", user_id.into()),
                    ("session", hex(&claims.session_id).into()),
                    ("generation", u64::from(claims.generation).into()),
                ],
            );
            Err(ApiError::RefreshTokenReused)
        }
        Refreshed::Invalid => Err(ApiError::InvalidRefreshToken),
    }
}

/// The answer to a login or a refresh: a new access token (valid for
/// `TOKEN_TTL_SECONDS`, never past the session's end) and the session's
/// current refresh token.
///
/// 200 `{"token", "token_type": "Bearer", "expires_at", "expires_in",
/// "refresh_token", "refresh_expires_at", "user"}`.
pub(super) fn tokens_response(ctx: &Context, session: &Session, user: &User) -> Response {
    // A session that ended in the second since it was opened or refreshed
    // (a very short SESSION_IDLE_SECONDS) gets a token issued just before
    // its end, hence already expired: the truth, and still a well-formed
    // token (one whose expiry were its issue would read as malformed).
    let now = ctx.now().min(session.expires_at.saturating_sub(1));
    let expires_at = now
        .saturating_add(ctx.config.token_ttl)
        .min(session.expires_at);
    let keyring = &ctx.config.keyring;
    let token = keyring.sign(&Claims {
        user_id: session.user_id,
        session_id: session.id,
        issued_at: now,
        expires_at,
    });
    let mut body = json!({
        "token": token,
        "token_type": "Bearer",
        "expires_at": time::rfc3339(expires_at),
        "expires_in": expires_at.saturating_sub(now),
        "user": user_json(user),
    });
    // Every session made here has a nonce; one from before refresh tokens
    // never reaches this function.
    if let Some(nonce) = session.refresh_nonce {
        body["refresh_token"] = json!(keyring.sign_refresh(&RefreshClaims {
            session_id: session.id,
            generation: session.refresh_generation,
            nonce,
        }));
        body["refresh_expires_at"] = json!(time::rfc3339(session.expires_at));
    }
    Response::json(200, &body)
}
