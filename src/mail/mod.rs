//! The mail worker: a background thread in every instance that turns mail
//! requests into messages in the outbox.
//!
//! A request that needs account mail (today: `forgot`) only records a
//! `mail_requests` row and wakes this thread, so the request does the same
//! work whether or not the address has an account. The worker resolves each
//! request in one transaction (see `db/mail.rs`): the account's row is
//! locked, the request taken, and for an account outside its cooldown a
//! reset token is created and its message queued to the address the account
//! has now. With several instances each worker takes a request at most once
//! (deleting it is the claim), so a request is resolved exactly once.
//!
//! A request on this instance wakes the worker at once ([`Wakeup`]);
//! requests recorded by other instances are found by polling every
//! `MAIL_POLL_MS`.

mod messages;

use crate::context::Context;
use crate::db::{DbError, MailRequest, PASSWORD_RESET, ResetPolicy, Resolved};
use crate::{log, secret};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Requests resolved per database round.
const BATCH: u32 = 100;

/// Wakes the mail worker: set by a request, waited on by the worker.
#[derive(Default)]
pub struct Wakeup {
    pending: Mutex<bool>,
    signal: Condvar,
}

impl Wakeup {
    /// Tells the worker there is work; never blocks.
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

/// The worker's loop; runs for the life of the process. It starts with a
/// wait, so start-up itself makes no database work beyond the migrations.
pub fn run(ctx: &Context) {
    loop {
        ctx.mail.wait(ctx.config.mail_poll);
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
            PASSWORD_RESET => resolve_reset(ctx, request)?,
            other => {
                log::warn("unknown mail request dropped", &[("kind", other.into())]);
                ctx.db.drop_mail_request(request.id)?;
            }
        }
    }
    Ok(requests.len())
}

fn resolve_reset(ctx: &Context, request: &MailRequest) -> Result<(), DbError> {
    // Randomness failing is logged by `secret`; the request waits for the
    // next round rather than getting a weaker token.
    let Ok(token) = secret::token() else {
        return Ok(());
    };
    let link = format!("{}?token={token}", ctx.config.reset_url_base);
    let policy = ResetPolicy {
        token_ttl: ctx.config.reset_token_ttl,
        cooldown: ctx.config.mail_recipient_cooldown,
        max_live_tokens: ctx.config.reset_max_live_tokens,
    };
    let compose = |email: &str| messages::password_reset(email, &link, ctx.config.reset_token_ttl);
    let resolved = ctx.db.resolve_reset_request(
        request,
        &secret::sha256(&token),
        &policy,
        ctx.now(),
        &compose,
    )?;
    match resolved {
        Resolved::Queued { user_id } => {
            log::info("password reset mail queued", &[("user_id", user_id.into())])
        }
        Resolved::CoolingDown => {
            log::debug("password reset mail within cooldown; none queued", &[])
        }
        Resolved::NoAccount | Resolved::Taken => {}
    }
    Ok(())
}
