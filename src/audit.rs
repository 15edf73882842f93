//! The audit log's side of a request: where it came from, and the event
//! types.
//!
//! Each audit event is written by the database layer inside the
//! transaction of the change it records (`db::audit`), and carries the
//! address, user agent and request id of the request that caused it. Like
//! the log's request id, these are kept per thread for the request being
//! served (one thread serves one request at a time), set once by the router
//! ([`with_origin`]), so they need not be passed through every call between
//! the handler and the SQL. Work outside any request (the mail threads,
//! the command line) records the system origin: no address, the request id
//! `system`.

use std::cell::RefCell;

/// Where the current request came from, as an audit event shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client address (after `TRUSTED_PROXIES`).
    pub ip: String,
    /// The `User-Agent`, cut to 255 characters.
    pub user_agent: String,
}

thread_local! {
    static ORIGIN: RefCell<Option<Origin>> = const { RefCell::new(None) };
}

/// Runs `f` with `origin` as the current request's.
pub fn with_origin<T>(origin: Origin, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ORIGIN.with(|o| o.borrow_mut().take());
        }
    }
    ORIGIN.with(|o| *o.borrow_mut() = Some(origin));
    let _reset = Reset;
    f()
}

/// The current request's origin, or the system's (empty) outside requests.
pub fn origin() -> Origin {
    ORIGIN.with(|o| o.borrow().clone().unwrap_or_default())
}

/// The event types, as stored in `audit_events.type`: a stable interface,
/// like the API's error codes.
pub mod kind {
    /// An account was created: registration, the first admin, `create-admin`.
    pub const USER_REGISTERED: &str = "user_registered";
    /// A login opened a session.
    pub const LOGIN_SUCCEEDED: &str = "login_succeeded";
    /// A login was refused after its password was checked, or for an
    /// unknown address; `detail.reason` is the error code.
    pub const LOGIN_FAILED: &str = "login_failed";
    /// A login or password check was refused because the account is locked.
    pub const LOGIN_LOCKED: &str = "login_locked";
    /// One session ended by its owner (logout, or ending it by id).
    pub const LOGOUT: &str = "logout";
    /// Every session of the account ended (logout-all, an admin).
    pub const SESSIONS_ENDED: &str = "sessions_ended";
    /// A rotated-away refresh token came back; its session was ended.
    pub const REFRESH_TOKEN_REUSED: &str = "refresh_token_reused";
    /// The password was changed with the old one.
    pub const PASSWORD_CHANGED: &str = "password_changed";
    /// A reset link was queued for the account.
    pub const PASSWORD_RESET_REQUESTED: &str = "password_reset_requested";
    /// The password was reset through a link.
    pub const PASSWORD_RESET: &str = "password_reset";
    /// The address was verified through a link.
    pub const EMAIL_VERIFIED: &str = "email_verified";
    /// A move to a new address was asked for.
    pub const EMAIL_CHANGE_REQUESTED: &str = "email_change_requested";
    /// The account moved to a new address.
    pub const EMAIL_CHANGED: &str = "email_changed";
    /// The account was deleted (by its owner, or by an admin).
    pub const ACCOUNT_DELETED: &str = "account_deleted";
    /// An admin disabled the account.
    pub const ACCOUNT_DISABLED: &str = "account_disabled";
    /// An admin enabled the account again.
    pub const ACCOUNT_ENABLED: &str = "account_enabled";
    /// The account's role changed.
    pub const ROLE_CHANGED: &str = "role_changed";
    /// An admin cleared the account's failed attempts.
    pub const LOCKOUT_CLEARED: &str = "lockout_cleared";
    /// An admin created the account (`POST /admin/users`).
    pub const USER_CREATED_BY_ADMIN: &str = "user_created_by_admin";
    /// A TOTP enrolment began (a new secret, not yet confirmed).
    pub const MFA_ENROLMENT_STARTED: &str = "mfa_enrolment_started";
    /// A TOTP enrolment was confirmed with a code: two-factor login is on.
    pub const MFA_ENABLED: &str = "mfa_enabled";
    /// A second-factor code was refused; `detail.reason` says why.
    pub const MFA_FAILED: &str = "mfa_failed";
    /// A recovery code was used.
    pub const RECOVERY_CODE_USED: &str = "recovery_code_used";
    /// The recovery codes were replaced with a new set.
    pub const RECOVERY_CODES_REGENERATED: &str = "recovery_codes_regenerated";
    /// Two-factor login was turned off (by the owner, or an admin).
    pub const MFA_DISABLED: &str = "mfa_disabled";

    /// Every type, for validating the admin API's `type` filter.
    pub const ALL: [&str; 25] = [
        USER_REGISTERED,
        LOGIN_SUCCEEDED,
        LOGIN_FAILED,
        LOGIN_LOCKED,
        LOGOUT,
        SESSIONS_ENDED,
        REFRESH_TOKEN_REUSED,
        PASSWORD_CHANGED,
        PASSWORD_RESET_REQUESTED,
        PASSWORD_RESET,
        EMAIL_VERIFIED,
        EMAIL_CHANGE_REQUESTED,
        EMAIL_CHANGED,
        ACCOUNT_DELETED,
        ACCOUNT_DISABLED,
        ACCOUNT_ENABLED,
        ROLE_CHANGED,
        LOCKOUT_CLEARED,
        USER_CREATED_BY_ADMIN,
        MFA_ENROLMENT_STARTED,
        MFA_ENABLED,
        MFA_FAILED,
        RECOVERY_CODE_USED,
        RECOVERY_CODES_REGENERATED,
        MFA_DISABLED,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_the_requests_and_only_during_it() {
        let origin = Origin {
            ip: "203.0.113.9".into(),
            user_agent: "curl".into(),
        };
        assert_eq!(with_origin(origin.clone(), self::origin), origin);
        assert_eq!(self::origin(), Origin::default());
    }

    #[test]
    fn event_types_are_distinct_snake_case() {
        let mut all = kind::ALL.to_vec();
        assert!(
            all.iter()
                .all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), kind::ALL.len());
    }
}
