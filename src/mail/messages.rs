//! The messages the server sends: their words, and their form on the wire.
//!
//! Each message is written once, when it is queued, as plain text and as
//! simple inline-styled HTML (no remote images, no tracking, nothing but the
//! words and the link), both stored in the outbox. At delivery
//! [`to_email`] wraps them as `multipart/alternative` with `Date` (when it
//! was queued), a `Message-ID` derived from its outbox row (so a rare
//! second delivery after a crash is recognisable as the same message) and
//! `Auto-Submitted: auto-generated` (RFC 3834: no vacation replies).
//! `lettre` encodes non-ASCII addresses and subjects.
//!
//! The words of each message are in `texts.rs`. A message never contains a
//! password, and a link only in the message that carries it.

use crate::db::{Mail, Outgoing};
use lettre::Message;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use std::time::{Duration, UNIX_EPOCH};

/// A message of plain paragraphs, an optional link (label, address) and a
/// closing paragraph, in both forms: the one shape every message here has.
pub fn compose(
    app_name: &str,
    recipient: &str,
    subject: String,
    paragraphs: &[&str],
    link: Option<(&str, &str)>,
    closing: &str,
) -> Mail {
    let mut body = paragraphs.join("\n\n");
    if let Some((_, href)) = link {
        body.push_str(&format!("\n\n{href}"));
    }
    body.push_str(&format!("\n\n{closing}\n"));
    Mail {
        recipient: recipient.to_string(),
        subject,
        body,
        html: html(app_name, paragraphs, link, closing),
    }
}

/// A small HTML message: a heading with the product's name, paragraphs, an
/// optional button-like link, and a closing paragraph. Inline styles only,
/// since mail clients drop style sheets; nothing fetched from elsewhere.
fn html(app_name: &str, paragraphs: &[&str], link: Option<(&str, &str)>, closing: &str) -> String {
    use crate::pages::escape;
    let mut out = String::from(
        "<!DOCTYPE html><html><body style=\"margin:0;padding:24px;background:#f4f4f5;\
         font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#18181b\">\
         <div style=\"max-width:480px;margin:0 auto;background:#ffffff;border-radius:8px;padding:24px\">",
    );
    out.push_str(&format!(
        "<h1 style=\"font-size:18px;margin:0 0 16px\">{}</h1>",
        escape(app_name)
    ));
    for paragraph in paragraphs {
        out.push_str(&format!(
            "<p style=\"font-size:15px;line-height:1.5;margin:0 0 12px\">{}</p>",
            escape(paragraph)
        ));
    }
    if let Some((label, href)) = link {
        out.push_str(&format!(
            "<p style=\"margin:20px 0\"><a href=\"{href}\" style=\"background:#1d4ed8;color:#ffffff;\
             padding:10px 16px;border-radius:6px;text-decoration:none;font-size:15px\">{label}</a></p>\
             <p style=\"font-size:13px;color:#52525b;word-break:break-all;margin:0 0 12px\">{text}</p>",
            href = escape(href),
            label = escape(label),
            text = escape(href),
        ));
    }
    out.push_str(&format!(
        "<p style=\"font-size:13px;color:#52525b;line-height:1.5;margin:16px 0 0\">{}</p>",
        escape(closing)
    ));
    out.push_str("</div></body></html>");
    out
}

/// `Auto-Submitted: auto-generated` (RFC 3834 section 5).
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

/// The message for outbox row `out`, from `from`. `Err` if the row cannot
/// become a message (a recipient that is not a deliverable address): that
/// will not change by trying again.
pub fn to_email(out: &Outgoing, from: &Mailbox) -> Result<Message, String> {
    let to: Mailbox = out
        .recipient
        .parse()
        .map_err(|_| "the recipient is not an address this server can deliver to".to_string())?;
    let domain = from.email.domain();
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(out.subject.clone())
        .date(UNIX_EPOCH + Duration::from_secs(out.created_at))
        .message_id(Some(format!(
            "<outbox.{}.{}@{domain}>",
            out.id, out.created_at
        )))
        .header(AutoSubmitted);
    let result = if out.html.is_empty() {
        builder.body(out.body.clone())
    } else {
        builder.multipart(MultiPart::alternative_plain_html(
            out.body.clone(),
            out.html.clone(),
        ))
    };
    result.map_err(|_| "the message could not be built".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(mail: &Mail) -> Outgoing {
        Outgoing {
            id: 42,
            recipient: mail.recipient.clone(),
            subject: mail.subject.clone(),
            body: mail.body.clone(),
            html: mail.html.clone(),
            created_at: 1_800_000_000,
            attempts: 1,
        }
    }

    #[test]
    fn a_reset_message_has_both_parts_and_the_headers() {
        let mail = super::super::texts::password_reset(
            "Ëxample <App>",
            "ada@example.com",
            "https://x.example/reset-password?token=abc&x=1",
            900,
        );
        assert!(
            mail.body
                .contains("https://x.example/reset-password?token=abc&x=1")
        );
        assert!(mail.body.contains("15 minutes"));
        assert!(
            mail.html
                .contains("href=\"https://x.example/reset-password?token=abc&amp;x=1\"")
        );
        assert!(mail.html.contains("Ëxample &lt;App&gt;"));
        assert!(!mail.html.contains("<img") && !mail.html.contains("src="));
        let from: Mailbox = "Ëxample <no-reply@example.com>".parse().unwrap();
        let raw =
            String::from_utf8(to_email(&outgoing(&mail), &from).unwrap().formatted()).unwrap();
        assert!(
            raw.contains("Message-ID: <outbox.42.1800000000@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("Auto-Submitted: auto-generated"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(raw.contains("Date: "));
        // Non-ASCII display names and subjects are encoded words.
        assert!(raw.contains("=?utf-8?"), "{raw}");
    }

    #[test]
    fn an_undeliverable_recipient_is_an_error_not_a_panic() {
        let mut out = outgoing(&super::super::texts::password_reset(
            "a",
            "ada@example.com",
            "l",
            60,
        ));
        out.recipient = "not an address".into();
        let from: Mailbox = "a@example.com".parse().unwrap();
        assert!(to_email(&out, &from).is_err());
    }
}
