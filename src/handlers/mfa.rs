//! Two-factor login with an authenticator app: enrolment
//! (`/auth/mfa/totp/setup`, `/confirm`), the login's second step
//! (`/auth/login/mfa`), new recovery codes, and turning it off. The rules
//! are in `crate::mfa`'s docs; the once-only writes in `crate::db::mfa`.
//!
//! A code is checked here against the secret (opened with
//! `DATA_ENCRYPTION_KEY`), after its check is counted under the account's
//! lockout like a password's; the database then spends it, or finds it
//! spent. Secrets, codes and tokens live in local variables only: none is
//! logged.

use super::auth::{Authenticated, authenticate};
use super::credentials::{confirm_password, reserve_check};
use super::json::{json_object, optional_string_member, string_member};
use super::login::{new_session, tokens_response};
use super::{Context, rate_limit};
use crate::db::{Credentials, Enrolment, Factor, Proof, SecondStep};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::mail::{mail_queued, texts};
use crate::mfa::{codes, qr, totp};
use crate::{log, secret};
use serde_json::{Map, Value, json};

/// The ways a login's second step can be passed, as the first step says.
const METHODS: [&str; 2] = ["totp", "recovery_code"];

/// A checked second factor, owning what [`Factor`] borrows.
enum Checked {
    Totp { sealed: Vec<u8>, step: u64 },
    Recovery { hashes: Vec<[u8; 32]> },
}

impl Checked {
    /// True for a recovery code (whose use is mailed to the account).
    fn is_recovery(&self) -> bool {
        matches!(self, Checked::Recovery { .. })
    }

    fn factor(&self) -> Factor<'_> {
        match self {
            Checked::Totp { sealed, step } => Factor::Totp {
                sealed,
                step: *step,
            },
            Checked::Recovery { hashes } => Factor::Recovery { hashes },
        }
    }
}

/// `POST /auth/mfa/totp/setup {password}` (Bearer): 200 `{"secret",
/// "otpauth_uri", "qr_svg"}`, a new secret waiting for its first code
/// (nothing is on yet; a second setup replaces it). The password again, so
/// a stolen token alone cannot add a factor. 409 `mfa_already_enabled`;
/// 503 `mfa_unavailable` without `DATA_ENCRYPTION_KEY`.
pub fn setup(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let (auth, body) = enrolment_request(ctx, request)?;
    let keys = &ctx.config.mfa.keys;
    let account = confirm_password(ctx, &auth, string_member(&body, "password")?)?;
    if account.user.mfa_enabled_at.is_some() {
        return Err(ApiError::MfaAlreadyEnabled);
    }
    let user_id = account.user.id;
    let raw = secret::bytes::<{ totp::SECRET_BYTES }>()?;
    let sealed = keys.seal(user_id, &raw).map_err(|e| {
        log::error(
            "sealing a TOTP secret failed",
            &[("error", e.to_string().into())],
        );
        ApiError::Internal
    })?;
    let now = ctx.now();
    let proof = Proof {
        user_id,
        session_id: &auth.session_id,
        verified_hash: &account.password_hash,
        now,
    };
    match ctx.db.start_totp(&proof, &sealed, now)? {
        Enrolment::Started => {}
        Enrolment::AlreadyEnabled => return Err(ApiError::MfaAlreadyEnabled),
        Enrolment::Revoked => return Err(ApiError::TokenRevoked),
        Enrolment::PasswordChanged => return Err(ApiError::WrongPassword),
    }
    let encoded = totp::base32(&raw);
    let uri = totp::otpauth_uri(&ctx.config.app_name, &account.user.email, &encoded);
    log::info("TOTP enrolment started", &[("user_id", user_id.into())]);
    Ok(Response::json(
        200,
        &json!({ "secret": encoded, "otpauth_uri": uri, "qr_svg": qr::svg(&uri) }),
    ))
}

/// `POST /auth/mfa/totp/confirm {code}` (Bearer): a current code of the
/// waiting enrolment turns two-factor login on. 200 `{"recovery_codes"}`,
/// ten codes shown this once (only their HMACs are kept), and a notice
/// mail. 401 `invalid_mfa_code`; 409 `mfa_not_enabled` with no enrolment
/// waiting, `mfa_already_enabled` if it is on.
pub fn confirm(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let (auth, body) = enrolment_request(ctx, request)?;
    let given = string_member(&body, "code")?;
    let user_id = auth.user.id;
    let pending = match ctx.db.totp(user_id)? {
        None => return Err(ApiError::MfaNotEnabled),
        Some(t) if t.confirmed_at.is_some() => return Err(ApiError::MfaAlreadyEnabled),
        Some(t) => t,
    };
    let raw = open(ctx, user_id, &pending.sealed)?;
    let now = ctx.now();
    let Some(step) = totp::matching_step(&raw, given.trim(), now) else {
        return Err(ApiError::InvalidMfaCode);
    };
    let (shown, hashes) = new_recovery_codes(ctx, user_id)?;
    let ip = ctx.client_ip(request).to_string();
    let notice = |email: &str| texts::mfa_enabled(&ctx.config.app_name, email, now, &ip);
    if !ctx
        .db
        .confirm_totp(user_id, &pending.sealed, step, &hashes, now, &notice)?
    {
        // Enrolled again, confirmed elsewhere, or the same code twice.
        return Err(ApiError::InvalidMfaCode);
    }
    mail_queued(ctx, 1);
    log::info("two-factor login turned on", &[("user_id", user_id.into())]);
    Ok(Response::json(200, &json!({ "recovery_codes": shown })))
}

/// The caller and the body of an enrolment's request, once the rate limit
/// passed and a key is there to seal a secret with (503 `mfa_unavailable`).
fn enrolment_request(
    ctx: &Context,
    request: &Request,
) -> Result<(Authenticated, Map<String, Value>), ApiError> {
    rate_limit(ctx, request)?;
    let auth = authenticate(ctx, request)?;
    if !ctx.config.mfa.keys.is_available() {
        return Err(ApiError::MfaUnavailable);
    }
    Ok((auth, json_object(request)?))
}

/// The first step's answer for an account with two-factor login, after
/// its password (`account`, whose hash is `password_hash` now): 200
/// `{"mfa_required": true, "mfa_token", "mfa_expires_in", "methods"}`, and
/// no session yet. The token works once, for `MFA_TOKEN_TTL_SECONDS`, for
/// this account and this password hash only.
pub(super) fn challenge(
    ctx: &Context,
    account: &Credentials,
    password_hash: &str,
) -> Result<Response, ApiError> {
    let token = secret::token()?;
    let now = ctx.now();
    let ttl = ctx.config.mfa.token_ttl;
    ctx.db.create_challenge(
        &secret::sha256(&token),
        account.user.id,
        &secret::sha256(password_hash),
        now,
        now + ttl,
    )?;
    log::info(
        "password accepted, second factor required",
        &[("user_id", account.user.id.into())],
    );
    Ok(Response::json(
        200,
        &json!({
            "mfa_required": true,
            "mfa_token": token,
            "mfa_expires_in": ttl,
            "methods": METHODS,
        }),
    ))
}

/// `POST /auth/login/mfa {mfa_token, code}` or `{mfa_token,
/// recovery_code}`: the login's second step, answered exactly as a login
/// without a second factor is (the session records that it passed one).
/// 401 `invalid_mfa_code` (wrong, or spent); 401 `invalid_mfa_token`
/// (unknown, expired, used, voided by a new password, or spent by 5 wrong
/// codes); 429 `too_many_attempts` (wrong codes count toward the account's
/// lockout, and only a completed login clears it).
pub fn login_mfa(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    rate_limit(ctx, request)?;
    let body = json_object(request)?;
    let token = string_member(&body, "mfa_token")?;
    let given = given_factor(&body)?;
    let token_hash = secret::sha256(token);
    let now = ctx.now();
    let challenge = ctx
        .db
        .challenge(&token_hash, now)?
        .ok_or(ApiError::InvalidMfaToken)?;
    let user_id = challenge.user_id;
    log::set_user_id(user_id);
    let checked = match check_factor(ctx, user_id, given) {
        Err(ApiError::InvalidMfaCode) => {
            ctx.db.challenge_failed(&token_hash)?;
            return Err(ApiError::InvalidMfaCode);
        }
        other => other?,
    };
    let session = new_session(ctx, request, user_id, true)?;
    let ip = ctx.client_ip(request).to_string();
    let app = &ctx.config.app_name;
    let notice = |email: &str| texts::recovery_code_used(app, email, now, &ip);
    match ctx
        .db
        .complete_login(&token_hash, &session, checked.factor(), &notice)?
    {
        SecondStep::LoggedIn { recovery } => {
            if recovery {
                mail_queued(ctx, 1);
            }
            reseal_if_rotated(ctx, user_id, &checked);
            ctx.metrics.session_created();
            log::info(
                "login with a second factor",
                &[
                    ("user_id", user_id.into()),
                    ("session", secret::hex(&session.id).into()),
                    ("recovery_code", recovery.into()),
                ],
            );
            let user = ctx
                .db
                .credentials_by_id(user_id)?
                .ok_or(ApiError::InvalidMfaToken)?
                .user;
            Ok(tokens_response(ctx, &session, &user))
        }
        SecondStep::InvalidToken => Err(ApiError::InvalidMfaToken),
        SecondStep::Spent => Err(ApiError::InvalidMfaCode),
    }
}

/// `POST /auth/mfa/recovery-codes {password, code}` (Bearer; `code` a TOTP
/// or a recovery code): 200 `{"recovery_codes"}`, a new set that voids
/// the old one. 401 `invalid_mfa_code`; 409 `mfa_not_enabled`.
pub fn regenerate_recovery_codes(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let (account, checked) = password_and_factor(ctx, request)?;
    let user_id = account.user.id;
    let (shown, hashes) = new_recovery_codes(ctx, user_id)?;
    if !ctx
        .db
        .regenerate_recovery_codes(user_id, checked.factor(), &hashes, ctx.now())?
    {
        return Err(ApiError::InvalidMfaCode);
    }
    ctx.db.clear_login_failures(user_id)?;
    log::info("recovery codes replaced", &[("user_id", user_id.into())]);
    Ok(Response::json(200, &json!({ "recovery_codes": shown })))
}

/// `DELETE /auth/mfa/totp {password, code}` (Bearer; `code` a TOTP or a
/// recovery code): 204; two-factor login is off, its secret and recovery
/// codes are gone, and a notice is mailed. 401 `invalid_mfa_code`; 409
/// `mfa_not_enabled`.
pub fn disable(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let (account, checked) = password_and_factor(ctx, request)?;
    let user_id = account.user.id;
    spend(ctx, request, user_id, &checked)?;
    let (now, ip) = (ctx.now(), ctx.client_ip(request).to_string());
    let off = |email: &str| texts::mfa_disabled(&ctx.config.app_name, email, now, &ip, false);
    if !ctx.db.disable_mfa(user_id, None, now, &off)? {
        return Err(ApiError::MfaNotEnabled);
    }
    mail_queued(ctx, 1);
    log::info(
        "two-factor login turned off",
        &[("user_id", user_id.into())],
    );
    Ok(Response::empty(204))
}

/// For an account with two-factor login, the `code` a request without a
/// session must also carry (`POST /auth/password`), checked and spent:
/// 401 `mfa_required` without it, `invalid_mfa_code` if wrong or spent.
/// The account's failed attempts are cleared once it is spent.
pub(super) fn require_factor(
    ctx: &Context,
    request: &Request,
    body: &Map<String, Value>,
    account: &Credentials,
) -> Result<(), ApiError> {
    if account.user.mfa_enabled_at.is_none() {
        return Ok(());
    }
    let given = optional_string_member(body, "code")?.ok_or(ApiError::MfaRequired)?;
    let user_id = account.user.id;
    let checked = check_factor(ctx, user_id, Given::Either(given))?;
    spend(ctx, request, user_id, &checked)
}

/// Spends a checked factor outside login (401 `invalid_mfa_code` if it was
/// spent meanwhile): a recovery code's use is mailed, a secret sealed under
/// a previous key is sealed again, and the account's failed attempts are
/// cleared.
fn spend(
    ctx: &Context,
    request: &Request,
    user_id: u64,
    checked: &Checked,
) -> Result<(), ApiError> {
    let (now, ip) = (ctx.now(), ctx.client_ip(request).to_string());
    let used = |email: &str| texts::recovery_code_used(&ctx.config.app_name, email, now, &ip);
    if !ctx.db.spend_factor(user_id, checked.factor(), now, &used)? {
        return Err(ApiError::InvalidMfaCode);
    }
    if checked.is_recovery() {
        mail_queued(ctx, 1);
    }
    reseal_if_rotated(ctx, user_id, checked);
    ctx.db.clear_login_failures(user_id)?;
    Ok(())
}

/// A second factor as a request gives it.
#[derive(Clone, Copy)]
enum Given<'a> {
    /// A TOTP code.
    Totp(&'a str),
    /// A recovery code.
    Recovery(&'a str),
    /// Either: six digits are a TOTP code, anything else a recovery code.
    Either(&'a str),
}

/// The `code` or `recovery_code` of a login's second step (exactly one).
fn given_factor(body: &Map<String, Value>) -> Result<Given<'_>, ApiError> {
    match (
        optional_string_member(body, "code")?,
        optional_string_member(body, "recovery_code")?,
    ) {
        (Some(code), None) => Ok(Given::Totp(code)),
        (None, Some(code)) => Ok(Given::Recovery(code)),
        (None, None) => Err(ApiError::MissingField("code")),
        (Some(_), Some(_)) => Err(ApiError::InvalidField(
            "recovery_code",
            "absent when \"code\" is given",
        )),
    }
}

/// The password (checked as [`confirm_password`] does) and the `code` of a
/// change to an account's second factor; 409 `mfa_not_enabled` without one.
fn password_and_factor(
    ctx: &Context,
    request: &Request,
) -> Result<(Credentials, Checked), ApiError> {
    rate_limit(ctx, request)?;
    let auth = authenticate(ctx, request)?;
    let body = json_object(request)?;
    let password = string_member(&body, "password")?;
    let code = string_member(&body, "code")?;
    let account = confirm_password(ctx, &auth, password)?;
    if account.user.mfa_enabled_at.is_none() {
        return Err(ApiError::MfaNotEnabled);
    }
    let checked = check_factor(ctx, account.user.id, Given::Either(code))?;
    Ok((account, checked))
}

/// Checks `given` for the account, its check counted under the lockout
/// first: a TOTP code against the secret (the matched step, for the
/// database to spend), a recovery code by its HMACs (the database finds
/// whether one is unspent). 401 `invalid_mfa_code` if it cannot be right.
fn check_factor(ctx: &Context, user_id: u64, given: Given<'_>) -> Result<Checked, ApiError> {
    reserve_check(ctx, user_id)?;
    let keys = &ctx.config.mfa.keys;
    let given = match given {
        Given::Either(code) if is_totp_shaped(code) => Given::Totp(code),
        Given::Either(code) => Given::Recovery(code),
        other => other,
    };
    let now = ctx.now();
    let checked = match given {
        Given::Totp(code) => {
            let totp = ctx
                .db
                .totp(user_id)?
                .filter(|t| t.confirmed_at.is_some())
                .ok_or(ApiError::InvalidMfaCode)?;
            let raw = open(ctx, user_id, &totp.sealed)?;
            totp::matching_step(&raw, code.trim(), now).map(|step| Checked::Totp {
                sealed: totp.sealed,
                step,
            })
        }
        Given::Recovery(code) | Given::Either(code) => codes::normalize(code)
            .map(|canonical| keys.code_hashes(user_id, &canonical))
            .filter(|hashes| !hashes.is_empty())
            .map(|hashes| Checked::Recovery { hashes }),
    };
    checked.ok_or_else(|| {
        refused_code(ctx, user_id);
        ApiError::InvalidMfaCode
    })
}

/// True for six ASCII digits, the shape of a TOTP code.
fn is_totp_shaped(code: &str) -> bool {
    let code = code.trim();
    code.len() == totp::DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit())
}

/// The account's secret, opened; 503 `mfa_unavailable` if it does not open
/// (a key missing from `DATA_ENCRYPTION_KEYS_PREVIOUS`), which the log says.
fn open(ctx: &Context, user_id: u64, sealed: &[u8]) -> Result<Vec<u8>, ApiError> {
    ctx.config.mfa.keys.open(user_id, sealed).map_err(|e| {
        log::error(
            "a TOTP secret does not open with the configured keys",
            &[("user_id", user_id.into()), ("error", e.to_string().into())],
        );
        ApiError::MfaUnavailable
    })
}

/// Ten new recovery codes: as shown, and their HMACs as stored.
fn new_recovery_codes(
    ctx: &Context,
    user_id: u64,
) -> Result<(Vec<String>, Vec<[u8; 32]>), ApiError> {
    let shown = codes::generate().map_err(|_| {
        log::error("the system's randomness failed", &[]);
        ApiError::Internal
    })?;
    let keys = &ctx.config.mfa.keys;
    let hashes = shown
        .iter()
        .filter_map(|code| codes::normalize(code))
        .map(|canonical| keys.code_hash(user_id, &canonical))
        .collect::<Option<Vec<_>>>()
        .ok_or(ApiError::MfaUnavailable)?;
    Ok((shown, hashes))
}

/// After a TOTP secret sealed under a previous key was used: seals it
/// again under the current one. Best effort (the old seal still opens).
fn reseal_if_rotated(ctx: &Context, user_id: u64, checked: &Checked) {
    let Checked::Totp { sealed, .. } = checked else {
        return;
    };
    let keys = &ctx.config.mfa.keys;
    if !keys.sealed_with_previous(sealed) {
        return;
    }
    let Ok(resealed) = keys
        .open(user_id, sealed)
        .and_then(|raw| keys.seal(user_id, &raw))
    else {
        return;
    };
    if let Err(e) = ctx.db.reseal_totp(user_id, sealed, &resealed) {
        log::warn(
            "re-sealing a TOTP secret failed",
            &[("error", e.to_string().into())],
        );
    }
}

/// Records a code that cannot be right, as `mfa_failed`.
fn refused_code(ctx: &Context, user_id: u64) {
    super::credentials::refused(
        ctx,
        crate::audit::kind::MFA_FAILED,
        Some(user_id),
        "invalid_mfa_code",
        None,
    );
}
