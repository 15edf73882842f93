//! Refresh tokens and session lifetimes (issue 16), against the real binary
//! and a real database: login's refresh token, rotation, the idle and
//! absolute limits, reuse after and within the grace, parallel refreshes of
//! one token, every way a session ends, the two kinds of token kept apart,
//! forged and truncated tokens, the session list, key rotation, and
//! sessions from before refresh tokens.
//!
//! Times are the server's real clock, so the expiry tests use limits of a
//! few seconds and wait them out.

mod common;

use common::{Reply, Server, TestDb, login_reply, register};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

const GOOD: &str = "correct horse battery staple";
const NEW: &str = "a different long passphrase";
const K1: &str = "first-key-of-the-refresh-rotation-test-0123";
const K2: &str = "second-key-of-the-refresh-rotation-test-456";

/// Registers `email` and logs in; returns the login's body.
fn signup(server: &Server, email: &str) -> Value {
    register(server, email, GOOD);
    let reply = login_reply(server, email, GOOD);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn refresh(server: &Server, refresh_token: &str) -> Reply {
    server.json(
        "POST",
        "/auth/refresh",
        &json!({ "refresh_token": refresh_token }),
    )
}

/// Refreshes and asserts a 200; returns the body.
#[track_caller]
fn refreshed(server: &Server, refresh_token: &str) -> Value {
    let reply = refresh(server, refresh_token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn me(server: &Server, token: &str) -> u16 {
    server.get_auth("/auth/me", token).status
}

fn text<'a>(body: &'a Value, member: &str) -> &'a str {
    body[member]
        .as_str()
        .unwrap_or_else(|| panic!("no {member} in {body}"))
}

fn unix(rfc3339: &str) -> i64 {
    // YYYY-MM-DDTHH:MM:SSZ, as the server writes it.
    let n = |a: usize, b: usize| rfc3339[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + d - 719_469;
    days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

#[test]
fn login_returns_a_refresh_token_that_rotates_once() {
    let server = Server::start();
    let login = signup(&server, "rita@example.com");
    let first = text(&login, "refresh_token").to_string();
    assert_eq!(first.len(), 99, "{first}");
    assert_eq!(first.find('.'), Some(55));
    let session_end = unix(text(&login, "refresh_expires_at"));
    let access_end = unix(text(&login, "expires_at"));
    assert_eq!(
        session_end - access_end,
        604_800 - 3600,
        "7 days idle, 1 hour access"
    );

    let next = refreshed(&server, &first);
    let second = text(&next, "refresh_token");
    assert_ne!(second, first);
    assert_eq!(next["token_type"], "Bearer");
    assert_eq!(next["user"]["email"], "rita@example.com");
    assert_eq!(next["expires_in"], 3600);
    assert_eq!(me(&server, text(&next, "token")), 200);
    assert_eq!(
        me(&server, text(&login, "token")),
        200,
        "the older access token lives on until it expires"
    );
    assert_eq!(
        refreshed(&server, second)["user"]["id"],
        login["user"]["id"]
    );

    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("auth_refresh_outcomes_total{outcome=\"ok\"} 2"),
        "{metrics}"
    );
}

#[test]
fn a_refresh_restarts_the_idle_clock_but_never_passes_the_absolute_end() {
    // Whole seconds on the server's clock: limits wide enough that the
    // login's second and the sleeps cannot push a refresh past them.
    let (idle, max) = (3, 5);
    let server = Server::builder()
        .env("SESSION_IDLE_SECONDS", &idle.to_string())
        .env("SESSION_MAX_SECONDS", &max.to_string())
        .start();
    let login = signup(&server, "ida@example.com");
    let started = unix(text(&login, "refresh_expires_at")) - idle;
    // The instants, not `expires_in`: a second may tick between the
    // session's insert and the answer, which then says idle - 1, truly.
    assert_eq!(
        login["expires_at"], login["refresh_expires_at"],
        "the access token ends with the session"
    );

    let mut refresh_token = text(&login, "refresh_token").to_string();
    let mut ends = Vec::new();
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(1100));
        let body = refreshed(&server, &refresh_token);
        let end = unix(text(&body, "refresh_expires_at"));
        assert!(end <= started + max, "past the absolute end: {body}");
        assert!(unix(text(&body, "expires_at")) <= end);
        ends.push(end);
        refresh_token = text(&body, "refresh_token").to_string();
    }
    assert!(
        ends[0] > started + idle,
        "the idle clock restarted: {ends:?}"
    );
    assert_eq!(
        ends[2],
        started + max,
        "capped at the absolute end: {ends:?}"
    );

    // Past the absolute end nothing refreshes it, however recently it was.
    thread::sleep(Duration::from_secs(
        (started + max - unix_now()).max(0) as u64 + 1,
    ));
    refresh(&server, &refresh_token).assert_problem(401, "invalid_refresh_token");
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn an_idle_session_ends_with_its_access_token() {
    let server = Server::builder().env("SESSION_IDLE_SECONDS", "2").start();
    let login = signup(&server, "ivy@example.com");
    let access = text(&login, "token");
    assert_eq!(me(&server, access), 200);
    thread::sleep(Duration::from_secs(3));
    refresh(&server, text(&login, "refresh_token")).assert_problem(401, "invalid_refresh_token");
    let reply = server.get_auth("/auth/me", access);
    assert_eq!(reply.status, 401, "{}", reply.text());
}

#[test]
fn reuse_after_the_grace_ends_the_whole_session() {
    let server = Server::builder()
        .env("REFRESH_REUSE_GRACE_SECONDS", "1")
        .start();
    let login = signup(&server, "una@example.com");
    let other = login_reply(&server, "una@example.com", GOOD).json();
    let first = text(&login, "refresh_token");
    let next = refreshed(&server, first);
    thread::sleep(Duration::from_millis(2100));

    let reused = refresh(&server, first);
    reused.assert_problem(401, "refresh_token_reused");
    assert_eq!(
        reused.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    for (what, token) in [("first", &login), ("rotated", &next)] {
        let reply = server.get_auth("/auth/me", text(token, "token"));
        reply.assert_problem(401, "token_revoked");
        assert_eq!(reply.status, 401, "{what} access token");
    }
    refresh(&server, text(&next, "refresh_token")).assert_problem(401, "invalid_refresh_token");
    assert_eq!(
        me(&server, text(&other, "token")),
        200,
        "only the session the token belongs to ends"
    );
    assert!(server.wait_for_log(
        "refresh token reused after rotation",
        Duration::from_secs(2)
    ));
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("auth_refresh_outcomes_total{outcome=\"refresh_token_reused\"} 1"),
        "{metrics}"
    );
}

#[test]
fn within_the_grace_the_previous_token_gets_the_current_pair_again() {
    let server = Server::builder()
        .env("REFRESH_REUSE_GRACE_SECONDS", "30")
        .start();
    let login = signup(&server, "gina@example.com");
    let first = text(&login, "refresh_token");
    let next = refreshed(&server, first);
    let current = text(&next, "refresh_token");

    let again = refreshed(&server, first);
    assert_eq!(
        text(&again, "refresh_token"),
        current,
        "the current one, not a new one"
    );
    assert_eq!(me(&server, text(&again, "token")), 200);
    // The current token still rotates, and then the first is two behind:
    // reuse even within the grace.
    let third = refreshed(&server, current);
    assert_ne!(text(&third, "refresh_token"), current);
    refresh(&server, first).assert_problem(401, "refresh_token_reused");
    assert_eq!(me(&server, text(&third, "token")), 401, "the session ended");
}

#[test]
fn twenty_parallel_refreshes_of_one_token_agree_on_one_new_token() {
    let server = Server::start();
    for round in 0..5 {
        let login = signup(&server, &format!("para{round}@example.com"));
        let token = text(&login, "refresh_token").to_string();
        let barrier = Barrier::new(20);
        let replies: Vec<Reply> = thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        refresh(&server, &token)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
        let mut new_tokens: Vec<String> = Vec::new();
        for reply in &replies {
            *outcomes.entry(reply.status).or_default() += 1;
            if reply.status == 200 {
                new_tokens.push(text(&reply.json(), "refresh_token").to_string());
            }
        }
        assert_eq!(outcomes, BTreeMap::from([(200, 20)]), "round {round}");
        new_tokens.dedup();
        assert_eq!(
            new_tokens.len(),
            1,
            "one live refresh token: {new_tokens:?}"
        );
        let generation: u32 = server
            .db
            .conn()
            .exec_first(
                "SELECT refresh_generation FROM sessions WHERE user_id = ?",
                (login["user"]["id"].as_u64().unwrap(),),
            )
            .unwrap()
            .unwrap();
        assert_eq!(generation, 2, "rotated exactly once");
        refreshed(&server, &new_tokens[0]);
    }
}

#[test]
fn every_way_a_session_ends_also_kills_its_refresh_token() {
    let server = Server::start();
    type End = fn(&Server, &Value);
    let ends: [(&str, End); 5] = [
        ("logout", |s, login| {
            assert_eq!(
                s.request(
                    "POST",
                    "/auth/logout",
                    &[("Authorization", &format!("Bearer {}", text(login, "token")))],
                    ""
                )
                .status,
                204
            );
        }),
        ("logout-all", |s, login| {
            assert_eq!(
                s.request(
                    "POST",
                    "/auth/logout-all",
                    &[("Authorization", &format!("Bearer {}", text(login, "token")))],
                    ""
                )
                .status,
                204
            );
        }),
        ("session deletion", |s, login| {
            let token = text(login, "token");
            let list = s.get_auth("/auth/sessions", token).json();
            let id = list["sessions"][0]["id"].as_str().unwrap().to_string();
            let path = format!("/auth/sessions/{id}");
            let reply = s.request(
                "DELETE",
                &path,
                &[("Authorization", &format!("Bearer {token}"))],
                "",
            );
            assert_eq!(reply.status, 204);
        }),
        ("password change", |s, login| {
            let email = text(&login["user"], "email");
            let reply = s.json(
                "POST",
                "/auth/password",
                &json!({"email": email, "current_password": GOOD, "new_password": NEW}),
            );
            assert_eq!(reply.status, 204, "{}", reply.text());
        }),
        ("account deletion", |s, login| {
            let reply = s.json_auth(
                "DELETE",
                "/auth/me",
                text(login, "token"),
                &json!({"password": GOOD}),
            );
            assert_eq!(reply.status, 204, "{}", reply.text());
        }),
    ];
    for (i, (what, end)) in ends.iter().enumerate() {
        let login = signup(&server, &format!("end{i}@example.com"));
        end(&server, &login);
        let reply = refresh(&server, text(&login, "refresh_token"));
        assert_eq!(reply.status, 401, "{what}: {}", reply.text());
        reply.assert_problem(401, "invalid_refresh_token");
    }
}

#[test]
fn a_reset_ends_the_session_and_its_refresh_token() {
    let server = Server::start();
    let login = signup(&server, "rhea@example.com");
    let forgot = server.json(
        "POST",
        "/auth/password/forgot",
        &json!({"email": "rhea@example.com"}),
    );
    assert_eq!(forgot.status, 202);
    let body = common::wait_for_mail(&server, "rhea@example.com");
    let start = body.find("?token=").unwrap() + "?token=".len();
    let token: String = body[start..].chars().take(43).collect();
    let reset = server.json(
        "POST",
        "/auth/password/reset",
        &json!({"token": token, "new_password": NEW}),
    );
    assert_eq!(reset.status, 204, "{}", reset.text());
    refresh(&server, text(&login, "refresh_token")).assert_problem(401, "invalid_refresh_token");
}

#[test]
fn access_and_refresh_tokens_are_not_accepted_for_each_other() {
    let server = Server::start();
    let login = signup(&server, "kai@example.com");
    server
        .get_auth("/auth/me", text(&login, "refresh_token"))
        .assert_problem(401, "invalid_token");
    refresh(&server, text(&login, "token")).assert_problem(401, "invalid_refresh_token");
    assert_eq!(me(&server, text(&login, "token")), 200);
    refreshed(&server, text(&login, "refresh_token"));
}

#[test]
fn forged_truncated_and_malformed_refresh_tokens_are_refused_alike() {
    let server = Server::start();
    let login = signup(&server, "fay@example.com");
    let good = text(&login, "refresh_token").to_string();
    let (payload, mac) = good.split_once('.').unwrap();
    let flip = |s: &str, i: usize| {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let cases = [
        ("truncated", good[..good.len() - 1].to_string()),
        ("extended", format!("{good}A")),
        ("mac changed", format!("{payload}.{}", flip(mac, 5))),
        ("payload changed", format!("{}.{mac}", flip(payload, 30))),
        ("no dot", good.replace('.', "")),
        ("empty", String::new()),
        ("huge", "A".repeat(5000)),
        (
            "not base64url",
            format!("{payload}.{}", mac.replace(|_: char| true, "+")),
        ),
    ];
    for (what, token) in &cases {
        let reply = refresh(&server, token);
        assert_eq!(reply.status, 401, "{what}: {}", reply.text());
        reply.assert_problem(401, "invalid_refresh_token");
    }
    server
        .json("POST", "/auth/refresh", &json!({}))
        .assert_problem(400, "missing_field");
    server
        .json("POST", "/auth/refresh", &json!({"refresh_token": 5}))
        .assert_problem(400, "invalid_field");
    // None of that touched the session.
    refreshed(&server, &good);
    assert!(
        !server.log().contains(&good[60..]),
        "a refresh token reached the log"
    );
}

#[test]
fn the_session_list_shows_when_each_session_was_refreshed_and_ends() {
    let server = Server::start();
    let login = signup(&server, "lea@example.com");
    let list = |token: &str| server.get_auth("/auth/sessions", token).json()["sessions"][0].clone();
    let before = list(text(&login, "token"));
    assert_eq!(before["last_refreshed_at"], Value::Null);
    assert_eq!(before["expires_at"], login["refresh_expires_at"]);

    thread::sleep(Duration::from_millis(1100));
    let next = refreshed(&server, text(&login, "refresh_token"));
    let after = list(text(&next, "token"));
    assert!(after["last_refreshed_at"].is_string(), "{after}");
    assert_eq!(after["expires_at"], next["refresh_expires_at"]);
    assert!(unix(text(&after, "expires_at")) > unix(text(&before, "expires_at")));
}

#[test]
fn refresh_tokens_follow_key_rotation() {
    let db = Arc::new(TestDb::new());
    let a = Server::builder().db(&db).env("TOKEN_SECRET", K1).start();
    let login = signup(&a, "kim@example.com");
    drop(a);

    let b = Server::builder()
        .db(&db)
        .env("TOKEN_SECRET", K2)
        .env("TOKEN_SECRETS_PREVIOUS", K1)
        .start();
    let next = refreshed(&b, text(&login, "refresh_token"));
    drop(b);

    // The new token is K2's: a server that no longer knows K1 takes it.
    let c = Server::builder().db(&db).env("TOKEN_SECRET", K2).start();
    refreshed(&c, text(&next, "refresh_token"));
}

#[test]
fn a_session_from_before_refresh_tokens_lives_to_its_old_end_and_no_further() {
    let server = Server::start();
    let login = signup(&server, "old@example.com");
    // What the migration leaves for a session created before it: no nonce,
    // generation 0, and its one end (the old token expiry) as both limits.
    server
        .db
        .conn()
        .query_drop(
            "UPDATE sessions SET refresh_nonce = NULL, refresh_generation = 0,
               max_expires_at = expires_at",
        )
        .unwrap();
    assert_eq!(me(&server, text(&login, "token")), 200);
    refresh(&server, text(&login, "refresh_token")).assert_problem(401, "invalid_refresh_token");
}
