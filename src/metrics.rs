//! Prometheus metrics, hand-written in the text exposition format (version
//! 0.0.4): a few counters, gauges and histograms do not need a library.
//!
//! Labels are bounded by construction: `route` is the route's pattern
//! (`/auth/sessions/{id}`, or `unmatched` for paths with no route), never
//! the raw path; `status` and `code` come from fixed sets. So a client cannot
//! grow the metrics without bound by inventing paths.
//!
//! Everything lives in one `Metrics` value behind a mutex per family; an
//! update is a map lookup and an addition, far cheaper than the request it
//! counts.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the duration histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    hashes: Mutex<Histogram>,
    logins: Mutex<BTreeMap<&'static str, u64>>,
    refreshes: Mutex<BTreeMap<&'static str, u64>>,
    sessions_created: AtomicU64,
    sessions_ended: AtomicU64,
    mail_queued: AtomicU64,
    mail_sent: AtomicU64,
    mail_retries: AtomicU64,
    mail_failed: AtomicU64,
}

/// Point-in-time values that other parts own, read when rendering.
pub struct Gauges {
    /// Requests waiting for a hashing slot.
    pub hash_queue_depth: usize,
    /// Requests turned away because no hashing slot came free.
    pub hash_rejections: usize,
    /// Database connections checked out.
    pub db_connections_in_use: usize,
    /// Outbox messages neither sent nor given up on, and the age in seconds
    /// of the oldest; `None` when the database could not be asked.
    pub mail_waiting: Option<(u64, u64)>,
}

impl Metrics {
    /// Counts a request answered on `route` with `status` in `elapsed`.
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        *lock(&self.requests).entry((route, status)).or_default() += 1;
        lock(&self.durations)
            .entry(route)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Records the time one Argon2 computation took.
    pub fn hash_took(&self, elapsed: Duration) {
        lock(&self.hashes).observe(elapsed.as_secs_f64());
    }

    /// Counts a login outcome: `ok` or the error code.
    pub fn login(&self, outcome: &'static str) {
        *lock(&self.logins).entry(outcome).or_default() += 1;
    }

    /// Counts a refresh outcome: `ok` or the error code
    /// (`refresh_token_reused` counts the sessions ended for reuse).
    pub fn refresh(&self, outcome: &'static str) {
        *lock(&self.refreshes).entry(outcome).or_default() += 1;
    }

    /// Counts a session created by a login.
    pub fn session_created(&self) {
        self.sessions_created.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts sessions ended by logout, deletion, password change or reset.
    pub fn sessions_ended(&self, n: u64) {
        self.sessions_ended.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a message queued in the outbox by this instance.
    pub fn mail_queued(&self) {
        self.mail_queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message this instance's courier sent.
    pub fn mail_sent(&self) {
        self.mail_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed delivery that will be tried again.
    pub fn mail_retried(&self) {
        self.mail_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message given up on.
    pub fn mail_failed(&self) {
        self.mail_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        family(
            &mut out,
            "auth_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "auth_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        family(
            &mut out,
            "auth_http_request_duration_seconds",
            "histogram",
            "Time from a complete request to its response, by route.",
        );
        for (route, h) in lock(&self.durations).iter() {
            h.render(
                &mut out,
                "auth_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        family(
            &mut out,
            "auth_hash_duration_seconds",
            "histogram",
            "Time of one Argon2 hash or verification.",
        );
        lock(&self.hashes).render(&mut out, "auth_hash_duration_seconds", "");
        family(
            &mut out,
            "auth_hash_queue_depth",
            "gauge",
            "Requests waiting for a hashing slot.",
        );
        let _ = writeln!(out, "auth_hash_queue_depth {}", gauges.hash_queue_depth);
        family(
            &mut out,
            "auth_hash_rejections_total",
            "counter",
            "Requests answered 503 because no hashing slot came free.",
        );
        let _ = writeln!(out, "auth_hash_rejections_total {}", gauges.hash_rejections);
        family(
            &mut out,
            "auth_login_outcomes_total",
            "counter",
            "Login attempts by outcome: ok or the error code.",
        );
        for (outcome, n) in lock(&self.logins).iter() {
            let _ = writeln!(
                out,
                "auth_login_outcomes_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        family(
            &mut out,
            "auth_refresh_outcomes_total",
            "counter",
            "Refreshes by outcome: ok or the error code (refresh_token_reused: a session ended for reuse).",
        );
        for (outcome, n) in lock(&self.refreshes).iter() {
            let _ = writeln!(
                out,
                "auth_refresh_outcomes_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        family(
            &mut out,
            "auth_db_connections_in_use",
            "gauge",
            "Database connections checked out of the pool.",
        );
        let _ = writeln!(
            out,
            "auth_db_connections_in_use {}",
            gauges.db_connections_in_use
        );
        family(
            &mut out,
            "auth_sessions_created_total",
            "counter",
            "Sessions created by logins.",
        );
        let _ = writeln!(
            out,
            "auth_sessions_created_total {}",
            self.sessions_created.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "auth_sessions_ended_total",
            "counter",
            "Sessions ended by logout, deletion, password change or reset.",
        );
        let _ = writeln!(
            out,
            "auth_sessions_ended_total {}",
            self.sessions_ended.load(Ordering::Relaxed)
        );
        for (name, help, counter) in [
            (
                "auth_mail_queued_total",
                "Messages queued in the outbox by this instance.",
                &self.mail_queued,
            ),
            (
                "auth_mail_sent_total",
                "Messages this instance's courier sent.",
                &self.mail_sent,
            ),
            (
                "auth_mail_retries_total",
                "Failed deliveries that will be tried again.",
                &self.mail_retries,
            ),
            (
                "auth_mail_failed_total",
                "Messages given up on (permanent rejection, too many attempts, hourly cap).",
                &self.mail_failed,
            ),
        ] {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
        // Read from the database, so they cover every instance's queue; left
        // out when the database did not answer.
        if let Some((waiting, oldest)) = gauges.mail_waiting {
            family(
                &mut out,
                "auth_mail_waiting",
                "gauge",
                "Outbox messages neither sent nor given up on.",
            );
            let _ = writeln!(out, "auth_mail_waiting {waiting}");
            family(
                &mut out,
                "auth_mail_oldest_waiting_seconds",
                "gauge",
                "Age of the oldest waiting outbox message (0 when none waits).",
            );
            let _ = writeln!(out, "auth_mail_oldest_waiting_seconds {oldest}");
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Updates cannot panic midway, so a poisoned lock still guards sound data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::default();
        m.request("/healthz", 200, Duration::from_millis(3));
        m.request("/healthz", 200, Duration::from_millis(30));
        m.request("unmatched", 404, Duration::from_micros(50));
        m.hash_took(Duration::from_millis(20));
        m.login("ok");
        m.login("wrong_password");
        m.login("wrong_password");
        m.session_created();
        m.sessions_ended(3);
        m.mail_queued();
        m.mail_sent();
        m.mail_retried();
        m.mail_retried();
        let text = m.render(&Gauges {
            hash_queue_depth: 2,
            hash_rejections: 1,
            db_connections_in_use: 4,
            mail_waiting: Some((5, 70)),
        });
        for line in [
            "auth_http_requests_total{route=\"/healthz\",status=\"200\"} 2",
            "auth_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
            "auth_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.005\"} 1",
            "auth_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.05\"} 2",
            "auth_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 2",
            "auth_http_request_duration_seconds_count{route=\"/healthz\"} 2",
            "auth_hash_duration_seconds_bucket{le=\"0.025\"} 1",
            "auth_hash_duration_seconds_count 1",
            "auth_hash_queue_depth 2",
            "auth_hash_rejections_total 1",
            "auth_login_outcomes_total{outcome=\"wrong_password\"} 2",
            "auth_db_connections_in_use 4",
            "auth_sessions_created_total 1",
            "auth_sessions_ended_total 3",
            "auth_mail_queued_total 1",
            "auth_mail_sent_total 1",
            "auth_mail_retries_total 2",
            "auth_mail_failed_total 0",
            "auth_mail_waiting 5",
            "auth_mail_oldest_waiting_seconds 70",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample line belongs to a family declared with # TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {base} "))
                    || text.contains(&format!("# TYPE {name} ")),
                "{line}"
            );
        }
    }
}
