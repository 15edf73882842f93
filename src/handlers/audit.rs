//! Reading the audit log: all of it for admins (`GET /admin/audit`), and an
//! account's own security history for its owner (`GET /auth/me/events`),
//! so that a user can spot a login that was not theirs. Both are keyset
//! pages, newest first, as the account listing is. The events themselves
//! are written by the database layer with the changes they record
//! (`db::audit`).

use super::auth::{authenticate, authenticate_admin};
use super::{Context, query};
use crate::audit::kind;
use crate::db::{AuditEvent, EventFilter};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::time;
use serde_json::{Value, json};

/// A page of events unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 50;
/// The largest page.
const MAX_LIMIT: u32 = 500;

/// `GET /admin/audit?user_id=&type=&before=&limit=` (an admin's Bearer):
/// 200 `{"events": [...], "next"}`, newest first; `next` is the cursor of
/// the following page (pass it as `before`), `null` on the last. 400
/// `invalid_query` for an unknown parameter or event type.
pub fn admin_audit(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    authenticate_admin(ctx, request)?;
    let query = query::parse(request, &["user_id", "type", "before", "limit"])?;
    let kind =
        match query.get("type") {
            None => None,
            Some(name) => Some(kind::ALL.iter().copied().find(|k| *k == name).ok_or_else(
                || ApiError::InvalidQuery(format!("\"type\" is one of: {}.", kind::ALL.join(", "))),
            )?),
        };
    let filter = EventFilter {
        user_id: query::number(&query, "user_id")?,
        kind,
        before_id: query::number(&query, "before")?,
    };
    page(
        ctx,
        &filter,
        query::limit(&query, DEFAULT_LIMIT, MAX_LIMIT)?,
        true,
    )
}

/// `GET /auth/me/events?before=&limit=` (Bearer): the account's own events
/// (logins with their address and user agent, refused ones too, password
/// and address changes, sessions ended), as [`admin_audit`] pages them;
/// `by_admin` says whether an admin made the change, without saying who.
pub fn my_events(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate(ctx, request)?;
    let query = query::parse(request, &["before", "limit"])?;
    let filter = EventFilter {
        user_id: Some(auth.user.id),
        kind: None,
        before_id: query::number(&query, "before")?,
    };
    page(
        ctx,
        &filter,
        query::limit(&query, DEFAULT_LIMIT, MAX_LIMIT)?,
        false,
    )
}

/// One page of events; `for_admin` shows who acted.
fn page(
    ctx: &Context,
    filter: &EventFilter,
    limit: u32,
    for_admin: bool,
) -> Result<Response, ApiError> {
    // One more than the page tells whether another follows.
    let mut events = ctx.db.audit_events(filter, limit + 1)?;
    let next = if events.len() > limit as usize {
        events.truncate(limit as usize);
        events.last().map(|e| e.id.to_string())
    } else {
        None
    };
    let events: Vec<Value> = events.iter().map(|e| event_json(e, for_admin)).collect();
    Ok(Response::json(
        200,
        &json!({ "events": events, "next": next }),
    ))
}

/// An event as the API shows it.
fn event_json(event: &AuditEvent, for_admin: bool) -> Value {
    let mut value = json!({
        "id": event.id,
        "at": time::rfc3339(event.at),
        "type": event.kind,
        "user_id": event.user_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "detail": event.detail,
    });
    if for_admin {
        value["actor_id"] = event.actor_id.into();
    } else {
        value["by_admin"] = event.actor_id.is_some().into();
    }
    value
}
