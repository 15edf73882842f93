//! Mail: from a request that needs a message to the message leaving over
//! SMTP, in two background threads of every instance.
//!
//! 1. **The resolver** (this file). A request that needs account mail
//!    (`forgot`, a new verification link) only records a `mail_requests` row and wakes this
//!    thread, so the request does the same work whether or not the address
//!    has an account. The resolver handles each request in one transaction
//!    (see `db/mail.rs`): the account's row is locked, the request taken,
//!    and for an account outside its cooldown a token is created and its
//!    message queued in `mail_outbox` to the address the account has now. Deleting the request is the claim, so with several instances a
//!    request is resolved exactly once.
//! 2. **The courier** (`courier.rs`), when `SMTP_URL` is set, delivers the
//!    outbox through the relay (`smtp.rs`), with leases, retries and a cap
//!    per recipient. Without `SMTP_URL` the outbox waits for an external
//!    mailer, as the transactional outbox always allowed.
//!
//! Work queued on this instance wakes the thread that does it at once
//! ([`Wakeup`]), so a reset mail leaves within about a second; work queued
//! by other instances, and retries that come due, are found by polling every
//! `MAIL_POLL_MS`.

mod courier;
mod messages;
pub mod smtp;
pub mod texts;

pub use courier::{Courier, backoff};

use crate::context::Context;
use crate::db::{DbError, LinkPolicy, MailRequest, PASSWORD_RESET, Resolved, VERIFY_EMAIL};
use crate::{log, secret};
use lettre::message::Mailbox;
use smtp::Relay;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Requests resolved per database round.
const BATCH: u32 = 100;

/// The `MAIL_*` and `SMTP_*` settings (see the README's table).
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `SMTP_URL` (or `SMTP_URL_FILE`): the relay; `None` leaves the outbox
    /// to an external mailer.
    pub relay: Option<Relay>,
    /// `SMTP_CA_FILE`: a PEM CA trusted besides the compiled-in roots.
    pub ca: Option<Vec<u8>>,
    /// `MAIL_FROM`: the sender; required with `SMTP_URL`.
    pub from: Option<Mailbox>,
    /// `MAIL_TIMEOUT_MS`: bound on connect, TLS handshake and each command.
    pub timeout: Duration,
    /// `MAIL_POLL_MS`: how often the threads look for work from elsewhere.
    pub poll: Duration,
    /// `MAIL_LEASE_SECONDS`: how long a courier's claim on a message lasts.
    pub lease: u64,
    /// `MAIL_RETRY_BASE_SECONDS`: the first pause after a temporary failure.
    pub retry_base: u64,
    /// `MAIL_MAX_ATTEMPTS`: tries before a message is given up on.
    pub max_attempts: u32,
    /// `MAIL_MAX_PER_RECIPIENT_PER_HOUR`: most messages sent to one address
    /// in an hour, whatever queued them.
    pub max_per_recipient_per_hour: u64,
    /// `MAIL_RECIPIENT_COOLDOWN_SECONDS`: at most one reset mail per account
    /// in this many seconds (0: no limit).
    pub recipient_cooldown: u64,
    /// `MAIL_RETENTION_DAYS`: outbox rows older than this are deleted.
    pub retention_days: u64,
}

/// Wakes a mail thread: set by whoever queued work, waited on by the thread.
#[derive(Default)]
pub struct Wakeup {
    pending: Mutex<bool>,
    signal: Condvar,
}

impl Wakeup {
    /// Tells the thread there is work; never blocks.
    pub fn wake(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.signal.notify_one();
    }

    /// Waits until woken or until `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (mut pending, _) = self
            .signal
            .wait_timeout_while(pending, timeout, |pending| !*pending)
            .unwrap_or_else(|e| e.into_inner());
        *pending = false;
    }
}

/// The resolver's loop; runs for the life of the process. It starts with a
/// wait, so start-up itself makes no database work beyond the migrations.
pub fn run_resolver(ctx: &Context) {
    loop {
        ctx.mail.wait(ctx.config.mail.poll);
        loop {
            match resolve_requests(ctx) {
                // A full batch: there may be more.
                Ok(n) if n >= BATCH as usize => continue,
                Ok(_) => break,
                Err(e) => {
                    log::warn(
                        "resolving mail requests failed; retrying",
                        &[("error", e.to_string().into())],
                    );
                    break;
                }
            }
        }
    }
}

/// Resolves up to one batch of pending requests; returns how many there were.
pub fn resolve_requests(ctx: &Context) -> Result<usize, DbError> {
    let requests = ctx.db.pending_mail_requests(BATCH)?;
    for request in &requests {
        match request.kind.as_str() {
            PASSWORD_RESET | VERIFY_EMAIL => resolve(ctx, request)?,
            other => {
                log::warn("unknown mail request dropped", &[("kind", other.into())]);
                ctx.db.drop_mail_request(request.id)?;
            }
        }
    }
    Ok(requests.len())
}

fn resolve(ctx: &Context, request: &MailRequest) -> Result<(), DbError> {
    // Randomness failing is logged by `secret`; the request waits for the
    // next round rather than getting a weaker token.
    let Ok(token) = secret::token() else {
        return Ok(());
    };
    let config = &ctx.config;
    let app = &config.app_name;
    let (policy, link) = if request.kind == VERIFY_EMAIL {
        let policy = LinkPolicy {
            token_ttl: config.verify_token_ttl,
            cooldown: config.mail.recipient_cooldown,
            max_live_tokens: 1,
        };
        (
            policy,
            format!("{}/verify-email?token={token}", config.public_url),
        )
    } else {
        let policy = LinkPolicy {
            token_ttl: config.reset_token_ttl,
            cooldown: config.mail.recipient_cooldown,
            max_live_tokens: config.reset_max_live_tokens,
        };
        (policy, format!("{}?token={token}", config.reset_url_base))
    };
    let compose = |email: &str| {
        if request.kind == VERIFY_EMAIL {
            texts::verify_email(app, email, &link, policy.token_ttl)
        } else {
            texts::password_reset(app, email, &link, policy.token_ttl)
        }
    };
    let resolved = ctx.db.resolve_request(
        request,
        &secret::sha256(&token),
        &policy,
        ctx.now(),
        &compose,
    )?;
    match resolved {
        Resolved::Queued { user_id } => {
            mail_queued(ctx, 1);
            log::info(
                "mail queued",
                &[
                    ("kind", request.kind.as_str().into()),
                    ("user_id", user_id.into()),
                ],
            );
        }
        Resolved::CoolingDown => log::debug(
            "mail within its cooldown; none queued",
            &[("kind", request.kind.as_str().into())],
        ),
        Resolved::NotApplicable | Resolved::Taken => {}
    }
    Ok(())
}

/// After a transaction that queued `n` messages committed: counts them and
/// wakes the courier.
pub fn mail_queued(ctx: &Context, n: u64) {
    for _ in 0..n {
        ctx.metrics.mail_queued();
    }
    ctx.courier.wake();
}

/// The courier's loop, for the binary to run on a thread of its own.
pub fn run_courier(ctx: &Context, courier: &Courier) {
    courier::run(ctx, courier)
}
