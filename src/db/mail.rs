//! Mail requests and the outbox: what the mail resolver (`src/mail/`) reads
//! and writes, and the one way any transaction queues a message.
//!
//! A request for account mail (a password reset, a new verification link)
//! is recorded as a `mail_requests` row by the request itself, whether or
//! not the address has an account. [`Db::resolve_request`] then does the
//! real work in one transaction: it locks the account's row, takes the
//! request (only one instance can), and if an account has the address, the
//! purpose applies to it and its cooldown allows, creates the link's token
//! and queues the message to the address the account has at that moment.
//! Email and password changes lock the same row and delete pending requests
//! (`forget_requests`), so a token is never created for an address the
//! account no longer has, or after a new password that should have voided
//! it.
//!
//! Every message, here or in any other transaction (a notice of a password
//! change, say), goes in through [`queue`], in the transaction of the change
//! it is about: it is sent if and only if the change commits.

use super::audit::{self, Event};
use super::{Db, DbError};
use crate::audit::kind;
use mysql::params;
use mysql::prelude::Queryable;

/// A message for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The address it goes to.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// HTML body, the same message.
    pub html: String,
}

/// The kind of a mail request, and of the outbox rows it makes: a
/// password-reset link.
pub const PASSWORD_RESET: &str = "password_reset";
/// A link that proves the account's address.
pub const VERIFY_EMAIL: &str = "verify_email";
/// An invitation: the set-password link of an account an admin created
/// without a password (a reset token, with its own words and lifetime).
pub const INVITATION: &str = "invitation";
/// A link, to a new address, that confirms the move to it.
pub const CONFIRM_EMAIL_CHANGE: &str = "confirm_email_change";
/// Notices: the security events a user is told of. None carries a link
/// that does anything.
pub mod notice {
    /// To the old address: a move to another was asked for.
    pub const EMAIL_CHANGE_REQUESTED: &str = "notice_email_change_requested";
    /// To the old address: the account moved to another.
    pub const EMAIL_CHANGED: &str = "notice_email_changed";
    /// The password was changed with the old one.
    pub const PASSWORD_CHANGED: &str = "notice_password_changed";
    /// The password was set through a reset link.
    pub const PASSWORD_RESET: &str = "notice_password_reset";
    /// The account was deleted.
    pub const ACCOUNT_DELETED: &str = "notice_account_deleted";
    /// To an address that has an account: someone tried to register it, or
    /// to move another account to it (with `HIDE_ACCOUNT_EXISTENCE`).
    pub const ADDRESS_IN_USE: &str = "notice_address_in_use";
    /// Two-factor login was turned on.
    pub const MFA_ENABLED: &str = "notice_mfa_enabled";
    /// A recovery code was used.
    pub const RECOVERY_CODE_USED: &str = "notice_recovery_code_used";
    /// Two-factor login was turned off.
    pub const MFA_DISABLED: &str = "notice_mfa_disabled";
}

/// A request waiting for the mail resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRequest {
    /// Its row.
    pub id: u64,
    /// What it asks for ([`PASSWORD_RESET`] or [`VERIFY_EMAIL`]).
    pub kind: String,
    /// The mailbox key of the address it names.
    pub email_key: [u8; 32],
    /// Unix seconds.
    pub requested_at: u64,
    /// The client address of the request that asked for it.
    pub ip: String,
    /// The admin who asked for it (`None`: the account's owner, or anyone
    /// who knew the address).
    pub actor_id: Option<u64>,
}

/// A `mail_requests` row as read: id, kind, mailbox key, requested at,
/// client address, actor.
type RequestRow = (u64, String, Vec<u8>, u64, String, Option<u64>);

/// The rules a request is resolved under.
#[derive(Debug, Clone, Copy)]
pub struct LinkPolicy {
    /// Seconds the link works.
    pub token_ttl: u64,
    /// Seconds between two mails of this kind to one account (0: no limit).
    pub cooldown: u64,
    /// Most links of this kind live at once per account; a new one retires
    /// the oldest beyond this (1: a new link replaces the others).
    pub max_live_tokens: u32,
}

/// What resolving a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// A token was created and its message queued.
    Queued {
        /// The account it was for.
        user_id: u64,
    },
    /// No account has the address, or the request does not apply to it
    /// (a verification link for an address already verified).
    NotApplicable,
    /// The account had a mail of this kind within the cooldown.
    CoolingDown,
    /// Another instance resolved it first.
    Taken,
}

impl Db {
    /// Records a request for `kind` mail to the mailbox `email_key`.
    pub fn request_mail(
        &self,
        kind: &str,
        email_key: &[u8; 32],
        now: u64,
        ip: &str,
    ) -> Result<(), DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "INSERT INTO mail_requests (kind, email_key, requested_at, ip)
                 VALUES (:kind, :key, :now, :ip)",
                params! { "kind" => kind, "key" => &email_key[..], "now" => now, "ip" => ip },
            )
        })
    }

    /// Up to `limit` requests, oldest first.
    pub fn pending_mail_requests(&self, limit: u32) -> Result<Vec<MailRequest>, DbError> {
        let rows: Vec<RequestRow> = self.run(|conn| {
            conn.exec(
                "SELECT id, kind, email_key, requested_at, ip, actor_id FROM mail_requests
                 ORDER BY id LIMIT :limit",
                params! { "limit" => limit },
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, kind, key, requested_at, ip, actor_id)| {
                Some(MailRequest {
                    id,
                    kind,
                    email_key: key.try_into().ok()?,
                    requested_at,
                    ip,
                    actor_id,
                })
            })
            .collect())
    }

    /// Deletes a request that cannot be resolved (an unknown kind).
    pub fn drop_mail_request(&self, id: u64) -> Result<(), DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM mail_requests WHERE id = :id",
                params! { "id" => id },
            )
        })
    }

    /// Resolves one request (see the module docs). `compose` writes the
    /// message for the account's current address and `token_hash` is the
    /// SHA-256 of the token in it; both are ready before the transaction,
    /// which may run more than once.
    pub fn resolve_request(
        &self,
        request: &MailRequest,
        token_hash: &[u8; 32],
        policy: &LinkPolicy,
        now: u64,
        compose: &dyn Fn(&str) -> Mail,
    ) -> Result<Resolved, DbError> {
        let kind = request.kind.as_str();
        self.transaction(|tx| {
            // Everything is read before anything is written (see `tx.rs`):
            // the account's row first, as every change to it does, then
            // what decides the outcome, then the tokens a new one replaces.
            let account: Option<(u64, String, Option<u64>, Option<u64>)> = tx.exec_first(
                "SELECT id, email, email_verified_at, disabled_at FROM users
                 WHERE email_key = :key FOR UPDATE",
                params! { "key" => &request.email_key[..] },
            )?;
            let outcome = match account {
                // A disabled account is mailed nothing, as if it did not exist.
                Some((user_id, email, verified, None)) => {
                    if kind == VERIFY_EMAIL && verified.is_some() {
                        Outcome::NotApplicable
                    } else if cooling_down(tx, user_id, kind, policy.cooldown, now)? {
                        Outcome::CoolingDown
                    } else if kind == PASSWORD_RESET {
                        let retired = oldest_resets(tx, user_id, policy.max_live_tokens, now)?;
                        Outcome::Reset {
                            user_id,
                            email,
                            retired,
                        }
                    } else {
                        let older = super::email_tokens::verify_tokens_of(tx, user_id)?;
                        Outcome::Verify {
                            user_id,
                            email,
                            older,
                        }
                    }
                }
                _ => Outcome::NotApplicable,
            };
            tx.exec_drop(
                "DELETE FROM mail_requests WHERE id = :id",
                params! { "id" => request.id },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(Resolved::Taken);
            }
            let (user_id, email) = match outcome {
                Outcome::NotApplicable => return Ok(Resolved::NotApplicable),
                Outcome::CoolingDown => return Ok(Resolved::CoolingDown),
                Outcome::Reset {
                    user_id,
                    email,
                    retired,
                } => {
                    for hash in &retired {
                        tx.exec_drop(
                            "DELETE FROM password_resets WHERE token_hash = :hash",
                            params! { "hash" => hash },
                        )?;
                    }
                    tx.exec_drop(
                        "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at)
                         VALUES (:hash, :uid, :now, :expires)",
                        params! {
                            "hash" => &token_hash[..], "uid" => user_id, "now" => now,
                            "expires" => now + policy.token_ttl,
                        },
                    )?;
                    // From the address that asked, not this mail thread's.
                    let origin = crate::audit::Origin {
                        ip: request.ip.clone(),
                        user_agent: String::new(),
                    };
                    let event = Event::of(kind::PASSWORD_RESET_REQUESTED, user_id, now)
                        .by(request.actor_id);
                    crate::audit::with_origin(origin, || audit::record(tx, &event))?;
                    (user_id, email)
                }
                Outcome::Verify {
                    user_id,
                    email,
                    older,
                } => {
                    super::email_tokens::replace_verify_token(
                        tx,
                        user_id,
                        &older,
                        token_hash,
                        now,
                        now + policy.token_ttl,
                    )?;
                    (user_id, email)
                }
            };
            queue(tx, Some(user_id), kind, &compose(&email), now)?;
            Ok(Resolved::Queued { user_id })
        })
    }
}

/// What a mail request comes to, decided from what was read.
enum Outcome {
    NotApplicable,
    CoolingDown,
    /// A reset link, retiring these older tokens.
    Reset {
        user_id: u64,
        email: String,
        retired: Vec<Vec<u8>>,
    },
    /// A verification link, replacing these older ones.
    Verify {
        user_id: u64,
        email: String,
        older: Vec<Vec<u8>>,
    },
}

/// True if the account had a `kind` mail less than `cooldown` seconds ago.
fn cooling_down(
    tx: &mut mysql::Transaction<'_>,
    user_id: u64,
    kind: &str,
    cooldown: u64,
    now: u64,
) -> mysql::Result<bool> {
    if cooldown == 0 {
        return Ok(false);
    }
    let last: Option<Option<u64>> = tx.exec_first(
        "SELECT MAX(created_at) FROM mail_outbox WHERE user_id = :uid AND kind = :kind",
        params! { "uid" => user_id, "kind" => kind },
    )?;
    Ok(last.flatten().is_some_and(|last| now < last + cooldown))
}

/// The account's reset tokens to retire to make room for one more live
/// one: its oldest unused, unexpired tokens beyond `max_live - 1`.
fn oldest_resets(
    tx: &mut mysql::Transaction<'_>,
    user_id: u64,
    max_live: u32,
    now: u64,
) -> mysql::Result<Vec<Vec<u8>>> {
    let live: Vec<Vec<u8>> = tx.exec(
        "SELECT token_hash FROM password_resets
         WHERE user_id = :uid AND used_at IS NULL AND expires_at > :now
         ORDER BY created_at DESC, token_hash",
        params! { "uid" => user_id, "now" => now },
    )?;
    let keep = max_live.saturating_sub(1) as usize;
    Ok(live.into_iter().skip(keep).collect())
}

/// Queues `mail` of `kind` (for the account `user_id`, if any) in the
/// outbox, inside the transaction of whatever it is about.
pub(super) fn queue(
    tx: &mut mysql::Transaction<'_>,
    user_id: Option<u64>,
    kind: &str,
    mail: &Mail,
    now: u64,
) -> mysql::Result<()> {
    tx.exec_drop(
        "INSERT INTO mail_outbox (user_id, kind, recipient, subject, body, html, created_at)
         VALUES (:uid, :kind, :recipient, :subject, :body, :html, :now)",
        params! {
            "uid" => user_id, "kind" => kind, "recipient" => &mail.recipient,
            "subject" => &mail.subject, "body" => &mail.body, "html" => &mail.html,
            "now" => now,
        },
    )
}

/// Inside a transaction that changed an account's address or password, or
/// deleted it: forgets the requests pending for its mailbox, which must not
/// now produce a link.
pub(super) fn forget_requests(
    tx: &mut mysql::Transaction<'_>,
    email_key: &[u8],
) -> mysql::Result<()> {
    tx.exec_drop(
        "DELETE FROM mail_requests WHERE email_key = :key",
        params! { "key" => email_key },
    )
}
