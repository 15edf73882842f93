//! The courier: a thread that delivers the outbox over SMTP, safely beside
//! couriers of other instances, at least once, and without flooding anyone.
//!
//! Each round it finds due messages and takes them one at a time: claim
//! (a lease of `MAIL_LEASE_SECONDS`, see `db/outbox.rs`), check the
//! recipient's hourly cap, send, record the outcome. A courier that dies
//! mid-send leaves its claim to expire, and the message is sent by whoever
//! claims it next: delivery is at least once, never at most once, and the
//! stable `Message-ID` lets a mail client or a human recognise the rare
//! second copy.
//!
//! Failures are sorted by whether trying again can help:
//!
//! - **temporary**: the relay is unreachable or slow, TLS failed, it
//!   answered 4xx, or it refused our credentials (a configuration problem
//!   an operator can fix while the message waits). Retried after
//!   `MAIL_RETRY_BASE_SECONDS`, doubling each time up to an hour, with
//!   ±20 % jitter so that couriers do not retry in step, for up to
//!   `MAIL_MAX_ATTEMPTS` tries;
//! - **permanent**: a 5xx answer for the message (the recipient does not
//!   exist, the content was refused), or a recipient that cannot be an
//!   address at all. Given up at once.
//!
//! A message given up on is marked failed with its reason (which never holds
//! a secret) and logged at warn; sent or failed, its body is blanked.

use super::{MailConfig, messages};
use crate::context::Context;
use crate::db::{DbError, Outgoing};
use crate::log;
use lettre::message::Mailbox;
use lettre::{SmtpTransport, Transport};

/// Messages claimed per round, at most.
const BATCH: u32 = 20;
/// Longest pause between two tries of one message.
const MAX_BACKOFF: u64 = 3_600;
/// SMTP codes that blame our credentials, not the message: 530
/// authentication required, 534 mechanism too weak, 535 credentials
/// invalid, 538 encryption required for the mechanism.
const AUTH_CODES: [u16; 4] = [530, 534, 535, 538];

/// A running courier's fixed parts.
pub struct Courier {
    transport: SmtpTransport,
    from: Mailbox,
    /// Who claims: unique per process, written into `claimed_by`.
    holder: String,
}

impl Courier {
    /// The courier for `config`, or `None` without `SMTP_URL` (then mail
    /// stays in the outbox for an external mailer). `Err` if the relay's
    /// transport cannot be built, naming what is wrong.
    pub fn new(config: &MailConfig) -> Result<Option<Courier>, String> {
        let (Some(relay), Some(from)) = (&config.relay, &config.from) else {
            return Ok(None);
        };
        let hello = from.email.domain().to_string();
        let transport = relay.transport(config.ca.as_deref(), config.timeout, &hello)?;
        let id: [u8; 6] = crate::secret::bytes().map_err(|_| "no OS randomness".to_string())?;
        let holder = format!("{}-{}", std::process::id(), crate::secret::hex(&id));
        Ok(Some(Courier {
            transport,
            from: from.clone(),
            holder,
        }))
    }
}

/// The courier's loop; runs for the life of the process.
pub fn run(ctx: &Context, courier: &Courier) {
    loop {
        match deliver_due(ctx, courier) {
            Ok(n) if n >= BATCH as usize => continue,
            Ok(_) => {}
            Err(e) => log::warn(
                "mail delivery round failed; retrying",
                &[("error", e.to_string().into())],
            ),
        }
        ctx.courier.wait(ctx.config.mail.poll);
    }
}

/// One round: claims and delivers the messages due now; returns how many
/// were due.
pub fn deliver_due(ctx: &Context, courier: &Courier) -> Result<usize, DbError> {
    let due = ctx.db.due_mail(ctx.now(), BATCH)?;
    for id in &due {
        let lease = ctx.config.mail.lease;
        if let Some(message) = ctx.db.claim_mail(*id, &courier.holder, ctx.now(), lease)? {
            deliver(ctx, courier, &message)?;
        }
    }
    Ok(due.len())
}

/// How a try ended.
enum Outcome {
    Sent,
    Retry(String),
    GiveUp(String),
}

fn deliver(ctx: &Context, courier: &Courier, message: &Outgoing) -> Result<(), DbError> {
    let config = &ctx.config.mail;
    let now = ctx.now();
    let recent = ctx.db.mail_to_recipient_since(
        &message.recipient,
        now.saturating_sub(3_600),
        now,
        message.id,
    )?;
    let outcome = if recent >= config.max_per_recipient_per_hour {
        Outcome::GiveUp(format!(
            "MAIL_MAX_PER_RECIPIENT_PER_HOUR ({}) reached for this recipient",
            config.max_per_recipient_per_hour
        ))
    } else {
        match messages::to_email(message, &courier.from) {
            Err(why) => Outcome::GiveUp(why),
            Ok(email) => match courier.transport.send(&email) {
                Ok(_) => Outcome::Sent,
                Err(e) => classify(&e),
            },
        }
    };
    let holder = &courier.holder;
    let fields = |extra: Vec<(&'static str, serde_json::Value)>| {
        let mut f = vec![
            ("outbox_id", message.id.into()),
            ("attempt", message.attempts.into()),
        ];
        f.extend(extra);
        f
    };
    match outcome {
        Outcome::Sent => {
            if !ctx.db.mark_mail_sent(message.id, holder, ctx.now())? {
                log::warn(
                    "mail sent after its claim expired; another courier may send it too",
                    &fields(vec![]),
                );
            }
            ctx.metrics.mail_sent();
            log::info("mail sent", &fields(vec![]));
        }
        Outcome::Retry(why) if message.attempts < config.max_attempts => {
            let next = ctx.now() + backoff(config.retry_base, message.attempts);
            ctx.db.mark_mail_retry(message.id, holder, next, &why)?;
            ctx.metrics.mail_retried();
            log::warn(
                "mail delivery failed; will retry",
                &fields(vec![("error", why.into()), ("retry_at", next.into())]),
            );
        }
        Outcome::Retry(why) => {
            let why = format!("gave up after {} attempts: {why}", message.attempts);
            give_up(ctx, holder, message, &why)?;
        }
        Outcome::GiveUp(why) => give_up(ctx, holder, message, &why)?,
    }
    Ok(())
}

fn give_up(ctx: &Context, holder: &str, message: &Outgoing, why: &str) -> Result<(), DbError> {
    ctx.db
        .mark_mail_failed(message.id, holder, ctx.now(), why)?;
    ctx.metrics.mail_failed();
    log::warn(
        "mail given up",
        &[("outbox_id", message.id.into()), ("error", why.into())],
    );
    Ok(())
}

/// Sorts a failed send into retry or give-up (see the module docs). The
/// reason is lettre's description, which names the SMTP answer but never
/// our credentials.
fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let code = e.status().map(u16::from);
    let why = match code {
        Some(code) => format!("the relay answered {code}: {e}"),
        None if e.is_timeout() => "timed out talking to the relay".to_string(),
        None if e.is_tls() => format!("TLS with the relay failed: {e}"),
        None => format!("could not talk to the relay: {e}"),
    };
    match code {
        Some(code) if e.is_permanent() && !AUTH_CODES.contains(&code) => Outcome::GiveUp(why),
        _ => Outcome::Retry(why),
    }
}

/// Seconds before try number `attempts + 1`: `base` doubled per earlier try,
/// times a random factor in 0.8..1.2, and never more than an hour.
pub fn backoff(base: u64, attempts: u32) -> u64 {
    let doubled = base.saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
    let random: [u8; 2] = crate::secret::bytes().unwrap_or([0x80, 0x00]);
    let factor = 0.8 + 0.4 * f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX);
    let jittered = (doubled.min(MAX_BACKOFF) as f64 * factor).round() as u64;
    jittered.clamp(1, MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_an_hour_with_jitter() {
        for _ in 0..50 {
            let first = backoff(30, 1);
            assert!((24..=36).contains(&first), "{first}");
            let third = backoff(30, 3);
            assert!((96..=144).contains(&third), "{third}");
            let late = backoff(30, 30);
            assert!((2_880..=3_600).contains(&late), "{late}");
        }
        assert!(backoff(1, 1) >= 1);
    }
}
