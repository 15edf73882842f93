//! Sessions: logging out (one or all), listing and ending sessions, and
//! the background purge of expired ones.

use super::Context;
use super::auth::authenticate;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::secret::hex;
use crate::{log, time};
use serde_json::{Value, json};

/// `POST /auth/logout` (Bearer): 204; ends this token's session only.
pub fn logout(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    if ctx
        .db
        .end_session(&auth.session_id, auth.user.id, ctx.now())?
    {
        ctx.metrics.sessions_ended(1);
    }
    log::info("logout", &[("user_id", auth.user.id.into())]);
    Ok(Response::empty(204))
}

/// `POST /auth/logout-all` (Bearer): 204; ends every session of the account,
/// this one included.
pub fn logout_all(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    let ended = ctx.db.end_all_sessions(auth.user.id, ctx.now(), None)?;
    ctx.metrics.sessions_ended(ended);
    log::info(
        "logout everywhere",
        &[("user_id", auth.user.id.into()), ("sessions", ended.into())],
    );
    Ok(Response::empty(204))
}

/// `GET /auth/sessions` (Bearer): 200 `{"sessions": [...]}`, the account's
/// live sessions, newest first, each marked `current` if it is the caller's.
/// `expires_at` is when a session ends unless it is refreshed first;
/// `last_refreshed_at` is `null` until its first refresh.
pub fn sessions(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    let sessions: Vec<Value> = ctx
        .db
        .sessions(auth.user.id, ctx.now())?
        .iter()
        .map(|s| {
            json!({
                "id": hex(&s.id),
                "created_at": time::rfc3339(s.created_at),
                "expires_at": time::rfc3339(s.expires_at),
                "last_refreshed_at": s.refreshed_at.map(time::rfc3339),
                "ip": s.ip,
                "user_agent": s.user_agent,
                "current": s.id == auth.session_id,
                "mfa": s.mfa,
            })
        })
        .collect();
    Ok(Response::json(200, &json!({ "sessions": sessions })))
}

/// `DELETE /auth/sessions/{id}` (Bearer): 204; ends one session of the
/// caller's. Another account's session id answers 404 `not_found` exactly as
/// an unknown one does, so ids cannot be probed.
pub fn end_session(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    let id = request
        .path
        .strip_prefix(crate::router::SESSIONS_PREFIX)
        .and_then(parse_session_id)
        .ok_or(ApiError::NotFound)?;
    if !ctx.db.end_session(&id, auth.user.id, ctx.now())? {
        return Err(ApiError::NotFound);
    }
    ctx.metrics.sessions_ended(1);
    log::info("session ended", &[("user_id", auth.user.id.into())]);
    Ok(Response::empty(204))
}

/// Deletes every session, reset token and email link that has expired,
/// outbox rows older than `MAIL_RETENTION_DAYS` and audit events older than
/// `AUDIT_RETENTION_DAYS`, in batches; returns how many rows went.
/// Run by a background thread every [`PURGE_INTERVAL`] so the sessions table
/// holds only live sessions plus at most that much expired backlog.
pub fn purge_expired_sessions(ctx: &Context) -> Result<u64, crate::db::DbError> {
    const BATCH: u32 = 1000;
    let mut total = 0;
    loop {
        let now = ctx.now();
        let sessions = ctx.db.purge_expired_sessions(now, BATCH)?;
        let resets = ctx.db.purge_expired_resets(now, BATCH)?;
        let retention = ctx.config.mail.retention_days * 86_400;
        let mails = ctx
            .db
            .purge_old_mail(now.saturating_sub(retention), BATCH)?;
        let links = ctx.db.purge_expired_email_tokens(now, BATCH)?;
        let decoys = ctx
            .db
            .purge_old_decoys(now, ctx.config.lockout_window, BATCH)?;
        let audit_retention = ctx.config.audit_retention_days * 86_400;
        let events = ctx
            .db
            .purge_old_audit_events(now.saturating_sub(audit_retention), BATCH)?;
        let challenges = ctx.db.purge_expired_challenges(now, BATCH)?;
        total += sessions + resets + mails + links + decoys + events + challenges;
        // A full batch of any means more may be left.
        if [sessions, resets, mails, links, decoys, events, challenges]
            .iter()
            .all(|n| *n < u64::from(BATCH))
        {
            return Ok(total);
        }
    }
}

/// How often expired sessions are purged.
pub const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// 32 lowercase hex digits to a session id.
fn parse_session_id(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_and_reject_other_forms() {
        let id = [0xab; 16];
        assert_eq!(parse_session_id(&hex(&id)), Some(id));
        assert_eq!(parse_session_id(&hex(&id).to_uppercase()), None);
        assert_eq!(parse_session_id("ab"), None);
        assert_eq!(parse_session_id(&"g".repeat(32)), None);
        assert_eq!(parse_session_id(&"é".repeat(16)), None);
    }
}
