//! The load and abuse defences (issue 6) driven over TCP against the real
//! binary and a real database.
//!
//! Covered:
//!
//! - the per-account lockout: wrong passwords on login and on password change
//!   count, the account then answers 429 `too_many_attempts` with a
//!   `Retry-After` even for the right password, other accounts are not
//!   affected, a success clears the count (the `login_failures` row goes),
//!   the lock ends with its window, it holds across a restart and across
//!   two instances on one database, and guesses sent in parallel cannot get
//!   past the threshold;
//! - the per-address rate limiter on register, login and password change: the
//!   burst, 429 `rate_limited` with `Retry-After`, refill, bodies that fail to
//!   parse still counting, one bucket shared by the three endpoints, the
//!   authenticated endpoints and `/healthz` never limited, and
//!   `RATE_LIMIT_BURST=0` turning it off;
//! - `X-Forwarded-For`: ignored unless the peer is in `TRUSTED_PROXIES`, and
//!   then the rightmost untrusted entry is the client (also when the header
//!   comes in several field lines), both for rate limiting and for the `ip`
//!   recorded in sessions;
//! - the hashing gate: with one slot and a short queue timeout, a flood of
//!   logins gets 200 or 503 `overloaded` (with `Retry-After`) and nothing
//!   else, while requests that need no hash (`/auth/me`, unknown emails,
//!   locked accounts, `/healthz`) answer at once.
//!
//! The harness turns the limiter off and makes hashing cheap by default;
//! each test here sets exactly the defences it tests. The flood tests use
//! hashing that is slow for a debug build (the binary under test is built
//! without optimisation): enough for one hash to outlast the queue timeout
//! many times over, little enough to keep each test within seconds.
//!
//! Each test starts its own server on its own fresh database, so tests are
//! independent and can run in parallel.

mod common;

use common::{Client, Reply, Server, TestDb};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REGISTER: &str = "/auth/register";
const LOGIN: &str = "/auth/login";
const PASSWORD: &str = "/auth/password";

/// A password that breaks no rule.
const GOOD: &str = "correct horse battery staple";
/// A wrong guess at [`GOOD`] (itself acceptable, for password changes).
const WRONG: &str = "incorrect horse battery staple";
/// Another acceptable password, the target of password changes.
const NEW: &str = "Tr0ub4dor&3 but longer";

/// Argon2 memory for the flood tests, in KiB (see the module docs): 64 MiB
/// takes about 0.6 s in a debug build here, twice [`PROMPT`]; 32 MiB came
/// within 20 ms of it on a quiet machine.
const SLOW_MEMORY_KIB: &str = "65536";
/// Logins sent at once in the flood tests.
const FLOOD: usize = 8;
/// How quickly a request that needs no hash must answer during a flood.
const PROMPT: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// Requests

fn register_reply(server: &Server, email: &str, password: &str) -> Reply {
    server.json(
        "POST",
        REGISTER,
        &json!({"email": email, "password": password}),
    )
}

/// Registers `email` with [`GOOD`]; returns the new user's id.
fn register(server: &Server, email: &str) -> u64 {
    let reply = register_reply(server, email, GOOD);
    assert_eq!(reply.status, 201, "register {email}: {}", text(&reply));
    reply.json()["user"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no user id in {}", text(&reply)))
}

fn login(server: &Server, email: &str, password: &str) -> Reply {
    server.json(
        "POST",
        LOGIN,
        &json!({"email": email, "password": password}),
    )
}

/// Logs in with the right password; returns the token.
fn token(server: &Server, email: &str) -> String {
    let reply = login(server, email, GOOD);
    assert_eq!(reply.status, 200, "login {email}: {}", text(&reply));
    reply.json()["token"].as_str().unwrap().to_string()
}

fn change_password(server: &Server, email: &str, current: &str, new: &str) -> Reply {
    server.json(
        "POST",
        PASSWORD,
        &json!({"email": email, "current_password": current, "new_password": new}),
    )
}

/// `POST path` with a JSON body and extra headers.
fn post_with(server: &Server, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    server.request("POST", path, &all, &body.to_string())
}

/// A login for an address nobody registered: 404 unless limited.
fn unknown_login(server: &Server, n: usize) -> Reply {
    login(server, &format!("nobody{n}@example.com"), GOOD)
}

fn text(reply: &Reply) -> String {
    format!(
        "{} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned()
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------
// Assertions

/// `Retry-After` as whole seconds; fails unless present and numeric.
#[track_caller]
fn retry_after(reply: &Reply) -> u64 {
    let value = reply
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {}", text(reply)));
    value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {value:?} is not whole seconds"))
}

/// A 401 `wrong_password`.
#[track_caller]
fn assert_wrong(reply: &Reply) {
    reply.assert_problem(401, "wrong_password");
}

/// A 429 `too_many_attempts` whose `Retry-After` lies in `range`; returns it.
#[track_caller]
fn assert_locked(reply: &Reply, range: std::ops::RangeInclusive<u64>) -> u64 {
    reply.assert_problem(429, "too_many_attempts");
    let secs = retry_after(reply);
    assert!(
        range.contains(&secs),
        "Retry-After {secs} not in {range:?} for a lock"
    );
    secs
}

/// A 429 `rate_limited` whose `Retry-After` lies in `range`.
#[track_caller]
fn assert_rate_limited(reply: &Reply, range: std::ops::RangeInclusive<u64>) {
    reply.assert_problem(429, "rate_limited");
    let secs = retry_after(reply);
    assert!(
        range.contains(&secs),
        "Retry-After {secs} not in {range:?} for the rate limit"
    );
}

// ---------------------------------------------------------------------------
// The database

/// The account's `login_failures` row: `(failures, window_start)`.
fn failures_row(db: &TestDb, user_id: u64) -> Option<(u32, u64)> {
    db.conn()
        .exec_first(
            "SELECT failures, window_start FROM login_failures WHERE user_id = ?",
            (user_id,),
        )
        .unwrap()
}

fn password_hash(db: &TestDb, user_id: u64) -> String {
    db.conn()
        .exec_first("SELECT password_hash FROM users WHERE id = ?", (user_id,))
        .unwrap()
        .unwrap()
}

fn session_count(db: &TestDb, user_id: u64) -> u64 {
    db.conn()
        .exec_first(
            "SELECT COUNT(*) FROM sessions WHERE user_id = ?",
            (user_id,),
        )
        .unwrap()
        .unwrap()
}

/// The `ip` that `GET /auth/sessions` shows for the token's own session.
fn own_session_ip(server: &Server, token: &str) -> String {
    let reply = server.get_auth("/auth/sessions", token);
    assert_eq!(reply.status, 200, "{}", text(&reply));
    let body = reply.json();
    let own: Vec<&Value> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["current"] == true)
        .collect();
    assert_eq!(own.len(), 1, "exactly one current session in {body}");
    own[0]["ip"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------
// Servers

/// A server whose limiter allows `burst` at once and `per_minute` after.
fn limited(burst: u32, per_minute: u32) -> common::Builder {
    Server::builder()
        .env("RATE_LIMIT_BURST", &burst.to_string())
        .env("RATE_LIMIT_PER_MINUTE", &per_minute.to_string())
}

/// A server with one hashing slot, a 50 ms queue, and slow hashing, on `db`.
fn one_slow_slot(db: &Arc<TestDb>) -> common::Builder {
    Server::builder()
        .db(db)
        .env("HASH_CONCURRENCY", "1")
        .env("HASH_QUEUE_TIMEOUT_MS", "50")
        .env("ARGON2_MEMORY_KIB", SLOW_MEMORY_KIB)
        .env("ARGON2_ITERATIONS", "1")
}

/// Runs `setup` against a server with the harness's cheap hashing on `db`,
/// then stops it. Verification takes its cost from the stored hash, so an
/// account registered here stays cheap to log in to on a slow server: only
/// the flood pays for slow hashing.
fn with_cheap_server<T>(db: &Arc<TestDb>, setup: impl FnOnce(&Server) -> T) -> T {
    let server = Server::builder().db(db).start();
    setup(&server)
}

// ---------------------------------------------------------------------------
// Lockout

#[test]
fn five_wrong_passwords_lock_the_account_even_against_the_right_one() {
    let server = Server::start();
    let alice = register(&server, "alice@example.com");
    let bob = register(&server, "bob@example.com");
    let hash_before = password_hash(&server.db, alice);

    let first_failure = unix_now();
    for attempt in 1..=5 {
        let reply = login(&server, "alice@example.com", WRONG);
        assert_wrong(&reply);
        let (failures, _) = failures_row(&server.db, alice)
            .unwrap_or_else(|| panic!("no login_failures row after wrong password {attempt}"));
        assert_eq!(failures, attempt, "failures after wrong password {attempt}");
    }
    let (failures, window_start) = failures_row(&server.db, alice).unwrap();
    assert_eq!(failures, 5);
    assert!(
        (first_failure..=unix_now()).contains(&window_start),
        "window_start {window_start} is not the time of the first failure ({first_failure})"
    );

    // The sixth attempt, with the right password: refused before hashing,
    // no session, and the lock says how long it lasts (900 s from the first
    // failure; this test has run for seconds, not minutes).
    let reply = login(&server, "alice@example.com", GOOD);
    let secs = assert_locked(&reply, 1..=900);
    assert!(
        secs >= 850,
        "Retry-After {secs} is not the rest of the window"
    );
    assert_eq!(
        session_count(&server.db, alice),
        0,
        "a locked login made a session"
    );
    // Case does not get around it: it is the same account.
    assert_locked(&login(&server, "ALICE@example.com", GOOD), 1..=900);

    // Password change is locked too, even with the right current password,
    // and changes nothing.
    let reply = change_password(&server, "alice@example.com", GOOD, NEW);
    assert_locked(&reply, 1..=900);
    assert_eq!(password_hash(&server.db, alice), hash_before);
    assert_locked(&login(&server, "alice@example.com", NEW), 1..=900);

    // Another account is untouched.
    assert_eq!(login(&server, "bob@example.com", GOOD).status, 200);
    assert_wrong(&login(&server, "bob@example.com", WRONG));
    assert_eq!(failures_row(&server.db, bob).map(|r| r.0), Some(1));
    // And alice is still locked: bob's activity did not clear her row.
    assert_eq!(failures_row(&server.db, alice), Some((5, window_start)));
}

#[test]
fn the_lock_ends_with_its_window_and_the_success_clears_the_count() {
    let server = Server::builder()
        .env("LOCKOUT_THRESHOLD", "3")
        .env("LOCKOUT_WINDOW_SECONDS", "2")
        .start();
    let id = register(&server, "carol@example.com");
    for _ in 0..3 {
        assert_wrong(&login(&server, "carol@example.com", WRONG));
    }
    assert_locked(&login(&server, "carol@example.com", GOOD), 1..=2);
    assert_eq!(failures_row(&server.db, id).map(|r| r.0), Some(3));

    std::thread::sleep(Duration::from_millis(2500));
    let reply = login(&server, "carol@example.com", GOOD);
    assert_eq!(reply.status, 200, "after the window: {}", text(&reply));
    assert_eq!(
        failures_row(&server.db, id),
        None,
        "a successful login left the login_failures row"
    );

    // Counting starts again from zero: two wrong are below the threshold, the
    // third reaches it.
    assert_wrong(&login(&server, "carol@example.com", WRONG));
    assert_wrong(&login(&server, "carol@example.com", WRONG));
    assert_eq!(failures_row(&server.db, id).map(|r| r.0), Some(2));
    assert_wrong(&login(&server, "carol@example.com", WRONG));
    assert_locked(&login(&server, "carol@example.com", GOOD), 1..=2);
}

#[test]
fn a_successful_login_clears_the_count() {
    let server = Server::start();
    let id = register(&server, "dave@example.com");
    for _ in 0..4 {
        assert_wrong(&login(&server, "dave@example.com", WRONG));
    }
    assert_eq!(failures_row(&server.db, id).map(|r| r.0), Some(4));
    assert_eq!(login(&server, "dave@example.com", GOOD).status, 200);
    assert_eq!(failures_row(&server.db, id), None);
    // Had the count survived, the second of these would be the sixth
    // failure and the rest would be 429.
    for _ in 0..4 {
        assert_wrong(&login(&server, "dave@example.com", WRONG));
    }
    assert_eq!(failures_row(&server.db, id).map(|r| r.0), Some(4));
    // The threshold still applies to the new count.
    assert_wrong(&login(&server, "dave@example.com", WRONG));
    assert_locked(&login(&server, "dave@example.com", GOOD), 1..=900);
}

#[test]
fn a_successful_password_change_clears_the_count() {
    let server = Server::start();
    let id = register(&server, "erin@example.com");
    for _ in 0..4 {
        assert_wrong(&login(&server, "erin@example.com", WRONG));
    }
    let reply = change_password(&server, "erin@example.com", GOOD, NEW);
    assert_eq!(reply.status, 204, "{}", text(&reply));
    assert_eq!(failures_row(&server.db, id), None);
    for _ in 0..4 {
        assert_wrong(&login(&server, "erin@example.com", GOOD));
    }
    assert_eq!(login(&server, "erin@example.com", NEW).status, 200);
}

#[test]
fn wrong_current_passwords_on_password_change_count_toward_the_lock() {
    let server = Server::start();

    // Five wrong current passwords alone lock the account.
    let frank = register(&server, "frank@example.com");
    for _ in 0..5 {
        assert_wrong(&change_password(&server, "frank@example.com", WRONG, NEW));
    }
    assert_eq!(failures_row(&server.db, frank).map(|r| r.0), Some(5));
    assert_locked(&login(&server, "frank@example.com", GOOD), 1..=900);
    assert_locked(
        &change_password(&server, "frank@example.com", GOOD, NEW),
        1..=900,
    );

    // Both kinds of failure add up in one count.
    let grace = register(&server, "grace@example.com");
    for _ in 0..3 {
        assert_wrong(&change_password(&server, "grace@example.com", WRONG, NEW));
    }
    for _ in 0..2 {
        assert_wrong(&login(&server, "grace@example.com", WRONG));
    }
    assert_eq!(failures_row(&server.db, grace).map(|r| r.0), Some(5));
    assert_locked(&login(&server, "grace@example.com", GOOD), 1..=900);
}

#[test]
fn the_lock_holds_across_a_restart() {
    let db = Arc::new(TestDb::new());
    let a = Server::builder().db(&db).start();
    register(&a, "heidi@example.com");
    for _ in 0..5 {
        assert_wrong(&login(&a, "heidi@example.com", WRONG));
    }
    assert_locked(&login(&a, "heidi@example.com", GOOD), 1..=900);
    drop(a);

    let b = Server::builder().db(&db).start();
    let secs = assert_locked(&login(&b, "heidi@example.com", GOOD), 1..=900);
    assert!(
        secs >= 850,
        "Retry-After {secs} is not the rest of the window"
    );
    assert_locked(
        &change_password(&b, "heidi@example.com", GOOD, NEW),
        1..=900,
    );
}

#[test]
fn two_instances_on_one_database_share_the_count() {
    let db = Arc::new(TestDb::new());
    let a = Server::builder().db(&db).start();
    let b = Server::builder().db(&db).start();
    let id = register(&a, "ivan@example.com");
    for _ in 0..3 {
        assert_wrong(&login(&a, "ivan@example.com", WRONG));
    }
    for _ in 0..2 {
        assert_wrong(&login(&b, "ivan@example.com", WRONG));
    }
    assert_eq!(failures_row(&db, id).map(|r| r.0), Some(5));
    assert_locked(&login(&a, "ivan@example.com", GOOD), 1..=900);
    assert_locked(&login(&b, "ivan@example.com", GOOD), 1..=900);
}

#[test]
fn parallel_guesses_cannot_exceed_the_threshold() {
    // The lock bounds guesses per window. A check that reads the count, then
    // hashes, then records the failure lets every guess that read the count
    // before the fifth failure was written through, so an attacker who sends
    // guesses in parallel gets far more than five.
    const GUESSES: usize = 30;
    let server = Server::start();
    let id = register(&server, "quinn@example.com");
    let body = json!({"email": "quinn@example.com", "password": WRONG}).to_string();
    let barrier = Barrier::new(GUESSES);
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..GUESSES)
            .map(|_| {
                let (barrier, body, server) = (&barrier, &body, &server);
                scope.spawn(move || {
                    let mut client = server.connect();
                    barrier.wait();
                    client.request("POST", LOGIN, &[("Content-Type", "application/json")], body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut verified = 0;
    for reply in &replies {
        if reply.status == 401 {
            assert_wrong(reply);
            verified += 1;
        } else {
            assert_locked(reply, 1..=900);
        }
    }
    let recorded = failures_row(&server.db, id).map(|r| r.0);
    assert!(
        verified <= 5,
        "{verified} of {GUESSES} parallel wrong passwords were checked (401) with a \
         threshold of 5; login_failures.failures = {recorded:?}"
    );
    assert_eq!(recorded, Some(5), "failures recorded");
}

// ---------------------------------------------------------------------------
// Rate limit

#[test]
fn the_burst_passes_then_429_with_retry_after_then_the_rate_refills() {
    let server = limited(5, 60).start();
    let started = Instant::now();
    for n in 0..3 {
        unknown_login(&server, n).assert_problem(404, "unknown_email");
    }
    // Bodies the handler never gets to read count as well.
    server
        .request(
            "POST",
            LOGIN,
            &[("Content-Type", "application/json")],
            "{not json",
        )
        .assert_problem(400, "malformed_json");
    server
        .request("POST", LOGIN, &[("Content-Type", "text/plain")], "x")
        .assert_problem(415, "unsupported_media_type");

    // 60 a minute is one a second: the next is a second away.
    let reply = unknown_login(&server, 5);
    assert_eq!(
        reply.status,
        429,
        "sixth request {:?} after the first: {}",
        started.elapsed(),
        text(&reply)
    );
    assert_rate_limited(&reply, 1..=1);
    assert_eq!(reply.header("retry-after"), Some("1"));
    // Limited before the body is looked at.
    let reply = server.request(
        "POST",
        LOGIN,
        &[("Content-Type", "application/json")],
        "{not json",
    );
    assert_rate_limited(&reply, 1..=1);

    std::thread::sleep(Duration::from_millis(1100));
    unknown_login(&server, 6).assert_problem(404, "unknown_email");
    assert_rate_limited(&unknown_login(&server, 7), 1..=1);
}

#[test]
fn register_login_and_password_change_share_one_bucket() {
    // One a minute: nothing refills while the test runs.
    let server = limited(3, 1).start();
    let reply = register_reply(&server, "judy@example.com", GOOD);
    assert_eq!(reply.status, 201, "{}", text(&reply));
    change_password(&server, "nobody@example.com", GOOD, NEW).assert_problem(404, "unknown_email");
    unknown_login(&server, 0).assert_problem(404, "unknown_email");

    // Three spent across three endpoints: each of them is now limited, even
    // for requests that would otherwise succeed.
    assert_rate_limited(&register_reply(&server, "ken@example.com", GOOD), 1..=60);
    assert_rate_limited(&login(&server, "judy@example.com", GOOD), 1..=60);
    assert_rate_limited(
        &change_password(&server, "judy@example.com", GOOD, NEW),
        1..=60,
    );
    // The limited requests did nothing.
    let users: u64 = server
        .db
        .conn()
        .query_first("SELECT COUNT(*) FROM users")
        .unwrap()
        .unwrap();
    assert_eq!(users, 1, "a rate-limited register created an account");
}

#[test]
fn authenticated_endpoints_and_healthz_are_never_rate_limited() {
    let server = limited(2, 1).start();
    register(&server, "kim@example.com");
    let token = token(&server, "kim@example.com");
    assert_rate_limited(&unknown_login(&server, 0), 1..=60);

    for i in 0..50 {
        let me = server.get_auth("/auth/me", &token);
        assert_eq!(me.status, 200, "/auth/me #{i}: {}", text(&me));
        assert_eq!(me.json()["user"]["email"], "kim@example.com");
        let health = server.get("/healthz");
        assert_eq!(health.status, 200, "/healthz #{i}: {}", text(&health));
    }
    for i in 0..10 {
        let sessions = server.get_auth("/auth/sessions", &token);
        assert_eq!(
            sessions.status,
            200,
            "/auth/sessions #{i}: {}",
            text(&sessions)
        );
    }
    // The bucket is still empty: those requests were not let through by a
    // refill.
    assert_rate_limited(&unknown_login(&server, 1), 1..=60);
}

#[test]
fn a_burst_of_zero_turns_the_limiter_off() {
    let server = limited(0, 1).start();
    for n in 0..200 {
        let reply = unknown_login(&server, n);
        assert_eq!(reply.status, 404, "login #{n}: {}", text(&reply));
    }
    for n in 0..20 {
        let reply = change_password(&server, &format!("nobody{n}@example.com"), GOOD, NEW);
        assert_eq!(reply.status, 404, "password change #{n}: {}", text(&reply));
    }
}

// ---------------------------------------------------------------------------
// X-Forwarded-For

#[test]
fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    // Without TRUSTED_PROXIES: every request is 127.0.0.1's, whatever it says.
    let server = limited(3, 1).start();
    for (n, claimed) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .enumerate()
    {
        let reply = post_with(
            &server,
            LOGIN,
            &[("X-Forwarded-For", claimed)],
            &json!({"email": format!("nobody{n}@example.com"), "password": GOOD}),
        );
        reply.assert_problem(404, "unknown_email");
    }
    let reply = post_with(
        &server,
        LOGIN,
        &[("X-Forwarded-For", "198.51.100.4")],
        &json!({"email": "nobody@example.com", "password": GOOD}),
    );
    assert_rate_limited(&reply, 1..=60);

    // And the session records the peer, not the claim; also when
    // TRUSTED_PROXIES is set but does not include the peer.
    for proxies in [None, Some("10.0.0.0/8, 192.0.2.1")] {
        let mut builder = Server::builder();
        if let Some(list) = proxies {
            builder = builder.env("TRUSTED_PROXIES", list);
        }
        let server = builder.start();
        register(&server, "leo@example.com");
        let reply = post_with(
            &server,
            LOGIN,
            &[("X-Forwarded-For", "203.0.113.7")],
            &json!({"email": "leo@example.com", "password": GOOD}),
        );
        assert_eq!(reply.status, 200, "{}", text(&reply));
        let token = reply.json()["token"].as_str().unwrap().to_string();
        assert_eq!(
            own_session_ip(&server, &token),
            "127.0.0.1",
            "TRUSTED_PROXIES={proxies:?}"
        );
    }
}

#[test]
fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let server = limited(3, 1).env("TRUSTED_PROXIES", "127.0.0.1").start();
    let from = |client: &str, n: usize| {
        post_with(
            &server,
            LOGIN,
            &[("X-Forwarded-For", client)],
            &json!({"email": format!("nobody{n}@example.com"), "password": GOOD}),
        )
    };
    for n in 0..3 {
        from("198.51.100.1", n).assert_problem(404, "unknown_email");
    }
    assert_rate_limited(&from("198.51.100.1", 3), 1..=60);
    // Someone else behind the same proxy has a bucket of their own.
    from("198.51.100.2", 4).assert_problem(404, "unknown_email");
    // Prepending an address does not give the client a new bucket: the
    // rightmost untrusted entry is the one the proxy saw.
    assert_rate_limited(&from("192.0.2.50, 198.51.100.1", 5), 1..=60);
    // A trusted entry on the right is skipped.
    assert_rate_limited(&from("198.51.100.1, 127.0.0.1", 6), 1..=60);
    // The proxy itself, with no header, is its own client, which has not
    // spent anything yet.
    unknown_login(&server, 100).assert_problem(404, "unknown_email");

    // The session records the client the proxy names. Each login below comes
    // from a fresh address, so the limiter lets it through.
    let register_reply = post_with(
        &server,
        REGISTER,
        &[("X-Forwarded-For", "198.51.100.20")],
        &json!({"email": "mia@example.com", "password": GOOD}),
    );
    assert_eq!(register_reply.status, 201, "{}", text(&register_reply));
    for (header, client) in [
        ("203.0.113.7, 198.51.100.9", "198.51.100.9"),
        ("198.51.100.10, 127.0.0.1", "198.51.100.10"),
        (
            "203.0.113.7,198.51.100.11 , 127.0.0.1,127.0.0.1",
            "198.51.100.11",
        ),
    ] {
        let reply = post_with(
            &server,
            LOGIN,
            &[("X-Forwarded-For", header)],
            &json!({"email": "mia@example.com", "password": GOOD}),
        );
        assert_eq!(
            reply.status,
            200,
            "X-Forwarded-For {header}: {}",
            text(&reply)
        );
        let token = reply.json()["token"].as_str().unwrap().to_string();
        assert_eq!(
            own_session_ip(&server, &token),
            client,
            "X-Forwarded-For: {header}"
        );
    }
}

#[test]
fn forwarded_for_split_over_several_lines_is_read_as_one_list() {
    // RFC 9110 5.3: several field lines of one name mean the same as one line
    // joining their values with commas. A proxy that adds its own line (as
    // HAProxy's `option forwardfor` does) leaves the client's line first; the
    // client is still the rightmost entry, in the proxy's line.
    let server = Server::builder()
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .start();
    register(&server, "rita@example.com");
    let reply = post_with(
        &server,
        LOGIN,
        &[
            ("X-Forwarded-For", "203.0.113.66"),
            ("X-Forwarded-For", "198.51.100.9"),
        ],
        &json!({"email": "rita@example.com", "password": GOOD}),
    );
    assert_eq!(reply.status, 200, "{}", text(&reply));
    let token = reply.json()["token"].as_str().unwrap().to_string();
    assert_eq!(
        own_session_ip(&server, &token),
        "198.51.100.9",
        "the session records the client's own claim instead of what the proxy saw"
    );

    let server = limited(1, 1).env("TRUSTED_PROXIES", "127.0.0.1").start();
    for n in 0..3 {
        let spoofed = format!("203.0.113.{}", 60 + n);
        let reply = post_with(
            &server,
            LOGIN,
            &[
                ("X-Forwarded-For", spoofed.as_str()),
                ("X-Forwarded-For", "198.51.100.1"),
            ],
            &json!({"email": format!("nobody{n}@example.com"), "password": GOOD}),
        );
        if n == 0 {
            reply.assert_problem(404, "unknown_email");
        } else {
            assert_eq!(
                reply.status,
                429,
                "request {n} from 198.51.100.1 (claiming {spoofed} in a line of its own) \
                 got a fresh bucket: {}",
                text(&reply)
            );
            assert_rate_limited(&reply, 1..=60);
        }
    }
}

// ---------------------------------------------------------------------------
// The hashing gate

/// What one request during a flood answered, and when.
struct Timed {
    reply: Reply,
    sent: Instant,
    answered: Instant,
}

fn timed(send: impl FnOnce() -> Reply) -> Timed {
    let sent = Instant::now();
    let reply = send();
    Timed {
        reply,
        sent,
        answered: Instant::now(),
    }
}

/// Sends [`FLOOD`] right-password logins for `email` at once, and while they
/// are in flight runs `probe` over and over; returns the logins' and the
/// probes' results.
fn flood<T: Send>(
    server: &Server,
    email: &str,
    mut probe: impl FnMut() -> T,
) -> (Vec<Timed>, Vec<(T, Instant)>) {
    let barrier = Barrier::new(FLOOD + 1);
    let done = AtomicUsize::new(0);
    let body = json!({"email": email, "password": GOOD}).to_string();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..FLOOD)
            .map(|_| {
                let (barrier, done, body) = (&barrier, &done, &body);
                scope.spawn(move || {
                    let mut client = Client::connect(server.addr);
                    barrier.wait();
                    let result = timed(|| {
                        client.request("POST", LOGIN, &[("Content-Type", "application/json")], body)
                    });
                    done.fetch_add(1, Ordering::SeqCst);
                    result
                })
            })
            .collect();
        barrier.wait();
        let mut probes = Vec::new();
        // Give the logins a moment to reach the gate, then probe until the
        // last one is answered (bounded, in case one never is).
        std::thread::sleep(Duration::from_millis(20));
        while done.load(Ordering::SeqCst) < FLOOD && probes.len() < 200 {
            probes.push((probe(), Instant::now()));
            std::thread::sleep(Duration::from_millis(10));
        }
        let logins = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (logins, probes)
    })
}

/// Checks a flood's logins: only 200 and 503 `overloaded` with
/// `Retry-After`, at least one of each. Returns when the last was answered.
#[track_caller]
fn assert_flood_outcome(logins: &[Timed]) -> Instant {
    let mut ok = 0;
    let mut overloaded = 0;
    for login in logins {
        match login.reply.status {
            200 => ok += 1,
            503 => {
                login.reply.assert_problem(503, "overloaded");
                assert_eq!(login.reply.header("retry-after"), Some("1"));
                overloaded += 1;
            }
            _ => panic!("a login in the flood answered {}", text(&login.reply)),
        }
    }
    let slowest = logins.iter().map(|l| l.answered - l.sent).max().unwrap();
    assert!(ok >= 1, "no login in the flood succeeded");
    // A probe that waited behind a hash would take about as long as one; the
    // probes' bound only tells waiting from not waiting if hashing is slower.
    let hashing = logins
        .iter()
        .filter(|l| l.reply.status == 200)
        .map(|l| l.answered - l.sent)
        .min()
        .unwrap();
    assert!(
        hashing > PROMPT,
        "a login took only {hashing:?}, not more than {PROMPT:?}: raise SLOW_MEMORY_KIB"
    );
    assert!(
        overloaded >= 1,
        "no login in the flood was turned away ({ok} succeeded; slowest took {slowest:?})"
    );
    logins.iter().map(|l| l.answered).max().unwrap()
}

/// Checks that probes ran while logins were still in flight, and each
/// answered within [`PROMPT`].
#[track_caller]
fn assert_prompt_during(probes: &[(Vec<(&str, Timed)>, Instant)], last_login: Instant) {
    let during = probes.iter().filter(|(_, at)| *at < last_login).count();
    assert!(
        during >= 1,
        "no probe finished while the logins were in flight"
    );
    for (round, _) in probes {
        for (what, t) in round {
            let took = t.answered - t.sent;
            assert!(
                took < PROMPT,
                "{what} took {took:?} during the login flood: it waited behind hashing"
            );
        }
    }
}

#[test]
fn a_full_hashing_queue_answers_503_and_never_delays_requests_without_hashing() {
    let db = Arc::new(TestDb::new());
    let token = with_cheap_server(&db, |cheap| {
        register(cheap, "olga@example.com");
        token(cheap, "olga@example.com")
    });
    let server = one_slow_slot(&db).start();
    register(&server, "nina@example.com");

    let (logins, probes) = flood(&server, "nina@example.com", || {
        vec![
            (
                "GET /auth/me",
                timed(|| server.get_auth("/auth/me", &token)),
            ),
            (
                "login of an unknown email",
                timed(|| unknown_login(&server, 0)),
            ),
            ("GET /healthz", timed(|| server.get("/healthz"))),
        ]
    });
    let last_login = assert_flood_outcome(&logins);
    for (round, _) in &probes {
        let me = &round[0].1.reply;
        assert_eq!(me.status, 200, "/auth/me during the flood: {}", text(me));
        assert_eq!(me.json()["user"]["email"], "olga@example.com");
        round[1].1.reply.assert_problem(404, "unknown_email");
        assert_eq!(round[2].1.reply.status, 200, "{}", text(&round[2].1.reply));
    }
    assert_prompt_during(&probes, last_login);
}

#[test]
fn a_locked_account_answers_429_not_503_while_the_hashing_queue_is_full() {
    let db = Arc::new(TestDb::new());
    with_cheap_server(&db, |cheap| {
        register(cheap, "oscar@example.com");
        for _ in 0..5 {
            assert_wrong(&login(cheap, "oscar@example.com", WRONG));
        }
    });
    let server = one_slow_slot(&db).start();
    register(&server, "peggy@example.com");

    let (logins, probes) = flood(&server, "peggy@example.com", || {
        vec![
            (
                "login of a locked account",
                timed(|| login(&server, "oscar@example.com", GOOD)),
            ),
            (
                "password change of a locked account",
                timed(|| change_password(&server, "oscar@example.com", GOOD, NEW)),
            ),
            (
                "password change of an unknown email",
                timed(|| change_password(&server, "nobody@example.com", GOOD, NEW)),
            ),
        ]
    });
    let last_login = assert_flood_outcome(&logins);
    for (round, _) in &probes {
        assert_locked(&round[0].1.reply, 1..=900);
        assert_locked(&round[1].1.reply, 1..=900);
        round[2].1.reply.assert_problem(404, "unknown_email");
    }
    assert_prompt_during(&probes, last_login);
}
