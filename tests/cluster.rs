//! Several instances on a real 3-node MariaDB Galera cluster (issue 14),
//! the cluster started by `common::galera`. Instances are spread over the
//! nodes on purpose (instance `i` on node `i`), so certification conflicts,
//! replication lag and node loss all meet the server:
//!
//! - start-up: three instances at once on an empty database all come up,
//!   20 rounds in a row;
//! - consistency, each step on another instance with no pause: register
//!   then login, logout then `/auth/me`, a password change then the old
//!   token, forgot then reset;
//! - the lockout: 30 parallel wrong passwords over three nodes verify at most
//!   `LOCKOUT_THRESHOLD`, the rest 429, in 20 bursts;
//! - uniqueness: 20 parallel registrations of one email over three nodes,
//!   one 201 and the rest 409, in 20 rounds;
//! - two couriers on different nodes deliver each queued message once.
//!
//! Node loss and a node cut off from the cluster are in `cluster/faults.rs`;
//! parallel refreshes of one token over three nodes in `cluster/refresh.rs`;
//! two admins on two nodes demoting each other in `cluster/admin.rs`; one
//! second-factor code raced over three nodes in `cluster/mfa.rs`.
//!
//! Each test counts every outcome and asserts on the whole tally, so a
//! failure says how often and how it went wrong, not only that it did.

#[path = "cluster/admin.rs"]
mod admin;
mod common;
#[path = "cluster/faults.rs"]
mod faults;
#[path = "cluster/mfa.rs"]
mod mfa;
#[path = "cluster/refresh.rs"]
mod refresh;

use common::galera::{self, Cluster, GaleraDb, NODES};
use common::smtp::{Options, SmtpServer};
use common::{Client, Reply, Server, register};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

const GOOD: &str = "correct horse battery staple";
const WRONG: &str = "incorrect horse battery staple";
const NEW: &str = "a different long passphrase";
/// The lockout's threshold, set explicitly on every instance.
const THRESHOLD: u32 = 5;

/// Three instances on `db`, instance `i` attached to node `i` only. They
/// start one after the other, so the first applies the migrations alone
/// (start-up races have their own test).
fn instances(db: &GaleraDb) -> Vec<Server> {
    (0..NODES)
        .map(|i| {
            Server::builder()
                .galera(db, &[i])
                .env("LOCKOUT_THRESHOLD", &THRESHOLD.to_string())
                .start()
        })
        .collect()
}

/// Sends one request on a new connection; `None` if no reply came within
/// the client's 10 s (never a panic, so load threads keep counting).
fn send(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Option<Reply> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let text = body.map(Value::to_string).unwrap_or_default();
    let mut client = Client::connect(server.addr);
    client.send_request(method, path, &headers, &text);
    client.read_reply()
}

/// A reply as a tally key: `200`, or `401 token_revoked`, or `no reply`.
fn outcome(reply: &Option<Reply>) -> String {
    match reply {
        None => "no reply".to_string(),
        Some(r) if r.status < 300 => r.status.to_string(),
        Some(r) => {
            let code = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&r.body).chars().take(80).collect());
            format!("{} {code}", r.status)
        }
    }
}

fn login_outcome(server: &Server, email: &str, password: &str) -> (String, Option<String>) {
    let reply = send(
        server,
        "POST",
        "/auth/login",
        None,
        Some(&json!({"email": email, "password": password})),
    );
    let token = reply
        .as_ref()
        .filter(|r| r.status == 200)
        .and_then(|r| r.json()["token"].as_str().map(str::to_string));
    (outcome(&reply), token)
}

fn register_outcome(server: &Server, email: &str) -> String {
    outcome(&send(
        server,
        "POST",
        "/auth/register",
        None,
        Some(&json!({"email": email, "password": GOOD})),
    ))
}

fn me(server: &Server, token: &str) -> String {
    outcome(&send(server, "GET", "/auth/me", Some(token), None))
}

fn tally<I: IntoIterator<Item = String>>(outcomes: I) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for o in outcomes {
        *counts.entry(o).or_insert(0) += 1;
    }
    counts
}

/// The tally that says every outcome was as listed.
fn expect(outcomes: &[(&str, usize)]) -> BTreeMap<String, usize> {
    outcomes.iter().map(|(o, n)| (o.to_string(), *n)).collect()
}

/// Runs `work(k)` for every `k` in `0..n` on three threads (thread `t` takes
/// `k = t, t + 3, ...`, each step right after the previous), and tallies
/// the outcomes it returns.
fn spread(n: usize, work: impl Fn(usize) -> Vec<String> + Sync) -> BTreeMap<String, usize> {
    let work = &work;
    let all: Vec<String> = thread::scope(|s| {
        let threads: Vec<_> = (0..NODES)
            .map(|t| s.spawn(move || (t..n).step_by(NODES).flat_map(work).collect::<Vec<_>>()))
            .collect();
        threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    tally(all)
}

/// The sum over `servers` of the metric sample whose line starts with
/// `sample` (name and labels), 0 where there is none.
fn metric_sum(servers: &[Server], sample: &str) -> f64 {
    servers
        .iter()
        .map(|s| {
            let text = String::from_utf8(s.get("/metrics").body).unwrap();
            text.lines()
                .filter_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
                .map(|v| v.trim().parse::<f64>().unwrap())
                .sum::<f64>()
        })
        .sum()
}

/// Waits (up to 10 s) until every node has applied the account `email`
/// (plain reads, no causal wait), so a test that is not about replication
/// lag does not meet it.
fn wait_applied(cluster: &Cluster, db: &GaleraDb, email: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..NODES {
        let mut conn = cluster.conn(i);
        loop {
            let n: u64 = conn
                .exec_first(
                    format!("SELECT COUNT(*) FROM `{}`.users WHERE email = ?", db.name),
                    (email,),
                )
                .unwrap()
                .unwrap();
            if n == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} did not apply {email} within 10 s"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The token in a reset mail's `?token=` link.
fn reset_token(body: &str) -> String {
    let start = body
        .find("?token=")
        .unwrap_or_else(|| panic!("no ?token= in {body:?}"))
        + "?token=".len();
    body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

fn payload(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn three_instances_started_at_once_on_an_empty_database_all_come_up_20_times() {
    let cluster = galera::shared();
    println!("the cluster started in {:?}", cluster.started_in);
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count() as u64;
    let started = Instant::now();
    for round in 1..=20 {
        let db = GaleraDb::new(&cluster);
        let results: Vec<thread::Result<Server>> = thread::scope(|s| {
            let threads: Vec<_> = (0..NODES)
                .map(|i| {
                    s.spawn({
                        let db = &db;
                        move || Server::builder().galera(db, &[i]).start()
                    })
                })
                .collect();
            threads.into_iter().map(|h| h.join()).collect()
        });
        let mut servers = Vec::new();
        let mut failures = Vec::new();
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(server) => servers.push(server),
                Err(e) => failures.push(format!("instance {i}: {}", payload(e))),
            }
        }
        assert!(
            failures.is_empty(),
            "round {round}: {} of {NODES} instances did not come up:\n{}",
            failures.len(),
            failures.join("\n")
        );
        for (i, server) in servers.iter().enumerate() {
            let health = server.get("/healthz");
            assert_eq!(
                health.status,
                200,
                "round {round}, instance {i}: {}",
                health.text()
            );
        }
        let applied: u64 = db
            .conn(0)
            .query_first("SELECT COUNT(*) FROM schema_migrations")
            .unwrap()
            .unwrap();
        assert_eq!(applied, migrations, "round {round}: schema_migrations");
    }
    println!(
        "20 rounds of three simultaneous start-ups took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_login_on_another_instance_finds_the_account_registered_just_before() {
    let cluster = galera::shared();
    let db = GaleraDb::new(&cluster);
    let servers = instances(&db);
    let counts = spread(200, |k| {
        let email = format!("user{k}@example.com");
        let registered = register_outcome(&servers[k % NODES], &email);
        if registered != "201" {
            return vec![format!("register: {registered}")];
        }
        vec![login_outcome(&servers[(k + 1) % NODES], &email, GOOD).0]
    });
    println!("login on the next instance right after register: {counts:?}");
    assert_eq!(counts, expect(&[("200", 200)]));
}

#[test]
fn a_logout_is_seen_at_once_by_every_other_instance() {
    let cluster = galera::shared();
    let db = GaleraDb::new(&cluster);
    let servers = instances(&db);
    for t in 0..NODES {
        register(&servers[0], &format!("owner{t}@example.com"), GOOD);
        wait_applied(&cluster, &db, &format!("owner{t}@example.com"));
    }
    // Thread t logs in and out on instance t, then asks the other two in
    // turn about the ended session.
    let counts = spread(400, |k| {
        let home = k % NODES;
        let email = format!("owner{home}@example.com");
        let (logged_in, token) = login_outcome(&servers[home], &email, GOOD);
        let Some(token) = token else {
            return vec![format!("login: {logged_in}")];
        };
        let out = outcome(&send(
            &servers[home],
            "POST",
            "/auth/logout",
            Some(&token),
            None,
        ));
        if out != "204" {
            return vec![format!("logout: {out}")];
        }
        let elsewhere = (home + 1 + (k / NODES) % 2) % NODES;
        vec![me(&servers[elsewhere], &token)]
    });
    println!("/auth/me on another instance right after logout: {counts:?}");
    assert_eq!(counts, expect(&[("401 token_revoked", 400)]));
}

#[test]
fn an_old_token_fails_on_every_instance_right_after_a_password_change() {
    let cluster = galera::shared();
    let db = GaleraDb::new(&cluster);
    let servers = instances(&db);
    for (t, server) in servers.iter().enumerate() {
        register(server, &format!("changer{t}@example.com"), GOOD);
    }
    // Thread t changes its account's password back and forth on instance t
    // and tries the token of the session that ended on the other two.
    let counts = spread(120, |k| {
        let home = k % NODES;
        let email = format!("changer{home}@example.com");
        let (current, next) = if (k / NODES) % 2 == 0 {
            (GOOD, NEW)
        } else {
            (NEW, GOOD)
        };
        let (logged_in, token) = login_outcome(&servers[home], &email, current);
        let Some(token) = token else {
            return vec![format!("login: {logged_in}")];
        };
        let body = json!({"email": email, "current_password": current, "new_password": next});
        let changed = outcome(&send(
            &servers[home],
            "POST",
            "/auth/password",
            None,
            Some(&body),
        ));
        if changed != "204" {
            return vec![format!("change: {changed}")];
        }
        (1..NODES)
            .map(|d| me(&servers[(home + d) % NODES], &token))
            .collect()
    });
    println!("the old token on the other instances right after a password change: {counts:?}");
    assert_eq!(counts, expect(&[("401 token_revoked", 240)]));
}

#[test]
fn a_reset_link_mailed_through_one_instance_works_at_once_on_the_others() {
    let cluster = galera::shared();
    let db = GaleraDb::new(&cluster);
    let servers = instances(&db);
    // Each account asks once: a second request would meet the cooldown.
    let counts = spread(15, |k| {
        let (asked, reset_on, login_on) = (k % NODES, (k + 1) % NODES, (k + 2) % NODES);
        let email = format!("forgetful{k}@example.com");
        register(&servers[asked], &email, GOOD);
        wait_applied(&cluster, &db, &email);
        let forgot = outcome(&send(
            &servers[asked],
            "POST",
            "/auth/password/forgot",
            None,
            Some(&json!({"email": email})),
        ));
        if forgot != "202" {
            return vec![format!("forgot: {forgot}")];
        }
        let token = reset_token(&db.wait_for_mail(&email));
        let body = json!({"token": token, "new_password": NEW});
        let reset = outcome(&send(
            &servers[reset_on],
            "POST",
            "/auth/password/reset",
            None,
            Some(&body),
        ));
        vec![
            format!("reset: {reset}"),
            format!(
                "new password elsewhere: {}",
                login_outcome(&servers[login_on], &email, NEW).0
            ),
            format!(
                "old password elsewhere: {}",
                login_outcome(&servers[login_on], &email, GOOD).0
            ),
        ]
    });
    println!("forgot, then reset and logins on other instances: {counts:?}");
    let expected = expect(&[
        ("reset: 204", 15),
        ("new password elsewhere: 200", 15),
        ("old password elsewhere: 401 wrong_password", 15),
    ]);
    assert_eq!(counts, expected);
}

#[test]
fn thirty_parallel_wrong_passwords_over_three_nodes_verify_at_most_the_threshold() {
    let cluster = galera::shared();
    let db = GaleraDb::new(&cluster);
    let servers = instances(&db);
    let mut bursts = Vec::new();
    for burst in 0..20 {
        let email = format!("target{burst}@example.com");
        register(&servers[burst % NODES], &email, GOOD);
        wait_applied(&cluster, &db, &email);
        let hashes = "auth_hash_duration_seconds_count";
        let before = metric_sum(&servers, hashes);
        let gate = Barrier::new(30);
        let answers: Vec<String> = thread::scope(|s| {
            let threads: Vec<_> = (0..30)
                .map(|n| {
                    let (server, email, gate) = (&servers[n % NODES], &email, &gate);
                    s.spawn(move || {
                        gate.wait();
                        login_outcome(server, email, WRONG).0
                    })
                })
                .collect();
            threads.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let verified = metric_sum(&servers, hashes) - before;
        let counts = tally(answers);
        let wrong = counts.get("401 wrong_password").copied().unwrap_or(0);
        let locked = counts.get("429 too_many_attempts").copied().unwrap_or(0);
        let ok =
            verified <= f64::from(THRESHOLD) && wrong as u32 <= THRESHOLD && wrong + locked == 30;
        bursts.push((
            ok,
            format!("burst {burst}: {verified} verified, {counts:?}"),
        ));
    }
    let report: Vec<&str> = bursts.iter().map(|(_, line)| line.as_str()).collect();
    println!("{}", report.join("\n"));
    let good = bursts.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(
        good,
        20,
        "bursts within the threshold, all 401 or 429:\n{}",
        report.join("\n")
    );
}

#[test]
fn twenty_parallel_registrations_of_one_email_over_three_nodes_make_one_account() {
    let cluster = galera::shared();
    let db = GaleraDb::new(&cluster);
    let servers = instances(&db);
    let mut rounds = Vec::new();
    for round in 0..20 {
        let email = format!("contested{round}@example.com");
        let gate = Barrier::new(20);
        let answers: Vec<String> = thread::scope(|s| {
            let threads: Vec<_> = (0..20)
                .map(|n| {
                    let (server, email, gate) = (&servers[n % NODES], &email, &gate);
                    s.spawn(move || {
                        gate.wait();
                        register_outcome(server, email)
                    })
                })
                .collect();
            threads.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let rows: Vec<u64> = (0..NODES)
            .map(|i| {
                db.conn(i)
                    .exec_first("SELECT COUNT(*) FROM users WHERE email = ?", (&email,))
                    .unwrap()
                    .unwrap()
            })
            .collect();
        let counts = tally(answers);
        let ok = counts == expect(&[("201", 1), ("409 email_taken", 19)]) && rows == [1; NODES];
        rounds.push((
            ok,
            format!("round {round}: {counts:?}, rows per node {rows:?}"),
        ));
    }
    let report: Vec<&str> = rounds.iter().map(|(_, line)| line.as_str()).collect();
    println!("{}", report.join("\n"));
    let good = rounds.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(
        good,
        20,
        "rounds with one 201, 19 409 and one row:\n{}",
        report.join("\n")
    );
}

#[test]
fn two_couriers_on_different_nodes_deliver_each_queued_message_once() {
    let cluster = galera::shared();
    let db = GaleraDb::new(&cluster);
    let smtp = SmtpServer::start(Options::default());
    let couriers: Vec<Server> = (0..2)
        .map(|i| {
            Server::builder()
                .galera(&db, &[i])
                .mail_to(&smtp)
                .env("MAIL_POLL_MS", "100")
                .start()
        })
        .collect();
    let emails: Vec<String> = (0..30).map(|n| format!("reader{n}@example.com")).collect();
    for (n, email) in emails.iter().enumerate() {
        register(&couriers[n % 2], email, GOOD);
    }
    for email in &emails {
        wait_applied(&cluster, &db, email);
    }
    for (n, email) in emails.iter().enumerate() {
        let forgot = outcome(&send(
            &couriers[n % 2],
            "POST",
            "/auth/password/forgot",
            None,
            Some(&json!({"email": email})),
        ));
        assert_eq!(forgot, "202", "forgot {email}");
    }
    // A verification mail and a reset mail for each.
    smtp.wait_for(2 * emails.len(), Duration::from_secs(30));
    // Give a duplicate every chance to arrive: many poll intervals.
    thread::sleep(Duration::from_secs(3));
    // Reset mails only: each registration also sent a verification mail.
    let resets: Vec<_> = smtp
        .received()
        .into_iter()
        .filter(|m| m.text.contains("/reset-password"))
        .collect();
    let received = tally(resets.iter().flat_map(|m| m.rcpt_tos.clone()));
    // Should one arrive twice: the same Message-ID means one outbox row
    // sent twice, two ids two rows; and what each courier logged of it.
    let twice: Vec<String> = resets
        .iter()
        .filter(|m| m.rcpt_tos.iter().any(|r| received.get(r) > Some(&1)))
        .map(|m| format!("{:?} Message-ID {:?}", m.rcpt_tos, m.header("message-id")))
        .collect();
    let sends: Vec<String> = couriers
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            c.log()
                .lines()
                .filter(|l| l.contains("\"mail sent") || l.contains("claim"))
                .map(|l| format!("courier {i}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect();
    let outbox: Vec<(String, Option<u64>, u32)> = db
        .conn(0)
        .query(
            "SELECT recipient, sent_at, attempts FROM mail_outbox
             WHERE kind = 'password_reset' ORDER BY recipient",
        )
        .unwrap();
    println!("outbox: {outbox:?}");
    assert_eq!(
        received,
        tally(emails.iter().cloned()),
        "messages received per recipient; twice: {twice:#?}\nthe couriers' sends:\n{}",
        if twice.is_empty() {
            String::new()
        } else {
            sends.join("\n")
        }
    );
    assert_eq!(
        outbox.len(),
        emails.len(),
        "one outbox row per request: {outbox:?}"
    );
    assert!(
        outbox.iter().all(|(_, sent, _)| sent.is_some()),
        "{outbox:?}"
    );
}
