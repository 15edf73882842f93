//! The account endpoints (`POST /auth/register`, `POST /auth/login`,
//! `POST /auth/password`) driven over TCP against the real binary and a real
//! database.
//!
//! Covered: every success and error row of the API table with its status,
//! `code`, content type and body; the bad-body battery (415, malformed JSON
//! including invalid UTF-8 sent as raw bytes, missing and wrongly typed
//! members, unknown members, `charset`) on each of the three endpoints,
//! plus deeply nested JSON that must not exhaust a thread's stack;
//! case-insensitive emails; Unicode passwords and the character (not byte)
//! length rules; the length boundaries of passwords and emails; concurrent
//! registration of one email; what the `users` table holds (and does not);
//! tokens checked by the independent Python verifier in `docs/`; the
//! `TOKEN_TTL_SECONDS` setting; and that no password or token reaches the
//! log.
//!
//! Each test starts its own server on its own fresh database, so tests are
//! independent and can run in parallel.

mod common;

use common::{Reply, Server, TEST_SECRET};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The members of a `user` object, sorted.
const USER_KEYS: [&str; 9] = [
    "created_at",
    "email",
    "email_verified",
    "id",
    "locale",
    "metadata",
    "mfa_enabled",
    "name",
    "role",
];
const REGISTER: &str = "/auth/register";
const LOGIN: &str = "/auth/login";
const PASSWORD: &str = "/auth/password";

/// A password that breaks no rule, used where the password is not under test.
const GOOD: &str = "correct horse battery staple";
/// Another acceptable password, for password changes.
const OTHER: &str = "Tr0ub4dor&3 but longer";

fn register(server: &Server, email: &str, password: &str) -> Reply {
    server.json(
        "POST",
        REGISTER,
        &json!({"email": email, "password": password}),
    )
}

fn login(server: &Server, email: &str, password: &str) -> Reply {
    server.json(
        "POST",
        LOGIN,
        &json!({"email": email, "password": password}),
    )
}

fn change_password(server: &Server, email: &str, current: &str, new: &str) -> Reply {
    server.json(
        "POST",
        PASSWORD,
        &json!({"email": email, "current_password": current, "new_password": new}),
    )
}

/// Sends `body` as raw bytes (so it may be invalid UTF-8) with an optional
/// Content-Type and an exact Content-Length, and reads the reply.
fn post_raw(server: &Server, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
    let mut raw = format!("POST {path} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    if let Some(ct) = content_type {
        raw.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
    }
    raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    raw.extend_from_slice(body);
    let mut client = server.connect();
    client.send(&raw);
    client
        .read_reply()
        .unwrap_or_else(|| panic!("no reply to POST {path} with body {body:?}"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds) into
/// Unix seconds; panics on any other shape.
fn parse_utc(text: &str) -> u64 {
    let b = text.as_bytes();
    let shape_ok = b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(shape_ok, "not an RFC 3339 UTC timestamp: {text:?}");
    let num = |from: usize, to: usize| -> i64 { text[from..to].parse().unwrap() };
    let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
    let (hour, minute, second) = (num(11, 13), num(14, 16), num(17, 19));
    assert!(
        (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60,
        "impossible date or time: {text:?}"
    );
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3_600 + minute * 60 + second).unwrap()
}

#[track_caller]
fn assert_near(actual: u64, expected: u64, slack: u64, what: &str) {
    assert!(
        actual.abs_diff(expected) <= slack,
        "{what}: {actual} is not within {slack} s of {expected}"
    );
}

/// The member names of a JSON object, sorted.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Checks a 201 registration reply and returns the user object.
#[track_caller]
fn assert_registered(reply: &Reply, expected_email: &str) -> Value {
    assert_eq!(
        reply.status,
        201,
        "registration of {expected_email:?} failed: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(keys(&body), ["user"], "body: {body}");
    let user = body["user"].clone();
    assert_eq!(keys(&user), USER_KEYS, "user: {user}");
    assert_eq!(
        user["role"], "user",
        "a registered account is a user: {user}"
    );
    assert!(user["id"].as_u64().is_some_and(|id| id > 0), "id: {user}");
    assert_eq!(
        user["email_verified"], false,
        "a new address is unverified: {user}"
    );
    assert_eq!(user["email"], expected_email);
    let created = parse_utc(user["created_at"].as_str().unwrap());
    assert_near(created, unix_now(), 10, "created_at");
    user
}

/// Checks a 200 login reply for `user` with a token valid for `ttl` seconds;
/// returns the token.
#[track_caller]
fn assert_logged_in(reply: &Reply, user: &Value, ttl: u64) -> String {
    assert_eq!(
        reply.status,
        200,
        "login failed: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(
        keys(&body),
        [
            "expires_at",
            "expires_in",
            "refresh_expires_at",
            "refresh_token",
            "token",
            "token_type",
            "user"
        ],
        "body: {body}"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], ttl);
    let expires_at = parse_utc(body["expires_at"].as_str().unwrap());
    assert_near(expires_at, unix_now() + ttl, 5, "expires_at");
    assert_eq!(&body["user"], user);
    let token = body["token"].as_str().unwrap().to_string();
    assert!(
        token.len() > 60 && token.split('.').count() == 2,
        "token shape: {token}"
    );
    token
}

/// A weak-password reply: 422 `weak_password`; returns its detail.
#[track_caller]
fn weak_detail(reply: &Reply) -> String {
    reply.assert_problem(422, "weak_password");
    reply.json()["detail"].as_str().unwrap().to_string()
}

/// A password of exactly `chars` ASCII characters that is in no common list.
fn password_of(chars: usize) -> String {
    "xK9!mQ2$vL".chars().cycle().take(chars).collect()
}

/// An email address of exactly `chars` characters: `a...a@example.com`.
fn email_of(chars: usize) -> String {
    let domain = "@example.com";
    format!("{}{domain}", "a".repeat(chars - domain.len()))
}

fn user_count(server: &Server) -> u64 {
    server
        .db
        .conn()
        .query_first("SELECT COUNT(*) FROM users")
        .unwrap()
        .unwrap()
}

#[test]
fn register_returns_the_user_and_a_second_registration_conflicts() {
    let server = Server::start();
    let password = "a fine password 42";
    let reply = register(&server, "alice@example.com", password);
    let user = assert_registered(&reply, "alice@example.com");

    let text = String::from_utf8(reply.body.clone()).unwrap();
    for secret in [password, "password", "hash", "argon2"] {
        assert!(
            !text.contains(secret),
            "the registration body contains {secret:?}: {text}"
        );
    }

    let again = register(&server, "alice@example.com", "another fine password");
    again.assert_problem(409, "email_taken");
    assert!(again.json()["request_id"].is_string());
    // A different address is a different account with a different id.
    let bob = assert_registered(
        &register(&server, "bob@example.com", password),
        "bob@example.com",
    );
    assert_ne!(bob["id"], user["id"]);
    assert_eq!(user_count(&server), 2);
    // The conflict changed nothing: the first password still logs in.
    assert_logged_in(&login(&server, "alice@example.com", password), &user, 3600);
}

#[test]
fn invalid_emails_get_422_and_create_nothing() {
    let server = Server::start();
    let shapes = [
        "",
        "no-at-sign.example.com",
        "two@@example.com",
        "a@b@example.com",
        "@example.com",
        "a@localhost",
        "a@.example.com",
        "a@example.com.",
        "a@example..com",
        "a@",
        " a@example.com",
        "a@example.com ",
        "a b@example.com",
        "a\t@example.com",
        "a\n@example.com",
        "a\u{0}@example.com",
        "a\u{7f}@example.com",
    ];
    let mut details = BTreeSet::new();
    for email in shapes {
        let reply = register(&server, email, GOOD);
        assert_eq!(reply.status, 422, "{email:?}: {:?}", reply.json());
        reply.assert_problem(422, "invalid_email");
        let detail = reply.json()["detail"].as_str().unwrap().to_string();
        assert!(!detail.is_empty(), "{email:?}");
        details.insert(detail);
    }
    // The detail says what is wrong, so different mistakes read differently.
    assert!(details.len() >= 5, "details: {details:?}");
    assert_eq!(user_count(&server), 0);
}

#[test]
fn weak_passwords_get_422_saying_which_rule() {
    let server = Server::start();
    let email = "Carol@Example.com";

    let too_short = weak_detail(&register(&server, email, "Ab3$xyz"));
    let too_long = weak_detail(&register(&server, email, &password_of(257)));
    let common = weak_detail(&register(&server, email, "password"));
    for other_common in ["12345678", "iloveyou", "PassWord", "qwertyuiop"] {
        assert_eq!(
            weak_detail(&register(&server, email, other_common)),
            common,
            "{other_common:?}"
        );
    }
    // Equal to the email ignoring case, whatever case either is written in.
    let equals_email = weak_detail(&register(&server, email, "carol@example.COM"));
    assert_eq!(
        weak_detail(&register(&server, email, "Carol@Example.com")),
        equals_email
    );

    let all = [&too_short, &too_long, &common, &equals_email];
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "details must differ per rule: {all:?}");
    assert!(too_short.contains('8'), "{too_short}");
    assert!(too_long.contains("256"), "{too_long}");
    assert!(
        equals_email.to_lowercase().contains("email"),
        "{equals_email}"
    );
    assert_eq!(user_count(&server), 0);

    // The email itself with a suffix is not the email: accepted.
    assert_registered(
        &register(&server, email, "carol@example.com!"),
        "carol@example.com",
    );
}

#[test]
fn login_returns_a_bearer_token_and_distinguishes_its_failures() {
    let server = Server::start();
    let user = assert_registered(
        &register(&server, "dave@example.com", GOOD),
        "dave@example.com",
    );

    let token = assert_logged_in(&login(&server, "dave@example.com", GOOD), &user, 3600);
    // The token is the account's: /auth/me answers with the same user.
    let me = server.get_auth("/auth/me", &token);
    assert_eq!(me.status, 200, "{:?}", String::from_utf8_lossy(&me.body));
    assert_eq!(me.json()["user"], user);
    // Each login is its own session with its own token.
    let second = assert_logged_in(&login(&server, "dave@example.com", GOOD), &user, 3600);
    assert_ne!(second, token);

    login(&server, "nobody@example.com", GOOD).assert_problem(404, "unknown_email");
    // An address that cannot be valid cannot have an account either.
    login(&server, "not an email", GOOD).assert_problem(404, "unknown_email");
    login(&server, "", GOOD).assert_problem(404, "unknown_email");

    for wrong in [
        "correct horse battery stapler",
        "Correct horse battery staple",
        "correct horse battery staple ",
        "",
    ] {
        login(&server, "dave@example.com", wrong).assert_problem(401, "wrong_password");
    }
}

#[test]
fn password_change_ends_sessions_and_swaps_the_password() {
    let server = Server::start();
    let email = "erin@example.com";
    let user = assert_registered(&register(&server, email, GOOD), email);
    let token = assert_logged_in(&login(&server, email, GOOD), &user, 3600);

    let reply = change_password(&server, email, GOOD, OTHER);
    assert_eq!(
        reply.status,
        204,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.body.is_empty(), "a 204 has no body");

    assert_logged_in(&login(&server, email, OTHER), &user, 3600);
    login(&server, email, GOOD).assert_problem(401, "wrong_password");
    // Every session that existed before the change has ended.
    server
        .get_auth("/auth/me", &token)
        .assert_problem(401, "token_revoked");
    // The old password no longer authorises a change either.
    change_password(&server, email, GOOD, "yet another password")
        .assert_problem(401, "wrong_password");
    // Changing back and forth works, with the email in any case.
    assert_eq!(
        change_password(&server, "ERIN@example.COM", OTHER, GOOD).status,
        204
    );
    assert_logged_in(&login(&server, email, GOOD), &user, 3600);
}

#[test]
fn password_change_failures_change_nothing() {
    let server = Server::start();
    let email = "frank@example.com";
    let user = assert_registered(&register(&server, email, GOOD), email);
    let token = assert_logged_in(&login(&server, email, GOOD), &user, 3600);

    change_password(&server, "nobody@example.com", GOOD, OTHER)
        .assert_problem(404, "unknown_email");
    change_password(&server, "not an email", GOOD, OTHER).assert_problem(404, "unknown_email");
    change_password(&server, email, "wrong password!", OTHER).assert_problem(401, "wrong_password");

    let too_short = weak_detail(&change_password(&server, email, GOOD, "Ab3$xyz"));
    let too_long = weak_detail(&change_password(&server, email, GOOD, &password_of(257)));
    let common = weak_detail(&change_password(&server, email, GOOD, "iloveyou"));
    let equals_email = weak_detail(&change_password(&server, email, GOOD, "FRANK@example.com"));
    let distinct: BTreeSet<&String> = [&too_short, &too_long, &common, &equals_email]
        .into_iter()
        .collect();
    assert_eq!(distinct.len(), 4, "details must differ per rule");

    // The password check comes first: a wrong current password with a weak
    // new one is a wrong password, revealing nothing about the rules.
    change_password(&server, email, "wrong password!", "short")
        .assert_problem(401, "wrong_password");

    // None of it changed the password or ended the session.
    assert_logged_in(&login(&server, email, GOOD), &user, 3600);
    login(&server, email, OTHER).assert_problem(401, "wrong_password");
    assert_eq!(server.get_auth("/auth/me", &token).status, 200);
}

/// Sends every kind of bad body to `path`; `valid` is a body the endpoint
/// would accept, `members` its required members.
fn bad_body_battery(server: &Server, path: &str, valid: &Value, members: &[&str]) {
    let valid_text = valid.to_string();

    for content_type in [
        None,
        Some(""),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        Some("application/json-patch+json"),
        Some("text/json"),
        Some("json"),
    ] {
        let reply = post_raw(server, path, content_type, valid_text.as_bytes());
        assert_eq!(
            reply.status,
            415,
            "{path} with Content-Type {content_type:?}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.assert_problem(415, "unsupported_media_type");
    }

    let malformed: [&[u8]; 14] = [
        b"",
        b"null",
        b"[]",
        b"[{}]",
        b"\"str\"",
        b"123",
        b"true",
        b"{",
        b"{\"email\": \"a@example.com\"",
        b"{\"email\": \"a@example.com\", \"password\": ",
        b"{\"email\": \"a@example.com\",}",
        b"{} {}",
        b"{\"email\": \"\xff\xfe@example.com\", \"password\": \"whatever pass\"}",
        b"{\"email\": \"a@example.com\", \"password\": \"caf\xc3\", \"x\": 1}",
    ];
    for body in malformed {
        let reply = post_raw(server, path, Some("application/json"), body);
        assert_eq!(
            reply.status,
            400,
            "{path} with body {:?}: {}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&reply.body)
        );
        reply.assert_problem(400, "malformed_json");
    }

    for missing in members {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(*missing);
        let reply = server.json("POST", path, &body);
        reply.assert_problem(400, "missing_field");
        let detail = reply.json()["detail"].as_str().unwrap().to_string();
        assert!(
            detail.contains(&format!("\"{missing}\"")),
            "{path} without {missing}: detail {detail:?} does not name it"
        );
    }
    // With nothing at all, one of the members is named.
    let empty = server.json("POST", path, &json!({}));
    empty.assert_problem(400, "missing_field");
    let detail = empty.json()["detail"].as_str().unwrap().to_string();
    assert!(
        members.iter().any(|m| detail.contains(m)),
        "{path} with {{}}: {detail}"
    );

    for member in members {
        for wrong in [
            json!(42),
            json!(null),
            json!(["x"]),
            json!({"x": "y"}),
            json!(true),
        ] {
            let mut body = valid.clone();
            body[*member] = wrong.clone();
            let reply = server.json("POST", path, &body);
            assert_eq!(
                reply.status,
                400,
                "{path} with {member} = {wrong}: {}",
                String::from_utf8_lossy(&reply.body)
            );
            reply.assert_problem(400, "invalid_field");
            let detail = reply.json()["detail"].as_str().unwrap().to_string();
            assert!(
                detail.contains(&format!("\"{member}\"")),
                "{path} with {member} = {wrong}: detail {detail:?} does not name it"
            );
        }
    }
}

/// Deeply nested JSON on every endpoint: a few hundred bytes of brackets must
/// get a 400 like any other bad body, never exhaust a connection thread's
/// stack (which aborts the whole process).
#[test]
fn deeply_nested_json_gets_400_and_the_server_survives() {
    let mut server = Server::start();
    for path in [REGISTER, LOGIN, PASSWORD] {
        for depth in [64, 127, 128, 129, 1000, 10_000] {
            let objects = "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth);
            let arrays = "[".repeat(depth) + "1" + &"]".repeat(depth);
            let unclosed = "{\"a\":".repeat(depth) + &"}".repeat(depth);
            let shapes = [
                (objects.clone(), ["missing_field", "malformed_json"]),
                (
                    format!("{{\"email\": {objects}, \"password\": \"x\"}}"),
                    ["invalid_field", "malformed_json"],
                ),
                (
                    format!("{{\"email\": {arrays}, \"password\": \"x\"}}"),
                    ["invalid_field", "malformed_json"],
                ),
                (arrays.clone(), ["malformed_json", "malformed_json"]),
                (unclosed, ["malformed_json", "malformed_json"]),
            ];
            for (body, codes) in shapes {
                let what = format!("{path} with {} bytes nested {depth} deep", body.len());
                let mut client = server.connect();
                let mut raw = format!(
                    "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.len()
                );
                raw.push_str(&body);
                client.send(raw.as_bytes());
                let Some(reply) = client.read_reply() else {
                    std::thread::sleep(Duration::from_millis(200));
                    let alive = server.alive();
                    panic!(
                        "no reply to {what} (server alive: {alive}); log tail:\n{}",
                        tail(&server.log(), 3)
                    );
                };
                assert_eq!(
                    reply.status,
                    400,
                    "{what}: {}",
                    String::from_utf8_lossy(&reply.body)
                );
                let code = reply.json()["code"].as_str().unwrap_or("").to_string();
                assert!(codes.contains(&code.as_str()), "{what}: code {code}");
                reply.assert_problem(400, &code);
            }
        }
    }
    assert!(server.alive());
    assert_registered(
        &register(&server, "deep@example.com", GOOD),
        "deep@example.com",
    );
}

/// The last `lines` lines of a log.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The registration body used by the battery; no battery request may create it.
fn register_body() -> Value {
    json!({"email": "battery@example.com", "password": GOOD})
}

#[test]
fn register_rejects_bad_bodies() {
    let server = Server::start();
    bad_body_battery(&server, REGISTER, &register_body(), &["email", "password"]);
    assert_eq!(user_count(&server), 0, "a rejected body created an account");

    // Unknown members are ignored; a charset parameter is allowed; media
    // types are case-insensitive.
    let mut extra = register_body();
    extra["nickname"] = json!("batty");
    extra["admin"] = json!(true);
    extra["id"] = json!(1);
    let reply = post_raw(
        &server,
        REGISTER,
        Some("application/json; charset=utf-8"),
        extra.to_string().as_bytes(),
    );
    let user = assert_registered(&reply, "battery@example.com");
    assert_eq!(keys(&user), USER_KEYS);
    let reply = post_raw(
        &server,
        REGISTER,
        Some("Application/JSON"),
        json!({"email": "second@example.com", "password": GOOD})
            .to_string()
            .as_bytes(),
    );
    assert_registered(&reply, "second@example.com");
}

#[test]
fn login_rejects_bad_bodies() {
    let server = Server::start();
    let body = register_body();
    let email = body["email"].as_str().unwrap();
    let user = assert_registered(&register(&server, email, GOOD), email);
    bad_body_battery(&server, LOGIN, &body, &["email", "password"]);
    let sessions: u64 = server
        .db
        .conn()
        .query_first("SELECT COUNT(*) FROM sessions")
        .unwrap()
        .unwrap();
    assert_eq!(sessions, 0, "a rejected body created a session");

    let mut extra = body.clone();
    extra["remember_me"] = json!(true);
    extra["user_id"] = json!(999);
    let reply = post_raw(
        &server,
        LOGIN,
        Some("application/json; charset=utf-8"),
        extra.to_string().as_bytes(),
    );
    assert_logged_in(&reply, &user, 3600);
}

#[test]
fn password_change_rejects_bad_bodies() {
    let server = Server::start();
    let email = "battery@example.com";
    let user = assert_registered(&register(&server, email, GOOD), email);
    let body = json!({"email": email, "current_password": GOOD, "new_password": OTHER});
    bad_body_battery(
        &server,
        PASSWORD,
        &body,
        &["email", "current_password", "new_password"],
    );
    // Nothing changed.
    assert_logged_in(&login(&server, email, GOOD), &user, 3600);

    let mut extra = body.clone();
    extra["password"] = json!("ignored member");
    extra["confirm"] = json!(OTHER);
    let reply = post_raw(
        &server,
        PASSWORD,
        Some("application/json; charset=utf-8"),
        extra.to_string().as_bytes(),
    );
    assert_eq!(
        reply.status,
        204,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_logged_in(&login(&server, email, OTHER), &user, 3600);
}

#[test]
fn emails_are_case_insensitive() {
    let server = Server::start();
    let user = assert_registered(&register(&server, "A@Example.io", GOOD), "a@example.io");

    let logged_in = login(&server, "a@EXAMPLE.IO", GOOD);
    assert_logged_in(&logged_in, &user, 3600);
    assert_logged_in(&login(&server, "a@example.io", GOOD), &user, 3600);

    for variant in ["a@example.io", "A@EXAMPLE.IO", "A@Example.io"] {
        register(&server, variant, OTHER).assert_problem(409, "email_taken");
    }
    let stored: Vec<String> = server.db.conn().query("SELECT email FROM users").unwrap();
    assert_eq!(stored, ["a@example.io"]);

    // Non-ASCII letters fold too; the domain is stored as its A-label.
    let unicode = assert_registered(
        &register(&server, "ÉLODIE@Café.FR", GOOD),
        "élodie@xn--caf-dma.fr",
    );
    assert_logged_in(&login(&server, "élodie@CAFÉ.fr", GOOD), &unicode, 3600);
    register(&server, "Élodie@café.fr", GOOD).assert_problem(409, "email_taken");
}

#[test]
fn unicode_passwords_round_trip() {
    let server = Server::start();
    let passwords = [
        "🔐🦀 secret 🚀🌍",
        "密码是长城八达岭",
        "パスワードはひみつです",
        "Ame\u{301}lie\u{301} cafe\u{301} s\u{327}a",
        "\u{5d0}\u{5d1}\u{5d2} mixed עברית text",
        "ñandú-Überstraße-ß",
    ];
    for (i, password) in passwords.iter().enumerate() {
        let email = format!("uni{i}@example.com");
        let user = assert_registered(&register(&server, &email, password), &email);
        assert_logged_in(&login(&server, &email, password), &user, 3600);
        // Dropping the last character (one code point) is a different password.
        let mut shorter = password.chars();
        shorter.next_back();
        login(&server, &email, shorter.as_str()).assert_problem(401, "wrong_password");
    }

    // The length rule counts characters, not bytes.
    let eight = "é".repeat(8);
    assert_eq!(eight.len(), 16);
    let user = assert_registered(
        &register(&server, "eight@example.com", &eight),
        "eight@example.com",
    );
    assert_logged_in(&login(&server, "eight@example.com", &eight), &user, 3600);
    let seven = "é".repeat(7);
    assert_eq!(seven.len(), 14);
    weak_detail(&register(&server, "seven@example.com", &seven));
    weak_detail(&register(&server, "crabs7@example.com", &"🦀".repeat(7)));
    assert_registered(
        &register(&server, "crabs8@example.com", &"🦀".repeat(8)),
        "crabs8@example.com",
    );

    // And at the top: 256 four-byte characters (1024 bytes) are allowed, 257 not.
    let crabs = "🦀".repeat(256);
    let user = assert_registered(
        &register(&server, "crabs256@example.com", &crabs),
        "crabs256@example.com",
    );
    assert_logged_in(&login(&server, "crabs256@example.com", &crabs), &user, 3600);
    weak_detail(&register(
        &server,
        "crabs257@example.com",
        &"🦀".repeat(257),
    ));
}

#[test]
fn password_length_boundaries() {
    let server = Server::start();
    weak_detail(&register(&server, "p7@example.com", &password_of(7)));

    let p8 = password_of(8);
    let u8 = assert_registered(&register(&server, "p8@example.com", &p8), "p8@example.com");
    assert_logged_in(&login(&server, "p8@example.com", &p8), &u8, 3600);

    let p256 = password_of(256);
    let u256 = assert_registered(
        &register(&server, "p256@example.com", &p256),
        "p256@example.com",
    );
    assert_logged_in(&login(&server, "p256@example.com", &p256), &u256, 3600);
    // One character more or less is a different password.
    login(&server, "p256@example.com", &password_of(255)).assert_problem(401, "wrong_password");

    weak_detail(&register(&server, "p257@example.com", &password_of(257)));

    // The same bounds apply to a new password.
    weak_detail(&change_password(
        &server,
        "p8@example.com",
        &p8,
        &password_of(7),
    ));
    weak_detail(&change_password(
        &server,
        "p8@example.com",
        &p8,
        &password_of(257),
    ));
    assert_eq!(
        change_password(&server, "p8@example.com", &p8, &p256).status,
        204
    );
    assert_logged_in(&login(&server, "p8@example.com", &p256), &u8, 3600);
    assert_eq!(
        change_password(&server, "p8@example.com", &p256, &p8).status,
        204
    );
    assert_logged_in(&login(&server, "p8@example.com", &p8), &u8, 3600);

    let stored: Vec<String> = server
        .db
        .conn()
        .query("SELECT email FROM users ORDER BY email")
        .unwrap();
    assert_eq!(stored, ["p256@example.com", "p8@example.com"]);
}

#[test]
fn email_length_boundaries() {
    let server = Server::start();
    let longest = email_of(254);
    assert_eq!(longest.chars().count(), 254);
    let user = assert_registered(&register(&server, &longest, GOOD), &longest);
    assert_logged_in(&login(&server, &longest.to_uppercase(), GOOD), &user, 3600);

    let too_long = email_of(255);
    register(&server, &too_long, GOOD).assert_problem(422, "invalid_email");
    login(&server, &too_long, GOOD).assert_problem(404, "unknown_email");

    // Characters, not bytes: 254 two-byte characters fit.
    let wide = format!("{}@example.com", "é".repeat(242));
    assert_eq!(wide.chars().count(), 254);
    let wide_user = assert_registered(&register(&server, &wide, GOOD), &wide);
    assert_logged_in(&login(&server, &wide, GOOD), &wide_user, 3600);
    let wider = format!("{}@example.com", "é".repeat(243));
    register(&server, &wider, GOOD).assert_problem(422, "invalid_email");
    // Four-byte characters too (the column must be utf8mb4 and count
    // characters): 254 of them fit, 255 do not.
    let crabs = format!("{}@example.com", "🦀".repeat(242));
    let crab_user = assert_registered(&register(&server, &crabs, GOOD), &crabs);
    assert_logged_in(&login(&server, &crabs, GOOD), &crab_user, 3600);
    let more_crabs = format!("{}@example.com", "🦀".repeat(243));
    register(&server, &more_crabs, GOOD).assert_problem(422, "invalid_email");

    // 'İ' lowercases to two characters: 254 as sent, 255 as stored.
    let grows = format!("İ{}@example.com", "a".repeat(241));
    assert_eq!(grows.chars().count(), 254);
    register(&server, &grows, GOOD).assert_problem(422, "invalid_email");

    let stored: Vec<String> = server
        .db
        .conn()
        .query("SELECT email FROM users ORDER BY id")
        .unwrap();
    assert_eq!(stored, [longest, wide, crabs]);
}

#[test]
fn concurrent_registrations_of_one_email_create_one_account() {
    const THREADS: usize = 16;
    let server = Server::start();
    let barrier = Arc::new(Barrier::new(THREADS));
    let email = "race@example.com";
    let body = json!({"email": email, "password": GOOD}).to_string();
    let request = format!(
        "POST {REGISTER} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            // Connect first, so the barrier releases requests, not handshakes.
            let mut client = server.connect();
            let barrier = Arc::clone(&barrier);
            let request = request.clone();
            std::thread::spawn(move || {
                barrier.wait();
                client.send(request.as_bytes());
                client.read_reply().expect("no reply")
            })
        })
        .collect();
    let replies: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(created.len(), 1, "statuses: {statuses:?}");
    let user = assert_registered(created[0], email);
    for reply in replies.iter().filter(|r| r.status != 201) {
        reply.assert_problem(409, "email_taken");
    }

    let rows: Vec<u64> = server
        .db
        .conn()
        .exec("SELECT id FROM users WHERE email = ?", (email,))
        .unwrap();
    assert_eq!(rows, [user["id"].as_u64().unwrap()]);
    assert_eq!(user_count(&server), 1);
    assert_logged_in(&login(&server, email, GOOD), &user, 3600);
}

#[test]
fn the_users_table_holds_no_password() {
    let server = Server::start();
    let first = "Plaintext-Canary-One-7f3a";
    let second = "Plaintext-Canary-Two-9c1e";
    let user = assert_registered(
        &register(&server, "Grace.Hopper@Example.COM", first),
        "grace.hopper@example.com",
    );
    let id = user["id"].as_u64().unwrap();

    let row_before = users_row(&server);
    check_row(&row_before, id, &[first, second]);
    assert!(
        rust_argon2::verify_encoded(&row_before["password_hash"], first.as_bytes()).unwrap(),
        "the stored hash does not verify the password independently"
    );
    assert_eq!(row_before["created_at"], row_before["updated_at"]);

    assert_eq!(
        change_password(&server, "grace.hopper@example.com", first, second).status,
        204
    );
    let row_after = users_row(&server);
    check_row(&row_after, id, &[first, second]);
    assert_ne!(row_after["password_hash"], row_before["password_hash"]);
    assert!(rust_argon2::verify_encoded(&row_after["password_hash"], second.as_bytes()).unwrap());
    assert!(!rust_argon2::verify_encoded(&row_after["password_hash"], first.as_bytes()).unwrap());
    assert_eq!(row_after["created_at"], row_before["created_at"]);
    let updated: u64 = row_after["updated_at"].parse().unwrap();
    assert!(updated >= row_before["created_at"].parse().unwrap());
    assert_near(updated, unix_now(), 10, "updated_at");

    // A second account with the same password gets a different hash (salt).
    let other = "someone.else@example.com";
    assert_registered(&register(&server, other, second), other);
    let hashes: Vec<String> = server
        .db
        .conn()
        .query("SELECT password_hash FROM users")
        .unwrap();
    assert_eq!(hashes.len(), 2);
    assert_ne!(hashes[0], hashes[1]);
}

/// `SELECT * FROM users` for a database with exactly one user, every column
/// as a string, keyed by column name.
fn users_row(server: &Server) -> std::collections::BTreeMap<String, String> {
    let mut conn = server.db.conn();
    let rows: Vec<mysql::Row> = conn.query("SELECT * FROM users").unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = match &row[i] {
                mysql::Value::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                mysql::Value::Int(n) => n.to_string(),
                mysql::Value::UInt(n) => n.to_string(),
                mysql::Value::NULL => "NULL".to_string(),
                other => panic!(
                    "column {} has an unexpected value {other:?}",
                    column.name_str()
                ),
            };
            (column.name_str().into_owned(), value)
        })
        .collect()
}

#[track_caller]
fn check_row(row: &std::collections::BTreeMap<String, String>, id: u64, secrets: &[&str]) {
    let columns: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(
        columns,
        [
            "created_at",
            "disabled_at",
            "disabled_reason",
            "email",
            "email_key",
            "email_verified_at",
            "id",
            "last_login_at",
            "last_login_ip",
            "locale",
            "metadata",
            "mfa_enabled_at",
            "name",
            "password_hash",
            "password_unpeppered",
            "role",
            "updated_at"
        ],
        "users has other columns: {row:?}"
    );
    assert_eq!(row["id"], id.to_string());
    assert_eq!(row["email"], "grace.hopper@example.com");
    assert!(
        row["password_hash"].starts_with("$argon2id$v=19$m="),
        "not an Argon2id PHC string: {}",
        row["password_hash"]
    );
    // The harness asks for m=256 KiB, t=1; the server must have used them.
    assert!(
        row["password_hash"].starts_with("$argon2id$v=19$m=256,t=1,p="),
        "{}",
        row["password_hash"]
    );
    assert_near(
        row["created_at"].parse().unwrap(),
        unix_now(),
        10,
        "created_at",
    );
    for (column, value) in row {
        for secret in secrets {
            for form in [
                secret.to_string(),
                secret.to_lowercase(),
                secret.to_uppercase(),
            ] {
                assert!(
                    !value.contains(&form),
                    "column {column} contains the password: {value}"
                );
            }
        }
    }
}

/// Runs `python3 docs/verify_token.py secret token`; returns exit code,
/// stdout and stderr.
fn python_verify(secret: &str, token: &str) -> (i32, String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/verify_token.py");
    let output = match Command::new("python3")
        .arg(script)
        .arg(secret)
        .arg(token)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "python3 is not installed, and this test runs the reference verifier \
             docs/verify_token.py: install python3 (e.g. `apt-get install python3`)"
        ),
        Err(e) => panic!("cannot run python3 {script}: {e}"),
    };
    (
        output
            .status
            .code()
            .expect("python3 was killed by a signal"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn issued_tokens_pass_the_python_reference_verifier() {
    let server = Server::start();
    let email = "heidi@example.com";
    let user = assert_registered(&register(&server, email, GOOD), email);
    let token = assert_logged_in(&login(&server, email, GOOD), &user, 3600);

    let (code, stdout, stderr) = python_verify(TEST_SECRET, &token);
    assert_eq!(code, 0, "verify_token.py rejected {token}: {stderr}");
    let claims: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("verify_token.py printed no JSON ({e}): {stdout}"));
    assert_eq!(claims["user_id"], user["id"]);
    let issued_at = claims["issued_at"].as_u64().unwrap();
    let expires_at = claims["expires_at"].as_u64().unwrap();
    assert_eq!(expires_at - issued_at, 3600);
    assert_near(issued_at, unix_now(), 10, "issued_at");
    let session_id = claims["session_id"].as_str().unwrap();
    assert!(
        session_id.len() == 32
            && session_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "session_id: {session_id}"
    );
    // The claims are the session the server recorded.
    let (row_user, row_created, row_expires): (u64, u64, u64) = server
        .db
        .conn()
        .exec_first(
            "SELECT user_id, created_at, expires_at FROM sessions WHERE LOWER(HEX(id)) = ?",
            (session_id,),
        )
        .unwrap()
        .unwrap_or_else(|| panic!("no session row with id {session_id}"));
    // The session outlives its access token: it ends after a week idle.
    assert_eq!(
        (row_user, row_created, row_expires, expires_at - issued_at),
        (
            user["id"].as_u64().unwrap(),
            issued_at,
            issued_at + 604_800,
            3600
        )
    );

    // One character flipped in the middle of the MAC part.
    let (payload, mac) = token.split_once('.').unwrap();
    let middle = mac.len() / 2;
    let flipped = if mac.as_bytes()[middle] == b'A' {
        "B"
    } else {
        "A"
    };
    let tampered = format!(
        "{payload}.{}{flipped}{}",
        &mac[..middle],
        &mac[middle + 1..]
    );
    assert_ne!(tampered, token);
    let (code, stdout, stderr) = python_verify(TEST_SECRET, &tampered);
    assert_eq!(code, 1, "tampered token accepted: {stdout}");
    assert_eq!(stderr.trim(), "bad_signature");
    server
        .get_auth("/auth/me", &tampered)
        .assert_problem(401, "invalid_token");

    // Another secret does not know the key id.
    let (code, _, stderr) = python_verify("another-secret-of-at-least-32-bytes!", &token);
    assert_eq!((code, stderr.trim()), (1, "unknown_key"));
}

#[test]
fn token_ttl_setting_is_reported() {
    let server = Server::builder().env("TOKEN_TTL_SECONDS", "120").start();
    let email = "ivan@example.com";
    let user = assert_registered(&register(&server, email, GOOD), email);
    let token = assert_logged_in(&login(&server, email, GOOD), &user, 120);

    let (code, stdout, stderr) = python_verify(TEST_SECRET, &token);
    assert_eq!(code, 0, "{stderr}");
    let claims: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        claims["expires_at"].as_u64().unwrap() - claims["issued_at"].as_u64().unwrap(),
        120
    );
    let (created, expires): (u64, u64) = server
        .db
        .conn()
        .query_first("SELECT created_at, expires_at FROM sessions")
        .unwrap()
        .unwrap();
    assert_eq!(
        expires - created,
        604_800,
        "the session's end is SESSION_IDLE_SECONDS away, not the token's"
    );
}

#[test]
fn secrets_never_reach_the_log() {
    let server = Server::start();
    let email = "judy@example.com";
    let first = "Log-Canary-First-5b2d";
    let second = "Log-Canary-Second-8e4f";
    let wrong = "Log-Canary-Wrong-1a9c";
    let weak = "Canary7";

    let user = assert_registered(&register(&server, email, first), email);
    weak_detail(&register(&server, "weak@example.com", weak));
    let token = assert_logged_in(&login(&server, email, first), &user, 3600);
    login(&server, email, wrong).assert_problem(401, "wrong_password");
    change_password(&server, email, wrong, second).assert_problem(401, "wrong_password");
    assert_eq!(change_password(&server, email, first, second).status, 204);
    let token2 = assert_logged_in(&login(&server, email, second), &user, 3600);
    let hash: String = server
        .db
        .conn()
        .query_first("SELECT password_hash FROM users")
        .unwrap()
        .unwrap();
    const REQUESTS: usize = 7;

    // The log is collected by a thread; wait until every request is in it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = server.log();
        if log.matches("\"msg\":\"request\"").count() >= REQUESTS || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        log.matches("\"msg\":\"request\"").count() >= REQUESTS,
        "the requests were not logged, so this test proves nothing:\n{log}"
    );

    let mut secrets = vec![
        first.to_string(),
        second.to_string(),
        wrong.to_string(),
        weak.to_string(),
        token.clone(),
        token2.clone(),
        hash,
    ];
    for t in [&token, &token2] {
        let (payload, mac) = t.split_once('.').unwrap();
        secrets.push(payload.to_string());
        secrets.push(mac.to_string());
    }
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the log contains the secret {secret:?}:\n{log}"
        );
    }
}
