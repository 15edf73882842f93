//! The audit log (`audit_events`): writing an event inside the transaction
//! of the change it records, reading events back for the admin API and for
//! an account's own history, and the retention purge.
//!
//! An event is written by the same transaction as its change (so a change
//! that rolls back leaves none, and one that commits always has its event),
//! as that transaction's last writes come (reads first, see `tx.rs`). Where
//! nothing else is written, such as a refused login, [`Db::record_event`]
//! writes the event on its own. `detail` is a small JSON object of facts
//! that are never secret; the origin (address, user agent, request id) is
//! the current request's ([`crate::audit::origin`]).

use super::{Db, DbError};
use mysql::prelude::{FromRow, Queryable};
use mysql::{FromRowError, Row, params};
use serde_json::Value;

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its type, one of [`crate::audit::kind`].
    pub kind: &'static str,
    /// The account it is about, if any (none for an unknown address).
    pub user_id: Option<u64>,
    /// The admin who acted, or `None` for the account's owner (or the
    /// system).
    pub actor_id: Option<u64>,
    /// A JSON object of non-secret facts.
    pub detail: Value,
    /// Unix seconds.
    pub at: u64,
}

impl Event {
    /// An event about `user_id` by its owner, with no detail.
    pub fn of(kind: &'static str, user_id: u64, at: u64) -> Event {
        Event {
            kind,
            user_id: Some(user_id),
            actor_id: None,
            detail: Value::Object(Default::default()),
            at,
        }
    }

    /// The same event with `detail`.
    pub fn with(self, detail: Value) -> Event {
        Event { detail, ..self }
    }

    /// The same event, made by the admin `actor_id`.
    pub fn by(self, actor_id: Option<u64>) -> Event {
        Event { actor_id, ..self }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Its id: newer events have higher ids.
    pub id: u64,
    /// Unix seconds.
    pub at: u64,
    /// Its type.
    pub kind: String,
    /// The account it is about.
    pub user_id: Option<u64>,
    /// The admin who acted.
    pub actor_id: Option<u64>,
    /// The client address of the request.
    pub ip: String,
    /// Its user agent.
    pub user_agent: String,
    /// Its request id, as in the server's log.
    pub request_id: String,
    /// The facts, as JSON.
    pub detail: Value,
}

impl FromRow for AuditEvent {
    fn from_row_opt(row: Row) -> Result<Self, FromRowError> {
        type Columns = (
            u64,
            u64,
            String,
            Option<u64>,
            Option<u64>,
            String,
            String,
            String,
            String,
        );
        let (id, at, kind, user_id, actor_id, ip, user_agent, request_id, detail): Columns =
            mysql::from_row_opt(row)?;
        Ok(AuditEvent {
            id,
            at,
            kind,
            user_id,
            actor_id,
            ip,
            user_agent,
            request_id,
            detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
        })
    }
}

/// Which events a listing returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events about this account.
    pub user_id: Option<u64>,
    /// Only events of this type.
    pub kind: Option<&'static str>,
    /// Only events with a smaller id: the previous page's cursor.
    pub before_id: Option<u64>,
}

/// Writes `event` with the current request's origin, inside `tx`.
pub(super) fn record(tx: &mut impl Queryable, event: &Event) -> mysql::Result<()> {
    let origin = crate::audit::origin();
    let request_id = crate::log::current_request_id();
    tx.exec_drop(
        "INSERT INTO audit_events
           (at, type, user_id, actor_id, ip, user_agent, request_id, detail)
         VALUES (:at, :kind, :user_id, :actor_id, :ip, :user_agent, :request_id, :detail)",
        params! {
            "at" => event.at, "kind" => event.kind, "user_id" => event.user_id,
            "actor_id" => event.actor_id, "ip" => &origin.ip,
            "user_agent" => &origin.user_agent, "request_id" => &request_id,
            "detail" => event.detail.to_string(),
        },
    )
}

impl Db {
    /// Writes `event` on its own, for an event no other write goes with (a
    /// refused login).
    pub fn record_event(&self, event: &Event) -> Result<(), DbError> {
        self.run(|conn| record(conn, event))
    }

    /// Up to `limit` events that pass `filter`, newest first.
    pub fn audit_events(
        &self,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, DbError> {
        let mut conditions = vec!["1 = 1"];
        let mut values: Vec<(String, mysql::Value)> = vec![("limit".into(), limit.into())];
        if let Some(user_id) = filter.user_id {
            conditions.push("user_id = :user_id");
            values.push(("user_id".into(), user_id.into()));
        }
        if let Some(kind) = filter.kind {
            conditions.push("type = :kind");
            values.push(("kind".into(), kind.into()));
        }
        if let Some(before) = filter.before_id {
            conditions.push("id < :before");
            values.push(("before".into(), before.into()));
        }
        let sql = format!(
            "SELECT id, at, type, user_id, actor_id, ip, user_agent, request_id, detail
             FROM audit_events WHERE {} ORDER BY id DESC LIMIT :limit",
            conditions.join(" AND ")
        );
        self.run(|conn| conn.exec(&sql, mysql::Params::from(values.clone())))
    }

    /// Deletes up to `batch` events from before `before`; returns how many.
    pub fn purge_old_audit_events(&self, before: u64, batch: u32) -> Result<u64, DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM audit_events WHERE at < :before LIMIT :batch",
                params! { "before" => before, "batch" => batch },
            )?;
            Ok(conn.affected_rows())
        })
    }
}
