//! Mail requests and the outbox: what the mail worker (`src/mail/`) reads
//! and writes.
//!
//! A request for account mail (today: a password reset) is recorded as a
//! `mail_requests` row by the request itself, whether or not the address has
//! an account. [`Db::resolve_reset_request`] then does the real work in one
//! transaction: it locks the account's row, takes the request (only one
//! instance can), and if an account has the address and its cooldown
//! allows, creates the reset token and queues the message to the address
//! the account has at that moment. Email and password changes lock the same
//! row and delete pending requests (`forget_requests`), so a token is never
//! created for an address the account no longer has, or after a new
//! password that should have voided it.

use super::{Db, DbError};
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

/// The kind of a mail request and of the outbox rows it makes.
pub const PASSWORD_RESET: &str = "password_reset";

/// A request waiting for the mail worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRequest {
    /// Its row.
    pub id: u64,
    /// What it asks for ([`PASSWORD_RESET`]).
    pub kind: String,
    /// The mailbox key of the address it names.
    pub email_key: [u8; 32],
    /// Unix seconds.
    pub requested_at: u64,
}

/// The rules a reset request is resolved under.
#[derive(Debug, Clone, Copy)]
pub struct ResetPolicy {
    /// Seconds a reset token works.
    pub token_ttl: u64,
    /// Seconds between two reset mails to one account (0: no limit).
    pub cooldown: u64,
    /// Most reset tokens live at once per account; a new one retires the
    /// oldest beyond this.
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
    /// No account has the address.
    NoAccount,
    /// The account had a reset mail within the cooldown.
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
        let rows: Vec<(u64, String, Vec<u8>, u64)> = self.run(|conn| {
            conn.exec(
                "SELECT id, kind, email_key, requested_at FROM mail_requests ORDER BY id LIMIT :limit",
                params! { "limit" => limit },
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, kind, key, requested_at)| {
                Some(MailRequest {
                    id,
                    kind,
                    email_key: key.try_into().ok()?,
                    requested_at,
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

    /// Resolves one reset request (see the module docs). `compose` writes
    /// the message for the account's current address and `token_hash` is
    /// the SHA-256 of the token in it; both are ready before the
    /// transaction, which may run more than once.
    pub fn resolve_reset_request(
        &self,
        request: &MailRequest,
        token_hash: &[u8; 32],
        policy: &ResetPolicy,
        now: u64,
        compose: &dyn Fn(&str) -> Mail,
    ) -> Result<Resolved, DbError> {
        self.transaction(|tx| {
            // The account's row first, as every change to it does.
            let account: Option<(u64, String)> = tx.exec_first(
                "SELECT id, email FROM users WHERE email_key = :key FOR UPDATE",
                params! { "key" => &request.email_key[..] },
            )?;
            tx.exec_drop(
                "DELETE FROM mail_requests WHERE id = :id",
                params! { "id" => request.id },
            )?;
            if tx.affected_rows() != 1 {
                return Ok(Resolved::Taken);
            }
            let Some((user_id, email)) = account else {
                return Ok(Resolved::NoAccount);
            };
            let last: Option<Option<u64>> = tx.exec_first(
                "SELECT MAX(created_at) FROM mail_outbox WHERE user_id = :uid AND kind = :kind",
                params! { "uid" => user_id, "kind" => PASSWORD_RESET },
            )?;
            if let Some(last) = last.flatten() {
                if policy.cooldown > 0 && now < last + policy.cooldown {
                    return Ok(Resolved::CoolingDown);
                }
            }
            retire_oldest_tokens(tx, user_id, policy.max_live_tokens, now)?;
            tx.exec_drop(
                "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at)
                 VALUES (:hash, :uid, :now, :expires)",
                params! {
                    "hash" => &token_hash[..], "uid" => user_id, "now" => now,
                    "expires" => now + policy.token_ttl,
                },
            )?;
            let mail = compose(&email);
            tx.exec_drop(
                "INSERT INTO mail_outbox (user_id, kind, recipient, subject, body, html, created_at)
                 VALUES (:uid, :kind, :recipient, :subject, :body, :html, :now)",
                params! {
                    "uid" => user_id, "kind" => PASSWORD_RESET, "recipient" => &mail.recipient,
                    "subject" => &mail.subject, "body" => &mail.body, "html" => &mail.html,
                    "now" => now,
                },
            )?;
            Ok(Resolved::Queued { user_id })
        })
    }
}

/// Makes room for one more live reset token: deletes the account's oldest
/// unused, unexpired tokens beyond `max_live - 1`.
fn retire_oldest_tokens(
    tx: &mut mysql::Transaction<'_>,
    user_id: u64,
    max_live: u32,
    now: u64,
) -> mysql::Result<()> {
    let live: Vec<Vec<u8>> = tx.exec(
        "SELECT token_hash FROM password_resets
         WHERE user_id = :uid AND used_at IS NULL AND expires_at > :now
         ORDER BY created_at DESC, token_hash",
        params! { "uid" => user_id, "now" => now },
    )?;
    let keep = max_live.saturating_sub(1) as usize;
    for hash in live.iter().skip(keep) {
        tx.exec_drop(
            "DELETE FROM password_resets WHERE token_hash = :hash",
            params! { "hash" => hash },
        )?;
    }
    Ok(())
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
