//! Operations (issue 8) driven over TCP against the real binary and a real
//! database: request ids, the JSON log, Prometheus metrics, CORS and
//! graceful shutdown.
//!
//! Covered:
//!
//! - request ids: a sane client `X-Request-Id` (1 to 128 visible ASCII
//!   characters) is echoed; a long, spaced, empty or non-ASCII one is
//!   replaced by a generated id. Every response carries one (404, 405,
//!   problem bodies, framing errors), equal to the body's `request_id` and
//!   to the `request_id` of the request's one `request` log line, which
//!   names method, path (never the query), status, duration and client;
//! - `user_id` on request lines: present after a successful login and on
//!   authenticated endpoints, absent on failed logins, bad tokens and on
//!   the next request of the same keep-alive connection;
//! - log hygiene over a whole account's life (register, login, sessions,
//!   password change, forgot, reset, email change, logout): every stderr
//!   line is a JSON object with `ts` (RFC 3339 UTC, close to now), `level`,
//!   `msg` and `request_id`, and no password, bearer token, reset token,
//!   stored hash or `TOKEN_SECRET` appears anywhere in it;
//! - `LOG_LEVEL=warn` drops request lines but keeps warnings (a rejected
//!   framing error) and errors (the database gone);
//! - `GET /metrics`: parsed by a small text-format parser written here
//!   (every sample's family declared, families contiguous, histograms
//!   cumulative with `+Inf == _count`), and moving exactly with traffic
//!   (requests per route and status, login outcomes, sessions created and
//!   ended, hash timings), with unmatched paths folded into one `unmatched`
//!   label whatever the path;
//! - `METRICS_BIND_ADDR` moves `/metrics` off the public address;
//! - CORS: preflights and ordinary responses with allowed, disallowed and
//!   no origins, never `*`; and no CORS at all (OPTIONS is 405) when off;
//! - graceful shutdown: SIGTERM during a burst of slow logins lets every
//!   login either finish with a token whose session exists or be refused
//!   before it started, never lost; exit code 0 within the grace period;
//!   SIGTERM with an idle keep-alive connection and SIGINT exit at once; a
//!   half-sent request is answered 503 `overloaded` instead of dropped; a
//!   request stuck past `SHUTDOWN_GRACE_SECONDS` does not hold the exit.
//!
//! Each test starts its own server on its own fresh database. The harness
//! finds the server's address in its `listening` log line, which
//! `LOG_LEVEL=warn` suppresses, so that test starts the binary on a port
//! picked here and waits for it to accept connections.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    Client, Proxy, ProxyMode, Reply, Server, TEST_SECRET, TestDb, login, login_reply, register,
};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REGISTER: &str = "/auth/register";
const LOGIN: &str = "/auth/login";
const ME: &str = "/auth/me";

/// A password that breaks no rule.
const GOOD: &str = "correct horse battery staple";
/// A wrong guess at [`GOOD`].
const WRONG: &str = "incorrect horse battery staple";

// ---------------------------------------------------------------------------
// Requests

fn text(reply: &Reply) -> String {
    format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body))
}

#[track_caller]
fn token_of(reply: &Reply) -> String {
    reply.json()["token"]
        .as_str()
        .expect("login answered no token")
        .to_string()
}

/// The session id inside a token (bytes 13..29 of its 45-byte payload; see
/// docs/token.md).
#[track_caller]
fn session_id_of(token: &str) -> Vec<u8> {
    let payload = token.split('.').next().unwrap();
    let raw = URL_SAFE_NO_PAD.decode(payload).unwrap();
    assert_eq!(raw.len(), 45, "token payload of {token}");
    raw[13..29].to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The request id the server answered with; every response must carry one.
#[track_caller]
fn request_id(reply: &Reply) -> String {
    reply
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id on {}", text(reply)))
        .to_string()
}

/// Every value of header `name` (the harness's `header` gives the first).
fn header_values<'a>(reply: &'a Reply, name: &str) -> Vec<&'a str> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The comma-separated items of every `name` header, trimmed.
fn header_items(reply: &Reply, name: &str) -> Vec<String> {
    header_values(reply, name)
        .iter()
        .flat_map(|v| v.split(','))
        .map(|item| item.trim().to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

/// A string no earlier request of this process used, to tell its log line
/// or metric label apart.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A port that was free a moment ago: bound, read, released.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Connects to `addr`, retrying while nothing listens there yet.
#[track_caller]
fn connect_when_up(addr: SocketAddr, within: Duration) -> Client {
    let deadline = Instant::now() + within;
    loop {
        if TcpStream::connect(addr).is_ok() {
            return Client::connect(addr);
        }
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// The log

/// Waits until the server has logged a request with id `marker`, so that
/// everything it logged before that request is in `server.log()` (stderr is
/// read on a thread and may lag).
#[track_caller]
fn sync_log(server: &Server, marker: &str) -> String {
    let reply = server.request("GET", "/healthz", &[("X-Request-Id", marker)], "");
    assert_eq!(reply.status, 200, "{}", text(&reply));
    wait_for_log(|| server.log(), marker)
}

/// Polls `log` until it contains `needle`; returns the log.
#[track_caller]
fn wait_for_log(log: impl Fn() -> String, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{needle} never appeared in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every log line as JSON; a line that is not a JSON object fails the test.
#[track_caller]
fn entries(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line:?}"));
            assert!(value.is_object(), "log line is not an object: {line:?}");
            value
        })
        .collect()
}

/// The `request` lines whose request id is `id`.
fn request_lines(log: &str, id: &str) -> Vec<Value> {
    entries(log)
        .into_iter()
        .filter(|v| v["msg"] == "request" && v["request_id"] == id)
        .collect()
}

/// The one `request` line of request `id`.
#[track_caller]
fn request_line(log: &str, id: &str) -> Value {
    let lines = request_lines(log, id);
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one request line for {id}, got {lines:?}"
    );
    lines.into_iter().next().unwrap()
}

/// Asserts the request line of `reply` names its method, path, status, a
/// duration and the client, and returns it.
#[track_caller]
fn assert_request_line(log: &str, reply: &Reply, method: &str, path: &str) -> Value {
    let id = request_id(reply);
    let line = request_line(log, &id);
    assert_eq!(line["level"], "info", "{line}");
    assert_eq!(line["method"], method, "{line}");
    assert_eq!(line["path"], path, "{line}");
    assert_eq!(line["status"], reply.status, "{line}");
    let millis = line["duration_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("duration_ms is not a number: {line}"));
    assert!((0.0..60_000.0).contains(&millis), "{line}");
    assert_eq!(line["client"], "127.0.0.1", "{line}");
    line
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp such as
/// `2026-11-21T13:58:43.099Z`; `None` if it is not one.
fn parse_rfc3339_utc(ts: &str) -> Option<f64> {
    let b = ts.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = ts.get(range)?;
        (!part.is_empty() && part.bytes().all(|c| c.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let fraction = match &ts[19..ts.len() - 1] {
        "" => 0.0,
        f => {
            let f = f.strip_prefix('.')?;
            digits(20..20 + f.len())?;
            format!("0.{f}").parse::<f64>().ok()?
        }
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day == 0 || day > month_days[month as usize - 1] {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days_before_year: u64 = (1970..year)
        .map(|y| {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                366
            } else {
                365
            }
        })
        .sum();
    let days_before_month: u64 = month_days[..month as usize - 1].iter().sum();
    let days = days_before_year + days_before_month + day - 1;
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second) as f64 + fraction)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Asserts a log line has the fixed members: `ts` (RFC 3339 UTC within a
/// few minutes of now), `level`, `msg` and a non-empty `request_id`.
#[track_caller]
fn assert_log_shape(line: &Value) {
    let ts = line["ts"]
        .as_str()
        .unwrap_or_else(|| panic!("no ts: {line}"));
    let when = parse_rfc3339_utc(ts).unwrap_or_else(|| panic!("ts is not RFC 3339 UTC: {line}"));
    assert!((when - unix_now()).abs() < 300.0, "ts far from now: {line}");
    assert!(
        ["error", "warn", "info", "debug"].contains(&line["level"].as_str().unwrap_or("")),
        "level: {line}"
    );
    assert!(
        line["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "msg: {line}"
    );
    assert!(
        line["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "request_id: {line}"
    );
}

#[test]
fn the_timestamp_parser_accepts_only_rfc3339_utc() {
    assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0.0));
    let t = parse_rfc3339_utc("2026-11-21T13:58:43.099Z").unwrap();
    assert!((t - 1_795_269_523.099).abs() < 1e-6, "{t}");
    assert_eq!(
        parse_rfc3339_utc("2024-02-29T00:00:00Z"),
        Some(1_709_164_800.0)
    );
    for bad in [
        "2026-11-21 13:58:43Z",
        "2026-11-21T13:58:43+01:00",
        "2026-11-21T13:58:43",
        "2025-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-21T24:00:00Z",
        "2026-11-21T13:58:43.Z",
        "2026-11-21T13:58:43.0x9Z",
        "",
    ] {
        assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
    }
}

// ---------------------------------------------------------------------------
// Metrics: a parser for the text exposition format, version 0.0.4

/// One sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition, checked for the format's structural rules.
#[derive(Debug)]
struct Exposition {
    /// Family name to its `# TYPE`.
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses `{k="v",...}` at the start of `s`; returns the labels and the
/// rest after the closing brace.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => return Err(format!("bad escape \\{other}")),
                },
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = rest[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by commas".into());
        }
    }
}

/// The family a sample belongs to: its own name, or for a histogram's
/// `_bucket`, `_sum` and `_count` the histogram's name.
fn family_of(name: &str, types: &HashMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_string());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        matches!(
            types.get(base).map(String::as_str),
            Some("histogram" | "summary")
        )
        .then(|| base.to_string())
    })
}

/// Parses and checks an exposition: HELP/TYPE lines well formed and at most
/// once per family, every sample's family declared by a TYPE before it,
/// a family's lines contiguous, no sample twice, and every histogram's
/// buckets ascending in `le`, cumulative, ending at `+Inf` equal to
/// `_count`, with a `_sum`.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut samples = Vec::new();
    let mut seen: BTreeSet<(String, BTreeMap<String, String>)> = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
        if current.as_deref() != Some(family) {
            if finished.contains(family) {
                return Err(format!("family {family} is not contiguous"));
            }
            if let Some(previous) = current.take() {
                finished.insert(previous);
            }
            *current = Some(family.to_string());
        }
        Ok(())
    };
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match words.next() {
                Some("HELP") => {
                    let name = words.next().ok_or_else(|| at("HELP without name".into()))?;
                    if !is_metric_name(name) || !helps.insert(name.to_string()) {
                        return Err(at("bad or repeated HELP".into()));
                    }
                    enter(name, &mut current).map_err(at)?;
                }
                Some("TYPE") => {
                    let name = words.next().ok_or_else(|| at("TYPE without name".into()))?;
                    let kind = words.next().ok_or_else(|| at("TYPE without type".into()))?;
                    if !is_metric_name(name) {
                        return Err(at("bad metric name".into()));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(at("TYPE repeated".into()));
                    }
                    if samples
                        .iter()
                        .any(|s: &Sample| family_of(&s.name, &types).as_deref() == Some(name))
                    {
                        return Err(at("TYPE after the family's samples".into()));
                    }
                    enter(name, &mut current).map_err(at)?;
                }
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .and_then(parse_value)
            .ok_or_else(|| at("bad value".into()))?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| at("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = family_of(name, &types).ok_or_else(|| at("sample without a TYPE".into()))?;
        enter(&family, &mut current).map_err(at)?;
        if !seen.insert((name.to_string(), labels.clone())) {
            return Err(at("sample repeated".into()));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    let exposition = Exposition { types, samples };
    exposition.check_histograms()?;
    Ok(exposition)
}

impl Exposition {
    fn check_histograms(&self) -> Result<(), String> {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            // Series by their labels other than `le`.
            let mut buckets: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for s in self
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_bucket"))
            {
                let mut labels = s.labels.clone();
                let le = labels
                    .remove("le")
                    .and_then(|le| parse_value(&le))
                    .ok_or_else(|| format!("{family} bucket without a valid le: {s:?}"))?;
                buckets.entry(labels).or_default().push((le, s.value));
            }
            for (labels, series) in &buckets {
                for pair in series.windows(2) {
                    if pair[0].0 >= pair[1].0 {
                        return Err(format!("{family}{labels:?}: le not ascending"));
                    }
                    if pair[0].1 > pair[1].1 {
                        return Err(format!("{family}{labels:?}: buckets not cumulative"));
                    }
                }
                let (last_le, inf) = *series.last().unwrap();
                if last_le != f64::INFINITY {
                    return Err(format!("{family}{labels:?}: no +Inf bucket"));
                }
                let count = self
                    .get(&format!("{family}_count"), labels)
                    .ok_or_else(|| format!("{family}{labels:?}: no _count"))?;
                if count != inf {
                    return Err(format!("{family}{labels:?}: +Inf {inf} != _count {count}"));
                }
                self.get(&format!("{family}_sum"), labels)
                    .ok_or_else(|| format!("{family}{labels:?}: no _sum"))?;
            }
            // A _count without buckets would be a series the check above missed.
            for s in self
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_count"))
            {
                if !buckets.contains_key(&s.labels) {
                    return Err(format!("{family}{:?}: _count without buckets", s.labels));
                }
            }
        }
        Ok(())
    }

    /// The sample `name` with exactly these labels.
    fn get(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == *labels)
            .map(|s| s.value)
    }

    /// The sample `name` with exactly `labels`; a counter series not yet
    /// incremented is absent, and counts as 0.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.get(name, &labels).unwrap_or(0.0)
    }

    /// The sample `name` without labels, which must be present.
    #[track_caller]
    fn scalar(&self, name: &str) -> f64 {
        self.get(name, &BTreeMap::new())
            .unwrap_or_else(|| panic!("no sample {name} in {self:?}"))
    }

    /// Every value label `label` takes on samples of `name`.
    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

/// The families the server must expose, with their types.
const FAMILIES: &[(&str, &str)] = &[
    ("auth_http_requests_total", "counter"),
    ("auth_http_request_duration_seconds", "histogram"),
    ("auth_hash_duration_seconds", "histogram"),
    ("auth_hash_queue_depth", "gauge"),
    ("auth_hash_rejections_total", "counter"),
    ("auth_login_outcomes_total", "counter"),
    ("auth_db_connections_in_use", "gauge"),
    ("auth_sessions_created_total", "counter"),
    ("auth_sessions_ended_total", "counter"),
];

/// Checks a `/metrics` reply and parses it.
#[track_caller]
fn exposition_of(reply: &Reply) -> Exposition {
    assert_eq!(reply.status, 200, "{}", text(reply));
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = String::from_utf8(reply.body.clone()).expect("metrics are not UTF-8");
    let exposition = parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    for (family, kind) in FAMILIES {
        assert_eq!(
            exposition.types.get(*family).map(String::as_str),
            Some(*kind),
            "family {family}\n{body}"
        );
    }
    for s in &exposition.samples {
        assert!(s.value >= 0.0, "negative sample {s:?}");
    }
    exposition
}

#[track_caller]
fn metrics(server: &Server) -> Exposition {
    exposition_of(&server.get("/metrics"))
}

#[test]
fn the_exposition_parser_rejects_what_the_format_forbids() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n\
                # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 3\n\
                h_sum 0.5\nh_count 3\n";
    let e = parse_exposition(good).unwrap();
    assert_eq!(e.value("a_total", &[("x", "1")]), 2.0);
    assert_eq!(e.scalar("h_count"), 3.0);
    let labels = parse_labels("{a=\"q\\\"\\\\\\n\",b=\"\"} 1").unwrap();
    assert_eq!(labels.0["a"], "q\"\\\n");
    assert_eq!(labels.1, " 1");
    for bad in [
        "a_total 1\n",
        "# TYPE a_total counter\na_total{x=\"1\"} 1\na_total{x=\"1\"} 2\n",
        "# TYPE a counter\n# TYPE b counter\na 1\nb 1\na{x=\"2\"} 1\n",
        "# TYPE a counter\na{x=1} 1\n",
        "# TYPE a counter\na one\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE a wobbly\na 1\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------
// Signals and exits

/// Sends `signal` (`-TERM`, `-INT`) to the server process.
fn signal(server: &Server, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &server.process.id().to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill {signal} failed");
}

/// Polls until `child` exits; its status, or `None` if it still runs after
/// `within` (the harness kills it when the server is dropped).
fn wait_for_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The server's full log once its stderr has closed, so lines written just
/// before exiting are in.
fn final_log(server: &Server, last_msg: &str) -> String {
    wait_for_log(|| server.log(), &format!("\"msg\":\"{last_msg}\""))
}

// ---------------------------------------------------------------------------
// Request ids

#[test]
fn request_ids_are_echoed_or_generated_and_tie_responses_bodies_and_log_lines() {
    let server = Server::start();

    // Sane ids come back as sent, up to 128 visible characters.
    let sane = ["trace-abc.123", "a/b:c=d~!*'()[]{}@#$%^&", &"7".repeat(128)];
    let mut echoed = Vec::new();
    for id in sane {
        let reply = server.request("GET", "/healthz", &[("X-Request-Id", id)], "");
        assert_eq!(reply.status, 200, "{}", text(&reply));
        assert_eq!(request_id(&reply), id);
        echoed.push(reply);
    }
    // Sane ids come back on errors too, and in the problem body.
    let missing_id = unique("missing");
    let missing = server.request("GET", "/no/such/path", &[("X-Request-Id", &missing_id)], "");
    missing.assert_problem(404, "not_found");
    assert_eq!(request_id(&missing), missing_id);
    assert_eq!(missing.json()["request_id"], missing_id.as_str());

    // Insane ids are replaced by generated ones, which are themselves sane
    // and differ from each other.
    let insane = [
        "8".repeat(129),
        "has space".to_string(),
        "tab\tinside".to_string(),
        "caf\u{e9}-\u{1f600}".to_string(),
        String::new(),
    ];
    let mut generated = BTreeSet::new();
    let mut replaced = Vec::new();
    for id in &insane {
        let reply = server.request("GET", "/healthz", &[("X-Request-Id", id)], "");
        assert_eq!(reply.status, 200, "{}", text(&reply));
        let got = request_id(&reply);
        assert_ne!(&got, id, "insane id {id:?} was echoed");
        assert!(
            (1..=128).contains(&got.len()) && got.bytes().all(|b| b.is_ascii_graphic()),
            "generated id {got:?} is not sane"
        );
        assert!(generated.insert(got), "generated id repeated");
        replaced.push(reply);
    }

    // Without an id: every kind of answer gets a generated one, equal to the
    // body's request_id.
    let not_found = server.get("/nope");
    not_found.assert_problem(404, "not_found");
    let not_allowed = server.request("DELETE", "/healthz", &[], "");
    not_allowed.assert_problem(405, "method_not_allowed");
    let malformed = server.request(
        "POST",
        LOGIN,
        &[("Content-Type", "application/json")],
        "{\"email\":",
    );
    malformed.assert_problem(400, "malformed_json");
    let unauthenticated = server.get(ME);
    unauthenticated.assert_problem(401, "missing_token");
    for reply in [&not_found, &not_allowed, &malformed, &unauthenticated] {
        let id = request_id(reply);
        assert_eq!(reply.json()["request_id"], id.as_str(), "{}", text(reply));
        assert!(generated.insert(id), "generated id repeated");
    }
    // The query string is not part of the logged path (it may carry secrets).
    let query_secret = unique("querysecret");
    let with_query = server.get(&format!("/healthz?token={query_secret}"));
    assert_eq!(with_query.status, 200);

    // A request rejected while being read (framing error) still carries an
    // id, in header and body, and its warn line carries it too.
    let mut client = server.connect();
    client.send(
        b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let framing = client.read_reply().expect("no reply to a framing error");
    framing.assert_problem(400, "bad_request");
    let framing_id = request_id(&framing);
    assert_eq!(framing.json()["request_id"], framing_id.as_str());

    let log = sync_log(&server, &unique("sync"));
    for reply in &echoed {
        assert_request_line(&log, reply, "GET", "/healthz");
    }
    for reply in &replaced {
        assert_request_line(&log, reply, "GET", "/healthz");
    }
    assert_request_line(&log, &missing, "GET", "/no/such/path");
    assert_request_line(&log, &not_found, "GET", "/nope");
    assert_request_line(&log, &not_allowed, "DELETE", "/healthz");
    assert_request_line(&log, &malformed, "POST", LOGIN);
    assert_request_line(&log, &unauthenticated, "GET", ME);
    assert_request_line(&log, &with_query, "GET", "/healthz");
    assert!(!log.contains(&query_secret), "the query was logged:\n{log}");
    // The insane ids themselves never reach the log (a 129-character one
    // would be truncatable, a spaced one ambiguous).
    assert!(!log.contains(&insane[0]), "the 129-character id was logged");
    let rejected: Vec<Value> = entries(&log)
        .into_iter()
        .filter(|v| v["request_id"] == framing_id.as_str())
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["level"], "warn", "{}", rejected[0]);
    assert_eq!(rejected[0]["status"], 400, "{}", rejected[0]);
    assert_eq!(rejected[0]["client"], "127.0.0.1", "{}", rejected[0]);
}

// ---------------------------------------------------------------------------
// user_id on request lines

#[test]
fn request_lines_carry_the_user_id_once_it_is_known_and_only_for_that_request() {
    let server = Server::start();
    let alice = register(&server, "alice@example.com", GOOD);
    let bob = register(&server, "bob@example.com", GOOD);
    assert_ne!(alice, bob);

    let ok = login_reply(&server, "alice@example.com", GOOD);
    assert_eq!(ok.status, 200, "{}", text(&ok));
    let token = token_of(&ok);
    let bob_token = login(&server, "bob@example.com", GOOD);
    let wrong = login_reply(&server, "alice@example.com", WRONG);
    wrong.assert_problem(401, "wrong_password");
    let unknown = login_reply(&server, "carol@example.com", GOOD);
    unknown.assert_problem(404, "unknown_email");

    // Authenticated requests, then an anonymous one on the same connection
    // (so on the same server thread): the user must not carry over.
    let mut conn = server.connect();
    let auth = format!("Bearer {token}");
    let me = conn.request("GET", ME, &[("Authorization", &auth)], "");
    assert_eq!(me.status, 200, "{}", text(&me));
    let after = conn.request("GET", "/healthz", &[], "");
    assert_eq!(after.status, 200);
    let bob_me = server.get_auth(ME, &bob_token);
    assert_eq!(bob_me.status, 200);
    // Authenticated but answered 404: the user is still known.
    let no_session = server.request(
        "DELETE",
        "/auth/sessions/00000000000000000000000000000000",
        &[("Authorization", &auth)],
        "",
    );
    no_session.assert_problem(404, "not_found");
    let forged = server.get_auth(ME, &format!("{token}x"));
    forged.assert_problem(401, "invalid_token");

    let log = sync_log(&server, &unique("sync"));
    let user_of = |reply: &Reply, method: &str, path: &str| {
        assert_request_line(&log, reply, method, path)["user_id"].clone()
    };
    assert_eq!(user_of(&ok, "POST", LOGIN), json!(alice));
    assert_eq!(user_of(&me, "GET", ME), json!(alice));
    assert_eq!(user_of(&bob_me, "GET", ME), json!(bob));
    assert_eq!(
        user_of(
            &no_session,
            "DELETE",
            "/auth/sessions/00000000000000000000000000000000"
        ),
        json!(alice)
    );
    // Failed logins and bad tokens name no user: the user is not known
    // until a password or token is verified.
    assert_eq!(user_of(&wrong, "POST", LOGIN), Value::Null);
    assert_eq!(user_of(&unknown, "POST", LOGIN), Value::Null);
    assert_eq!(user_of(&forged, "GET", ME), Value::Null);
    assert_eq!(user_of(&after, "GET", "/healthz"), Value::Null);
}

// ---------------------------------------------------------------------------
// Log shape and hygiene

#[test]
fn a_whole_account_life_logs_well_formed_lines_and_no_secret() {
    let server = Server::start();
    let email = "dana@example.com";
    let (p1, p2, p3) = (
        "first-Pa55word-of-dana",
        "second-Pa55word-of-dana",
        "third-Pa55word-of-dana",
    );
    let guess = "a-wrong-Gue55-at-dana";
    let mut replies: Vec<(Reply, &str, String)> = Vec::new();
    let mut tokens = Vec::new();

    let user_id = register(&server, email, p1);
    let t1 = login(&server, email, p1);
    let t2 = login(&server, email, p1);
    tokens.extend([t1.clone(), t2.clone()]);
    let wrong = login_reply(&server, email, guess);
    wrong.assert_problem(401, "wrong_password");
    replies.push((wrong, "POST", LOGIN.into()));

    let me = server.get_auth(ME, &t1);
    assert_eq!(me.status, 200, "{}", text(&me));
    replies.push((me, "GET", ME.into()));
    let sessions = server.get_auth("/auth/sessions", &t1);
    assert_eq!(sessions.status, 200, "{}", text(&sessions));
    assert_eq!(sessions.json()["sessions"].as_array().unwrap().len(), 2);
    replies.push((sessions, "GET", "/auth/sessions".into()));
    let second = format!("/auth/sessions/{}", hex(&session_id_of(&t2)));
    let auth1 = format!("Bearer {t1}");
    let ended = server.request("DELETE", &second, &[("Authorization", &auth1)], "");
    assert_eq!(ended.status, 204, "{}", text(&ended));
    replies.push((ended, "DELETE", second));

    let changed = server.json(
        "POST",
        "/auth/password",
        &json!({"email": email, "current_password": p1, "new_password": p2}),
    );
    assert_eq!(changed.status, 204, "{}", text(&changed));
    replies.push((changed, "POST", "/auth/password".into()));
    server
        .get_auth(ME, &t1)
        .assert_problem(401, "token_revoked");
    tokens.push(login(&server, email, p2));

    let forgot = server.json("POST", "/auth/password/forgot", &json!({"email": email}));
    assert_eq!(forgot.status, 202, "{}", text(&forgot));
    replies.push((forgot, "POST", "/auth/password/forgot".into()));
    let body = common::wait_for_mail(&server, email);
    let start = body.find("?token=").expect("no link in the mail") + "?token=".len();
    let reset_token: String = body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert_eq!(reset_token.len(), 43, "{body}");
    let reset = server.json(
        "POST",
        "/auth/password/reset",
        &json!({"token": reset_token, "new_password": p3}),
    );
    assert_eq!(reset.status, 204, "{}", text(&reset));
    replies.push((reset, "POST", "/auth/password/reset".into()));

    let t4 = login(&server, email, p3);
    tokens.push(t4.clone());
    let new_email = "dana.new@example.com";
    let patched = server.json_auth(
        "PATCH",
        ME,
        &t4,
        &json!({"email": new_email, "current_password": p3}),
    );
    assert_eq!(patched.status, 202, "{}", text(&patched));
    replies.push((patched, "PATCH", ME.into()));
    let body = common::wait_for_mail_of(&server, new_email, "confirm_email_change");
    let start = body.find("?token=").expect("no link in the mail") + "?token=".len();
    let confirm_token: String = body[start..].chars().take(43).collect();
    let confirmed = server.json(
        "POST",
        "/auth/email/confirm",
        &json!({"token": confirm_token}),
    );
    assert_eq!(confirmed.status, 200, "{}", text(&confirmed));
    replies.push((confirmed, "POST", "/auth/email/confirm".into()));
    let logout = server.json_auth("POST", "/auth/logout", &t4, &json!({}));
    assert_eq!(logout.status, 204, "{}", text(&logout));
    replies.push((logout, "POST", "/auth/logout".into()));
    let stored_hash: String = server
        .db
        .conn()
        .exec_first("SELECT password_hash FROM users WHERE id = ?", (user_id,))
        .unwrap()
        .unwrap();

    let log = sync_log(&server, &unique("sync"));
    let all = entries(&log);
    assert!(all.len() > replies.len(), "{log}");
    for line in &all {
        assert_log_shape(line);
    }
    // Lines outside requests carry "system".
    let listening = all.iter().find(|v| v["msg"] == "listening").unwrap();
    assert_eq!(listening["request_id"], "system");
    for (reply, method, path) in &replies {
        assert_request_line(&log, reply, method, path);
    }

    let mut secrets: Vec<(&str, String)> = vec![
        ("password 1", p1.into()),
        ("password 2", p2.into()),
        ("password 3", p3.into()),
        ("wrong guess", guess.into()),
        ("reset token", reset_token.clone()),
        ("email confirmation token", confirm_token.clone()),
        ("TOKEN_SECRET", TEST_SECRET.into()),
        ("stored hash", stored_hash.clone()),
    ];
    // The stored hash's salt and digest on their own, too.
    for part in stored_hash.rsplit('$').take(2) {
        secrets.push(("stored hash part", part.to_string()));
    }
    for token in &tokens {
        secrets.push(("bearer token", token.clone()));
        for part in token.split('.') {
            secrets.push(("bearer token part", part.to_string()));
        }
    }
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what} too short to search for");
        assert!(
            !log.contains(secret.as_str()),
            "the {what} appears in the log:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------
// LOG_LEVEL

/// Kills the process when dropped, like the harness's `Server`.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn log_level_warn_drops_request_lines_but_keeps_warnings_and_errors() {
    let db = TestDb::new();
    let proxy = Proxy::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", proxy.url(&db)),
        ("BIND_ADDR", addr.to_string()),
        ("TOKEN_SECRET", TEST_SECRET.into()),
        ("ARGON2_MEMORY_KIB", "256".into()),
        ("ARGON2_ITERATIONS", "1".into()),
        ("DB_CONNECT_RETRY_SECONDS", "5".into()),
        ("DB_TIMEOUT_MS", "2000".into()),
        ("RATE_LIMIT_BURST", "0".into()),
        ("LOG_LEVEL", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (child, log) = common::spawn(&env, &[], None);
    let _reaper = Reaper(child);
    let log = move || log.lock().unwrap().clone();

    let mut client = connect_when_up(addr, Duration::from_secs(30));
    let register = client.request(
        "POST",
        REGISTER,
        &[("Content-Type", "application/json")],
        &json!({"email": "erin@example.com", "password": GOOD}).to_string(),
    );
    assert_eq!(register.status, 201, "{}", text(&register));
    let login = client.request(
        "POST",
        LOGIN,
        &[("Content-Type", "application/json")],
        &json!({"email": "erin@example.com", "password": GOOD}).to_string(),
    );
    assert_eq!(login.status, 200, "{}", text(&login));
    let missing = client.request("GET", "/nope", &[], "");
    missing.assert_problem(404, "not_found");
    let healthy = client.request("GET", "/healthz", &[], "");
    assert_eq!(healthy.status, 200);
    let quiet = [&register, &login, &missing, &healthy].map(request_id);

    // The database goes away: an error, which must still be logged.
    proxy.set(ProxyMode::Down);
    let down = Client::connect(addr).request("GET", "/healthz", &[], "");
    down.assert_problem(503, "database_unavailable");
    let down_id = request_id(&down);

    // A framing error: a warning, logged last, so once it is in the log all
    // earlier lines are too.
    let mut framing = Client::connect(addr);
    framing.send(
        b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let rejected = framing.read_reply().expect("no reply to a framing error");
    rejected.assert_problem(400, "bad_request");
    let rejected_id = request_id(&rejected);
    let log = wait_for_log(log, &rejected_id);

    let all = entries(&log);
    for line in &all {
        assert_log_shape(line);
        assert!(
            line["level"] == "warn" || line["level"] == "error",
            "a line below warn was written: {line}"
        );
        assert_ne!(line["msg"], "request", "a request line was written: {line}");
    }
    for id in &quiet {
        assert!(
            !log.contains(id.as_str()),
            "request {id} was logged:\n{log}"
        );
    }
    let warning = all
        .iter()
        .find(|v| v["request_id"] == rejected_id.as_str())
        .unwrap();
    assert_eq!(warning["level"], "warn", "{warning}");
    assert_eq!(warning["status"], 400, "{warning}");
    assert!(
        all.iter()
            .any(|v| v["level"] == "error" && v["request_id"] == down_id.as_str()),
        "no error line for the request that found the database down:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// /metrics

#[test]
fn metrics_parse_and_move_exactly_with_traffic() {
    let server = Server::start();
    let before = metrics(&server);
    let req = |e: &Exposition, route: &str, status: &str| {
        e.value(
            "auth_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    let outcome = |e: &Exposition, outcome: &str| {
        e.value("auth_login_outcomes_total", &[("outcome", outcome)])
    };
    let login_durations = |e: &Exposition| {
        e.value(
            "auth_http_request_duration_seconds_count",
            &[("route", LOGIN)],
        )
    };

    register(&server, "frank@example.com", GOOD);
    let tokens: Vec<String> = (0..3)
        .map(|_| login(&server, "frank@example.com", GOOD))
        .collect();
    for _ in 0..2 {
        login_reply(&server, "frank@example.com", WRONG).assert_problem(401, "wrong_password");
    }
    login_reply(&server, "nobody@example.com", GOOD).assert_problem(404, "unknown_email");
    let random = unique("zq");
    for suffix in ["a", "b"] {
        server
            .get(&format!("/{random}/{suffix}"))
            .assert_problem(404, "not_found");
    }
    let session = format!("/auth/sessions/{}", hex(&session_id_of(&tokens[1])));
    let auth = format!("Bearer {}", tokens[0]);
    let deleted = server.request("DELETE", &session, &[("Authorization", &auth)], "");
    assert_eq!(deleted.status, 204, "{}", text(&deleted));
    let logout = server.json_auth("POST", "/auth/logout", &tokens[0], &json!({}));
    assert_eq!(logout.status, 204, "{}", text(&logout));

    let reply = server.get("/metrics");
    let after = exposition_of(&reply);
    let body = String::from_utf8_lossy(&reply.body);

    let delta = |f: &dyn Fn(&Exposition) -> f64| f(&after) - f(&before);
    assert_eq!(delta(&|e| req(e, LOGIN, "200")), 3.0, "{body}");
    assert_eq!(delta(&|e| req(e, LOGIN, "401")), 2.0, "{body}");
    assert_eq!(delta(&|e| req(e, LOGIN, "404")), 1.0, "{body}");
    assert_eq!(delta(&|e| req(e, REGISTER, "201")), 1.0, "{body}");
    assert_eq!(
        delta(&|e| req(e, "/auth/sessions/{id}", "204")),
        1.0,
        "{body}"
    );
    assert_eq!(delta(&|e| req(e, "/auth/logout", "204")), 1.0, "{body}");
    assert_eq!(delta(&|e| req(e, "unmatched", "404")), 2.0, "{body}");
    // The first scrape is counted once it is answered, this one not yet.
    assert_eq!(delta(&|e| req(e, "/metrics", "200")), 1.0, "{body}");
    assert_eq!(delta(&login_durations), 6.0, "{body}");
    assert_eq!(delta(&|e| outcome(e, "ok")), 3.0, "{body}");
    assert_eq!(delta(&|e| outcome(e, "wrong_password")), 2.0, "{body}");
    assert_eq!(delta(&|e| outcome(e, "unknown_email")), 1.0, "{body}");
    assert_eq!(
        delta(&|e| e.scalar("auth_sessions_created_total")),
        3.0,
        "{body}"
    );
    assert_eq!(
        delta(&|e| e.scalar("auth_sessions_ended_total")),
        2.0,
        "{body}"
    );
    // One hash at registration and one verification per login that got
    // as far as the password (3 right, 2 wrong); an unknown email may cost
    // one dummy verification, if the server equalises timing.
    let hashes = delta(&|e| e.scalar("auth_hash_duration_seconds_count"));
    assert!((6.0..=7.0).contains(&hashes), "{hashes} hashes\n{body}");
    assert!(
        after.scalar("auth_hash_duration_seconds_sum")
            > before.scalar("auth_hash_duration_seconds_sum")
    );
    // Idle now: nothing queued, nothing rejected, no connection checked out.
    assert_eq!(after.scalar("auth_hash_queue_depth"), 0.0, "{body}");
    assert_eq!(after.scalar("auth_hash_rejections_total"), 0.0, "{body}");
    assert_eq!(after.scalar("auth_db_connections_in_use"), 0.0, "{body}");

    // Paths never become labels: only route patterns and "unmatched".
    assert!(
        !body.contains(&random),
        "a raw path became a label:\n{body}"
    );
    let known: BTreeSet<&str> = [
        "/healthz",
        "/metrics",
        "/openapi.json",
        REGISTER,
        LOGIN,
        "/auth/password",
        "/auth/password/forgot",
        "/auth/password/reset",
        ME,
        "/auth/logout",
        "/auth/logout-all",
        "/auth/sessions",
        "/auth/sessions/{id}",
        "unmatched",
    ]
    .into_iter()
    .collect();
    for family in [
        "auth_http_requests_total",
        "auth_http_request_duration_seconds_count",
    ] {
        for route in after.label_values(family, "route") {
            assert!(
                known.contains(route.as_str()),
                "route label {route:?}\n{body}"
            );
        }
    }
    for status in after.label_values("auth_http_requests_total", "status") {
        assert!(
            status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()),
            "status label {status:?}"
        );
    }
    // More random paths add no series.
    let series = after.samples.len();
    for n in 0..5 {
        server.get(&format!("/{}/{n}", unique("other")));
    }
    let later = metrics(&server);
    assert_eq!(
        req(&later, "unmatched", "404") - req(&after, "unmatched", "404"),
        5.0
    );
    assert_eq!(later.samples.len(), series, "new series appeared");
}

#[test]
fn metrics_bind_addr_serves_metrics_there_and_only_there() {
    let port = free_port();
    let metrics_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = Server::builder()
        .env("METRICS_BIND_ADDR", &metrics_addr.to_string())
        .start();

    server.get("/metrics").assert_problem(404, "not_found");
    register(&server, "gina@example.com", GOOD);

    let mut client = connect_when_up(metrics_addr, Duration::from_secs(5));
    let reply = client.request("GET", "/metrics", &[], "");
    let exposition = exposition_of(&reply);
    // The same counters as the API's: the registration just made is there.
    assert_eq!(
        exposition.value(
            "auth_http_requests_total",
            &[("route", REGISTER), ("status", "201")]
        ),
        1.0
    );
    assert_eq!(
        exposition.value(
            "auth_http_requests_total",
            &[("route", "/metrics"), ("status", "404")]
        ),
        1.0
    );
    // Nothing else is served on the metrics address.
    for path in ["/healthz", "/auth/me", "/metrics/", "/", "/openapi.json"] {
        Client::connect(metrics_addr)
            .request("GET", path, &[], "")
            .assert_problem(404, "not_found");
    }
    let login = Client::connect(metrics_addr).request(
        "POST",
        LOGIN,
        &[("Content-Type", "application/json")],
        &json!({"email": "gina@example.com", "password": GOOD}).to_string(),
    );
    login.assert_problem(404, "not_found");
    // A second scrape on the same connection works.
    exposition_of(&client.request("GET", "/metrics", &[], ""));
}

// ---------------------------------------------------------------------------
// CORS

const ALLOWED: &str = "https://app.example.com";
const ALLOWED_LOCAL: &str = "http://localhost:3000";

/// The preflight a browser sends before `method` on `path` from `origin`.
fn preflight(server: &Server, path: &str, origin: &str, method: &str) -> Reply {
    server.request(
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type, x-request-id",
            ),
        ],
        "",
    )
}

#[track_caller]
fn assert_varies_on_origin(reply: &Reply) {
    assert!(
        header_items(reply, "vary")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("origin")),
        "no Vary: Origin on {} {:?}",
        reply.status,
        reply.headers
    );
}

#[track_caller]
fn assert_no_wildcard(reply: &Reply) {
    for value in header_values(reply, "access-control-allow-origin") {
        assert_ne!(value.trim(), "*", "{:?}", reply.headers);
    }
}

#[track_caller]
fn assert_allows(reply: &Reply, origin: &str) {
    assert_eq!(
        header_values(reply, "access-control-allow-origin"),
        [origin],
        "{} {:?}",
        reply.status,
        reply.headers
    );
    assert_varies_on_origin(reply);
}

#[track_caller]
fn assert_denies(reply: &Reply) {
    assert!(
        header_values(reply, "access-control-allow-origin").is_empty(),
        "ACAO sent to a disallowed origin: {:?}",
        reply.headers
    );
    assert!(
        header_values(reply, "access-control-allow-methods").is_empty(),
        "methods offered to a disallowed origin: {:?}",
        reply.headers
    );
    assert_varies_on_origin(reply);
}

#[test]
fn cors_answers_preflights_and_marks_responses_for_allowed_origins_only() {
    let server = Server::builder()
        .env(
            "CORS_ALLOWED_ORIGINS",
            &format!("{ALLOWED},{ALLOWED_LOCAL}"),
        )
        .start();
    let mut all = Vec::new();

    let session = "/auth/sessions/00112233445566778899aabbccddeeff";
    for (path, method, methods) in [
        (LOGIN, "POST", vec!["POST"]),
        (REGISTER, "POST", vec!["POST"]),
        (ME, "PATCH", vec!["GET", "HEAD", "PATCH", "DELETE"]),
        ("/auth/sessions", "GET", vec!["GET", "HEAD"]),
        (session, "DELETE", vec!["DELETE"]),
    ] {
        for origin in [ALLOWED, ALLOWED_LOCAL] {
            let reply = preflight(&server, path, origin, method);
            assert_eq!(reply.status, 204, "{path} {origin}: {}", text(&reply));
            assert_allows(&reply, origin);
            let offered: BTreeSet<String> = header_items(&reply, "access-control-allow-methods")
                .into_iter()
                .collect();
            let expected: BTreeSet<String> = methods.iter().map(|m| m.to_string()).collect();
            assert_eq!(offered, expected, "{path}");
            let headers: BTreeSet<String> = header_items(&reply, "access-control-allow-headers")
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect();
            for needed in ["authorization", "content-type", "x-request-id"] {
                assert!(headers.contains(needed), "{path}: {headers:?}");
            }
            all.push(reply);
        }
        // Other origins get no permission, however close they look.
        for origin in [
            "https://evil.example.com",
            "http://app.example.com",
            "https://app.example.com.evil.com",
            "https://sub.app.example.com",
            "http://localhost:3001",
            "null",
        ] {
            let reply = preflight(&server, path, origin, method);
            assert_denies(&reply);
            all.push(reply);
        }
    }

    // Ordinary responses, successes and errors alike.
    let healthy = server.request("GET", "/healthz", &[("Origin", ALLOWED)], "");
    assert_eq!(healthy.status, 200);
    assert_allows(&healthy, ALLOWED);
    let login = server.request(
        "POST",
        LOGIN,
        &[
            ("Origin", ALLOWED_LOCAL),
            ("Content-Type", "application/json"),
        ],
        &json!({"email": "nobody@example.com", "password": GOOD}).to_string(),
    );
    login.assert_problem(404, "unknown_email");
    assert_allows(&login, ALLOWED_LOCAL);
    let me = server.request("GET", ME, &[("Origin", ALLOWED)], "");
    me.assert_problem(401, "missing_token");
    assert_allows(&me, ALLOWED);
    let missing = server.request("GET", "/nope", &[("Origin", ALLOWED)], "");
    missing.assert_problem(404, "not_found");
    assert_allows(&missing, ALLOWED);
    // The id and the retry hints are readable by the page.
    let exposed: BTreeSet<String> = header_items(&me, "access-control-expose-headers")
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    assert!(exposed.contains("x-request-id"), "{exposed:?}");
    all.extend([healthy, login, me, missing]);

    let evil = server.request(
        "GET",
        "/healthz",
        &[("Origin", "https://evil.example.com")],
        "",
    );
    assert_eq!(evil.status, 200);
    assert_denies(&evil);
    let plain = server.get("/healthz");
    assert_eq!(plain.status, 200);
    assert_denies(&plain);
    all.extend([evil, plain]);

    for reply in &all {
        assert_no_wildcard(reply);
    }
}

#[test]
fn without_cors_origins_no_cors_header_is_sent_and_options_is_not_allowed() {
    let server = Server::start();
    let preflighted = preflight(&server, LOGIN, ALLOWED, "POST");
    preflighted.assert_problem(405, "method_not_allowed");
    assert_eq!(preflighted.header("allow"), Some("POST"));
    let replies = [
        preflighted,
        preflight(&server, ME, ALLOWED_LOCAL, "GET"),
        server.request("GET", "/healthz", &[("Origin", ALLOWED)], ""),
        server.request("GET", ME, &[("Origin", ALLOWED)], ""),
        server.request("GET", "/nope", &[("Origin", ALLOWED)], ""),
    ];
    for reply in &replies {
        for (name, value) in &reply.headers {
            assert!(
                !name.starts_with("access-control-"),
                "{name}: {value} on {}",
                text(reply)
            );
            assert!(
                !(name == "vary" && value.to_ascii_lowercase().contains("origin")),
                "Vary: {value} without CORS"
            );
        }
    }
    assert_eq!(replies[1].status, 405);
}

// ---------------------------------------------------------------------------
// Graceful shutdown

/// What became of one login sent during the shutdown burst.
#[derive(Debug)]
enum Outcome {
    /// The connection was refused or reset before the request was fully
    /// sent: it never started.
    NotSent(String),
    /// Fully sent, then reset without a byte of response: refused unread.
    ResetUnanswered,
    /// A complete response.
    Answered {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        at: Instant,
    },
    /// Fully sent, then EOF, a partial response or silence: the server took
    /// the request and dropped it. Never acceptable.
    Lost(String),
}

/// Sends one login on `stream` and reads what comes back, without panicking:
/// every ending is an outcome.
fn login_outcome(mut stream: TcpStream, body: &str, id: &str) -> Outcome {
    let request = format!(
        "POST {LOGIN} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         X-Request-Id: {id}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return Outcome::NotSent(format!("write: {e}"));
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = parsed.parse(&buf) {
            let headers: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= head_len + length {
                return Outcome::Answered {
                    status: parsed.code.unwrap_or(0),
                    body: buf[head_len..head_len + length].to_vec(),
                    headers,
                    at: Instant::now(),
                };
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Outcome::Lost("EOF without a response".into()),
            Ok(0) => return Outcome::Lost(format!("EOF mid-response after {} bytes", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && buf.is_empty() => {
                return Outcome::ResetUnanswered;
            }
            Err(e) => return Outcome::Lost(format!("{e} after {} bytes", buf.len())),
        }
    }
}

#[test]
fn sigterm_during_a_burst_of_logins_finishes_or_refuses_each_and_loses_none() {
    const LOGINS: usize = 16;
    const HASH_CONCURRENCY: usize = 2;
    let mut server = Server::builder()
        .env("ARGON2_MEMORY_KIB", "8192")
        .env("ARGON2_ITERATIONS", "3")
        .env("HASH_CONCURRENCY", &HASH_CONCURRENCY.to_string())
        .start();
    // Two accounts, since logins to one account take turns: two can hash
    // at once. Registered in parallel to save a hash's time.
    let emails = ["hank@example.com", "iris@example.com"];
    std::thread::scope(|s| {
        for email in emails {
            let server = &server;
            s.spawn(move || register(server, email, GOOD));
        }
    });
    let started = Instant::now();
    login(&server, emails[0], GOOD);
    let one_login = started.elapsed();
    assert!(
        one_login >= Duration::from_millis(50),
        "a login takes only {one_login:?}; the burst would end before the signal"
    );

    let barrier = Arc::new(Barrier::new(LOGINS + 1));
    let addr = server.addr;
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..LOGINS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let outcomes = Arc::clone(&outcomes);
            let body = json!({"email": emails[i % 2], "password": GOOD}).to_string();
            std::thread::spawn(move || {
                let stream = TcpStream::connect(addr);
                barrier.wait();
                let id = format!("burst-{i}");
                let outcome = match stream {
                    Ok(stream) => login_outcome(stream, &body, &id),
                    Err(e) => Outcome::NotSent(format!("connect: {e}")),
                };
                outcomes.lock().unwrap().push((id, outcome));
            })
        })
        .collect();
    barrier.wait();
    // Wait until every login is inside the server: all but the hashing ones
    // queue for a slot. Give up waiting (and signal anyway) well before the
    // queue timeout would start turning them away.
    let burst = Instant::now();
    let mut depth = 0.0;
    while burst.elapsed() < Duration::from_millis(1500) {
        depth = metrics(&server).scalar("auth_hash_queue_depth");
        if depth >= (LOGINS - HASH_CONCURRENCY) as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(depth > 0.0, "no login was queued by the time of the signal");
    let signalled = Instant::now();
    signal(&server, "-TERM");
    // `kill` has returned, so the signal is delivered; the server's signal
    // thread flips to shutting down a moment later.
    let delivered = Instant::now();
    let status = wait_for_exit(&mut server.process, Duration::from_secs(12))
        .expect("the server did not exit within SHUTDOWN_GRACE_SECONDS + 2 s");
    let exited = signalled.elapsed();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        TcpStream::connect(addr).is_err(),
        "a connection was accepted after exit"
    );

    let outcomes = outcomes.lock().unwrap();
    let mut conn = server.db.conn();
    let mut ok_after_signal = 0;
    let mut tokens = 0;
    let mut overloaded = 0;
    let mut refused = Vec::new();
    assert_eq!(outcomes.len(), LOGINS);
    for (id, outcome) in outcomes.iter() {
        match outcome {
            Outcome::NotSent(why) => refused.push(why.clone()),
            Outcome::ResetUnanswered => refused.push("reset unanswered".to_string()),
            Outcome::Answered {
                status: 200,
                body,
                at,
                headers,
            } => {
                let reply: Value = serde_json::from_slice(body).unwrap();
                let token = reply["token"].as_str().expect("200 without a token");
                let rows: u64 = conn
                    .exec_first(
                        "SELECT COUNT(*) FROM sessions WHERE id = ?",
                        (session_id_of(token),),
                    )
                    .unwrap()
                    .unwrap();
                assert_eq!(rows, 1, "{id}: the token's session was not stored");
                tokens += 1;
                if *at > signalled {
                    ok_after_signal += 1;
                }
                // Answered well after the signal: the server is closing, so
                // it says so rather than keep the connection.
                if *at > delivered + Duration::from_millis(500) {
                    assert!(
                        headers
                            .iter()
                            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close")),
                        "{id}: answered during shutdown without Connection: close: {headers:?}"
                    );
                }
            }
            Outcome::Answered {
                status: 503,
                body,
                headers,
                ..
            } => {
                let problem: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(problem["code"], "overloaded", "{id}: {problem}");
                assert!(
                    headers.iter().any(|(n, _)| n == "retry-after"),
                    "{id}: 503 without Retry-After"
                );
                overloaded += 1;
            }
            Outcome::Answered { status, body, .. } => panic!(
                "{id}: unexpected {status} {}",
                String::from_utf8_lossy(body)
            ),
            Outcome::Lost(how) => panic!(
                "{id}: request fully sent, then {how} (signal {:?} after the burst); all: {outcomes:#?}",
                signalled - burst
            ),
        }
    }
    // Every session the burst created belongs to a login that got its token
    // (plus the measuring login's).
    let sessions: u64 = conn
        .query_first("SELECT COUNT(*) FROM sessions")
        .unwrap()
        .unwrap();
    assert_eq!(
        sessions,
        tokens + 1,
        "sessions without a token: {outcomes:#?}"
    );
    assert!(
        ok_after_signal > 0,
        "no login finished after the signal (one login takes {one_login:?}), so the \
         drain was not exercised: {outcomes:#?}"
    );
    let log = final_log(&server, "shut down");
    assert!(
        !log.contains("grace period over"),
        "the drain ran out of time after {exited:?}"
    );
    eprintln!(
        "one login {one_login:?}; signal {:?} into the burst at queue depth {depth}; \
         {tokens} tokens ({ok_after_signal} after the signal), {overloaded} overloaded, \
         refused {refused:?}; exit {exited:?} after the signal",
        signalled - burst
    );
}

#[test]
fn sigterm_with_an_idle_keep_alive_connection_exits_at_once() {
    let mut server = Server::start();
    let mut idle = server.connect();
    let reply = idle.request("GET", "/healthz", &[], "");
    assert_eq!(reply.status, 200);
    assert_ne!(reply.header("connection"), Some("close"));

    let signalled = Instant::now();
    signal(&server, "-TERM");
    let status = wait_for_exit(&mut server.process, Duration::from_secs(2))
        .expect("the server did not exit within 2 s of SIGTERM with an idle connection");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(2));
    assert!(
        idle.closed_within(Duration::from_secs(1)),
        "the idle connection was left open"
    );
    assert!(TcpStream::connect(server.addr).is_err());
    let log = final_log(&server, "shut down");
    let lines = entries(&log);
    let received = lines
        .iter()
        .find(|v| v["msg"] == "signal received; shutting down")
        .expect("no signal line");
    assert_eq!(received["signal"], 15, "{received}");
    for line in lines.iter().filter(|v| v["msg"] == "shut down") {
        assert_eq!(line["request_id"], "system", "{line}");
    }
}

#[test]
fn a_half_sent_request_is_refused_with_503_at_shutdown() {
    let mut server = Server::start();
    let mut slow = server.connect();
    // Half a head: the request has not started, so the shutdown refuses it.
    slow.send(b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: appl");
    std::thread::sleep(Duration::from_millis(200));
    signal(&server, "-TERM");
    let reply = slow
        .read_reply()
        .expect("the half-sent request got no answer at shutdown");
    reply.assert_problem(503, "overloaded");
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(reply.json()["request_id"], request_id(&reply).as_str());
    let status = wait_for_exit(&mut server.process, Duration::from_secs(2))
        .expect("the server did not exit within 2 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    // Nothing of the half request was acted on.
    let sessions: u64 = server
        .db
        .conn()
        .query_first("SELECT COUNT(*) FROM sessions")
        .unwrap()
        .unwrap();
    assert_eq!(sessions, 0);
}

#[test]
fn sigint_shuts_down_gracefully_too() {
    let mut server = Server::start();
    assert_eq!(server.get("/healthz").status, 200);
    signal(&server, "-INT");
    let status = wait_for_exit(&mut server.process, Duration::from_secs(2))
        .expect("the server did not exit within 2 s of SIGINT");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let log = final_log(&server, "shut down");
    assert!(
        entries(&log)
            .iter()
            .any(|v| v["msg"] == "signal received; shutting down" && v["signal"] == 2),
        "{log}"
    );
}

/// Freezes the database behind `proxy` and returns a client whose
/// `/healthz` is inside its handler, waiting on it (for `DB_TIMEOUT_MS`).
/// Requests that fail fast first, on pooled connections the cut closed
/// (one, or two when the start-up purge ran beside the first request), are
/// skipped: the stuck one is the one still unanswered after a while.
fn stuck_on_frozen_database(server: &Server, proxy: &Proxy) -> Client {
    proxy.set(ProxyMode::Blackhole);
    for _ in 0..4 {
        let mut client = server.connect();
        client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        // A timeout means no byte of an answer (nor a close) arrived.
        let answered = match client.stream.peek(&mut [0]) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        if !answered {
            return client;
        }
    }
    panic!("no request got stuck on the frozen database");
}

#[test]
fn a_request_stuck_past_the_grace_period_does_not_hold_the_exit() {
    let proxy = Proxy::start();
    let mut server = Server::builder()
        .through(&proxy)
        .env("DB_TIMEOUT_MS", "5000")
        .env("SHUTDOWN_GRACE_SECONDS", "1")
        .start();
    assert_eq!(server.get("/healthz").status, 200);
    let _stuck = stuck_on_frozen_database(&server, &proxy);

    let signalled = Instant::now();
    signal(&server, "-TERM");
    let status = wait_for_exit(&mut server.process, Duration::from_secs(4))
        .expect("the server did not exit within 4 s with a 1 s grace period");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        took >= Duration::from_millis(900),
        "exited after {took:?}, before the 1 s grace was over"
    );
    assert!(took < Duration::from_millis(2500), "exited after {took:?}");
    let log = final_log(
        &server,
        "grace period over; exiting with requests in flight",
    );
    assert!(log.contains("grace period over"), "{log}");
}

#[test]
fn a_second_signal_exits_at_once_with_status_1() {
    let proxy = Proxy::start();
    let mut server = Server::builder()
        .through(&proxy)
        .env("DB_TIMEOUT_MS", "8000")
        .env("SHUTDOWN_GRACE_SECONDS", "30")
        .start();
    assert_eq!(server.get("/healthz").status, 200);
    // Keep a request inside a handler, so the first signal has to wait.
    let _stuck = stuck_on_frozen_database(&server, &proxy);

    signal(&server, "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(server.process.try_wait(), Ok(None)),
        "the first signal should wait for the request in flight"
    );
    let second = Instant::now();
    signal(&server, "-TERM");
    let status = wait_for_exit(&mut server.process, Duration::from_secs(3))
        .expect("the second signal did not end the process within 3 s");
    assert_eq!(status.code(), Some(1), "exit status {status:?}");
    assert!(second.elapsed() < Duration::from_secs(2));
}
