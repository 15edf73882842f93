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

use crate::config::Config;
use crate::db::{Credentials, Db, EmailChange, Guarded, Mail, Session, User};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::limits::{AccountLocks, HashGate, RateLimiter};
use crate::metrics::{Gauges, Metrics};
use crate::token::{Claims, TokenError};
use crate::{email, log, password, time};
use base64::Engine;
use serde_json::{Map, Value, json};
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

/// `GET /healthz`: 200 `{"status": "ok"}` while a query on the database
/// succeeds, 503 `database_unavailable` otherwise. Meant for load balancers
/// and the container health check; it reveals nothing else.
pub fn healthz(ctx: &Context, _request: &Request) -> Result<Response, ApiError> {
    ctx.db.ping()?;
    Ok(Response::json(200, &json!({"status": "ok"})))
}

/// `GET /metrics` on the API's address: the metrics, unless
/// `METRICS_BIND_ADDR` moved them to an address of their own (then 404, so
/// they are not public).
pub fn metrics_here(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    if ctx.config.metrics_bind_addr.is_some() {
        return Err(ApiError::NotFound);
    }
    metrics(ctx, request)
}

/// `GET /openapi.json`: the OpenAPI 3.1 description of this API.
pub fn openapi(_ctx: &Context, _request: &Request) -> Result<Response, ApiError> {
    let mut response = Response::empty(200);
    response.body = OPENAPI.as_bytes().to_vec();
    response.set_header("Content-Type", "application/json");
    Ok(response)
}

/// The API description, `docs/openapi.json`, compiled in.
const OPENAPI: &str = include_str!("../docs/openapi.json");

/// `GET /metrics`: the Prometheus text exposition of the server's metrics.
pub fn metrics(ctx: &Context, _request: &Request) -> Result<Response, ApiError> {
    let text = ctx.metrics.render(&Gauges {
        hash_queue_depth: ctx.hash_gate.queue_depth(),
        hash_rejections: ctx.hash_gate.rejections(),
        db_connections_in_use: ctx.db.connections_in_use(),
    });
    let mut response = Response::empty(200);
    response.body = text.into_bytes();
    response.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    Ok(response)
}

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
    let email = email::normalize(raw_email).map_err(|e| ApiError::InvalidEmail(e.to_string()))?;
    password::check_strength(new_password, &email)
        .map_err(|e| ApiError::WeakPassword(e.to_string()))?;
    let hash = hash_password(ctx, new_password)?;
    let user = ctx
        .db
        .create_user(&email, &hash, ctx.now())?
        .ok_or(ApiError::EmailTaken)?;
    log::info("user registered", &[("user_id", user.id.into())]);
    Ok(Response::json(201, &json!({ "user": user_json(&user) })))
}

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
    let account = find_account(ctx, raw_email)?;
    verify_password(ctx, given, &account)?;

    let now = ctx.now();
    let session = Session {
        id: random_session_id()?,
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

/// `POST /auth/password {email, current_password, new_password}`: changes
/// the password and ends every session of the account.
///
/// 204; 404 `unknown_email`; 401 `wrong_password`; 422 `weak_password`.
/// The update only applies if the hash is still the one just verified, so a
/// concurrent change cannot be overwritten by someone who knew the old
/// password.
pub fn change_password(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let body = json_object(request)?;
    let raw_email = string_member(&body, "email")?;
    let current = string_member(&body, "current_password")?;
    let new_password = string_member(&body, "new_password")?;
    let account = find_account(ctx, raw_email)?;
    verify_password(ctx, current, &account)?;
    password::check_strength(new_password, &account.user.email)
        .map_err(|e| ApiError::WeakPassword(e.to_string()))?;
    let new_hash = hash_password(ctx, new_password)?;
    match ctx.db.change_password(
        account.user.id,
        &account.password_hash,
        &new_hash,
        ctx.now(),
    )? {
        Some(ended) => {
            ctx.metrics.sessions_ended(ended);
            log::info("password changed", &[("user_id", account.user.id.into())]);
            Ok(Response::empty(204))
        }
        None => Err(ApiError::WrongPassword),
    }
}

/// `POST /auth/password/forgot {email}`: 202 with the same body whether or
/// not the email has an account, so the answer reveals nothing. For an
/// account, creates a single-use reset token (256 random bits; only its
/// SHA-256 is stored) valid for `RESET_TOKEN_TTL_SECONDS`, replacing older
/// ones, and queues the email with the link in the same transaction.
pub fn forgot_password(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let body = json_object(request)?;
    let raw_email = string_member(&body, "email")?;
    let accepted = Response::json(
        202,
        &json!({"status": "accepted", "detail": "If an account has this email, a reset link is on its way."}),
    );
    let Ok(email) = email::normalize(raw_email) else {
        return Ok(accepted);
    };
    let Some(account) = ctx.db.credentials(&email)? else {
        return Ok(accepted);
    };
    let token = random_token()?;
    let now = ctx.now();
    let expires_at = now + ctx.config.reset_token_ttl;
    let link = format!("{}?token={token}", ctx.config.reset_url_base);
    let mail = Mail {
        recipient: account.user.email.clone(),
        subject: "Reset your password".into(),
        body: format!(
            "Someone asked to reset the password of the account for {email}.\n\n\
             To choose a new password, open this link within {minutes} minutes:\n\n{link}\n\n\
             The link works once. If you did not ask for this, ignore this message: \
             your password stays as it is.\n",
            email = account.user.email,
            minutes = ctx.config.reset_token_ttl / 60,
        ),
    };
    ctx.db
        .start_reset(account.user.id, &sha256(&token), now, expires_at, &mail)?;
    log::info(
        "password reset requested",
        &[("user_id", account.user.id.into())],
    );
    Ok(accepted)
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
    let new_hash = hash_password(ctx, new_password)?;
    match ctx
        .db
        .complete_reset(&token_hash, reset.user.id, &new_hash, now)?
    {
        Some(ended) => {
            ctx.metrics.sessions_ended(ended);
            log::info("password reset", &[("user_id", reset.user.id.into())]);
            Ok(Response::empty(204))
        }
        None => Err(ApiError::InvalidResetToken),
    }
}

/// `PATCH /auth/me {email, current_password}` (Bearer): changes the email.
/// 200 `{"user"}`; 422 `invalid_email`; 401 `wrong_password` (under the
/// same lockout as login); 409 `email_taken`.
pub fn update_me(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    let body = json_object(request)?;
    let raw_email = string_member(&body, "email")?;
    let current = string_member(&body, "current_password")?;
    let new_email =
        email::normalize(raw_email).map_err(|e| ApiError::InvalidEmail(e.to_string()))?;
    confirm_password(ctx, &auth, current)?;
    let user = match ctx.db.change_email(auth.user.id, &new_email, ctx.now())? {
        EmailChange::Changed(user) => user,
        EmailChange::Taken => return Err(ApiError::EmailTaken),
        // Deleted between the session check and now: its tokens are dead.
        EmailChange::Gone => return Err(ApiError::TokenRevoked),
    };
    log::info("email changed", &[("user_id", user.id.into())]);
    Ok(Response::json(200, &json!({ "user": user_json(&user) })))
}

/// `DELETE /auth/me {password}` (Bearer): 204; deletes the account with
/// every session, reset token and failure count of it. 401 `wrong_password`.
pub fn delete_me(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    let body = json_object(request)?;
    let given = string_member(&body, "password")?;
    confirm_password(ctx, &auth, given)?;
    let ended = ctx.db.delete_user(auth.user.id)?;
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

/// `POST /auth/logout` (Bearer): 204; ends this token's session only.
pub fn logout(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    if ctx.db.end_session(&auth.session_id, auth.user.id)? {
        ctx.metrics.sessions_ended(1);
    }
    log::info("logout", &[("user_id", auth.user.id.into())]);
    Ok(Response::empty(204))
}

/// `POST /auth/logout-all` (Bearer): 204; ends every session of the account,
/// this one included.
pub fn logout_all(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    let ended = ctx.db.end_all_sessions(auth.user.id)?;
    ctx.metrics.sessions_ended(ended);
    log::info(
        "logout everywhere",
        &[("user_id", auth.user.id.into()), ("sessions", ended.into())],
    );
    Ok(Response::empty(204))
}

/// `GET /auth/sessions` (Bearer): 200 `{"sessions": [...]}`, the account's
/// live sessions, newest first, each marked `current` if it is the caller's.
pub fn sessions(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    let sessions: Vec<Value> = ctx
        .db
        .sessions(auth.user.id, ctx.now())?
        .iter()
        .map(|s| {
            json!({
                "id": hex(&s.id),
                "created_at": time::rfc3339(s.created_at),
                "expires_at": time::rfc3339(s.expires_at),
                "ip": s.ip,
                "user_agent": s.user_agent,
                "current": s.id == auth.session_id,
            })
        })
        .collect();
    Ok(Response::json(200, &json!({ "sessions": sessions })))
}

/// `DELETE /auth/sessions/{id}` (Bearer): 204; ends one session of the
/// caller's. Another account's session id answers 404 `not_found` exactly as
/// an unknown one does, so ids cannot be probed.
pub fn end_session(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    let id = request
        .path
        .strip_prefix(crate::router::SESSIONS_PREFIX)
        .and_then(parse_session_id)
        .ok_or(ApiError::NotFound)?;
    if !ctx.db.end_session(&id, auth.user.id)? {
        return Err(ApiError::NotFound);
    }
    ctx.metrics.sessions_ended(1);
    log::info("session ended", &[("user_id", auth.user.id.into())]);
    Ok(Response::empty(204))
}

/// Deletes every session and reset token that has expired, in batches;
/// returns how many rows went.
/// Run by a background thread every [`PURGE_INTERVAL`] so the sessions table
/// holds only live sessions plus at most that much expired backlog.
pub fn purge_expired_sessions(ctx: &Context) -> Result<u64, crate::db::DbError> {
    const BATCH: u32 = 1000;
    let mut total = 0;
    loop {
        let now = ctx.now();
        let deleted =
            ctx.db.purge_expired_sessions(now, BATCH)? + ctx.db.purge_expired_resets(now, BATCH)?;
        total += deleted;
        if deleted < 2 * u64::from(BATCH) {
            return Ok(total);
        }
    }
}

/// How often expired sessions are purged.
pub const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// The caller of an authenticated request.
struct Authenticated {
    user: User,
    session_id: [u8; 16],
}

/// Checks the bearer token: MAC and expiry first (no database work for a
/// forged or expired token), then one query that the session is live.
fn authenticate(ctx: &Context, request: &Request) -> Result<Authenticated, ApiError> {
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
    let user = ctx
        .db
        .session_user(&claims.session_id, claims.user_id, now)?
        .ok_or(ApiError::TokenRevoked)?;
    log::set_user_id(user.id);
    Ok(Authenticated {
        user,
        session_id: claims.session_id,
    })
}

/// Asks an authenticated caller for their password again before a sensitive
/// change, so a stolen token alone is not enough (same lockout as login).
fn confirm_password(ctx: &Context, auth: &Authenticated, given: &str) -> Result<(), ApiError> {
    let account = ctx
        .db
        .credentials(&auth.user.email)?
        .ok_or(ApiError::TokenRevoked)?;
    verify_password(ctx, given, &account)
}

/// The account for a login or password change. An address that cannot be
/// valid cannot have an account either, so it is `unknown_email` too.
fn find_account(ctx: &Context, raw_email: &str) -> Result<Credentials, ApiError> {
    let email = email::normalize(raw_email).map_err(|_| ApiError::UnknownEmail)?;
    ctx.db.credentials(&email)?.ok_or(ApiError::UnknownEmail)
}

/// Checks a password against the account, under the brute-force lockout:
/// a locked account answers 429 `too_many_attempts` before any hashing, even
/// for the right password; a wrong password counts toward the lock; a right
/// one clears the count. Checks for one account take turns (see
/// [`AccountLocks`](crate::limits::AccountLocks)), so parallel guesses see
/// each other's failures and cannot slip past the threshold.
fn verify_password(ctx: &Context, given: &str, account: &Credentials) -> Result<(), ApiError> {
    let (threshold, window) = (ctx.config.lockout_threshold, ctx.config.lockout_window);
    let locked = |failures: u32, window_start: u64, now: u64| {
        let lock_ends = window_start + window;
        (failures >= threshold && lock_ends > now)
            .then(|| ApiError::TooManyAttempts(lock_ends - now))
    };
    // Cheap path: already locked when the account was read.
    if let Some(e) = locked(account.failures, account.window_start, ctx.now()) {
        return Err(e);
    }
    // The hashing slot first, then the account's turn: the slot's wait is
    // bounded (503 after HASH_QUEUE_TIMEOUT_MS), and since only slot holders
    // take turns, a turn is never held while waiting for a slot.
    let slot = ctx.hash_gate.acquire().ok_or(ApiError::Overloaded)?;
    let _turn = ctx.account_locks.lock(account.user.id);
    // Re-read under the turn: an earlier guess may have just failed.
    let now = ctx.now();
    let (failures, window_start) = ctx.db.login_failures(account.user.id)?;
    if let Some(e) = locked(failures, window_start, now) {
        return Err(e);
    }
    let (hasher, given, stored) = (
        ctx.config.hasher.clone(),
        given.to_string(),
        account.password_hash.clone(),
    );
    let started = Instant::now();
    let verified = slot
        .run(move || hasher.verify(&given, &stored))
        .ok_or(ApiError::Internal)?;
    ctx.metrics.hash_took(started.elapsed());
    match verified {
        Ok(true) => {
            if failures > 0 {
                ctx.db.clear_login_failures(account.user.id)?;
            }
            Ok(())
        }
        Ok(false) => {
            ctx.db.record_login_failure(account.user.id, now, window)?;
            Err(ApiError::WrongPassword)
        }
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

fn hash_password(ctx: &Context, plain: &str) -> Result<String, ApiError> {
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
/// parameters than the configured ones, store a new hash of the password
/// just verified. Best effort: a failure here must not fail the login.
fn upgrade_hash_if_stale(ctx: &Context, plain: &str, account: &Credentials) {
    if !ctx.config.hasher.needs_rehash(&account.password_hash) {
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

/// Spends one request of the client's rate-limit bucket.
fn rate_limit(ctx: &Context, request: &Request) -> Result<(), ApiError> {
    let client = ctx.client_ip(request);
    ctx.rate_limiter
        .check(client, Instant::now())
        .map_err(ApiError::RateLimited)
}

/// The body as a JSON object. 415 unless the Content-Type is
/// `application/json` (parameters such as `charset` allowed); 400
/// `malformed_json` for anything but an object, including invalid UTF-8.
fn json_object(request: &Request) -> Result<Map<String, Value>, ApiError> {
    let content_type = request.header("content-type").unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    // serde_json parses and drops nested values recursively; bounding the
    // depth first keeps a hostile body from exhausting a thread's stack.
    if nesting_exceeds(&request.body, MAX_JSON_DEPTH) {
        return Err(ApiError::MalformedJson);
    }
    match serde_json::from_slice(&request.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::MalformedJson),
    }
}

/// Deepest JSON nesting accepted; every body of this API is a flat object.
const MAX_JSON_DEPTH: usize = 16;

/// True if `[`/`{` nest deeper than `max` outside strings. A linear scan
/// that needs no stack, run before the recursive parser.
fn nesting_exceeds(body: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A required string member. Unknown members are ignored elsewhere.
fn string_member<'a>(
    body: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, ApiError> {
    match body.get(name) {
        None => Err(ApiError::MissingField(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::InvalidField(name)),
    }
}

/// The public form of an account: never the hash.
fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "created_at": time::rfc3339(user.created_at),
    })
}

fn random_session_id() -> Result<[u8; 16], ApiError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| {
        log::error("no OS randomness", &[("error", e.to_string().into())]);
        ApiError::Internal
    })?;
    Ok(id)
}

/// A fresh reset token: 32 random bytes, base64url without padding.
fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        log::error("no OS randomness", &[("error", e.to_string().into())]);
        ApiError::Internal
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 lowercase hex digits to a session id.
fn parse_session_id(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_body(content_type: Option<&str>, body: &[u8]) -> Request {
        let mut r = Request::for_tests("POST", "/auth/login");
        if let Some(ct) = content_type {
            r.headers
                .push(("content-type".into(), ct.as_bytes().to_vec()));
        }
        r.body = body.to_vec();
        r
    }

    #[test]
    fn json_bodies() {
        let ok = with_body(
            Some("Application/JSON; charset=utf-8"),
            br#"{"email": "a@b.io", "x": 1}"#,
        );
        let map = json_object(&ok).unwrap();
        assert_eq!(string_member(&map, "email"), Ok("a@b.io"));
        assert_eq!(
            string_member(&map, "password"),
            Err(ApiError::MissingField("password"))
        );
        assert_eq!(string_member(&map, "x"), Err(ApiError::InvalidField("x")));
        for ct in [
            None,
            Some("text/plain"),
            Some("application/jsonx"),
            Some(""),
        ] {
            assert_eq!(
                json_object(&with_body(ct, b"{}")),
                Err(ApiError::UnsupportedMediaType),
                "{ct:?}"
            );
        }
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"\"s\"",
            b"{\"a\":",
            b"{\"a\":\"\xff\"}",
            b"1",
        ] {
            let r = with_body(Some("application/json"), body);
            assert_eq!(json_object(&r), Err(ApiError::MalformedJson), "{body:?}");
        }
    }

    #[test]
    fn nesting_is_bounded_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a": [1, {"b": 2}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a": [1, {"b": [2]}]}"#, 3));
        // Brackets inside strings, escaped quotes included, do not count.
        assert!(!nesting_exceeds(br#"{"a": "[[[[\"{{{{"}"#, 1));
        let deep = "[".repeat(100_000);
        let r = with_body(Some("application/json"), deep.as_bytes());
        assert_eq!(json_object(&r), Err(ApiError::MalformedJson));
    }

    #[test]
    fn session_ids_round_trip_and_reject_other_forms() {
        let id = [0xab; 16];
        assert_eq!(parse_session_id(&hex(&id)), Some(id));
        assert_eq!(parse_session_id(&hex(&id).to_uppercase()), None);
        assert_eq!(parse_session_id("ab"), None);
        assert_eq!(parse_session_id(&"g".repeat(32)), None);
        assert_eq!(parse_session_id(&"é".repeat(16)), None);
    }
}
