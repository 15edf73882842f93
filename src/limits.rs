//! Defences against load and abuse that live in memory: the hashing gate and
//! the per-client rate limiter.
//!
//! # The hashing gate
//!
//! Argon2id at the default cost takes ~20 ms of one core and ~19 MiB per
//! hash, on purpose. Left alone, a login flood would run as many hashes as
//! there are connection threads: memory would grow with the flood and every
//! other request would queue behind hashing for CPU. The gate admits at most
//! `HASH_CONCURRENCY` hashes at once (default: the number of cores); a request
//! that cannot get a slot within `HASH_QUEUE_TIMEOUT_MS` answers 503
//! `overloaded` with `Retry-After` instead of waiting without bound. Requests
//! that need no hash (`/auth/me`, `/healthz`, the session endpoints) never
//! touch the gate, so they never wait behind it.
//!
//! The hashes themselves run on `HASH_CONCURRENCY` long-lived hashing
//! threads, one per slot, never on the connection threads. Memory is the
//! reason: glibc keeps a freed 19 MiB block in the arena of the thread that
//! freed it, so hashing on whichever of a thousand connection threads served
//! the request grew the process to 8.5 GiB under a login flood (measured, see
//! `docs/benchmarks.md`), and the kernel spent up to half the CPU zeroing
//! fresh pages. On a few fixed threads the blocks are reused: memory stays
//! near slots x 19 MiB and each hash is faster.
//!
//! # The rate limiter
//!
//! A token bucket per client address for the unauthenticated endpoints
//! (register, login, password change, and the password-reset ones): each
//! address may spend `RATE_LIMIT_BURST` requests at once and regains
//! `RATE_LIMIT_PER_MINUTE` per minute; past that it gets 429 `rate_limited`
//! with `Retry-After`. It makes scripted guessing and registration spam slow
//! while a human never meets it. It is per instance (in memory): several
//! instances each allow the full rate, which the README says.
//!
//! Behind a reverse proxy every request comes from the proxy's address, so
//! the client is taken from `X-Forwarded-For`, but only when the direct peer
//! is one of `TRUSTED_PROXIES`: anyone else could write any address there.
//! The rightmost address in the header that is not itself a trusted proxy is
//! the client, since each proxy appends the address it received from.
//!
//! Memory is bounded: at most [`MAX_TRACKED_CLIENTS`] addresses are tracked;
//! when full, buckets that have refilled completely (clients that went quiet)
//! are dropped, since a full bucket is the same as no bucket. If every
//! tracked client is still active, the newcomer is limited as if its bucket
//! were empty, which fails safe under an address-spraying flood.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Work sent to a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// Bounds the number of Argon2 computations running at once, and runs them
/// on its own threads (see the module docs).
pub struct HashGate {
    permits: usize,
    timeout: Duration,
    running: Mutex<usize>,
    freed: Condvar,
    waiting: AtomicUsize,
    rejected: AtomicUsize,
    jobs: Sender<Job>,
}

/// A slot in the hashing gate, released when dropped.
pub struct HashPermit<'a>(&'a HashGate);

impl HashGate {
    /// A gate admitting `permits` hashes at once, with one hashing thread
    /// per slot; a caller waits at most `timeout` for a slot. Fails only if
    /// the threads cannot be started.
    pub fn new(permits: usize, timeout: Duration) -> std::io::Result<HashGate> {
        let permits = permits.max(1);
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..permits {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("hash-{n}"))
                .spawn(move || hashing_thread(&queue))?;
        }
        Ok(HashGate {
            permits,
            timeout,
            running: Mutex::new(0),
            freed: Condvar::new(),
            waiting: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            jobs,
        })
    }

    /// Waits for a slot; `None` if none came free within the timeout.
    pub fn acquire(&self) -> Option<HashPermit<'_>> {
        let deadline = Instant::now() + self.timeout;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let admitted = loop {
            if *running < self.permits {
                *running += 1;
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            running = self
                .freed
                .wait_timeout(running, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        drop(running);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if admitted {
            Some(HashPermit(self))
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Requests waiting for a slot now.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Requests turned away since start-up because no slot came free.
    pub fn rejections(&self) -> usize {
        self.rejected.load(Ordering::Relaxed)
    }
}

impl HashPermit<'_> {
    /// Runs `work` on a hashing thread and waits for its result. There is a
    /// thread per slot, so one is always free for a permit holder. `None` if
    /// `work` panicked (the thread survives; the panic hook logged it).
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (answer, result) = sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = answer.send(work());
        });
        self.0.jobs.send(job).ok()?;
        result.recv().ok()
    }
}

/// A hashing thread: runs jobs until the gate is dropped.
fn hashing_thread(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The guard is released as soon as a job is taken, so the other
        // idle threads can wait for the next one.
        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match job {
            Ok(job) => {
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

impl Drop for HashPermit<'_> {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

/// Most client addresses the rate limiter tracks at once (about 48 bytes
/// each, so a few MiB at most).
pub const MAX_TRACKED_CLIENTS: usize = 100_000;

/// Token buckets per key: a client address ([`bucket_of`] groups IPv6
/// addresses by /64) or an account id.
pub struct RateLimiter<K> {
    /// Tokens regained per second.
    rate: f64,
    /// Bucket size; 0 turns the limiter off.
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `per_minute` requests regained per minute, at most `burst` at once.
    /// `burst == 0` or `per_minute == 0` turns limiting off.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter<K> {
        let off = per_minute == 0 || burst == 0;
        RateLimiter {
            rate: f64::from(per_minute) / 60.0,
            burst: if off { 0.0 } else { f64::from(burst) },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s bucket at time `now`. `Err` carries
    /// the whole seconds until a request will be allowed (for `Retry-After`).
    pub fn check(&self, client: K, now: Instant) -> Result<(), u64> {
        if self.burst == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&client) && buckets.len() >= MAX_TRACKED_CLIENTS {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| refilled(b, rate, burst, now) < burst);
            if buckets.len() >= MAX_TRACKED_CLIENTS {
                return Err(self.wait_for(0.0));
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = refilled(bucket, self.rate, self.burst, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_for(bucket.tokens))
        }
    }

    fn wait_for(&self, tokens: f64) -> u64 {
        ((1.0 - tokens) / self.rate).ceil().max(1.0) as u64
    }
}

/// The rate-limit key of a client address: the address itself for IPv4, its
/// /64 network for IPv6. One IPv6 subscriber or host usually has a whole /64
/// (RFC 6177), so keying by /128 would give each of its 2^64 addresses a
/// fresh bucket.
pub fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

fn refilled(bucket: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

/// The reverse proxies whose `X-Forwarded-For` is believed: addresses or
/// CIDR ranges (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR ranges; `None` if
    /// an item is neither.
    pub fn parse(list: &str) -> Option<TrustedProxies> {
        let mut ranges = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (addr, bits) = match item.split_once('/') {
                Some((addr, bits)) => {
                    (addr.parse::<IpAddr>().ok()?, Some(bits.parse::<u8>().ok()?))
                }
                None => (item.parse::<IpAddr>().ok()?, None),
            };
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = bits.unwrap_or(max);
            if bits > max {
                return None;
            }
            // A range written as ::ffff:a.b.c.d/n means the IPv4 range.
            let (addr, bits) = match addr.to_canonical() {
                v4 @ IpAddr::V4(_) if addr.is_ipv6() => (v4, bits.saturating_sub(96)),
                _ => (addr, bits),
            };
            ranges.push((addr, bits));
        }
        Some(TrustedProxies(ranges))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(net, bits)| in_range(ip, *net, *bits))
    }

    /// The client's address: `peer` itself unless `peer` is a trusted proxy,
    /// in which case the rightmost untrusted address of `forwarded_for`. If
    /// every listed address is trusted, the leftmost is the client; if the
    /// header is missing or an entry does not parse, `peer`.
    ///
    /// Addresses are canonical throughout (`IpAddr::to_canonical`): on a
    /// socket bound to `[::]` an IPv4 peer arrives as `::ffff:a.b.c.d`,
    /// which must match `TRUSTED_PROXIES=a.b.c.d` and share a bucket with
    /// `a.b.c.d`. Entries may carry a port or brackets, as some proxies
    /// write them (`198.51.100.8:5555`, `[2001:db8::9]:443`).
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let mut leftmost = peer;
        for item in header.rsplit(',').map(str::trim) {
            match forwarded_address(item) {
                Some(ip) if self.contains(ip) => leftmost = ip,
                Some(ip) => return ip,
                None => return peer,
            }
        }
        leftmost
    }
}

/// One `X-Forwarded-For` entry: an address, optionally in brackets or with
/// a port; canonical.
fn forwarded_address(item: &str) -> Option<IpAddr> {
    let ip = item
        .parse::<IpAddr>()
        .ok()
        .or_else(|| item.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            item.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let limiter = RateLimiter::new(60, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip(1), t0), Ok(()));
        }
        assert_eq!(limiter.check(ip(1), t0), Err(1));
        // Another address has its own bucket.
        assert_eq!(limiter.check(ip(2), t0), Ok(()));
        // One token per second comes back.
        assert_eq!(
            limiter.check(ip(1), t0 + Duration::from_millis(1000)),
            Ok(())
        );
        assert!(
            limiter
                .check(ip(1), t0 + Duration::from_millis(1000))
                .is_err()
        );
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.check(ip(1), later), Ok(()));
        }
        assert!(limiter.check(ip(1), later).is_err());
    }

    #[test]
    fn retry_after_reflects_the_rate() {
        let limiter = RateLimiter::new(6, 1); // one per 10 s
        let t0 = Instant::now();
        assert_eq!(limiter.check(ip(1), t0), Ok(()));
        assert_eq!(limiter.check(ip(1), t0), Err(10));
    }

    #[test]
    fn zero_turns_it_off() {
        for limiter in [RateLimiter::new(0, 5), RateLimiter::new(60, 0)] {
            let t0 = Instant::now();
            assert!((0..1000).all(|_| limiter.check(ip(1), t0).is_ok()));
        }
    }

    #[test]
    fn tracked_clients_are_bounded_and_quiet_ones_are_forgotten() {
        let limiter = RateLimiter::new(60, 2);
        let t0 = Instant::now();
        for n in 0..MAX_TRACKED_CLIENTS as u32 {
            limiter.check(ip(n), t0).unwrap();
        }
        // All still active: a newcomer is limited rather than grow the map.
        assert!(limiter.check(ip(u32::MAX), t0).is_err());
        // Once their buckets refill, they are dropped to make room.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(limiter.check(ip(u32::MAX), later), Ok(()));
        assert!(limiter.buckets.lock().unwrap().len() <= 1);
    }

    #[test]
    fn addresses_are_canonical_and_forwarded_entries_may_carry_ports() {
        let proxies = TrustedProxies::parse("127.0.0.1, ::ffff:10.0.0.0/104").unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let client: IpAddr = "198.51.100.8".parse().unwrap();
        // An IPv4 peer of a dual-stack socket is a trusted IPv4 proxy.
        assert_eq!(proxies.client_ip(mapped, Some("198.51.100.8")), client);
        assert_eq!(proxies.client_ip(mapped, None), ip(0x7f00_0001));
        assert_eq!(proxies.client_ip(mapped, Some("198.51.100.8:5555")), client);
        assert_eq!(
            proxies.client_ip(mapped, Some("[2001:db8::9]:443")),
            "2001:db8::9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            proxies.client_ip(mapped, Some("[2001:db8::9]")),
            "2001:db8::9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            proxies.client_ip(mapped, Some("::ffff:198.51.100.8")),
            client
        );
        // A mapped range in TRUSTED_PROXIES is the IPv4 range.
        assert!(proxies.contains("10.1.2.3".parse().unwrap()));
        assert_eq!(
            proxies.client_ip(mapped, Some("[garbage]:1")),
            ip(0x7f00_0001)
        );
    }

    #[test]
    fn ipv6_addresses_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket_of(a), bucket_of(b));
        assert_ne!(bucket_of(a), bucket_of(c));
        assert_eq!(bucket_of(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(bucket_of(ip(7)), ip(7));
        assert_eq!(bucket_of("::ffff:0.0.0.7".parse().unwrap()), ip(7));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.5, ::1").unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        // From an untrusted peer the header is ignored.
        assert_eq!(proxies.client_ip(stranger, Some("198.51.100.7")), stranger);
        // From a trusted proxy: the rightmost address that is not a proxy.
        assert_eq!(
            proxies.client_ip(proxy, Some("1.1.1.1, 198.51.100.7")),
            client
        );
        assert_eq!(
            proxies.client_ip(proxy, Some("198.51.100.7, 10.9.9.9")),
            client
        );
        assert_eq!(proxies.client_ip(proxy, None), proxy);
        assert_eq!(proxies.client_ip(proxy, Some("garbage")), proxy);
        assert_eq!(
            proxies.client_ip("::1".parse().unwrap(), Some("198.51.100.7")),
            client
        );
        assert!(!proxies.contains("11.0.0.1".parse().unwrap()));
        assert!(proxies.contains("192.168.1.5".parse().unwrap()));
        assert!(!proxies.contains("192.168.1.6".parse().unwrap()));
        assert_eq!(
            TrustedProxies::parse("0.0.0.0/0")
                .unwrap()
                .client_ip(stranger, Some("198.51.100.7")),
            client
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_none());
        assert!(TrustedProxies::parse("not-an-ip").is_none());
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
    }

    #[test]
    fn work_runs_on_the_hashing_threads_and_a_panic_spares_them() {
        let gate = HashGate::new(1, Duration::from_secs(1)).unwrap();
        let permit = gate.acquire().unwrap();
        let name = permit.run(|| std::thread::current().name().map(str::to_string));
        assert_eq!(name, Some(Some("hash-0".to_string())));
        assert_eq!(permit.run(|| -> u8 { panic!("bug in a job") }), None);
        // The single hashing thread survived the panic.
        assert_eq!(permit.run(|| 6 * 7), Some(42));
    }

    #[test]
    fn the_gate_bounds_concurrency_and_times_out() {
        let gate = Arc::new(HashGate::new(2, Duration::from_millis(100)).unwrap());
        let a = gate.acquire().unwrap();
        let _b = gate.acquire().unwrap();
        let started = Instant::now();
        assert!(gate.acquire().is_none());
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(gate.rejections(), 1);
        // A freed slot admits a waiter.
        let waiter = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.acquire().is_some())
        };
        // Wait for the waiter to queue (a loaded machine may take a while).
        let deadline = Instant::now() + Duration::from_secs(5);
        while gate.queue_depth() != 1 {
            assert!(Instant::now() < deadline, "the waiter never queued");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(a);
        assert!(waiter.join().unwrap());
    }
}
