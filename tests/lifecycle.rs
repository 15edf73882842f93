//! The account lifecycle (issue 7) driven over TCP against the real binary
//! and a real database: forgotten-password resets, changing the email,
//! deleting the account, and upgrading stale password hashes at login.
//!
//! Covered:
//!
//! - `POST /auth/password/forgot` answers the same 202 body for a known, an
//!   unknown and a malformed email, and only a known one leaves a trace: one
//!   `mail_outbox` row (normalised recipient, unsent) whose link carries a
//!   43-character base64url token, and one `password_resets` row holding the
//!   token's SHA-256. The token itself (or its raw bytes, or their hex) is
//!   stored nowhere else in the database, so a database reader cannot reset
//!   anyone's password. `RESET_URL_BASE` moves the link;
//! - `POST /auth/password/reset`: sets the password, ends every session
//!   (`token_revoked`), works once, rejects unknown, expired and superseded
//!   tokens with `invalid_reset_token`, rejects a weak password without
//!   using the token up, and clears a brute-force lockout;
//! - `PATCH /auth/me`: every status and code, the bad-body battery, and the
//!   new email being the one login and reset mails use from then on;
//! - `DELETE /auth/me`: the wrong password deletes nothing; the right one
//!   removes the user and (by the foreign keys) every session, reset token and
//!   failure count of the user, and nothing of any other user. The
//!   `mail_outbox` rows are a message log without a user id and stay;
//! - hash upgrades: a server with stronger Argon2 parameters re-hashes a
//!   password at its first successful login, once, and never on a wrong one;
//!
//! Each test starts its own server on its own fresh database, so tests are
//! independent and run in parallel. `import-users` has its own file,
//! `tests/import.rs`.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Reply, Server, TestDb, login, login_reply, register, token_in, wait_for_mail_worker};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FORGOT: &str = "/auth/password/forgot";
const RESET: &str = "/auth/password/reset";
const ME: &str = "/auth/me";

/// A password that breaks no rule.
const GOOD: &str = "correct horse battery staple";
/// A wrong guess at [`GOOD`].
const WRONG: &str = "incorrect horse battery staple";
/// Another acceptable password, the target of resets.
const NEW: &str = "Tr0ub4dor&3 but longer";
/// The link base when `RESET_URL_BASE` is not set.
const DEFAULT_RESET_BASE: &str = "http://localhost:8080/reset-password";

// ---------------------------------------------------------------------------
// Requests

fn text(reply: &Reply) -> String {
    format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body))
}

fn forgot(server: &Server, email: &str) -> Reply {
    server.json("POST", FORGOT, &json!({"email": email}))
}

/// Asks for a reset of `email`, which must be accepted, and waits until the
/// mail worker has resolved the request, so the outbox shows its outcome.
#[track_caller]
fn forgot_ok(server: &Server, email: &str) {
    let reply = forgot(server, email);
    assert_eq!(reply.status, 202, "forgot {email}: {}", text(&reply));
    wait_for_mail_worker(server);
}

fn reset(server: &Server, token: &str, new_password: &str) -> Reply {
    server.json(
        "POST",
        RESET,
        &json!({"token": token, "new_password": new_password}),
    )
}

/// Asks for a reset of `email` and returns the token from the mail it queued.
#[track_caller]
fn reset_token_for(server: &Server, email: &str) -> String {
    forgot_ok(server, email);
    let body = latest_mail_body(server, email);
    token_in(&body, DEFAULT_RESET_BASE)
}

/// `GET /auth/me` with `token`.
fn me(server: &Server, token: &str) -> Reply {
    server.get_auth(ME, token)
}

// ---------------------------------------------------------------------------
// Database and helpers

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One reset row: (token_hash, user_id, created_at, expires_at, used_at).
type ResetRow = (Vec<u8>, u64, u64, u64, Option<u64>);

/// One account as stored: (email, password_hash, created_at, updated_at).
type UserRow = (String, String, u64, u64);

/// The stored row of user `id`, if any.
fn user_row(server: &Server, id: u64) -> Option<UserRow> {
    server
        .db
        .conn()
        .exec_first(
            "SELECT email, password_hash, created_at, updated_at FROM users WHERE id = ?",
            (id,),
        )
        .unwrap()
}

/// One queued reset mail: (id, recipient, subject, body, created_at, sent_at).
type Mail = (u64, String, String, String, u64, Option<u64>);

fn outbox(server: &Server) -> Vec<Mail> {
    server
        .db
        .conn()
        .query(
            "SELECT id, recipient, subject, body, created_at, sent_at \
             FROM mail_outbox WHERE kind = 'password_reset' ORDER BY id",
        )
        .unwrap()
}

/// The body of the newest mail to `recipient`.
#[track_caller]
fn latest_mail_body(server: &Server, recipient: &str) -> String {
    outbox(server)
        .into_iter()
        .rev()
        .find(|m| m.1 == recipient)
        .unwrap_or_else(|| panic!("no mail to {recipient} in the outbox"))
        .3
}

/// `SELECT COUNT(*) {sql}` with one user id parameter.
fn count_for(server: &Server, table: &str, user_column: &str, user_id: u64) -> u64 {
    server
        .db
        .conn()
        .exec_first(
            format!("SELECT COUNT(*) FROM {table} WHERE {user_column} = ?"),
            (user_id,),
        )
        .unwrap()
        .unwrap()
}

fn stored_hash(db: &TestDb, email: &str) -> String {
    db.conn()
        .exec_first("SELECT password_hash FROM users WHERE email = ?", (email,))
        .unwrap()
        .unwrap_or_else(|| panic!("no user {email}"))
}

/// Every cell of `table` as bytes (numbers in decimal), for searching the
/// database for a value stored in any form.
fn cells(db: &TestDb, table: &str) -> Vec<Vec<u8>> {
    let rows: Vec<mysql::Row> = db.conn().query(format!("SELECT * FROM `{table}`")).unwrap();
    rows.into_iter()
        .flat_map(|row| row.unwrap())
        .map(|value| match value {
            mysql::Value::Bytes(b) => b,
            mysql::Value::Int(n) => n.to_string().into_bytes(),
            mysql::Value::UInt(n) => n.to_string().into_bytes(),
            mysql::Value::NULL => Vec::new(),
            other => format!("{other:?}").into_bytes(),
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Waits until the server has logged a request with a fresh id, so that
/// everything it logged before that request is in `server.log()` (stderr is
/// read on a thread and may lag).
fn sync_log(server: &Server, marker: &str) -> String {
    let reply = server.request("GET", "/healthz", &[("X-Request-Id", marker)], "");
    assert_eq!(reply.status, 200, "{}", text(&reply));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log();
        if log.contains(marker) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "request {marker} never appeared in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Log lines (as JSON) whose `msg` is `msg`.
fn log_lines(log: &str, msg: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["msg"] == msg)
        .collect()
}

// ---------------------------------------------------------------------------
// Forgot

#[test]
fn forgot_answers_alike_for_every_email_and_queues_one_mail_for_a_known_one() {
    let server = Server::start();
    let id = register(&server, "Alice@Example.com", GOOD);

    let before = now();
    let known = forgot(&server, "ALICE@example.COM");
    let unknown = forgot(&server, "nobody@example.com");
    let invalid = forgot(&server, "not an email");
    wait_for_mail_worker(&server);
    let after = now();

    let expected = json!({
        "status": "accepted",
        "detail": "If an account has this email, a reset link is on its way."
    });
    for (name, reply) in [
        ("known", &known),
        ("unknown", &unknown),
        ("invalid", &invalid),
    ] {
        assert_eq!(reply.status, 202, "{name}: {}", text(reply));
        assert_eq!(reply.json(), expected, "{name}");
        assert_eq!(
            reply
                .header("content-type")
                .map(|v| v.starts_with("application/json")),
            Some(true),
            "{name}: {:?}",
            reply.headers
        );
    }
    assert_eq!(known.json(), unknown.json());
    assert_eq!(known.json(), invalid.json());

    // One mail, to the normalised address, unsent, created just now.
    let mails = outbox(&server);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let (_, recipient, subject, body, created_at, sent_at) = mails[0].clone();
    assert_eq!(recipient, "alice@example.com");
    assert!(!subject.trim().is_empty());
    assert_eq!(sent_at, None);
    assert!(
        (before..=after).contains(&created_at),
        "created_at {created_at} not in {before}..={after}"
    );
    let token = token_in(&body, DEFAULT_RESET_BASE);
    let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let log = sync_log(&server, "lifecycle-after-forgot");
    assert!(!log.contains(&token), "the reset token is in the log");

    // One reset row for the user, holding the token's SHA-256, unused.
    let resets: Vec<ResetRow> = server
        .db
        .conn()
        .query("SELECT token_hash, user_id, created_at, expires_at, used_at FROM password_resets")
        .unwrap();
    assert_eq!(resets.len(), 1, "{resets:?}");
    let (token_hash, user_id, created, expires, used) = resets[0].clone();
    assert_eq!(user_id, id);
    assert_eq!(token_hash, sha256(token.as_bytes()));
    assert_eq!(used, None);
    assert!((before..=after).contains(&created));
    assert_eq!(expires - created, 900, "default RESET_TOKEN_TTL_SECONDS");

    // The token is nowhere in the database except the outgoing mail: not as
    // text, not as its raw bytes, not as their hex.
    let mut tables: Vec<String> = server.db.conn().query("SHOW TABLES").unwrap();
    tables.retain(|t| t != "mail_outbox");
    for must in ["users", "password_resets"] {
        assert!(tables.iter().any(|t| t == must), "{tables:?}");
    }
    // The search finds what is there: the SHA-256 is one of the cells.
    assert!(
        cells(&server.db, "password_resets")
            .iter()
            .any(|cell| contains(cell, &sha256(token.as_bytes())))
    );
    for table in &tables {
        for cell in cells(&server.db, table) {
            for (form, needle) in [
                ("text", token.as_bytes().to_vec()),
                ("raw bytes", raw.clone()),
                ("hex", hex(&raw).into_bytes()),
                ("HEX", hex(&raw).to_uppercase().into_bytes()),
            ] {
                assert!(
                    !contains(&cell, &needle),
                    "the reset token ({form}) is stored in table {table}"
                );
            }
        }
    }
}

#[test]
fn reset_url_base_changes_the_link() {
    let server = Server::builder()
        .env("RESET_URL_BASE", "https://example.com/r")
        .start();
    register(&server, "bob@example.com", GOOD);
    forgot_ok(&server, "bob@example.com");
    let body = latest_mail_body(&server, "bob@example.com");
    assert!(!body.contains("localhost:8080"), "{body}");
    let token = token_in(&body, "https://example.com/r");
    assert_eq!(reset(&server, &token, NEW).status, 204);
    login(&server, "bob@example.com", NEW);
}

#[test]
fn forgot_and_reset_reject_bad_bodies() {
    let server = Server::start();
    for path in [FORGOT, RESET] {
        server
            .request("POST", path, &[("Content-Type", "text/plain")], "{}")
            .assert_problem(415, "unsupported_media_type");
        server
            .request("POST", path, &[("Content-Type", "application/json")], "[]")
            .assert_problem(400, "malformed_json");
    }
    server
        .json("POST", FORGOT, &json!({}))
        .assert_problem(400, "missing_field");
    server
        .json("POST", FORGOT, &json!({"email": 5}))
        .assert_problem(400, "invalid_field");
    let reply = server.json("POST", RESET, &json!({"token": "x"}));
    reply.assert_problem(400, "missing_field");
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("new_password"),
        "{}",
        text(&reply)
    );
    server
        .json("POST", RESET, &json!({"token": 1, "new_password": NEW}))
        .assert_problem(400, "invalid_field");
}

// ---------------------------------------------------------------------------
// Reset

#[test]
fn reset_sets_the_password_ends_every_session_and_works_once() {
    let server = Server::start();
    let email = "carol@example.com";
    let id = register(&server, email, GOOD);
    let sessions = [login(&server, email, GOOD), login(&server, email, GOOD)];
    let token = reset_token_for(&server, email);

    // A weak password is refused after the token is checked, and leaves both
    // the token and the old password working.
    for weak in ["password", "short1", email] {
        reset(&server, &token, weak).assert_problem(422, "weak_password");
    }
    let third = login(&server, email, GOOD);
    reset(&server, "A".repeat(43).as_str(), NEW).assert_problem(400, "invalid_reset_token");
    reset(&server, "", NEW).assert_problem(400, "invalid_reset_token");

    let reply = reset(&server, &token, NEW);
    assert_eq!(reply.status, 204, "{}", text(&reply));
    assert!(reply.body.is_empty());

    for session in sessions.iter().chain([&third]) {
        me(&server, session).assert_problem(401, "token_revoked");
    }
    login_reply(&server, email, GOOD).assert_problem(401, "wrong_password");
    let fresh = login(&server, email, NEW);
    assert_eq!(me(&server, &fresh).status, 200);

    let log = sync_log(&server, "lifecycle-after-reset");
    assert!(!log.contains(&token), "the reset token is in the log");
    assert!(!log.contains(NEW), "the new password is in the log");
    assert_eq!(log_lines(&log, "password reset").len(), 1, "{log}");

    // Single use: the same token again changes nothing.
    let other = "a different fine passphrase";
    reset(&server, &token, other).assert_problem(400, "invalid_reset_token");
    login_reply(&server, email, other).assert_problem(401, "wrong_password");
    assert_eq!(
        me(&server, &fresh).status,
        200,
        "a refused reset ended a session"
    );
    login(&server, email, NEW);

    // The used row is marked, not left usable.
    let used: Option<Option<u64>> = server
        .db
        .conn()
        .exec_first(
            "SELECT used_at FROM password_resets WHERE token_hash = ? AND user_id = ?",
            (sha256(token.as_bytes()), id),
        )
        .unwrap();
    assert!(
        matches!(used, None | Some(Some(_))),
        "used token row still unused: {used:?}"
    );
}

#[test]
fn an_expired_reset_token_is_refused() {
    let server = Server::builder()
        .env("RESET_TOKEN_TTL_SECONDS", "1")
        .start();
    let email = "dave@example.com";
    let id = register(&server, email, GOOD);
    let token = reset_token_for(&server, email);
    let (created, expires): (u64, u64) = server
        .db
        .conn()
        .exec_first(
            "SELECT created_at, expires_at FROM password_resets WHERE user_id = ?",
            (id,),
        )
        .unwrap()
        .unwrap();
    assert_eq!(expires - created, 1);
    std::thread::sleep(Duration::from_millis(2200));
    reset(&server, &token, NEW).assert_problem(400, "invalid_reset_token");
    login(&server, email, GOOD);
    login_reply(&server, email, NEW).assert_problem(401, "wrong_password");
}

#[test]
fn a_new_link_retires_only_the_oldest_beyond_the_limit_and_only_that_users() {
    let server = Server::builder()
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")
        .env("RESET_MAX_LIVE_TOKENS", "2")
        .start();
    let erin = "erin@example.com";
    let frank = "frank@example.com";
    let erin_id = register(&server, erin, GOOD);
    register(&server, frank, GOOD);

    // Created a second apart, so "oldest" is unambiguous (times are seconds).
    let first = reset_token_for(&server, erin);
    let frank_token = reset_token_for(&server, frank);
    std::thread::sleep(Duration::from_millis(1100));
    let second = reset_token_for(&server, erin);
    std::thread::sleep(Duration::from_millis(1100));
    let third = reset_token_for(&server, erin);
    assert_eq!(outbox(&server).len(), 4);
    assert_eq!(count_for(&server, "password_resets", "user_id", erin_id), 2);

    // The oldest was retired; tried first, so its refusal is not a used-up token.
    reset(&server, &first, NEW).assert_problem(400, "invalid_reset_token");
    login(&server, erin, GOOD);
    // Either of the two newest works; the new password then voids the other.
    assert_eq!(reset(&server, &second, NEW).status, 204);
    login(&server, erin, NEW);
    reset(&server, &third, GOOD).assert_problem(400, "invalid_reset_token");

    // Erin's requests did not touch Frank's token.
    assert_eq!(reset(&server, &frank_token, NEW).status, 204);
    login(&server, frank, NEW);
}

#[test]
fn an_attacker_asking_every_second_cannot_void_the_victims_newest_link() {
    let server = Server::builder()
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "2")
        .start();
    let victim = "victim@example.com";
    let id = register(&server, victim, GOOD);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // The attacker sends forgot for the victim every second throughout.
        let attacker = scope.spawn(|| {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = forgot(&server, victim);
                assert_eq!(reply.status, 202, "{}", text(&reply));
                sent += 1;
                std::thread::sleep(Duration::from_millis(1000));
            }
            sent
        });
        // The victim waits for a while, then uses the link in the newest mail.
        std::thread::sleep(Duration::from_millis(4500));
        wait_for_mail_worker(&server);
        let body = latest_mail_body(&server, victim);
        let link = token_in(&body, DEFAULT_RESET_BASE);
        assert_eq!(reset(&server, &link, NEW).status, 204);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = attacker.join().unwrap();
        assert!(sent >= 4, "the attacker sent only {sent} requests");
        // The cooldown held the mails to one per two seconds, not one per request.
        let mails = outbox(&server).len();
        assert!(mails < sent, "{mails} mails for {sent} requests");
    });
    login(&server, victim, NEW);
    // No link outlived the new password.
    assert_eq!(
        server
            .db
            .conn()
            .exec_first::<u64, _, _>(
                "SELECT COUNT(*) FROM password_resets WHERE user_id = ? AND used_at IS NULL",
                (id,),
            )
            .unwrap(),
        Some(0)
    );
}

#[test]
fn within_the_cooldown_a_request_queues_nothing_and_the_newest_link_still_works() {
    let server = Server::builder()
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "3")
        .start();
    let victim = "victim@example.com";
    let id = register(&server, victim, GOOD);
    let link = reset_token_for(&server, victim);
    // Asked again and again: each answer is the same 202, and nothing more
    // reaches the victim until the cooldown has passed.
    for _ in 0..5 {
        forgot_ok(&server, victim);
    }
    assert_eq!(outbox(&server).len(), 1);
    assert_eq!(count_for(&server, "password_resets", "user_id", id), 1);
    std::thread::sleep(Duration::from_millis(3100));
    let newest = reset_token_for(&server, victim);
    assert_eq!(outbox(&server).len(), 2);
    // The earlier link still works too, up to RESET_MAX_LIVE_TOKENS.
    assert_eq!(count_for(&server, "password_resets", "user_id", id), 2);
    assert_eq!(reset(&server, &newest, NEW).status, 204);
    login(&server, victim, NEW);
    reset(&server, &link, GOOD).assert_problem(400, "invalid_reset_token");
}

#[test]
fn a_reset_clears_the_lockout() {
    let server = Server::start();
    let email = "grace@example.com";
    let id = register(&server, email, GOOD);
    for _ in 0..5 {
        login_reply(&server, email, WRONG).assert_problem(401, "wrong_password");
    }
    let locked = login_reply(&server, email, GOOD);
    locked.assert_problem(429, "too_many_attempts");
    assert!(
        locked.header("retry-after").is_some(),
        "{:?}",
        locked.headers
    );
    assert_eq!(count_for(&server, "login_failures", "user_id", id), 1);

    let token = reset_token_for(&server, email);
    assert_eq!(reset(&server, &token, NEW).status, 204);
    assert_eq!(count_for(&server, "login_failures", "user_id", id), 0);
    login(&server, email, NEW);
}

// ---------------------------------------------------------------------------
// PATCH /auth/me

fn patch_me(server: &Server, token: &str, email: &str, current: &str) -> Reply {
    server.json_auth(
        "PATCH",
        ME,
        token,
        &json!({"email": email, "current_password": current}),
    )
}

#[test]
fn patch_me_changes_the_email() {
    let server = Server::start();
    let id = register(&server, "heidi@example.com", GOOD);
    let ivan_id = register(&server, "ivan@example.com", GOOD);
    let ivan_before = user_row(&server, ivan_id);
    let heidi_before = user_row(&server, id);
    let token = login(&server, "heidi@example.com", GOOD);

    let reply = patch_me(&server, &token, "Heidi.New@Example.COM", GOOD);
    assert_eq!(reply.status, 202, "{}", text(&reply));
    assert_eq!(
        reply.json(),
        json!({"status": "pending", "email": "heidi.new@example.com"})
    );
    // Nothing moved yet: the new address must prove itself first.
    assert_eq!(
        me(&server, &token).json()["user"]["email"],
        "heidi@example.com"
    );
    let body = common::wait_for_mail_of(&server, "heidi.new@example.com", "confirm_email_change");
    let start = body.find("/confirm-email?token=").unwrap() + "/confirm-email?token=".len();
    let confirm: String = body[start..].chars().take(43).collect();
    let reply = server.json("POST", "/auth/email/confirm", &json!({"token": confirm}));
    assert_eq!(reply.status, 200, "{}", text(&reply));
    let user = &reply.json()["user"];
    assert_eq!(user["email"], "heidi.new@example.com");
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["id"], id);

    // The session goes on, under the new email.
    let reply = me(&server, &token);
    assert_eq!(reply.status, 200, "{}", text(&reply));
    assert_eq!(reply.json()["user"]["email"], "heidi.new@example.com");

    login(&server, "HEIDI.new@example.com", GOOD);
    login_reply(&server, "heidi@example.com", GOOD).assert_problem(404, "unknown_email");
    let (email, hash, created, updated) = user_row(&server, id).unwrap();
    let (_, hash_before, created_before, updated_before) = heidi_before.unwrap();
    assert_eq!(email, "heidi.new@example.com");
    assert_eq!((hash, created), (hash_before, created_before));
    assert!(updated >= updated_before);

    // Resets follow the new address; the old one is unknown.
    forgot_ok(&server, "heidi@example.com");
    forgot_ok(&server, "heidi.new@example.com");
    let recipients: Vec<String> = outbox(&server).into_iter().map(|m| m.1).collect();
    assert_eq!(recipients, ["heidi.new@example.com"]);

    // Ivan's row was not touched.
    assert_eq!(user_row(&server, ivan_id), ivan_before);
    assert_eq!(
        ivan_before.map(|r| r.0).as_deref(),
        Some("ivan@example.com")
    );
    login(&server, "ivan@example.com", GOOD);
}

#[test]
fn patch_me_refuses_with_every_documented_code() {
    let server = Server::start();
    register(&server, "judy@example.com", GOOD);
    register(&server, "mallory@example.com", GOOD);
    let token = login(&server, "judy@example.com", GOOD);
    let auth = format!("Bearer {token}");

    let reply = server.request(
        "PATCH",
        ME,
        &[("Content-Type", "application/json")],
        &json!({"email": "x@example.com", "current_password": GOOD}).to_string(),
    );
    reply.assert_problem(401, "missing_token");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));

    let body = json!({"email": "x@example.com", "current_password": GOOD}).to_string();
    server
        .request(
            "PATCH",
            ME,
            &[("Content-Type", "text/plain"), ("Authorization", &auth)],
            &body,
        )
        .assert_problem(415, "unsupported_media_type");
    for malformed in ["", "{", "null", "[]", "\"x\""] {
        server
            .request(
                "PATCH",
                ME,
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &auth),
                ],
                malformed,
            )
            .assert_problem(400, "malformed_json");
    }
    let reply = server.json_auth("PATCH", ME, &token, &json!({"email": "x@example.com"}));
    reply.assert_problem(400, "missing_field");
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("current_password"),
        "{}",
        text(&reply)
    );
    server
        .json_auth(
            "PATCH",
            ME,
            &token,
            &json!({"email": 7, "current_password": GOOD}),
        )
        .assert_problem(400, "invalid_field");

    // The email's format is checked first, before the password.
    for bad in [
        "not-an-email",
        "a@b",
        "two@@example.com",
        "sp ace@example.com",
    ] {
        patch_me(&server, &token, bad, GOOD).assert_problem(422, "invalid_email");
    }
    patch_me(&server, &token, "not-an-email", WRONG).assert_problem(422, "invalid_email");

    patch_me(&server, &token, "judy2@example.com", WRONG).assert_problem(401, "wrong_password");
    for taken in ["mallory@example.com", "MALLORY@Example.Com"] {
        patch_me(&server, &token, taken, GOOD).assert_problem(409, "email_taken");
    }

    // Nothing changed: both accounts keep their emails.
    let reply = me(&server, &token);
    assert_eq!(reply.json()["user"]["email"], "judy@example.com");
    let emails: Vec<String> = server
        .db
        .conn()
        .query("SELECT email FROM users ORDER BY email")
        .unwrap();
    assert_eq!(emails, ["judy@example.com", "mallory@example.com"]);
    login(&server, "judy@example.com", GOOD);
    login(&server, "mallory@example.com", GOOD);
}

#[test]
fn patch_me_wrong_passwords_count_toward_the_lockout() {
    let server = Server::start();
    let email = "olivia@example.com";
    register(&server, email, GOOD);
    let token = login(&server, email, GOOD);
    for _ in 0..5 {
        patch_me(&server, &token, "olivia2@example.com", WRONG)
            .assert_problem(401, "wrong_password");
    }
    let locked = patch_me(&server, &token, "olivia2@example.com", GOOD);
    locked.assert_problem(429, "too_many_attempts");
    assert!(
        locked.header("retry-after").is_some(),
        "{:?}",
        locked.headers
    );
    login_reply(&server, email, GOOD).assert_problem(429, "too_many_attempts");
    assert_eq!(me(&server, &token).json()["user"]["email"], email);
}

// ---------------------------------------------------------------------------
// DELETE /auth/me

fn delete_me(server: &Server, token: &str, password: &str) -> Reply {
    server.json_auth("DELETE", ME, token, &json!({"password": password}))
}

/// Rows of `user_id` in each table that references users.
fn rows_of(server: &Server, user_id: u64) -> [u64; 4] {
    [
        count_for(server, "users", "id", user_id),
        count_for(server, "sessions", "user_id", user_id),
        count_for(server, "password_resets", "user_id", user_id),
        count_for(server, "login_failures", "user_id", user_id),
    ]
}

#[test]
fn delete_me_removes_the_account_and_everything_of_it() {
    let server = Server::start();
    let kim = "kim@example.com";
    let leo = "leo@example.com";
    let kim_id = register(&server, kim, GOOD);
    let leo_id = register(&server, leo, GOOD);

    let kim_tokens = [
        login(&server, kim, GOOD),
        login(&server, kim, GOOD),
        login(&server, kim, GOOD),
    ];
    let kim_reset = reset_token_for(&server, kim);
    login_reply(&server, kim, WRONG).assert_problem(401, "wrong_password");

    let leo_token = login(&server, leo, GOOD);
    login(&server, leo, GOOD);
    let leo_reset = reset_token_for(&server, leo);
    login_reply(&server, leo, WRONG).assert_problem(401, "wrong_password");

    assert_eq!(rows_of(&server, kim_id), [1, 3, 1, 1]);
    assert_eq!(rows_of(&server, leo_id), [1, 2, 1, 1]);
    let leo_user = user_row(&server, leo_id);

    // Without a token, with a bad body, or with the wrong password: nothing goes.
    server
        .request(
            "DELETE",
            ME,
            &[("Content-Type", "application/json")],
            &json!({"password": GOOD}).to_string(),
        )
        .assert_problem(401, "missing_token");
    server
        .json_auth("DELETE", ME, &kim_tokens[0], &json!({}))
        .assert_problem(400, "missing_field");
    delete_me(&server, &kim_tokens[0], WRONG).assert_problem(401, "wrong_password");
    assert_eq!(rows_of(&server, kim_id)[..3], [1, 3, 1]);
    assert_eq!(me(&server, &kim_tokens[0]).status, 200);

    let reply = delete_me(&server, &kim_tokens[0], GOOD);
    assert_eq!(reply.status, 204, "{}", text(&reply));
    assert!(reply.body.is_empty());

    for token in &kim_tokens {
        me(&server, token).assert_problem(401, "token_revoked");
    }
    login_reply(&server, kim, GOOD).assert_problem(404, "unknown_email");
    reset(&server, &kim_reset, NEW).assert_problem(400, "invalid_reset_token");
    assert_eq!(rows_of(&server, kim_id), [0, 0, 0, 0]);

    // The outbox is a log of messages sent, with no user id: Kim's reset
    // mail stays.
    let kim_mails = outbox(&server).into_iter().filter(|m| m.1 == kim).count();
    assert_eq!(kim_mails, 1);

    // Leo keeps everything.
    assert_eq!(rows_of(&server, leo_id), [1, 2, 1, 1]);
    assert_eq!(user_row(&server, leo_id), leo_user);
    assert_eq!(me(&server, &leo_token).status, 200);
    assert_eq!(reset(&server, &leo_reset, NEW).status, 204);
    login(&server, leo, NEW);

    // The email is free again, for a new account with a new id.
    let again = register(&server, kim, NEW);
    assert_ne!(again, kim_id);
    me(&server, &kim_tokens[1]).assert_problem(401, "token_revoked");
}

// ---------------------------------------------------------------------------
// Hash upgrade

#[test]
fn a_login_upgrades_a_hash_made_with_other_parameters_once() {
    let db = Arc::new(TestDb::new());
    let email = "mike@example.com";
    let server_a = Server::builder().db(&db).start();
    let id = register(&server_a, email, GOOD);
    let original = stored_hash(&db, email);
    assert!(original.starts_with("$argon2id$"), "{original}");
    assert!(original.contains("m=256,t=1"), "{original}");
    drop(server_a);

    let server_b = Server::builder()
        .db(&db)
        .env("ARGON2_MEMORY_KIB", "512")
        .env("ARGON2_ITERATIONS", "2")
        .start();

    // A wrong password proves nothing, so it must not re-hash.
    login_reply(&server_b, email, WRONG).assert_problem(401, "wrong_password");
    let log = sync_log(&server_b, "lifecycle-after-wrong-login");
    assert!(
        log_lines(&log, "password hash upgraded").is_empty(),
        "{log}"
    );
    assert_eq!(stored_hash(&db, email), original);

    let token = login(&server_b, email, GOOD);
    assert_eq!(me(&server_b, &token).status, 200);
    let upgraded = stored_hash(&db, email);
    assert!(upgraded.starts_with("$argon2id$v=19$"), "{upgraded}");
    assert!(upgraded.contains("m=512,t=2"), "{upgraded}");
    assert_ne!(upgraded, original);

    let log = sync_log(&server_b, "lifecycle-after-upgrade");
    let lines = log_lines(&log, "password hash upgraded");
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(lines[0]["user_id"], id, "{}", lines[0]);
    assert!(!log.contains(GOOD), "the password is in the log");

    // Up to date now: the next login verifies and leaves the hash alone.
    login(&server_b, email, GOOD);
    assert_eq!(stored_hash(&db, email), upgraded);
    let log = sync_log(&server_b, "lifecycle-after-second-login");
    assert_eq!(log_lines(&log, "password hash upgraded").len(), 1, "{log}");
    login_reply(&server_b, email, WRONG).assert_problem(401, "wrong_password");
    assert_eq!(stored_hash(&db, email), upgraded);
}
