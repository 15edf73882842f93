//! What the handlers and the background workers share: settings, the
//! database, and the in-memory defences and signals.
//!
//! One value, built once at start-up and shared by reference (an `Arc` in
//! the binary), so no state hides in globals and a test can build its own.

use crate::config::Config;
use crate::db::Db;
use crate::http::Request;
use crate::limits::{HashGate, RateLimiter};
use crate::mail::Wakeup;
use crate::metrics::Metrics;
use crate::time;
use std::net::IpAddr;

/// Everything a handler or worker may use.
pub struct Context {
    /// The settings the server started with, including the token keyring and
    /// the password hasher.
    pub config: Config,
    /// The database.
    pub db: Db,
    /// Bounds concurrent Argon2 computations.
    pub hash_gate: HashGate,
    /// Per-client-address limits on the endpoints that hash or mail.
    pub rate_limiter: RateLimiter<IpAddr>,
    /// Per-account limits on password checks and new passwords.
    pub account_limiter: RateLimiter<u64>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Metrics,
    /// Wakes the mail resolver when a request has recorded work for it.
    pub mail: Wakeup,
    /// Wakes the courier when a message was queued.
    pub courier: Wakeup,
    /// With `HIDE_ACCOUNT_EXISTENCE`: a hash of a random password, made with
    /// the current parameters, to verify against for unknown addresses.
    pub decoy_hash: Option<String>,
}

impl Context {
    /// A context whose gate and limiters follow `config`. Fails only if the
    /// hashing threads cannot be started, or the decoy hash made.
    pub fn new(config: Config, db: Db) -> std::io::Result<Context> {
        let (per_minute, burst) = (config.rate_limit_per_minute, config.rate_limit_burst);
        let decoy_hash = if config.hide_account_existence {
            let random =
                crate::secret::token().map_err(|_| std::io::Error::other("no randomness"))?;
            Some(config.hasher.hash(&random).map_err(std::io::Error::other)?)
        } else {
            None
        };
        Ok(Context {
            decoy_hash,
            hash_gate: HashGate::new(config.hash_concurrency, config.hash_queue_timeout)?,
            rate_limiter: RateLimiter::new(per_minute, burst),
            account_limiter: RateLimiter::new(per_minute, burst),
            metrics: Metrics::default(),
            mail: Wakeup::default(),
            courier: Wakeup::default(),
            config,
            db,
        })
    }

    /// The current time in Unix seconds.
    pub fn now(&self) -> u64 {
        time::unix_now()
    }

    /// The client's address: the TCP peer, or what a trusted proxy says in
    /// `X-Forwarded-For` (see `TRUSTED_PROXIES`), in canonical form (an
    /// IPv4 peer of an IPv6 socket is its IPv4 address).
    pub fn client_ip(&self, request: &Request) -> IpAddr {
        let forwarded = request.header_list("x-forwarded-for");
        self.config
            .trusted_proxies
            .client_ip(request.peer, forwarded.as_deref())
    }
}
