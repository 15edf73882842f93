//! What each new database connection is told, and asked, before it is used.
//!
//! - **Limits** below the client's timeout (a lock wait ends after 1 s; a
//!   statement after four fifths of `DB_TIMEOUT_MS`), so the server gives up
//!   on a stalled statement before the client does and answers on the same
//!   connection (see `pool.rs`).
//! - **Readiness**, on a Galera node (`wsrep_on`): the node must be `Synced`,
//!   in the `Primary` component and `wsrep_ready`. A node cut off from the
//!   cluster still answers `SELECT 1` but refuses real work (1047) or, worse
//!   with dirty reads, answers from stale data; a connection to it is
//!   refused here as "not ready", so the pool moves to the next host, start-up
//!   retries, and `/healthz` says 503.
//! - **Causal reads** (`DB_CAUSAL_READS`): Galera applies other nodes'
//!   writes asynchronously, so a read right after a logout on another node
//!   could still find the session (measured: 14 of 400). With
//!   `wsrep_sync_wait = 1` every read first waits until this node has
//!   applied everything committed in the cluster before it.

use super::failure::codes;
use mysql::Conn;
use mysql::prelude::Queryable;
use std::time::Duration;

/// Longest wait for a row or metadata lock, on the server. Every lock here
/// is held for a few statements of one request, so a second is ample; and
/// well below the client timeout, it leaves room for a rerun (`tx.rs`).
const LOCK_WAIT_SECONDS: u64 = 1;

/// `DB_CAUSAL_READS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CausalReads {
    /// On when the server is a Galera node (`wsrep_on`), off otherwise.
    Auto,
    /// Always asked for: a server without `wsrep_sync_wait` (MySQL without
    /// Galera) then refuses every connection, so start-up fails loudly
    /// instead of running without the guarantee.
    On,
    /// Never: reads may miss writes just committed on other nodes.
    Off,
}

impl CausalReads {
    /// Parses `auto`, `on` or `off`.
    pub fn parse(text: &str) -> Option<CausalReads> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Some(CausalReads::Auto),
            "on" => Some(CausalReads::On),
            "off" => Some(CausalReads::Off),
            _ => None,
        }
    }
}

/// What a connection's server turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// MariaDB rather than MySQL (they name their statement limit apart).
    pub mariadb: bool,
    /// A Galera node (`wsrep_on`).
    pub galera: bool,
}

/// Prepares a new connection for requests (limits, causal reads) after
/// checking the node is ready; `Err` of kind "not ready" if it is not.
pub fn prepare(conn: &mut Conn, timeout: Duration, causal: CausalReads) -> mysql::Result<Node> {
    let node = identify(conn)?;
    if node.galera {
        check_ready(conn)?;
    }
    limit(conn, &node, Some(timeout))?;
    let causal = match causal {
        CausalReads::Auto => node.galera,
        CausalReads::On => true,
        CausalReads::Off => false,
    };
    if causal {
        conn.query_drop("SET SESSION wsrep_sync_wait = 1")?;
    }
    Ok(node)
}

/// Which server `conn` talks to.
pub fn identify(conn: &mut Conn) -> mysql::Result<Node> {
    let version: Option<String> = conn.query_first("SELECT VERSION()")?;
    // MySQL without Galera has no wsrep_on at all: no row.
    let wsrep: Option<(String, String)> = conn.query_first("SHOW VARIABLES LIKE 'wsrep_on'")?;
    Ok(Node {
        mariadb: version.is_some_and(|v| v.contains("MariaDB")),
        galera: wsrep.is_some_and(|(_, on)| on.eq_ignore_ascii_case("ON")),
    })
}

/// `Ok` if the Galera node behind `conn` may serve: synced, primary, ready.
/// Otherwise an error of kind "not ready" (1047) saying which.
pub fn check_ready(conn: &mut Conn) -> mysql::Result<()> {
    let status: Vec<(String, String)> = conn.query(
        "SHOW GLOBAL STATUS WHERE Variable_name IN
           ('wsrep_ready', 'wsrep_local_state_comment', 'wsrep_cluster_status')",
    )?;
    let value = |name: &str| {
        status
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let (ready, state, cluster) = (
        value("wsrep_ready"),
        value("wsrep_local_state_comment"),
        value("wsrep_cluster_status"),
    );
    if ready.eq_ignore_ascii_case("ON") && state == "Synced" && cluster == "Primary" {
        return Ok(());
    }
    Err(mysql::Error::MySqlError(mysql::MySqlError {
        state: "08S01".into(),
        code: codes::NODE_NOT_READY,
        message: format!(
            "Galera node not ready: wsrep_ready={ready}, state={state}, component={cluster}"
        ),
    }))
}

/// Sets the session's server-side limits for a client timeout of `timeout`,
/// or lifts the statement limit with `None` (for migrations, whose DDL may
/// take long on a big table). MariaDB bounds every statement with
/// `max_statement_time` (seconds); MySQL bounds `SELECT`s with
/// `max_execution_time` (milliseconds), and writes by the lock waits.
pub fn limit(conn: &mut Conn, node: &Node, timeout: Option<Duration>) -> mysql::Result<()> {
    let statement_ms = timeout.map_or(0, |t| (t.as_millis() * 4 / 5).max(1) as u64);
    let statement_limit = if node.mariadb {
        format!("max_statement_time = {}", statement_ms as f64 / 1000.0)
    } else {
        format!("max_execution_time = {statement_ms}")
    };
    conn.query_drop(format!(
        "SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}, \
         lock_wait_timeout = {LOCK_WAIT_SECONDS}, {statement_limit}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_reads_settings() {
        assert_eq!(CausalReads::parse("AUTO"), Some(CausalReads::Auto));
        assert_eq!(CausalReads::parse("on"), Some(CausalReads::On));
        assert_eq!(CausalReads::parse("off"), Some(CausalReads::Off));
        assert_eq!(CausalReads::parse("1"), None);
    }
}
