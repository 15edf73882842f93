//! The texts of the messages the server sends. They never contain a
//! password, and a link only in the message that carries it.

use crate::db::Mail;

/// The password-reset message for `email`, carrying `link`, which works for
/// `ttl` seconds.
pub fn password_reset(email: &str, link: &str, ttl: u64) -> Mail {
    Mail {
        recipient: email.to_string(),
        subject: "Reset your password".into(),
        body: format!(
            "Someone asked to reset the password of the account for {email}.\n\n\
             To choose a new password, open this link within {minutes} minutes:\n\n{link}\n\n\
             The link works once. If you did not ask for this, ignore this message: \
             your password stays as it is.\n",
            minutes = ttl.div_ceil(60),
        ),
    }
}
