//! The endpoint handlers: plain functions from a [`Context`] and a parsed
//! [`Request`] to a [`Response`](crate::http::Response) or an [`ApiError`].
//!
//! Handlers hold the API's rules; SQL stays in [`crate::db`], protocol detail
//! in [`crate::http`], and error bodies in [`crate::error`]. Each handler reads
//! top to bottom as the endpoint's specification.
//!
//! Two rules hold throughout. Passwords and tokens are never logged or echoed:
//! they live in local variables for the length of one request. And every
//! authenticated request checks its token's MAC and expiry before any
//! database work, so a forged or expired token costs one HMAC and nothing
//! else; only then does one indexed query confirm the session is live.
//!
//! One file per area of the API, and one per mechanism that several areas
//! share (so it lives once and is called, not copied):
//!
//! | file | owns |
//! |---|---|
//! | `account.rs` | register, `GET`/`PATCH`/`DELETE /auth/me` |
//! | `login.rs` | log in |
//! | `mfa.rs` | two-factor login: enrolment, the login's second step, recovery codes, turning it off |
//! | `password.rs` | change, forget and reset a password (the reset's rules also serve the reset page) |
//! | `sessions.rs` | log out, list and end sessions, purge expired ones |
//! | `ops.rs` | health, metrics, the API description |
//! | `audit.rs` | reading the audit log: `/admin/audit`, `/auth/me/events` |
//! | `admin.rs` | the admin API (`/admin/*`): listing, viewing and changing accounts |
//! | `auth.rs` | *shared:* the bearer token check, and the admin check |
//! | `credentials.rs` | *shared:* password checks under the lockout, hashing |
//! | `json.rs` | *shared:* JSON bodies and their members |
//! | `query.rs` | *shared:* the listings' query strings |

mod account;
pub mod admin;
mod audit;
mod auth;
mod credentials;
mod email;
mod json;
mod login;
mod mfa;
mod ops;
mod password;
mod query;
mod sessions;

pub use account::{delete_me, me, register, update_me};
pub use audit::{admin_audit, my_events};
pub use email::{
    confirm_email_change, confirm_with_token, resend_verification, verify_email, verify_with_token,
};
pub use login::{login, refresh};
pub use mfa::{
    confirm as mfa_confirm, disable as mfa_disable, login_mfa, regenerate_recovery_codes,
    setup as mfa_setup,
};
pub use ops::{healthz, metrics, metrics_here, openapi};
pub use password::{change_password, forgot_password, reset_password, reset_with_token};
pub use sessions::{
    PURGE_INTERVAL, end_session, logout, logout_all, purge_expired_sessions, sessions,
};

pub use crate::context::Context;

use crate::error::ApiError;
use crate::http::Request;
use std::time::Instant;

/// The shared half of `forgot` and the verification resend: records a
/// request for `kind` mail to the body's `email`, if it is an address at
/// all, and wakes the mail worker. The same work (one insert) for every
/// address, so the 202 that follows tells nothing by its timing.
pub(crate) fn request_link_mail(
    ctx: &Context,
    request: &Request,
    kind: &str,
) -> Result<(), ApiError> {
    rate_limit(ctx, request)?;
    let body = json::json_object(request)?;
    let raw_email = json::string_member(&body, "email")?;
    if let Ok(address) = crate::email::normalize(raw_email) {
        let ip = ctx.client_ip(request).to_string();
        ctx.db.request_mail(kind, &address.key, ctx.now(), &ip)?;
        ctx.mail.wake();
    }
    Ok(())
}

/// Spends one request of the client address's rate-limit bucket. Also
/// spent by the HTML page that resets a password (`crate::pages`), so a
/// form post costs what a JSON request costs.
pub(crate) fn rate_limit(ctx: &Context, request: &Request) -> Result<(), ApiError> {
    let client = crate::limits::bucket_of(ctx.client_ip(request));
    ctx.rate_limiter
        .check(client, Instant::now())
        .map_err(ApiError::RateLimited)
}
