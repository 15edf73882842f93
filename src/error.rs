//! Every failure the API can report, and the one place that turns it into an
//! HTTP status, a stable `code` and an RFC 9457 problem-details body.
//!
//! Handlers return `Result<Response, ApiError>` and never write an error body
//! by hand, so a client meets the same shape everywhere:
//!
//! ```json
//! {"type": "about:blank", "title": "Not Found", "status": 404,
//!  "detail": "No route matches /nope.", "code": "not_found",
//!  "request_id": "5f0c9a1e2b7d4c3a-12"}
//! ```
//!
//! `type` is `about:blank` (RFC 9457 section 4.2.1), so `title` is the HTTP
//! reason phrase; the machine-readable distinction is `code`, which is part of
//! the public interface and never changes meaning. `detail` is for humans.
//!
//! What never goes into a body: SQL, driver messages, stack traces, secrets.
//! Internal failures are logged with the request id and answered with a
//! generic 500 or 503 that names only the request id.

use crate::http::Response;
use serde::Serialize;

/// The RFC 9457 body, members in the RFC's order.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    code: &'static str,
    request_id: &'a str,
}

/// A failure that becomes a problem+json response. The variant fixes the
/// status and `code`; a `String` payload is the human `detail` and must not
/// contain secrets or internals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400 `bad_request`: the request is not valid HTTP/1.1 as this server
    /// accepts it (malformed head, ambiguous framing, bad chunking).
    BadRequest(String),
    /// 404 `not_found`: no such route or resource.
    NotFound,
    /// 405 `method_not_allowed`: the route exists; `Allow` lists its methods.
    MethodNotAllowed(&'static str),
    /// 408 `request_timeout`: the head or body did not arrive within its
    /// deadline (`HEADER_TIMEOUT_MS`, `BODY_TIMEOUT_MS`).
    RequestTimeout,
    /// 413 `payload_too_large`: the body exceeds 64 KiB.
    PayloadTooLarge,
    /// 415 `unsupported_media_type`: a JSON endpoint got another Content-Type.
    UnsupportedMediaType,
    /// 417 `expectation_failed`: an `Expect` other than `100-continue`.
    ExpectationFailed,
    /// 431 `headers_too_large`: head over 16 KiB or more than 64 fields.
    HeadersTooLarge,
    /// 500 `internal_error`: a bug; details are in the log under the request id.
    Internal,
    /// 503 `overloaded`: the server is at a capacity limit; retry later.
    Overloaded,
    /// 503 `database_unavailable`: the database did not answer in time.
    DatabaseUnavailable,

    /// 400 `malformed_json`: the body is not a JSON object.
    MalformedJson,
    /// 400 `missing_field`: a required member is absent (names it).
    MissingField(&'static str),
    /// 400 `invalid_field`: a member has the wrong JSON type (names it, and
    /// what it must be: "a string", "true or false", ...).
    InvalidField(&'static str, &'static str),
    /// 400 `invalid_query`: a query parameter is unknown or not of its
    /// form (says which).
    InvalidQuery(String),
    /// 422 `invalid_email`: not an acceptable email address (says why).
    InvalidEmail(String),
    /// 422 `weak_password`: the password breaks a rule (says which).
    WeakPassword(String),
    /// 422 `invalid_profile`: a profile member breaks a rule (says which,
    /// naming the member).
    InvalidProfile(String),
    /// 409 `email_taken`: an account with this email exists.
    EmailTaken,
    /// 404 `unknown_email`: no account has this email.
    UnknownEmail,
    /// 401 `wrong_password`: the password does not match.
    WrongPassword,

    /// 400 `invalid_reset_token`: unknown, used or expired reset token.
    InvalidResetToken,
    /// 400 `invalid_verification_token`: unknown, used or expired link that
    /// proves an address.
    InvalidVerificationToken,
    /// 400 `invalid_confirmation_token`: unknown, used, expired or
    /// superseded link that confirms a move to a new address.
    InvalidConfirmationToken,
    /// 403 `email_not_verified`: the right password, but the address is not
    /// verified and `REQUIRE_VERIFIED_EMAIL` is on.
    EmailNotVerified,
    /// 401 `invalid_credentials`: the email or the password is wrong (with
    /// `HIDE_ACCOUNT_EXISTENCE`, which does not say which).
    InvalidCredentials,
    /// 429 `too_many_attempts`: the account is locked after too many wrong
    /// passwords; carries the seconds until the lock lifts.
    TooManyAttempts(u64),
    /// 429 `rate_limited`: this client address sent too many requests;
    /// carries the seconds until it may retry.
    RateLimited(u64),

    /// 401 `missing_token`: no or empty `Authorization` header.
    MissingToken,
    /// 401 `invalid_token`: malformed, tampered, or signed with an unknown key.
    InvalidToken,
    /// 401 `token_expired`: the token's expiry has passed.
    TokenExpired,
    /// 401 `token_revoked`: the token's session was ended (logout, logout
    /// everywhere, session deletion or a password change).
    TokenRevoked,
    /// 401 `invalid_refresh_token`: malformed, forged, or its session has
    /// ended.
    InvalidRefreshToken,
    /// 401 `refresh_token_reused`: a refresh token that was rotated away
    /// came back after the grace, so its session was ended.
    RefreshTokenReused,
    /// 403 `account_disabled`: the password is right, but an operator
    /// disabled the account.
    AccountDisabled,
    /// 403 `forbidden`: the token is valid, but its account is not an admin.
    Forbidden,
    /// 404 `user_not_found`: no account has the id in the admin API's path.
    UserNotFound,
    /// 409 `last_admin`: the change would leave no enabled admin.
    LastAdmin,

    /// 401 `mfa_required`: the account has a second factor, and this
    /// request needs its `code` too.
    MfaRequired,
    /// 403 `mfa_required`: `ADMIN_REQUIRE_MFA` is on and the admin's session
    /// did not pass a second factor (the same code as [`ApiError::MfaRequired`]:
    /// the same remedy, log in with a code).
    AdminMfaRequired,
    /// 401 `invalid_mfa_code`: the TOTP or recovery code is wrong, used, or
    /// of a time step already accepted.
    InvalidMfaCode,
    /// 401 `invalid_mfa_token`: the login's `mfa_token` is unknown,
    /// expired, used, voided by a new password, or spent by 5 wrong codes.
    InvalidMfaToken,
    /// 409 `mfa_already_enabled`: the account has a confirmed second factor.
    MfaAlreadyEnabled,
    /// 409 `mfa_not_enabled`: the account has no second factor (or no
    /// enrolment waiting for its confirmation).
    MfaNotEnabled,
    /// 503 `mfa_unavailable`: `DATA_ENCRYPTION_KEY` is not set, so no secret
    /// can be stored.
    MfaUnavailable,
}

impl From<crate::profile::ProfileError> for ApiError {
    fn from(e: crate::profile::ProfileError) -> Self {
        match e {
            crate::profile::ProfileError::WrongType(member, expected) => {
                ApiError::InvalidField(member, expected)
            }
            crate::profile::ProfileError::Invalid(why) => ApiError::InvalidProfile(why),
        }
    }
}

impl ApiError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::RequestTimeout => 408,
            ApiError::PayloadTooLarge => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::ExpectationFailed => 417,
            ApiError::HeadersTooLarge => 431,
            ApiError::Internal => 500,
            ApiError::Overloaded | ApiError::DatabaseUnavailable | ApiError::MfaUnavailable => 503,
            ApiError::MalformedJson
            | ApiError::MissingField(_)
            | ApiError::InvalidField(..)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidResetToken
            | ApiError::InvalidVerificationToken
            | ApiError::InvalidConfirmationToken => 400,
            ApiError::EmailNotVerified | ApiError::AccountDisabled | ApiError::Forbidden => 403,
            ApiError::UserNotFound => 404,
            ApiError::LastAdmin | ApiError::MfaAlreadyEnabled | ApiError::MfaNotEnabled => 409,
            ApiError::AdminMfaRequired => 403,
            ApiError::InvalidEmail(_) | ApiError::WeakPassword(_) | ApiError::InvalidProfile(_) => {
                422
            }
            ApiError::EmailTaken => 409,
            ApiError::TooManyAttempts(_) | ApiError::RateLimited(_) => 429,
            ApiError::UnknownEmail => 404,
            ApiError::WrongPassword
            | ApiError::InvalidCredentials
            | ApiError::MissingToken
            | ApiError::InvalidToken
            | ApiError::TokenExpired
            | ApiError::TokenRevoked
            | ApiError::InvalidRefreshToken
            | ApiError::RefreshTokenReused
            | ApiError::MfaRequired
            | ApiError::InvalidMfaCode
            | ApiError::InvalidMfaToken => 401,
        }
    }

    /// The stable, snake_case machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::ExpectationFailed => "expectation_failed",
            ApiError::HeadersTooLarge => "headers_too_large",
            ApiError::Internal => "internal_error",
            ApiError::Overloaded => "overloaded",
            ApiError::DatabaseUnavailable => "database_unavailable",
            ApiError::MalformedJson => "malformed_json",
            ApiError::MissingField(_) => "missing_field",
            ApiError::InvalidField(..) => "invalid_field",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidEmail(_) => "invalid_email",
            ApiError::WeakPassword(_) => "weak_password",
            ApiError::InvalidProfile(_) => "invalid_profile",
            ApiError::EmailTaken => "email_taken",
            ApiError::UnknownEmail => "unknown_email",
            ApiError::WrongPassword => "wrong_password",
            ApiError::InvalidResetToken => "invalid_reset_token",
            ApiError::InvalidVerificationToken => "invalid_verification_token",
            ApiError::InvalidConfirmationToken => "invalid_confirmation_token",
            ApiError::EmailNotVerified => "email_not_verified",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::TooManyAttempts(_) => "too_many_attempts",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::MissingToken => "missing_token",
            ApiError::InvalidToken => "invalid_token",
            ApiError::TokenExpired => "token_expired",
            ApiError::TokenRevoked => "token_revoked",
            ApiError::InvalidRefreshToken => "invalid_refresh_token",
            ApiError::RefreshTokenReused => "refresh_token_reused",
            ApiError::AccountDisabled => "account_disabled",
            ApiError::Forbidden => "forbidden",
            ApiError::UserNotFound => "user_not_found",
            ApiError::LastAdmin => "last_admin",
            ApiError::MfaRequired | ApiError::AdminMfaRequired => "mfa_required",
            ApiError::InvalidMfaCode => "invalid_mfa_code",
            ApiError::InvalidMfaToken => "invalid_mfa_token",
            ApiError::MfaAlreadyEnabled => "mfa_already_enabled",
            ApiError::MfaNotEnabled => "mfa_not_enabled",
            ApiError::MfaUnavailable => "mfa_unavailable",
        }
    }

    /// A sentence for humans.
    pub fn detail(&self) -> String {
        match self {
            ApiError::BadRequest(why) => why.clone(),
            ApiError::NotFound => "No resource exists at this path.".into(),
            ApiError::MethodNotAllowed(allow) => {
                format!("This resource supports only: {allow}.")
            }
            ApiError::RequestTimeout => "The request did not arrive in time.".into(),
            ApiError::PayloadTooLarge => {
                format!("The body exceeds {} bytes.", crate::http::MAX_BODY)
            }
            ApiError::UnsupportedMediaType => {
                "The body must be JSON, sent with Content-Type: application/json.".into()
            }
            ApiError::ExpectationFailed => "Only Expect: 100-continue is supported.".into(),
            ApiError::HeadersTooLarge => format!(
                "The request head exceeds {} bytes or {} fields.",
                crate::http::MAX_HEAD,
                crate::http::MAX_HEADERS
            ),
            ApiError::Internal => {
                "The server failed; the request id identifies it in the log.".into()
            }
            ApiError::Overloaded => "The server is at capacity; retry shortly.".into(),
            ApiError::DatabaseUnavailable => "The database is unavailable; retry shortly.".into(),
            ApiError::MalformedJson => "The body must be a JSON object.".into(),
            ApiError::MissingField(name) => format!("The member \"{name}\" is required."),
            ApiError::InvalidField(name, expected) => {
                format!("The member \"{name}\" must be {expected}.")
            }
            ApiError::InvalidQuery(why) => why.clone(),
            ApiError::InvalidEmail(why)
            | ApiError::WeakPassword(why)
            | ApiError::InvalidProfile(why) => why.clone(),
            ApiError::EmailTaken => "An account with this email already exists.".into(),
            ApiError::UnknownEmail => "No account has this email.".into(),
            ApiError::WrongPassword => "The password is wrong.".into(),
            ApiError::InvalidResetToken => {
                "The reset token is unknown, used or expired; request a new one.".into()
            }
            ApiError::InvalidVerificationToken => {
                "The verification link is unknown, used or expired; request a new one.".into()
            }
            ApiError::InvalidConfirmationToken => {
                "The confirmation link is unknown, used, expired or replaced by a newer one.".into()
            }
            ApiError::EmailNotVerified => {
                "The email address is not verified yet; use the link mailed to it.".into()
            }
            ApiError::InvalidCredentials => "The email or the password is wrong.".into(),
            ApiError::TooManyAttempts(secs) => {
                format!("Too many wrong passwords for this account; try again in {secs} s.")
            }
            ApiError::RateLimited(secs) => {
                format!("Too many requests from this address; try again in {secs} s.")
            }
            ApiError::MissingToken => {
                "This endpoint needs an Authorization: Bearer <token> header.".into()
            }
            ApiError::InvalidToken => "The token is malformed or not signed by this server.".into(),
            ApiError::TokenExpired => "The token has expired; log in again.".into(),
            ApiError::TokenRevoked => "The token's session has ended; log in again.".into(),
            ApiError::InvalidRefreshToken => {
                "The refresh token is malformed, not ours, or its session has ended; log in again."
                    .into()
            }
            ApiError::RefreshTokenReused => {
                "This refresh token was already used, so its session was ended; log in again."
                    .into()
            }
            ApiError::AccountDisabled => "This account is disabled; ask the operator.".into(),
            ApiError::Forbidden => "This endpoint is for administrators.".into(),
            ApiError::UserNotFound => "No account has this id.".into(),
            ApiError::LastAdmin => {
                "This would leave no enabled administrator; make another one first.".into()
            }
            ApiError::MfaRequired => {
                "This account has two-factor login: send \"code\" (a TOTP or a recovery code) too."
                    .into()
            }
            ApiError::AdminMfaRequired => {
                "The admin API needs a session that passed a second factor; log in with a code."
                    .into()
            }
            ApiError::InvalidMfaCode => "The code is wrong or was used already.".into(),
            ApiError::InvalidMfaToken => {
                "The mfa_token is unknown, expired or used up; log in again.".into()
            }
            ApiError::MfaAlreadyEnabled => {
                "Two-factor login is on already; turn it off first to enrol again.".into()
            }
            ApiError::MfaNotEnabled => "Two-factor login is not on for this account.".into(),
            ApiError::MfaUnavailable => {
                "Two-factor login is not available: the operator has not set DATA_ENCRYPTION_KEY."
                    .into()
            }
        }
    }

    /// True when the connection must close after this answer because the
    /// request framing can no longer be trusted (smuggling shapes, oversized
    /// or unread bodies, timeouts).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ApiError::BadRequest(_)
                | ApiError::RequestTimeout
                | ApiError::PayloadTooLarge
                | ApiError::ExpectationFailed
                | ApiError::HeadersTooLarge
                | ApiError::Overloaded
        )
    }

    /// The problem+json response for this error, tagged with `request_id`.
    pub fn to_response(&self, request_id: &str) -> Response {
        let status = self.status();
        let body = Problem {
            kind: "about:blank",
            title: crate::http::reason_phrase(status),
            status,
            detail: self.detail(),
            code: self.code(),
            request_id,
        };
        let mut response = Response::json(status, &body);
        response.set_header("Content-Type", "application/problem+json");
        match self {
            ApiError::MethodNotAllowed(allow) => response.set_header("Allow", *allow),
            ApiError::Overloaded | ApiError::DatabaseUnavailable => {
                response.set_header("Retry-After", "1")
            }
            ApiError::TooManyAttempts(secs) | ApiError::RateLimited(secs) => {
                response.set_header("Retry-After", secs.to_string())
            }
            // Every 401 carries a challenge (RFC 9110 section 15.5.2). RFC
            // 6750 section 3: a request without a usable token gets the bare
            // challenge, a bad token gets the error code as well.
            ApiError::MissingToken
            | ApiError::WrongPassword
            | ApiError::InvalidCredentials
            | ApiError::MfaRequired
            | ApiError::InvalidMfaCode
            | ApiError::InvalidMfaToken => response.set_header("WWW-Authenticate", "Bearer"),
            ApiError::InvalidToken
            | ApiError::TokenExpired
            | ApiError::TokenRevoked
            | ApiError::InvalidRefreshToken
            | ApiError::RefreshTokenReused => {
                response.set_header("WWW-Authenticate", "Bearer error=\"invalid_token\"")
            }
            _ => {}
        }
        if self.closes_connection() {
            response.close = true;
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_body_has_every_member_and_status_matches() {
        let r = ApiError::MethodNotAllowed("GET").to_response("rid-1");
        assert_eq!(r.status, 405);
        assert_eq!(r.header("Allow"), Some("GET"));
        assert_eq!(r.header("Content-Type"), Some("application/problem+json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["status"], 405);
        assert_eq!(v["code"], "method_not_allowed");
        assert_eq!(v["title"], "Method Not Allowed");
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["request_id"], "rid-1");
        assert!(v["detail"].as_str().unwrap().contains("GET"));
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let all = [
            ApiError::BadRequest(String::new()),
            ApiError::NotFound,
            ApiError::MethodNotAllowed("GET"),
            ApiError::RequestTimeout,
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::ExpectationFailed,
            ApiError::HeadersTooLarge,
            ApiError::Internal,
            ApiError::Overloaded,
            ApiError::DatabaseUnavailable,
            ApiError::MalformedJson,
            ApiError::MissingField("email"),
            ApiError::InvalidField("email", "a string"),
            ApiError::InvalidQuery(String::new()),
            ApiError::InvalidEmail(String::new()),
            ApiError::WeakPassword(String::new()),
            ApiError::InvalidProfile(String::new()),
            ApiError::EmailTaken,
            ApiError::UnknownEmail,
            ApiError::WrongPassword,
            ApiError::InvalidResetToken,
            ApiError::InvalidVerificationToken,
            ApiError::InvalidConfirmationToken,
            ApiError::EmailNotVerified,
            ApiError::InvalidCredentials,
            ApiError::TooManyAttempts(1),
            ApiError::RateLimited(1),
            ApiError::MissingToken,
            ApiError::InvalidToken,
            ApiError::TokenExpired,
            ApiError::TokenRevoked,
            ApiError::InvalidRefreshToken,
            ApiError::RefreshTokenReused,
            ApiError::AccountDisabled,
            ApiError::Forbidden,
            ApiError::UserNotFound,
            ApiError::LastAdmin,
            ApiError::MfaRequired,
            ApiError::InvalidMfaCode,
            ApiError::InvalidMfaToken,
            ApiError::MfaAlreadyEnabled,
            ApiError::MfaNotEnabled,
            ApiError::MfaUnavailable,
        ];
        // One code, two statuses, by design: the remedy is the same.
        assert_eq!(
            ApiError::AdminMfaRequired.code(),
            ApiError::MfaRequired.code()
        );
        let mut codes: Vec<_> = all.iter().map(|e| e.code()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        );
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|e| (400..600).contains(&e.status())));
    }
}
