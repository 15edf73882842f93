//! The words of every message the server sends, one function each. Links
//! are only in the messages whose purpose is the link; a notice tells what
//! happened, when and from where, and what to do if it was not the reader.

use super::messages::compose;
use crate::db::Mail;
use crate::time::{self, duration_in_words};

/// The password-reset link for the account `email`, working for `ttl` s.
pub fn password_reset(app: &str, email: &str, link: &str, ttl: u64) -> Mail {
    compose(
        app,
        email,
        format!("Reset your {app} password"),
        &[
            &format!("Someone asked to reset the password of your {app} account, {email}."),
            &format!(
                "To choose a new password, open this link within {}:",
                duration_in_words(ttl)
            ),
        ],
        Some(("Choose a new password", link)),
        "The link works once. If you did not ask for this, ignore this message: \
         your password stays as it is.",
    )
}

/// To the address of an account an admin created without a password: the
/// link that sets its first password, working for `ttl` s.
pub fn invitation(app: &str, email: &str, link: &str, ttl: u64) -> Mail {
    compose(
        app,
        email,
        format!("You are invited to {app}"),
        &[
            &format!("An account at {app} was created for you, {email}."),
            &format!(
                "To choose your password and start using it, open this link within {}:",
                duration_in_words(ttl)
            ),
        ],
        Some(("Choose my password", link)),
        "The link works once. If you did not expect this invitation, ignore this message: \
         nobody can sign in to the account until a password is chosen with the link.",
    )
}

/// The link that proves the account's address `email`, working for `ttl` s.
pub fn verify_email(app: &str, email: &str, link: &str, ttl: u64) -> Mail {
    compose(
        app,
        email,
        format!("Confirm your email address for {app}"),
        &[
            &format!("Please confirm that {email} is the address of your {app} account."),
            &format!(
                "Open this link within {} and press the button on the page:",
                duration_in_words(ttl)
            ),
        ],
        Some(("Confirm my email address", link)),
        "If you did not create this account, ignore this message.",
    )
}

/// To the new address `new_email`: the link that confirms the move of the
/// account to it, working for `ttl` s.
pub fn confirm_email_change(app: &str, new_email: &str, link: &str, ttl: u64) -> Mail {
    compose(
        app,
        new_email,
        format!("Confirm your new email address for {app}"),
        &[
            &format!("Someone asked to move a {app} account to this address, {new_email}."),
            &format!(
                "To confirm, open this link within {} and press the button on the page:",
                duration_in_words(ttl)
            ),
        ],
        Some(("Confirm the new address", link)),
        "If you did not ask for this, ignore this message: no account moves to this \
         address without this link.",
    )
}

/// To the old address: a move to `new_email` was asked for at `when` from
/// `ip`.
pub fn email_change_requested(app: &str, old: &str, new_email: &str, when: u64, ip: &str) -> Mail {
    compose(
        app,
        old,
        format!("A change of your {app} email address was requested"),
        &[
            &format!(
                "On {} (UTC), from the address {ip}, someone signed in to your {app} account \
                 and asked to change its email address from {old} to {new_email}.",
                time::rfc3339(when)
            ),
            "The change happens only if the link sent to the new address is used.",
        ],
        None,
        "If this was not you, reset your password now (\"Forgot password\" on the sign-in \
         page): that ends every session and cancels the change.",
    )
}

/// To the old address: the account moved to `new_email` at `when`.
pub fn email_changed(app: &str, old: &str, new_email: &str, when: u64) -> Mail {
    compose(
        app,
        old,
        format!("Your {app} email address was changed"),
        &[&format!(
            "On {} (UTC) the email address of your {app} account was changed from {old} \
             to {new_email}. Messages about the account now go there.",
            time::rfc3339(when)
        )],
        None,
        "If this was not you, contact the service's support at once.",
    )
}

/// The password of the account `email` was changed at `when` from `ip`.
pub fn password_changed(app: &str, email: &str, when: u64, ip: &str) -> Mail {
    compose(
        app,
        email,
        format!("Your {app} password was changed"),
        &[&format!(
            "On {} (UTC), from the address {ip}, the password of your {app} account {email} \
             was changed. Every session was signed out.",
            time::rfc3339(when)
        )],
        None,
        "If this was not you, reset your password now (\"Forgot password\" on the sign-in \
         page).",
    )
}

/// The password of the account `email` was set through a reset link at
/// `when` from `ip`.
pub fn password_reset_done(app: &str, email: &str, when: u64, ip: &str) -> Mail {
    compose(
        app,
        email,
        format!("Your {app} password was reset"),
        &[&format!(
            "On {} (UTC), from the address {ip}, a new password was set for your {app} \
             account {email} with a reset link. Every session was signed out.",
            time::rfc3339(when)
        )],
        None,
        "If this was not you, reset your password again now and check who can read this \
         mailbox.",
    )
}

/// The account `email` was deleted at `when` from `ip`.
pub fn account_deleted(app: &str, email: &str, when: u64, ip: &str) -> Mail {
    compose(
        app,
        email,
        format!("Your {app} account was deleted"),
        &[&format!(
            "On {} (UTC), from the address {ip}, your {app} account {email} and everything \
             in it was deleted.",
            time::rfc3339(when)
        )],
        None,
        "If this was not you, contact the service's support at once.",
    )
}

/// Two-factor login was turned on for the account `email` at `when` from
/// `ip`.
pub fn mfa_enabled(app: &str, email: &str, when: u64, ip: &str) -> Mail {
    compose(
        app,
        email,
        format!("Two-factor login is on for your {app} account"),
        &[
            &format!(
                "On {} (UTC), from the address {ip}, two-factor login was turned on for your \
                 {app} account {email}. Signing in now needs a code from your authenticator \
                 app as well as your password.",
                time::rfc3339(when)
            ),
            "Keep the recovery codes you were shown somewhere safe: each one lets you in \
             once if you lose the app.",
        ],
        None,
        "If this was not you, someone has your password: reset it now (\"Forgot password\" \
         on the sign-in page) and contact the service's support.",
    )
}

/// A recovery code of the account `email` was used at `when` from `ip`.
pub fn recovery_code_used(app: &str, email: &str, when: u64, ip: &str) -> Mail {
    compose(
        app,
        email,
        format!("A recovery code of your {app} account was used"),
        &[&format!(
            "On {} (UTC), from the address {ip}, one of the recovery codes of your {app} \
             account {email} was used instead of a code from your authenticator app. It \
             cannot be used again.",
            time::rfc3339(when)
        )],
        None,
        "If this was not you, someone has your password and a recovery code: reset your \
         password now and make new recovery codes.",
    )
}

/// Two-factor login was turned off for the account `email` at `when`, by
/// its owner from `ip` or by an administrator.
pub fn mfa_disabled(app: &str, email: &str, when: u64, ip: &str, by_admin: bool) -> Mail {
    let who = if by_admin {
        "an administrator".to_string()
    } else {
        format!("someone signed in from the address {ip}")
    };
    compose(
        app,
        email,
        format!("Two-factor login is off for your {app} account"),
        &[&format!(
            "On {} (UTC), {who} turned two-factor login off for your {app} account {email}. \
             Signing in now needs only your password.",
            time::rfc3339(when)
        )],
        None,
        "If this was not you, reset your password now (\"Forgot password\" on the sign-in \
         page) and turn two-factor login on again.",
    )
}

/// To an address that has an account: someone tried to register it, or to
/// move another account to it, at `when` (sent instead of an error when
/// `HIDE_ACCOUNT_EXISTENCE` is on).
pub fn address_in_use(app: &str, email: &str, when: u64) -> Mail {
    compose(
        app,
        email,
        format!("Someone tried to use your email address at {app}"),
        &[&format!(
            "On {} (UTC) someone tried to use {email} for another {app} account. This \
             address already has an account, so nothing was changed.",
            time::rfc3339(when)
        )],
        None,
        "If it was you, sign in with your password, or reset it with \"Forgot password\". \
         Otherwise, ignore this message.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_carry_no_link_and_links_carry_their_duration_in_words() {
        let now = 1_800_000_000;
        for mail in [
            email_change_requested("App", "a@x.io", "b@y.io", now, "192.0.2.1"),
            email_changed("App", "a@x.io", "b@y.io", now),
            password_changed("App", "a@x.io", now, "192.0.2.1"),
            password_reset_done("App", "a@x.io", now, "192.0.2.1"),
            account_deleted("App", "a@x.io", now, "192.0.2.1"),
            address_in_use("App", "a@x.io", now),
            mfa_enabled("App", "a@x.io", now, "192.0.2.1"),
            recovery_code_used("App", "a@x.io", now, "192.0.2.1"),
            mfa_disabled("App", "a@x.io", now, "192.0.2.1", false),
            mfa_disabled("App", "a@x.io", now, "192.0.2.1", true),
        ] {
            assert!(!mail.body.contains("http"), "{}", mail.body);
            assert!(!mail.html.contains("href"), "{}", mail.html);
            assert!(mail.body.contains("2027-01-15T08:00:00Z"), "{}", mail.body);
            assert!(mail.subject.contains("App"));
        }
        let verify = verify_email("App", "a@x.io", "https://x/verify-email?token=t", 86_400);
        assert!(verify.body.contains("24 hours") && verify.body.contains("?token=t"));
        let reset = password_reset("App", "a@x.io", "https://x/r?token=t", 900);
        assert!(reset.body.contains("15 minutes"));
        let invite = invitation("App", "a@x.io", "https://x/r?token=t", 604_800);
        assert!(invite.body.contains("7 days") && invite.body.contains("?token=t"));
        assert!(invite.subject.contains("invited"));
    }
}
