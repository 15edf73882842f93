//! The endpoint handlers: plain functions from a [`Context`] and a parsed
//! [`Request`] to a [`Response`] or an [`ApiError`].
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
//! | `password.rs` | change, forget and reset a password |
//! | `sessions.rs` | log out, list and end sessions, purge expired ones |
//! | `ops.rs` | health, metrics, the API description |
//! | `auth.rs` | *shared:* the bearer token check |
//! | `credentials.rs` | *shared:* password checks under the lockout, hashing |
//! | `json.rs` | *shared:* JSON bodies and their members |

mod account;
mod auth;
mod credentials;
mod json;
mod login;
mod ops;
mod password;
mod sessions;

pub use account::{delete_me, me, register, update_me};
pub use login::login;
pub use ops::{healthz, metrics, metrics_here, openapi};
pub use password::{change_password, forgot_password, reset_password};
pub use sessions::{
    PURGE_INTERVAL, end_session, logout, logout_all, purge_expired_sessions, sessions,
};

use crate::config::Config;
use crate::db::Db;
use crate::error::ApiError;
use crate::http::Request;
use crate::limits::{AccountLocks, HashGate, RateLimiter};
use crate::metrics::Metrics;
use crate::{log, time};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Instant;

/// What every handler may use: settings, the database, and the in-memory
/// defences.
pub struct Context {
    /// The settings the server started with, including the token keyring and
    /// the password hasher.
    pub config: Config,
    /// The database.
    pub db: Db,
    /// Bounds concurrent Argon2 computations.
    pub hash_gate: HashGate,
    /// Per-address limits on the unauthenticated endpoints.
    pub rate_limiter: RateLimiter,
    /// Counters and histograms for `/metrics`.
    pub metrics: Metrics,
    /// Makes password checks for one account take turns.
    pub account_locks: AccountLocks,
}

impl Context {
    /// A context whose gate and limiter follow `config`. Fails only if the
    /// hashing threads cannot be started.
    pub fn new(config: Config, db: Db) -> std::io::Result<Context> {
        Ok(Context {
            hash_gate: HashGate::new(config.hash_concurrency, config.hash_queue_timeout)?,
            rate_limiter: RateLimiter::new(config.rate_limit_per_minute, config.rate_limit_burst),
            metrics: Metrics::default(),
            account_locks: AccountLocks::default(),
            config,
            db,
        })
    }

    /// The current time in Unix seconds.
    pub fn now(&self) -> u64 {
        time::unix_now()
    }

    /// The client's address: the TCP peer, or what a trusted proxy says in
    /// `X-Forwarded-For` (see `TRUSTED_PROXIES`).
    pub fn client_ip(&self, request: &Request) -> IpAddr {
        let forwarded = request.header_list("x-forwarded-for");
        self.config
            .trusted_proxies
            .client_ip(request.peer, forwarded.as_deref())
    }
}

/// Spends one request of the client's rate-limit bucket.
pub(super) fn rate_limit(ctx: &Context, request: &Request) -> Result<(), ApiError> {
    let client = ctx.client_ip(request);
    ctx.rate_limiter
        .check(client, Instant::now())
        .map_err(ApiError::RateLimited)
}

pub(super) fn random_session_id() -> Result<[u8; 16], ApiError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| {
        log::error("no OS randomness", &[("error", e.to_string().into())]);
        ApiError::Internal
    })?;
    Ok(id)
}

/// A fresh reset token: 32 random bytes, base64url without padding.
pub(super) fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        log::error("no OS randomness", &[("error", e.to_string().into())]);
        ApiError::Internal
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub(super) fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
