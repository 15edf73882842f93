//! The outbox as the courier sees it: finding due messages, claiming one
//! with a lease, and recording how its delivery went.
//!
//! A claim is a conditional `UPDATE` (the row must be unsent, not given up
//! on, due, unclaimed or its lease expired, and at the attempt count just
//! read), so of several couriers exactly one gets a row: on one server the
//! row lock decides, on a Galera cluster certification does (the loser's
//! write fails and, rerun, finds the condition false). Every later write names the holder
//! (`claimed_by = me`), so a courier whose lease ran out cannot overwrite
//! what the new holder records. A message is never deleted by delivery:
//! the row stays, its body blanked, as the record of what went to whom.

use super::{Db, DbError};
use mysql::params;
use mysql::prelude::Queryable;

/// A claimed message, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Its row; also what its `Message-ID` is made from.
    pub id: u64,
    /// The address it goes to.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// HTML body (empty for rows queued before there was one).
    pub html: String,
    /// Unix seconds when it was queued: its `Date`.
    pub created_at: u64,
    /// Tries so far, this one included.
    pub attempts: u32,
}

/// What the outbox holds that is still to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Messages neither sent nor given up on.
    pub waiting: u64,
    /// Unix seconds when the oldest of them was queued.
    pub oldest: Option<u64>,
}

const DUE: &str = "sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= :now
     AND (claimed_until IS NULL OR claimed_until <= :now)";

impl Db {
    /// Up to `limit` ids of messages that may be claimed now, oldest first.
    pub fn due_mail(&self, now: u64, limit: u32) -> Result<Vec<u64>, DbError> {
        self.run(|conn| {
            conn.exec(
                format!("SELECT id FROM mail_outbox WHERE {DUE} ORDER BY id LIMIT :limit"),
                params! { "now" => now, "limit" => limit },
            )
        })
    }

    /// Claims message `id` for `holder` until `now + lease`, counting the
    /// attempt; `None` if another courier has it or it is no longer due.
    ///
    /// The message is read first, then claimed by a write conditioned on
    /// what was read (still due, and still at the attempt count read), so
    /// the claim is the last statement and never followed by a read (see
    /// `tx.rs`): of two couriers, the one whose write finds the row changed
    /// gets nothing.
    pub fn claim_mail(
        &self,
        id: u64,
        holder: &str,
        now: u64,
        lease: u64,
    ) -> Result<Option<Outgoing>, DbError> {
        type Row = (String, String, String, Option<String>, u64, u32);
        self.run(|conn| {
            let row: Option<Row> = conn.exec_first(
                format!(
                    "SELECT recipient, subject, body, html, created_at, attempts
                     FROM mail_outbox WHERE id = :id AND {DUE}"
                ),
                params! { "id" => id, "now" => now },
            )?;
            let Some((recipient, subject, body, html, created_at, attempts)) = row else {
                return Ok(None);
            };
            conn.exec_drop(
                format!(
                    "UPDATE mail_outbox
                     SET claimed_by = :holder, claimed_until = :until, attempts = attempts + 1
                     WHERE id = :id AND attempts = :attempts AND {DUE}"
                ),
                params! {
                    "holder" => holder, "until" => now + lease, "id" => id,
                    "attempts" => attempts, "now" => now,
                },
            )?;
            if conn.affected_rows() != 1 {
                return Ok(None);
            }
            Ok(Some(Outgoing {
                id,
                recipient,
                subject,
                body,
                html: html.unwrap_or_default(),
                created_at,
                attempts: attempts + 1,
            }))
        })
    }

    /// Messages to `recipient` sent since `since`, plus those other
    /// couriers hold right now (they may be sending): what the hourly cap
    /// per recipient counts.
    pub fn mail_to_recipient_since(
        &self,
        recipient: &str,
        since: u64,
        now: u64,
        except: u64,
    ) -> Result<u64, DbError> {
        let count: Option<u64> = self.run(|conn| {
            conn.exec_first(
                "SELECT COUNT(*) FROM mail_outbox
                 WHERE recipient = :recipient AND id <> :except
                   AND (sent_at >= :since OR (sent_at IS NULL AND claimed_until > :now))",
                params! { "recipient" => recipient, "except" => except, "since" => since, "now" => now },
            )
        })?;
        Ok(count.unwrap_or(0))
    }

    /// Records that `holder` sent message `id`, and blanks its bodies.
    /// False if `holder` no longer held it (its lease ran out and another
    /// courier took it: the message may go out twice, which at-least-once
    /// delivery allows and its stable `Message-ID` makes recognisable).
    pub fn mark_mail_sent(&self, id: u64, holder: &str, now: u64) -> Result<bool, DbError> {
        self.finish(
            id,
            holder,
            "sent_at = :at, last_error = NULL, body = '', html = ''",
            now,
            None,
        )
    }

    /// Records that message `id` is given up on, with the reason, and
    /// blanks its bodies.
    pub fn mark_mail_failed(
        &self,
        id: u64,
        holder: &str,
        now: u64,
        reason: &str,
    ) -> Result<bool, DbError> {
        self.finish(
            id,
            holder,
            "failed_at = :at, last_error = :reason, body = '', html = ''",
            now,
            Some(reason),
        )
    }

    /// Records a failed try of message `id` and when the next may start.
    pub fn mark_mail_retry(
        &self,
        id: u64,
        holder: &str,
        next_attempt_at: u64,
        reason: &str,
    ) -> Result<bool, DbError> {
        self.finish(
            id,
            holder,
            "next_attempt_at = :at, last_error = :reason",
            next_attempt_at,
            Some(reason),
        )
    }

    /// Releases `holder`'s claim on `id`, setting `assignments` (which may
    /// use `:at` and `:reason`); false if the claim was no longer held.
    fn finish(
        &self,
        id: u64,
        holder: &str,
        assignments: &str,
        at: u64,
        reason: Option<&str>,
    ) -> Result<bool, DbError> {
        let reason: String = reason.unwrap_or("").chars().take(255).collect();
        let updated = self.run(|conn| {
            conn.exec_drop(
                format!(
                    "UPDATE mail_outbox SET {assignments}, claimed_by = NULL, claimed_until = NULL
                     WHERE id = :id AND claimed_by = :holder"
                ),
                params! { "id" => id, "holder" => holder, "at" => at, "reason" => &reason },
            )?;
            Ok(conn.affected_rows())
        })?;
        Ok(updated == 1)
    }

    /// What is waiting to be sent, for the metrics.
    pub fn mail_backlog(&self) -> Result<Backlog, DbError> {
        let row: Option<(u64, Option<u64>)> = self.run(|conn| {
            conn.query_first(
                "SELECT COUNT(*), MIN(created_at) FROM mail_outbox
                 WHERE sent_at IS NULL AND failed_at IS NULL",
            )
        })?;
        let (waiting, oldest) = row.unwrap_or((0, None));
        Ok(Backlog { waiting, oldest })
    }

    /// Deletes up to `batch` outbox rows queued before `before`; returns
    /// how many.
    pub fn purge_old_mail(&self, before: u64, batch: u32) -> Result<u64, DbError> {
        self.run(|conn| {
            conn.exec_drop(
                "DELETE FROM mail_outbox WHERE created_at < :before LIMIT :batch",
                params! { "before" => before, "batch" => batch },
            )?;
            Ok(conn.affected_rows())
        })
    }
}
