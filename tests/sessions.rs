//! Sessions end to end, against the real binary and a real database: bearer
//! authentication (`/auth/me` and every 401 it can answer), logout,
//! logout-all, password change ending sessions, listing and ending single
//! sessions, key rotation across restarts, several server processes on one
//! database, the purge of expired sessions, and tokens never reaching the log.
//!
//! Tokens are also built here from scratch (HMAC-SHA256 over the base64url
//! payload, following docs/token.md), independently of `src/token.rs`, so the
//! tests can present correctly signed tokens for sessions that do not exist
//! and tampered tokens that were not re-signed. The forger is first checked
//! to reproduce a server-issued token byte for byte, so a test that expects
//! `token_revoked` for a forged token cannot pass merely because the forger
//! is wrong.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Reply, Server, TEST_SECRET, TestDb};
use hmac::{Hmac, Mac};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A password that passes every strength rule.
const PASSWORD: &str = "Tr0ub4dor&3-sessions";
/// Another one, for password changes.
const NEW_PASSWORD: &str = "correct-horse-battery-7";
/// What every login in this file sends as its `User-Agent`.
const USER_AGENT: &str = "sessions-test/1.0";
/// Token secrets other than the harness default, each at least 32 bytes.
const K1: &str = "rotation-key-one-0123456789abcdef";
const K2: &str = "rotation-key-two-0123456789abcdef";
const OTHER_SECRET: &str = "another-server-secret-0123456789xyz";

/// The exact challenge for a request without credentials (RFC 6750 3).
const CHALLENGE_MISSING: &str = "Bearer";
/// The exact challenge for every rejected token.
const CHALLENGE_INVALID: &str = "Bearer error=\"invalid_token\"";

// ---------------------------------------------------------------------------
// Requests

/// Registers `email` with [`PASSWORD`]; returns the `user` object.
fn register(server: &Server, email: &str) -> Value {
    let reply = server.json(
        "POST",
        "/auth/register",
        &json!({"email": email, "password": PASSWORD}),
    );
    assert_eq!(reply.status, 201, "register {email}: {}", body(&reply));
    reply.json()["user"].clone()
}

/// Logs in with the test `User-Agent`; returns the whole 200 body.
fn login_reply(server: &Server, email: &str, password: &str) -> Value {
    let reply = server.request(
        "POST",
        "/auth/login",
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", USER_AGENT),
        ],
        &json!({"email": email, "password": password}).to_string(),
    );
    assert_eq!(reply.status, 200, "login {email}: {}", body(&reply));
    let json = reply.json();
    assert_eq!(json["token_type"], "Bearer");
    json
}

/// Logs in; returns the token.
fn login(server: &Server, email: &str, password: &str) -> String {
    login_reply(server, email, password)["token"]
        .as_str()
        .expect("login answered without a token")
        .to_string()
}

/// Registers and logs in; returns the user id and a token.
fn signup(server: &Server, email: &str) -> (u64, String) {
    let user = register(server, email);
    let id = user["id"].as_u64().expect("user id is not a number");
    (id, login(server, email, PASSWORD))
}

/// `method path` with `Authorization: <value>` exactly as given.
fn with_authorization(server: &Server, method: &str, path: &str, value: &str) -> Reply {
    server.request(method, path, &[("Authorization", value)], "")
}

/// `method path` with a bearer token and no body.
fn bearer(server: &Server, method: &str, path: &str, token: &str) -> Reply {
    with_authorization(server, method, path, &format!("Bearer {token}"))
}

/// `GET /auth/sessions`; asserts 200 and returns the list.
fn list_sessions(server: &Server, token: &str) -> Vec<Value> {
    let reply = server.get_auth("/auth/sessions", token);
    assert_eq!(reply.status, 200, "GET /auth/sessions: {}", body(&reply));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json()["sessions"]
        .as_array()
        .expect("sessions is not an array")
        .clone()
}

fn body(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

// ---------------------------------------------------------------------------
// Assertions

/// The token works: `/auth/me` answers 200 with this user.
#[track_caller]
fn assert_live(server: &Server, token: &str, user_id: u64) {
    let reply = server.get_auth("/auth/me", token);
    assert_eq!(reply.status, 200, "token should be live: {}", body(&reply));
    assert_eq!(reply.json()["user"]["id"], user_id);
}

/// A 401 problem with this code and the matching `WWW-Authenticate`.
#[track_caller]
fn assert_401(reply: &Reply, code: &str) {
    reply.assert_problem(401, code);
    let challenge = if code == "missing_token" {
        CHALLENGE_MISSING
    } else {
        CHALLENGE_INVALID
    };
    assert_eq!(
        reply.header("www-authenticate"),
        Some(challenge),
        "WWW-Authenticate of a {code} answer"
    );
}

/// Every authenticated endpoint answers this 401 for `token`.
#[track_caller]
fn assert_rejected_everywhere(server: &Server, token: &str, code: &str) {
    assert_401(&bearer(server, "GET", "/auth/me", token), code);
    assert_401(&bearer(server, "GET", "/auth/sessions", token), code);
    assert_401(&bearer(server, "POST", "/auth/logout", token), code);
    assert_401(&bearer(server, "POST", "/auth/logout-all", token), code);
    let path = format!("/auth/sessions/{}", hex(&claims(token).session_id));
    assert_401(&bearer(server, "DELETE", &path, token), code);
}

/// The server's log once it has caught up with every request answered so
/// far. The harness reads stderr on a thread of its own, so the last lines
/// can lag behind the replies; a request sent now is logged after all of
/// them, and its id marks the point to wait for.
fn synced_log(server: &Server) -> String {
    let marker = server.get("/healthz");
    let id = marker
        .header("x-request-id")
        .expect("no X-Request-Id")
        .to_string();
    let needle = format!("\"request_id\":\"{id}\"");
    assert!(
        eventually(Duration::from_secs(5), || server.log().contains(&needle)),
        "request {id} never reached the log:\n{}",
        server.log()
    );
    server.log()
}

/// Neither a token nor its MAC part appears anywhere in the server's log.
#[track_caller]
fn assert_not_logged(server: &Server, tokens: &[&str]) {
    let log = synced_log(server);
    for token in tokens {
        assert!(!log.contains(token), "the log contains the token {token}");
        if let Some((_, mac)) = token.split_once('.')
            && mac.len() >= 20
        {
            assert!(!log.contains(mac), "the log contains the MAC part {mac}");
        }
    }
}

// ---------------------------------------------------------------------------
// Tokens, built independently of src/token.rs (docs/token.md)

/// The claims of a version 1 token.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claims {
    key_id: [u8; 4],
    user_id: u64,
    session_id: [u8; 16],
    issued_at: u64,
    expires_at: u64,
}

/// Decodes a token's payload without checking its MAC.
fn claims(token: &str) -> Claims {
    let (payload, _) = token.split_once('.').expect("token has no '.'");
    let p = URL_SAFE_NO_PAD
        .decode(payload)
        .expect("payload is not base64url");
    assert_eq!(p.len(), 45, "payload length");
    assert_eq!(p[0], 1, "version");
    let u64_at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().unwrap());
    Claims {
        key_id: p[1..5].try_into().unwrap(),
        user_id: u64_at(5),
        session_id: p[13..29].try_into().unwrap(),
        issued_at: u64_at(29),
        expires_at: u64_at(37),
    }
}

fn hmac_sha256(secret: &str, data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The key id of a secret: the first 4 bytes of its HMAC of the label.
fn key_id(secret: &str) -> [u8; 4] {
    hmac_sha256(secret, b"auth-server token key id v1")[..4]
        .try_into()
        .unwrap()
}

/// The 45-byte payload of `c`, base64url-encoded.
fn encode_payload(c: &Claims) -> String {
    let mut p = Vec::with_capacity(45);
    p.push(1u8);
    p.extend_from_slice(&c.key_id);
    p.extend_from_slice(&c.user_id.to_be_bytes());
    p.extend_from_slice(&c.session_id);
    p.extend_from_slice(&c.issued_at.to_be_bytes());
    p.extend_from_slice(&c.expires_at.to_be_bytes());
    URL_SAFE_NO_PAD.encode(p)
}

/// A token for `c` signed with `secret` (whose key id `c` should carry).
fn forge(secret: &str, c: &Claims) -> String {
    let payload = encode_payload(c);
    let mac = hmac_sha256(secret, payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_session_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).unwrap();
    id
}

/// `text` with the character at `index` replaced by another base64url one.
fn change_char(text: &str, index: usize) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    chars[index] = if chars[index] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// Waits until `f` holds, for at most `within`.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// GET /auth/me and the 401s

#[test]
fn me_returns_the_user_for_any_case_of_the_scheme() {
    let server = Server::start();
    let user = register(&server, "Alice@Example.com");
    let token = login(&server, "alice@example.com", PASSWORD);

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let reply = with_authorization(&server, "GET", "/auth/me", &format!("{scheme} {token}"));
        assert_eq!(reply.status, 200, "{scheme}: {}", body(&reply));
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let me = reply.json();
        assert_eq!(me, json!({"user": user.clone(), "mfa": false}), "{scheme}");
        assert_eq!(me["user"]["email"], "alice@example.com");
    }
    assert_not_logged(&server, &[&token]);
}

#[test]
fn no_or_empty_authorization_is_missing_token_everywhere() {
    let server = Server::start();
    let (_, token) = signup(&server, "alice@example.com");
    let id = hex(&claims(&token).session_id);
    let delete_path = format!("/auth/sessions/{id}");
    let endpoints = [
        ("GET", "/auth/me"),
        ("GET", "/auth/sessions"),
        ("POST", "/auth/logout"),
        ("POST", "/auth/logout-all"),
        ("DELETE", delete_path.as_str()),
    ];
    for (method, path) in endpoints {
        let none = server.request(method, path, &[], "");
        assert_401(&none, "missing_token");
        let empty = with_authorization(&server, method, path, "");
        assert_401(&empty, "missing_token");
        let blank = with_authorization(&server, method, path, "   ");
        assert_401(&blank, "missing_token");
    }
    // Nothing of the above ended the session.
    assert_eq!(list_sessions(&server, &token).len(), 1);
}

#[test]
fn malformed_and_foreign_tokens_are_invalid_token() {
    let server = Server::start();
    let (user_id, token) = signup(&server, "alice@example.com");
    let (payload, mac) = token.split_once('.').unwrap();
    assert_eq!((payload.len(), mac.len()), (60, 43), "token {token}");

    let bad: Vec<(&str, String)> = vec![
        ("garbage", "Bearer garbage-token-value".into()),
        ("basic scheme", "Basic xyz".into()),
        ("basic scheme with the real token", format!("Basic {token}")),
        ("scheme without separator", format!("Bearer{token}")),
        (
            "payload char changed",
            format!("Bearer {}.{mac}", change_char(payload, 30)),
        ),
        (
            "MAC char changed",
            format!("Bearer {payload}.{}", change_char(mac, 21)),
        ),
        (
            "truncated by one",
            format!("Bearer {}", &token[..token.len() - 1]),
        ),
        ("payload only", format!("Bearer {payload}")),
        ("payload and dot", format!("Bearer {payload}.")),
        ("MAC only", format!("Bearer .{mac}")),
        ("padding appended", format!("Bearer {token}=")),
        ("extra part", format!("Bearer {token}.x")),
        ("parts swapped", format!("Bearer {mac}.{payload}")),
        ("huge", format!("Bearer {}", "A".repeat(4000))),
        ("token twice", format!("Bearer {token}{token}")),
    ];
    for (what, value) in &bad {
        let reply = with_authorization(&server, "GET", "/auth/me", value);
        assert_eq!(reply.status, 401, "{what}: {}", body(&reply));
        assert_401(&reply, "invalid_token");
    }

    // A token this server never signed: same database, same user, another
    // secret. It is live on its own server and still refused here.
    let other = Server::builder()
        .db(&server.db)
        .env("TOKEN_SECRET", OTHER_SECRET)
        .start();
    let foreign = login(&other, "alice@example.com", PASSWORD);
    assert_live(&other, &foreign, user_id);
    assert_eq!(claims(&foreign).key_id, key_id(OTHER_SECRET));
    assert_rejected_everywhere(&server, &foreign, "invalid_token");

    // None of the rejections touched the real session.
    assert_live(&server, &token, user_id);
    // What was presented after the scheme must not be logged either.
    let mut logged: Vec<&str> = bad
        .iter()
        .map(|(_, v)| v.split_once(' ').map_or(v.as_str(), |(_, t)| t))
        .filter(|t| t.len() >= 16)
        .collect();
    logged.push(&token);
    logged.push(&foreign);
    assert_not_logged(&server, &logged);
}

#[test]
fn forged_tokens_need_a_live_session_and_an_intact_mac() {
    let server = Server::start();
    let (alice, token) = signup(&server, "alice@example.com");
    let bob_user = register(&server, "bob@example.com");
    let bob = bob_user["id"].as_u64().unwrap();
    let real = claims(&token);
    assert_eq!(real.user_id, alice);
    assert_eq!(real.key_id, key_id(TEST_SECRET));
    assert!(real.expires_at > real.issued_at);

    // The forger is right: it reproduces the server's token exactly.
    assert_eq!(forge(TEST_SECRET, &real), token);

    // Correct MAC, but no live session matches: revoked, never Bob's data.
    let as_bob = forge(
        TEST_SECRET,
        &Claims {
            user_id: bob,
            ..real.clone()
        },
    );
    assert_rejected_everywhere(&server, &as_bob, "token_revoked");
    let as_nobody = forge(
        TEST_SECRET,
        &Claims {
            user_id: 987_654_321,
            ..real.clone()
        },
    );
    assert_401(&server.get_auth("/auth/me", &as_nobody), "token_revoked");
    let unknown_session = forge(
        TEST_SECRET,
        &Claims {
            session_id: random_session_id(),
            ..real.clone()
        },
    );
    assert_rejected_everywhere(&server, &unknown_session, "token_revoked");

    // Payload changed but the old MAC kept: invalid, whichever claim changed.
    let mac = token.split_once('.').unwrap().1;
    let tampered_claims = [
        Claims {
            user_id: bob,
            ..real.clone()
        },
        Claims {
            session_id: random_session_id(),
            ..real.clone()
        },
        Claims {
            expires_at: real.expires_at + 86_400,
            ..real.clone()
        },
    ];
    let mut tampered = Vec::new();
    for c in &tampered_claims {
        let t = format!("{}.{mac}", encode_payload(c));
        assert_ne!(t, token);
        assert_401(&server.get_auth("/auth/me", &t), "invalid_token");
        tampered.push(t);
    }

    // Alice is still herself, and Bob has no session at all.
    assert_live(&server, &token, alice);
    let sessions = list_sessions(&server, &token);
    assert_eq!(sessions.len(), 1);
    let bob_sessions: usize = server
        .db
        .conn()
        .exec_first("SELECT COUNT(*) FROM sessions WHERE user_id = ?", (bob,))
        .unwrap()
        .unwrap();
    assert_eq!(bob_sessions, 0);

    let mut logged = vec![token.as_str(), &as_bob, &as_nobody, &unknown_session];
    logged.extend(tampered.iter().map(String::as_str));
    assert_not_logged(&server, &logged);
}

#[test]
fn an_expired_token_is_token_expired() {
    let server = Server::builder().env("TOKEN_TTL_SECONDS", "1").start();
    register(&server, "alice@example.com");
    let reply = login_reply(&server, "alice@example.com", PASSWORD);
    assert_eq!(reply["expires_in"], 1);
    let token = reply["token"].as_str().unwrap().to_string();
    let c = claims(&token);
    assert_eq!(c.expires_at, c.issued_at + 1);

    std::thread::sleep(Duration::from_millis(2200));
    assert_rejected_everywhere(&server, &token, "token_expired");
    assert_not_logged(&server, &[&token]);
}

// ---------------------------------------------------------------------------
// Ending sessions

#[test]
fn logout_ends_only_that_session() {
    let server = Server::start();
    let (alice, first) = signup(&server, "alice@example.com");
    let second = login(&server, "alice@example.com", PASSWORD);
    assert_ne!(first, second);

    let out = bearer(&server, "POST", "/auth/logout", &first);
    assert_eq!(out.status, 204, "{}", body(&out));
    assert!(out.body.is_empty());

    assert_401(&server.get_auth("/auth/me", &first), "token_revoked");
    assert_401(&server.get_auth("/auth/sessions", &first), "token_revoked");
    assert_401(
        &bearer(&server, "POST", "/auth/logout", &first),
        "token_revoked",
    );
    assert_rejected_everywhere(&server, &first, "token_revoked");

    assert_live(&server, &second, alice);
    let left = list_sessions(&server, &second);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], hex(&claims(&second).session_id));
    assert_not_logged(&server, &[&first, &second]);
}

#[test]
fn logout_all_ends_every_session_of_the_user_and_no_other() {
    let server = Server::start();
    let (alice, first) = signup(&server, "alice@example.com");
    let others: Vec<String> = (0..2)
        .map(|_| login(&server, "alice@example.com", PASSWORD))
        .collect();
    let (bob, bob_token) = signup(&server, "bob@example.com");
    assert_eq!(list_sessions(&server, &first).len(), 3);

    let out = bearer(&server, "POST", "/auth/logout-all", &others[1]);
    assert_eq!(out.status, 204, "{}", body(&out));
    assert!(out.body.is_empty());

    for token in [&first, &others[0], &others[1]] {
        assert_rejected_everywhere(&server, token, "token_revoked");
    }
    assert_live(&server, &bob_token, bob);
    assert_eq!(list_sessions(&server, &bob_token).len(), 1);

    // Logging in again works and starts from a clean slate.
    let again = login(&server, "alice@example.com", PASSWORD);
    assert_live(&server, &again, alice);
    assert_eq!(list_sessions(&server, &again).len(), 1);
    assert_not_logged(
        &server,
        &[&first, &others[0], &others[1], &bob_token, &again],
    );
}

#[test]
fn a_password_change_ends_every_earlier_session_of_the_user() {
    let server = Server::start();
    let (alice, first) = signup(&server, "alice@example.com");
    let earlier: Vec<String> = std::iter::once(first)
        .chain((0..2).map(|_| login(&server, "alice@example.com", PASSWORD)))
        .collect();
    let (bob, bob_token) = signup(&server, "bob@example.com");

    let changed = server.json(
        "POST",
        "/auth/password",
        &json!({
            "email": "alice@example.com",
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
        }),
    );
    assert_eq!(changed.status, 204, "{}", body(&changed));

    for token in &earlier {
        assert_rejected_everywhere(&server, token, "token_revoked");
    }
    assert_live(&server, &bob_token, bob);

    let old = server.json(
        "POST",
        "/auth/login",
        &json!({"email": "alice@example.com", "password": PASSWORD}),
    );
    old.assert_problem(401, "wrong_password");
    let fresh = login(&server, "alice@example.com", NEW_PASSWORD);
    assert_live(&server, &fresh, alice);
    assert_eq!(list_sessions(&server, &fresh).len(), 1);

    let mut logged: Vec<&str> = earlier.iter().map(String::as_str).collect();
    logged.push(&bob_token);
    logged.push(&fresh);
    assert_not_logged(&server, &logged);
}

// ---------------------------------------------------------------------------
// GET /auth/sessions

#[test]
fn sessions_lists_live_sessions_newest_first() {
    let server = Server::start();
    register(&server, "alice@example.com");
    let (bob, bob_token) = signup(&server, "bob@example.com");
    let mut logins = Vec::new();
    for i in 0..4 {
        if i > 0 {
            // created_at has one-second resolution.
            std::thread::sleep(Duration::from_millis(1100));
        }
        logins.push(login_reply(&server, "alice@example.com", PASSWORD));
    }
    let tokens: Vec<String> = logins
        .iter()
        .map(|l| l["token"].as_str().unwrap().to_string())
        .collect();

    // End the second login: it must disappear from the list.
    let out = bearer(&server, "POST", "/auth/logout", &tokens[1]);
    assert_eq!(out.status, 204);
    let live = [3usize, 2, 0];

    for caller in live {
        let list = list_sessions(&server, &tokens[caller]);
        let ids: Vec<&str> = list.iter().map(|s| s["id"].as_str().unwrap()).collect();
        let expected: Vec<String> = live
            .iter()
            .map(|&i| hex(&claims(&tokens[i]).session_id))
            .collect();
        assert_eq!(ids, expected, "live sessions newest first");

        let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
        assert_eq!(current.len(), 1, "exactly one current: {list:?}");
        assert_eq!(
            current[0]["id"],
            expected[live.iter().position(|&i| i == caller).unwrap()]
        );

        for (s, &i) in list.iter().zip(live.iter()) {
            let id = s["id"].as_str().unwrap();
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "id is not lowercase hex: {id}"
            );
            assert_eq!(s["ip"], "127.0.0.1");
            assert_eq!(s["user_agent"], USER_AGENT);
            assert!(s["current"].is_boolean());
            // The session's end, not its access token's.
            assert_eq!(s["expires_at"], logins[i]["refresh_expires_at"], "{s}");
            assert_eq!(s["last_refreshed_at"], Value::Null, "{s}");
            let created = s["created_at"].as_str().unwrap();
            assert!(
                created.len() == 20 && created.ends_with('Z') && &created[10..11] == "T",
                "created_at is not RFC 3339 UTC: {created}"
            );
            let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "created_at",
                    "current",
                    "expires_at",
                    "id",
                    "ip",
                    "last_refreshed_at",
                    "mfa",
                    "user_agent"
                ]
            );
        }
        let created: Vec<&str> = list
            .iter()
            .map(|s| s["created_at"].as_str().unwrap())
            .collect();
        assert!(
            created.windows(2).all(|w| w[0] > w[1]),
            "created_at not strictly decreasing: {created:?}"
        );
    }

    // Bob sees only his own.
    let bobs = list_sessions(&server, &bob_token);
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["id"], hex(&claims(&bob_token).session_id));
    assert_eq!(bobs[0]["current"], true);
    assert_live(&server, &bob_token, bob);

    let mut logged: Vec<&str> = tokens.iter().map(String::as_str).collect();
    logged.push(&bob_token);
    assert_not_logged(&server, &logged);
}

#[test]
fn expired_sessions_are_not_listed() {
    // Two servers on one database and key: one makes sessions that end
    // after a second idle, the other week-long ones, so a live token can
    // list an ended session.
    let long = Server::start();
    let short = Server::builder()
        .db(&long.db)
        .env("SESSION_IDLE_SECONDS", "1")
        .start();
    register(&long, "alice@example.com");
    let brief = login(&short, "alice@example.com", PASSWORD);
    let lasting = login(&long, "alice@example.com", PASSWORD);
    std::thread::sleep(Duration::from_millis(2200));

    let list = list_sessions(&long, &lasting);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], hex(&claims(&lasting).session_id));
    assert_eq!(list[0]["current"], true);
    assert_401(&long.get_auth("/auth/me", &brief), "token_expired");
    assert_not_logged(&long, &[&brief, &lasting]);
    assert_not_logged(&short, &[&brief, &lasting]);
}

// ---------------------------------------------------------------------------
// DELETE /auth/sessions/{id}

#[test]
fn deleting_a_session_ends_it_and_keeps_the_callers() {
    let server = Server::start();
    let (alice, caller) = signup(&server, "alice@example.com");
    let victim = login(&server, "alice@example.com", PASSWORD);
    let victim_id = hex(&claims(&victim).session_id);

    let out = bearer(
        &server,
        "DELETE",
        &format!("/auth/sessions/{victim_id}"),
        &caller,
    );
    assert_eq!(out.status, 204, "{}", body(&out));
    assert!(out.body.is_empty());

    assert_rejected_everywhere(&server, &victim, "token_revoked");
    assert_live(&server, &caller, alice);
    let left = list_sessions(&server, &caller);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], hex(&claims(&caller).session_id));

    // Ending it a second time: it no longer exists.
    bearer(
        &server,
        "DELETE",
        &format!("/auth/sessions/{victim_id}"),
        &caller,
    )
    .assert_problem(404, "not_found");
    assert_not_logged(&server, &[&caller, &victim]);
}

#[test]
fn deleting_the_callers_own_session_works() {
    let server = Server::start();
    let (alice, caller) = signup(&server, "alice@example.com");
    let other = login(&server, "alice@example.com", PASSWORD);
    let own = hex(&claims(&caller).session_id);

    let out = bearer(&server, "DELETE", &format!("/auth/sessions/{own}"), &caller);
    assert_eq!(out.status, 204, "{}", body(&out));
    assert_rejected_everywhere(&server, &caller, "token_revoked");
    assert_live(&server, &other, alice);
}

#[test]
fn another_users_session_is_not_found_exactly_like_an_unknown_one() {
    let server = Server::start();
    let (_, alice_token) = signup(&server, "alice@example.com");
    let (bob, bob_token) = signup(&server, "bob@example.com");
    let bob_session = hex(&claims(&bob_token).session_id);
    let unknown = hex(&random_session_id());

    let foreign = bearer(
        &server,
        "DELETE",
        &format!("/auth/sessions/{bob_session}"),
        &alice_token,
    );
    let missing = bearer(
        &server,
        "DELETE",
        &format!("/auth/sessions/{unknown}"),
        &alice_token,
    );
    let malformed = bearer(&server, "DELETE", "/auth/sessions/xyz", &alice_token);
    for reply in [&foreign, &missing, &malformed] {
        reply.assert_problem(404, "not_found");
        assert_eq!(reply.header("www-authenticate"), None);
    }
    let without_request_id = |r: &Reply| {
        let mut v = r.json();
        let id = v
            .as_object_mut()
            .unwrap()
            .remove("request_id")
            .expect("no request_id");
        assert_eq!(Some(id.as_str().unwrap()), r.header("x-request-id"));
        v
    };
    assert_eq!(without_request_id(&foreign), without_request_id(&missing));
    assert_eq!(without_request_id(&foreign), without_request_id(&malformed));
    assert_ne!(foreign.json()["request_id"], missing.json()["request_id"]);
    for name in ["content-type", "allow", "connection", "www-authenticate"] {
        assert_eq!(foreign.header(name), missing.header(name), "{name}");
    }

    // Bob's session survived Alice's attempt.
    assert_live(&server, &bob_token, bob);
    assert_eq!(list_sessions(&server, &bob_token).len(), 1);
    assert_eq!(list_sessions(&server, &alice_token).len(), 1);
}

#[test]
fn malformed_session_ids_are_not_found() {
    let server = Server::start();
    let (alice, token) = signup(&server, "alice@example.com");
    let own = hex(&claims(&token).session_id);
    let malformed = [
        "xyz".to_string(),
        own[..31].to_string(),
        format!("{own}0"),
        own.to_uppercase(),
        format!("{own}/"),
        format!("{}g", &own[..31]),
    ];
    assert_ne!(own.to_uppercase(), own, "the id should contain a letter");
    for id in &malformed {
        let reply = bearer(&server, "DELETE", &format!("/auth/sessions/{id}"), &token);
        assert_eq!(reply.status, 404, "{id}: {}", body(&reply));
        reply.assert_problem(404, "not_found");
    }
    // None of those ended the caller's own session.
    assert_live(&server, &token, alice);
}

#[test]
fn wrong_methods_on_session_paths_are_405() {
    let server = Server::start();
    let (alice, token) = signup(&server, "alice@example.com");
    let own = hex(&claims(&token).session_id);
    let path = format!("/auth/sessions/{own}");

    for method in ["GET", "POST", "PUT"] {
        let reply = bearer(&server, method, &path, &token);
        reply.assert_problem(405, "method_not_allowed");
        assert_eq!(reply.header("allow"), Some("DELETE"), "{method}");
    }
    let unauthenticated = server.get(&path);
    unauthenticated.assert_problem(405, "method_not_allowed");
    assert_eq!(unauthenticated.header("allow"), Some("DELETE"));

    for method in ["DELETE", "POST"] {
        let reply = bearer(&server, method, "/auth/sessions", &token);
        reply.assert_problem(405, "method_not_allowed");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method}");
    }
    let reply = bearer(&server, "POST", "/auth/me", &token);
    reply.assert_problem(405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("GET, HEAD, PATCH, DELETE"));

    // None of that ended the session.
    assert_live(&server, &token, alice);
}

// ---------------------------------------------------------------------------
// Keys and processes

#[test]
fn key_rotation_keeps_old_tokens_only_while_the_old_key_is_listed() {
    let db = Arc::new(TestDb::new());
    let a = Server::builder().db(&db).env("TOKEN_SECRET", K1).start();
    let (alice, old) = signup(&a, "alice@example.com");
    assert_eq!(claims(&old).key_id, key_id(K1));
    assert_not_logged(&a, &[&old]);
    drop(a);

    let b = Server::builder()
        .db(&db)
        .env("TOKEN_SECRET", K2)
        .env("TOKEN_SECRETS_PREVIOUS", K1)
        .start();
    assert_live(&b, &old, alice);
    let new = login(&b, "alice@example.com", PASSWORD);
    assert_eq!(claims(&new).key_id, key_id(K2));
    assert_ne!(claims(&new).key_id, claims(&old).key_id);
    assert_live(&b, &new, alice);
    let listed = list_sessions(&b, &old);
    assert_eq!(listed.len(), 2);
    assert_not_logged(&b, &[&old, &new]);
    drop(b);

    // Several previous keys, comma-separated: the old one still verifies.
    let b2 = Server::builder()
        .db(&db)
        .env("TOKEN_SECRET", K2)
        .env("TOKEN_SECRETS_PREVIOUS", &format!("{OTHER_SECRET},{K1}"))
        .start();
    assert_live(&b2, &old, alice);
    assert_live(&b2, &new, alice);
    drop(b2);

    let c = Server::builder().db(&db).env("TOKEN_SECRET", K2).start();
    assert_rejected_everywhere(&c, &old, "invalid_token");
    assert_live(&c, &new, alice);
    assert_not_logged(&c, &[&old, &new]);
}

#[test]
fn previous_keys_can_come_from_a_file() {
    let db = Arc::new(TestDb::new());
    let a = Server::builder().db(&db).env("TOKEN_SECRET", K1).start();
    let (alice, old) = signup(&a, "alice@example.com");
    drop(a);

    let file = std::env::temp_dir().join(format!(
        "sessions-test-previous-{}-{}",
        std::process::id(),
        hex(&random_session_id())
    ));
    std::fs::write(&file, format!("{K1}\n")).unwrap();
    let b = Server::builder()
        .db(&db)
        .env("TOKEN_SECRET", K2)
        .env("TOKEN_SECRETS_PREVIOUS_FILE", file.to_str().unwrap())
        .start();
    let works = b.get_auth("/auth/me", &old);
    let new = login(&b, "alice@example.com", PASSWORD);
    drop(b);
    std::fs::remove_file(&file).unwrap();

    assert_eq!(works.status, 200, "{}", body(&works));
    assert_eq!(works.json()["user"]["id"], alice);
    assert_eq!(claims(&new).key_id, key_id(K2));
    assert_ne!(claims(&new).key_id, claims(&old).key_id);
}

#[test]
fn two_servers_on_one_database_honour_each_others_logouts() {
    let a = Server::start();
    let b = Server::builder().db(&a.db).start();
    let (alice, token) = signup(&a, "alice@example.com");
    let other = login(&b, "alice@example.com", PASSWORD);

    assert_live(&b, &token, alice);
    assert_live(&a, &other, alice);
    assert_eq!(list_sessions(&b, &token).len(), 2);

    let out = bearer(&b, "POST", "/auth/logout", &token);
    assert_eq!(out.status, 204, "{}", body(&out));
    assert_rejected_everywhere(&a, &token, "token_revoked");
    assert_401(&b.get_auth("/auth/me", &token), "token_revoked");

    // And the other way round, for logging out everywhere.
    let out = bearer(&a, "POST", "/auth/logout-all", &other);
    assert_eq!(out.status, 204, "{}", body(&out));
    assert_rejected_everywhere(&b, &other, "token_revoked");

    assert_not_logged(&a, &[&token, &other]);
    assert_not_logged(&b, &[&token, &other]);
}

#[test]
fn expired_sessions_are_purged_at_start_up() {
    let db = Arc::new(TestDb::new());
    // Two seconds idle, so a login's token is still live for the request
    // after it on a slow machine, and a three-second pause ends them all.
    let settings = |b: common::Builder| b.db(&db).env("SESSION_IDLE_SECONDS", "2");
    let first = settings(Server::builder()).start();
    let (alice, _) = signup(&first, "alice@example.com");
    let (bob, _) = signup(&first, "bob@example.com");
    login(&first, "alice@example.com", PASSWORD);
    login(&first, "alice@example.com", PASSWORD);

    let count = |table: &str| -> u64 {
        db.conn()
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .unwrap()
            .unwrap()
    };
    // The start-up purge ran before these logins; the next is minutes away.
    assert_eq!(count("sessions"), 4);
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(count("sessions"), 4, "purged before the restart");
    drop(first);

    let second = settings(Server::builder()).start();
    assert!(
        eventually(Duration::from_secs(5), || count("sessions") == 0),
        "expired sessions still stored after a restart: {}\nlog:\n{}",
        count("sessions"),
        second.log()
    );
    assert_eq!(count("users"), 2);
    let ids: Vec<u64> = db.conn().query("SELECT id FROM users ORDER BY id").unwrap();
    assert_eq!(ids, [alice.min(bob), alice.max(bob)]);

    // The accounts still work.
    let token = login(&second, "alice@example.com", PASSWORD);
    assert_live(&second, &token, alice);
}

#[test]
fn no_token_ever_reaches_the_log() {
    let server = Server::start();
    let (alice, token) = signup(&server, "alice@example.com");
    let second = login(&server, "alice@example.com", PASSWORD);
    let third = login(&server, "alice@example.com", PASSWORD);
    let forged = forge(
        TEST_SECRET,
        &Claims {
            session_id: random_session_id(),
            ..claims(&token)
        },
    );
    let (payload, mac) = token.split_once('.').unwrap();
    let tampered = format!("{}.{mac}", change_char(payload, 30));

    assert_live(&server, &token, alice);
    list_sessions(&server, &token);
    for bad in [&forged, &tampered] {
        assert_eq!(server.get_auth("/auth/me", bad).status, 401);
    }
    let third_id = hex(&claims(&third).session_id);
    assert_eq!(
        bearer(
            &server,
            "DELETE",
            &format!("/auth/sessions/{third_id}"),
            &token
        )
        .status,
        204
    );
    assert_eq!(bearer(&server, "POST", "/auth/logout", &second).status, 204);
    assert_eq!(server.get_auth("/auth/me", &second).status, 401);
    assert_eq!(
        bearer(&server, "POST", "/auth/logout-all", &token).status,
        204
    );
    assert_eq!(server.get_auth("/auth/me", &token).status, 401);
    let changed = server.json(
        "POST",
        "/auth/password",
        &json!({
            "email": "alice@example.com",
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
        }),
    );
    assert_eq!(changed.status, 204);
    let last = login(&server, "alice@example.com", NEW_PASSWORD);
    assert_live(&server, &last, alice);

    // The log did record all of that (one line per request at least).
    let log = synced_log(&server);
    let requests = log
        .lines()
        .filter(|l| l.contains("\"msg\":\"request\""))
        .count();
    assert!(requests >= 16, "only {requests} request lines:\n{log}");
    assert_not_logged(
        &server,
        &[&token, &second, &third, &forged, &tampered, &last],
    );
    // Nor a password.
    assert!(!log.contains(PASSWORD) && !log.contains(NEW_PASSWORD));
}
