//! The bearer token check every authenticated endpoint starts with, and the
//! admin check the admin API adds to it.

use super::Context;
use crate::db::{Role, User};
use crate::error::ApiError;
use crate::http::Request;
use crate::log;
use crate::token::TokenError;

/// The caller of an authenticated request.
pub(super) struct Authenticated {
    pub(super) user: User,
    pub(super) session_id: [u8; 16],
    /// True if the session's login passed a second factor.
    pub(super) mfa: bool,
}

/// Checks the bearer token: MAC and expiry first (no database work for a
/// forged or expired token), then one query that the session is live.
pub(super) fn authenticate(ctx: &Context, request: &Request) -> Result<Authenticated, ApiError> {
    let header = request.header("authorization").unwrap_or("").trim();
    if header.is_empty() {
        return Err(ApiError::MissingToken);
    }
    // RFC 6750 section 2.1: `Bearer` (case-insensitive), one space, token.
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(ApiError::InvalidToken),
    };
    let now = ctx.now();
    let claims = ctx.config.keyring.verify(token, now).map_err(|e| match e {
        TokenError::Expired => ApiError::TokenExpired,
        TokenError::Malformed | TokenError::UnknownKey | TokenError::BadSignature => {
            ApiError::InvalidToken
        }
    })?;
    let (user, mfa) = ctx
        .db
        .session_user(&claims.session_id, claims.user_id, now)?
        .ok_or(ApiError::TokenRevoked)?;
    log::set_user_id(user.id);
    Ok(Authenticated {
        user,
        session_id: claims.session_id,
        mfa,
    })
}

/// [`authenticate`], then the account must be an admin: 403 `forbidden`
/// otherwise. The role is read with the session on every request, so a
/// demotion takes effect at once. With `ADMIN_REQUIRE_MFA`, the session
/// must also have passed a second factor: 403 `mfa_required` otherwise.
pub(super) fn authenticate_admin(
    ctx: &Context,
    request: &Request,
) -> Result<Authenticated, ApiError> {
    let auth = authenticate(ctx, request)?;
    if auth.user.role != Role::Admin {
        log::warn("admin API refused to a non-admin", &[]);
        return Err(ApiError::Forbidden);
    }
    if ctx.config.mfa.admin_require && !auth.mfa {
        log::warn(
            "admin API refused to a session without a second factor",
            &[],
        );
        return Err(ApiError::AdminMfaRequired);
    }
    Ok(auth)
}
