//! Several database hosts behind one `DATABASE_URL`, in order of
//! preference: `mysql://user:pass@db1:3306,db2:3306,db3:3306/auth`.
//!
//! New connections go to the first host that is reachable and ready (see
//! `node.rs`), so every instance prefers the same host and, in normal
//! operation, all writes go to one Galera node: no certification conflicts,
//! and node-local locks hold (MariaDB's own advice for Galera). A host that
//! fails is marked down for [`RETRY_AFTER`] and skipped meanwhile, so
//! requests do not each pay for a dead host's connect timeout; once the mark
//! expires, the next new connection tries it again, and the pool replaces
//! connections to later hosts (see `pool.rs`), so an instance comes back to
//! the first host when it is healthy again.
//!
//! The server stays correct when instances are spread over nodes anyway
//! (conflicts are rerun, reads are causal); a proxy in front (HAProxy,
//! MaxScale, ProxySQL) is the alternative to listing hosts here.

use super::node::{self, CausalReads, Node};
use mysql::{Conn, Opts, OptsBuilder};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a host that failed is skipped before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The hosts, in order, with their connection options.
pub struct Hosts {
    opts: Vec<Opts>,
    down_until: Mutex<Vec<Option<Instant>>>,
    timeout: Duration,
    causal: CausalReads,
}

/// Splits a `mysql://` URL whose host part may list several `host:port`s
/// separated by commas into one URL per host. The error never repeats the
/// URL, which holds a password.
pub fn parse(url: &str) -> Result<Vec<Opts>, String> {
    let invalid =
        || "must be a URL of the form mysql://user:password@host:port/database".to_string();
    let rest = url.strip_prefix("mysql://").ok_or_else(invalid)?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host_list) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let mut all = Vec::new();
    for host in host_list.split(',') {
        if host.is_empty() {
            return Err("lists an empty host (a doubled or trailing comma)".into());
        }
        let one = format!("mysql://{userinfo}{host}{tail}");
        let opts = Opts::from_url(&one).map_err(|_| invalid())?;
        match opts.get_db_name() {
            Some(name) if !name.is_empty() => {}
            _ => {
                return Err(
                    "must name a database: mysql://user:password@host:port/database".into(),
                );
            }
        }
        all.push(opts);
    }
    Ok(all)
}

impl Hosts {
    /// The hosts of `opts` (from [`parse`]), each connection bounded by
    /// `timeout` and prepared with `causal` reads.
    pub fn new(opts: Vec<Opts>, timeout: Duration, causal: CausalReads) -> Hosts {
        let opts: Vec<Opts> = opts
            .into_iter()
            .map(|o| {
                OptsBuilder::from_opts(o)
                    .tcp_connect_timeout(Some(timeout))
                    .read_timeout(Some(timeout))
                    .write_timeout(Some(timeout))
                    // The crate otherwise re-connects over the Unix socket
                    // when the host is local, which the timeouts above do
                    // not govern the same way; TCP everywhere keeps
                    // behaviour identical in every setup.
                    .prefer_socket(false)
                    .into()
            })
            .collect();
        let down_until = Mutex::new(vec![None; opts.len()]);
        Hosts {
            opts,
            down_until,
            timeout,
            causal,
        }
    }

    /// Connects to the first host that is not marked down and is ready,
    /// trying the next on failure (every host, if all are marked down).
    /// Returns the connection, its host's index and what its server is.
    pub fn connect(&self) -> mysql::Result<(Conn, usize, Node)> {
        let order = self.order();
        let mut last_error = None;
        for index in order {
            match self.connect_to(index) {
                Ok((conn, node)) => {
                    self.mark_up(index);
                    return Ok((conn, index, node));
                }
                Err(e) => {
                    self.mark_down(index);
                    last_error = Some(e);
                }
            }
        }
        // `order` is never empty: `parse` yields at least one host.
        Err(last_error.unwrap_or_else(mysql::Error::server_disconnected))
    }

    fn connect_to(&self, index: usize) -> mysql::Result<(Conn, Node)> {
        let mut conn = Conn::new(self.opts[index].clone())?;
        let node = node::prepare(&mut conn, self.timeout, self.causal)?;
        Ok((conn, node))
    }

    /// The hosts to try, in order: those not marked down, or all if none is.
    fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let down = self.lock();
        let up: Vec<usize> = (0..self.opts.len())
            .filter(|&i| down[i].is_none_or(|until| until <= now))
            .collect();
        if up.is_empty() {
            (0..self.opts.len()).collect()
        } else {
            up
        }
    }

    /// True if a connection to host `index` should be replaced by one to a
    /// host before it: some earlier host is not marked down.
    pub fn better_than(&self, index: usize) -> bool {
        let now = Instant::now();
        let down = self.lock();
        (0..index).any(|i| down[i].is_none_or(|until| until <= now))
    }

    /// Marks host `index` down for [`RETRY_AFTER`].
    pub fn mark_down(&self, index: usize) {
        if let Some(slot) = self.lock().get_mut(index) {
            *slot = Some(Instant::now() + RETRY_AFTER);
        }
    }

    fn mark_up(&self, index: usize) {
        if let Some(slot) = self.lock().get_mut(index) {
            *slot = None;
        }
    }

    /// The number of hosts.
    pub fn len(&self) -> usize {
        self.opts.len()
    }

    /// True if there is no host (never, for hosts from [`parse`]).
    pub fn is_empty(&self) -> bool {
        self.opts.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Instant>>> {
        // Plain assignments only: a poisoned lock still guards sound data.
        self.down_until.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_several_hosts() {
        let one = parse("mysql://u:p@db:3306/auth").unwrap();
        assert_eq!(one.len(), 1);
        let three =
            parse("mysql://u:p%40ss@db1:3306,db2:3307,[::1]:3308/auth?stmt_cache_size=32").unwrap();
        assert_eq!(three.len(), 3);
        assert_eq!(three[1].get_ip_or_hostname(), "db2");
        assert_eq!(three[1].get_tcp_port(), 3307);
        assert_eq!(three[2].get_tcp_port(), 3308);
        assert_eq!(three[0].get_pass(), Some("p@ss"));
        assert_eq!(three[2].get_db_name(), Some("auth"));
    }

    #[test]
    fn bad_urls_never_echo_the_password() {
        for bad in [
            "postgres://u:hunter2@h/db",
            "mysql://u:hunter2@h1:3306,,h2/db",
            "mysql://u:hunter2@h1:3306,/db",
            "mysql://u:hunter2@h:3306",
            "mysql://u:hunter2@h:notaport/db",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_failed_host_is_skipped_then_tried_again() {
        let hosts = Hosts::new(
            parse("mysql://u@a:1,b:2,c:3/d").unwrap(),
            Duration::from_secs(1),
            CausalReads::Auto,
        );
        assert_eq!(hosts.order(), [0, 1, 2]);
        assert!(!hosts.better_than(0) && hosts.better_than(1));
        hosts.mark_down(0);
        assert_eq!(hosts.order(), [1, 2]);
        assert!(!hosts.better_than(1), "host 0 is down");
        for i in 0..3 {
            hosts.mark_down(i);
        }
        assert_eq!(hosts.order(), [0, 1, 2], "all down: try them all");
        hosts.mark_up(0);
        assert_eq!(hosts.order(), [0]);
    }
}
