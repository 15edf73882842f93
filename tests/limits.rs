//! Rate limits that a client could dodge or that hit everyone (issue 12),
//! against the real binary and a real database:
//!
//! - `PATCH` and `DELETE /auth/me` hash a password, so they spend the
//!   client address's bucket like login does;
//! - every password check also spends the account's own bucket, so guesses
//!   spread over many addresses (behind a trusted proxy) are limited too;
//! - on a socket bound to `[::]`, IPv4 peers arrive as `::ffff:a.b.c.d` and
//!   must still match `TRUSTED_PROXIES=a.b.c.d`, and be recorded as
//!   `a.b.c.d`;
//! - `X-Forwarded-For` entries with a port or in brackets name their client;
//! - IPv6 clients share a bucket per /64.

mod common;

use common::{Client, Reply, Server, login, register};
use serde_json::{Value, json};
use std::net::SocketAddr;

const GOOD: &str = "correct horse battery staple";
const WRONG: &str = "incorrect horse battery staple";

/// A server whose limiter allows `burst` at once and 1 a minute after.
fn limited(burst: u32) -> common::Builder {
    Server::builder()
        .env("RATE_LIMIT_BURST", &burst.to_string())
        .env("RATE_LIMIT_PER_MINUTE", "1")
        .env("LOCKOUT_THRESHOLD", "1000")
}

/// `POST /auth/login` with `X-Forwarded-For: forwarded`.
fn login_from(server: &Server, forwarded: &str, email: &str, password: &str) -> Reply {
    server.request(
        "POST",
        "/auth/login",
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", forwarded),
        ],
        &json!({"email": email, "password": password}).to_string(),
    )
}

/// The `ip` of the token's own session, as `GET /auth/sessions` shows it.
fn own_session_ip(server: &Server, token: &str) -> String {
    let reply = server.get_auth("/auth/sessions", token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body: Value = reply.json();
    body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .map(|s| s["ip"].as_str().unwrap().to_string())
        .expect("no current session")
}

#[test]
fn patch_and_delete_me_spend_the_address_bucket() {
    // Burst 4: the registration and the login, then two password checks.
    let server = limited(4).start();
    register(&server, "kim@example.com", GOOD);
    let token = login(&server, "kim@example.com", GOOD);
    let patch = || {
        server.json_auth(
            "PATCH",
            "/auth/me",
            &token,
            &json!({"email": "kim2@example.com", "current_password": WRONG}),
        )
    };
    patch().assert_problem(401, "wrong_password");
    server
        .json_auth("DELETE", "/auth/me", &token, &json!({"password": WRONG}))
        .assert_problem(401, "wrong_password");
    patch().assert_problem(429, "rate_limited");
    server
        .json_auth("DELETE", "/auth/me", &token, &json!({"password": GOOD}))
        .assert_problem(429, "rate_limited");
    // Reading the account needs no hash and is never limited.
    assert_eq!(server.get_auth("/auth/me", &token).status, 200);
}

#[test]
fn guesses_spread_over_many_addresses_meet_the_account_bucket() {
    let server = limited(3).env("TRUSTED_PROXIES", "127.0.0.1").start();
    register(&server, "lee@example.com", GOOD);
    // Each guess from a fresh address, whose own bucket is full.
    for n in 1..=3 {
        login_from(
            &server,
            &format!("198.51.100.{n}"),
            "lee@example.com",
            WRONG,
        )
        .assert_problem(401, "wrong_password");
    }
    let limited = login_from(&server, "198.51.100.4", "lee@example.com", WRONG);
    limited.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    // Another account is not affected, from any of those addresses.
    register(&server, "max@example.com", GOOD);
    let ok = login_from(&server, "198.51.100.5", "max@example.com", GOOD);
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[test]
fn ipv4_peers_of_a_dual_stack_socket_match_trusted_proxies_and_are_recorded_as_ipv4() {
    let server = limited(2)
        .env("BIND_ADDR", "[::]:0")
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .start();
    // Over IPv4 to the `[::]` socket: the peer is ::ffff:127.0.0.1.
    let v4 = SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let post = |forwarded: Option<&str>, body: &Value| {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(f) = forwarded {
            headers.push(("X-Forwarded-For", f));
        }
        Client::connect(v4).request("POST", "/auth/login", &headers, &body.to_string())
    };
    // Six users behind the proxy, each in a bucket of their own (burst 2).
    for n in 1..=6 {
        let reply = post(
            Some(&format!("203.0.113.{n}")),
            &json!({"email": format!("nobody{n}@example.com"), "password": GOOD}),
        );
        reply.assert_problem(404, "unknown_email");
    }
    // Without the header the proxy is the client, recorded in IPv4 form.
    let registered = Client::connect(v4).request(
        "POST",
        "/auth/register",
        &[("Content-Type", "application/json")],
        &json!({"email": "nia@example.com", "password": GOOD}).to_string(),
    );
    assert_eq!(registered.status, 201, "{}", registered.text());
    let reply = post(None, &json!({"email": "nia@example.com", "password": GOOD}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let token = reply.json()["token"].as_str().unwrap().to_string();
    let sessions = Client::connect(v4).request(
        "GET",
        "/auth/sessions",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    );
    let ip = &sessions.json()["sessions"][0]["ip"];
    assert_eq!(ip, "127.0.0.1", "{}", sessions.text());
}

#[test]
fn forwarded_entries_with_ports_or_brackets_name_their_client() {
    let server = Server::builder()
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .start();
    register(&server, "ola@example.com", GOOD);
    for (header, client) in [
        ("198.51.100.8:5555", "198.51.100.8"),
        ("[2001:db8::9]:443", "2001:db8::9"),
        ("[2001:db8::10]", "2001:db8::10"),
        ("::ffff:198.51.100.12", "198.51.100.12"),
        (
            "203.0.113.1, 198.51.100.13:80, 127.0.0.1:9000",
            "198.51.100.13",
        ),
    ] {
        let reply = login_from(&server, header, "ola@example.com", GOOD);
        assert_eq!(reply.status, 200, "{header}: {}", reply.text());
        let token = reply.json()["token"].as_str().unwrap().to_string();
        assert_eq!(own_session_ip(&server, &token), client, "{header}");
    }
}

#[test]
fn ipv6_clients_share_a_bucket_per_64() {
    let server = limited(2).env("TRUSTED_PROXIES", "127.0.0.1").start();
    let unknown =
        |from: &str, n: usize| login_from(&server, from, &format!("nobody{n}@example.com"), GOOD);
    unknown("2001:db8:1:2::1", 0).assert_problem(404, "unknown_email");
    unknown("2001:db8:1:2::ffff", 1).assert_problem(404, "unknown_email");
    // A third address of the same /64: the bucket is spent.
    unknown("2001:db8:1:2:abcd::7", 2).assert_problem(429, "rate_limited");
    // The next /64 is someone else.
    unknown("2001:db8:1:3::1", 3).assert_problem(404, "unknown_email");
}
