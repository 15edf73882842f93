//! Proving addresses (issue 15), against the real binary and a real
//! database: the verification link mailed at registration, resending it,
//! `REQUIRE_VERIFIED_EMAIL`, the confirmed email change, the pages the links
//! open, and the security notices. Mail is read from the outbox, where the
//! server queues it; `tests/mail.rs` covers its delivery.

mod common;

use common::{Reply, Server, login, login_reply, register, wait_for_mail_of, wait_for_mail_worker};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::time::Duration;

const GOOD: &str = "correct horse battery staple";
const NEW: &str = "a different long passphrase";

/// The token of the `path?token=` link in the newest `kind` mail to `to`.
fn link_token(server: &Server, to: &str, kind: &str) -> String {
    let body = wait_for_mail_of(server, to, kind);
    let start = body
        .find("?token=")
        .unwrap_or_else(|| panic!("no link in {body:?}"))
        + "?token=".len();
    body[start..].chars().take(43).collect()
}

fn verify(server: &Server, token: &str) -> Reply {
    server.json("POST", "/auth/email/verify", &json!({"token": token}))
}

fn resend(server: &Server, email: &str) -> Reply {
    server.json(
        "POST",
        "/auth/email/verify/resend",
        &json!({"email": email}),
    )
}

/// The kinds of the outbox rows to `to`, oldest first.
fn kinds_to(server: &Server, to: &str) -> Vec<String> {
    wait_for_mail_worker(server);
    server
        .db
        .conn()
        .exec(
            "SELECT kind FROM mail_outbox WHERE recipient = ? ORDER BY id",
            (to,),
        )
        .unwrap()
}

#[test]
fn registration_mails_a_link_that_verifies_the_address_once() {
    let server = Server::builder()
        .env("PUBLIC_URL", "https://accounts.example.com")
        .start();
    register(&server, "vera@example.com", GOOD);
    let body = wait_for_mail_of(&server, "vera@example.com", "verify_email");
    assert!(
        body.contains("https://accounts.example.com/verify-email?token="),
        "{body}"
    );
    let token = link_token(&server, "vera@example.com", "verify_email");
    let session = login(&server, "vera@example.com", GOOD);
    assert_eq!(
        server.get_auth("/auth/me", &session).json()["user"]["email_verified"],
        false
    );
    let reply = verify(&server, &token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["user"]["email_verified"], true);
    assert_eq!(reply.json()["user"]["email"], "vera@example.com");
    verify(&server, &token).assert_problem(400, "invalid_verification_token");
    verify(&server, "x").assert_problem(400, "invalid_verification_token");
    // Verifying changed nothing else: the session goes on, the password too.
    assert_eq!(
        server.get_auth("/auth/me", &session).json()["user"]["email_verified"],
        true
    );
    login(&server, "vera@example.com", GOOD);
    assert!(!server.log().contains(&token), "the token reached the log");
}

#[test]
fn an_expired_verification_link_is_refused() {
    let server = Server::builder()
        .env("VERIFY_TOKEN_TTL_SECONDS", "1")
        .start();
    register(&server, "otto@example.com", GOOD);
    let token = link_token(&server, "otto@example.com", "verify_email");
    std::thread::sleep(Duration::from_millis(2100));
    verify(&server, &token).assert_problem(400, "invalid_verification_token");
}

#[test]
fn resend_answers_alike_for_every_address_and_a_new_link_supersedes_the_old() {
    let server = Server::builder()
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")
        .start();
    register(&server, "una@example.com", GOOD);
    register(&server, "vic@example.com", GOOD);
    let vic = link_token(&server, "vic@example.com", "verify_email");
    assert_eq!(verify(&server, &vic).status, 200);
    let first = link_token(&server, "una@example.com", "verify_email");

    let answers: Vec<Value> = [
        "una@example.com",
        "vic@example.com",
        "nobody@example.com",
        "not an email",
    ]
    .iter()
    .map(|email| {
        let reply = resend(&server, email);
        assert_eq!(reply.status, 202, "{email}: {}", reply.text());
        reply.json()
    })
    .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");

    // Only the unverified account got a new link, which replaced the old.
    assert_eq!(
        kinds_to(&server, "una@example.com"),
        ["verify_email", "verify_email"]
    );
    assert_eq!(kinds_to(&server, "vic@example.com"), ["verify_email"]);
    assert!(kinds_to(&server, "nobody@example.com").is_empty());
    let second = link_token(&server, "una@example.com", "verify_email");
    assert_ne!(first, second);
    verify(&server, &first).assert_problem(400, "invalid_verification_token");
    assert_eq!(verify(&server, &second).status, 200);
}

#[test]
fn the_mail_sent_at_registration_counts_for_the_resend_cooldown() {
    let server = Server::start();
    register(&server, "wes@example.com", GOOD);
    for _ in 0..3 {
        assert_eq!(resend(&server, "wes@example.com").status, 202);
    }
    assert_eq!(kinds_to(&server, "wes@example.com"), ["verify_email"]);
}

#[test]
fn require_verified_email_refuses_unverified_logins_after_the_password() {
    let off = Server::start();
    register(&off, "xia@example.com", GOOD);
    login(&off, "xia@example.com", GOOD);

    let on = Server::builder()
        .env("REQUIRE_VERIFIED_EMAIL", "true")
        .start();
    register(&on, "yan@example.com", GOOD);
    login_reply(&on, "yan@example.com", "a wrong password entirely")
        .assert_problem(401, "wrong_password");
    login_reply(&on, "yan@example.com", GOOD).assert_problem(403, "email_not_verified");
    let sessions: u64 = on
        .db
        .conn()
        .query_first("SELECT COUNT(*) FROM sessions")
        .unwrap()
        .unwrap();
    assert_eq!(sessions, 0, "no session for an unverified login");
    let token = link_token(&on, "yan@example.com", "verify_email");
    assert_eq!(verify(&on, &token).status, 200);
    login(&on, "yan@example.com", GOOD);
}

#[test]
fn a_used_reset_link_proves_the_address_too() {
    let server = Server::builder()
        .env("REQUIRE_VERIFIED_EMAIL", "true")
        .start();
    register(&server, "zoe@example.com", GOOD);
    login_reply(&server, "zoe@example.com", GOOD).assert_problem(403, "email_not_verified");
    let forgot = server.json(
        "POST",
        "/auth/password/forgot",
        &json!({"email": "zoe@example.com"}),
    );
    assert_eq!(forgot.status, 202);
    let token = link_token(&server, "zoe@example.com", "password_reset");
    let reset = server.json(
        "POST",
        "/auth/password/reset",
        &json!({"token": token, "new_password": NEW}),
    );
    assert_eq!(reset.status, 204, "{}", reset.text());
    let reply = login_reply(&server, "zoe@example.com", NEW);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["user"]["email_verified"], true);
}

#[test]
fn an_email_change_waits_for_the_new_address_and_tells_the_old_one() {
    let server = Server::builder()
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")
        .start();
    let id = register(&server, "old@example.com", GOOD);
    let session = login(&server, "old@example.com", GOOD);
    // A reset link mailed before the move must not work after it.
    server.json(
        "POST",
        "/auth/password/forgot",
        &json!({"email": "old@example.com"}),
    );
    let reset_link = link_token(&server, "old@example.com", "password_reset");

    let patch = |email: &str| {
        server.json_auth(
            "PATCH",
            "/auth/me",
            &session,
            &json!({"email": email, "current_password": GOOD}),
        )
    };
    let reply = patch("first.choice@example.org");
    assert_eq!(reply.status, 202, "{}", reply.text());
    let superseded = link_token(&server, "first.choice@example.org", "confirm_email_change");
    // A newer request supersedes it.
    assert_eq!(patch("New@Example.org").status, 202);
    let confirm = link_token(&server, "new@example.org", "confirm_email_change");
    let requested = wait_for_mail_of(&server, "old@example.com", "notice_email_change_requested");
    assert!(requested.contains("new@example.org") && requested.contains("127.0.0.1"));
    assert!(!requested.contains("token="), "{requested}");
    assert_eq!(
        server.get_auth("/auth/me", &session).json()["user"]["email"],
        "old@example.com"
    );

    server
        .json("POST", "/auth/email/confirm", &json!({"token": superseded}))
        .assert_problem(400, "invalid_confirmation_token");
    let reply = server.json("POST", "/auth/email/confirm", &json!({"token": confirm}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["user"]["email"], "new@example.org");
    assert_eq!(reply.json()["user"]["email_verified"], true);
    assert_eq!(reply.json()["user"]["id"], id);
    server
        .json("POST", "/auth/email/confirm", &json!({"token": confirm}))
        .assert_problem(400, "invalid_confirmation_token");
    let changed = wait_for_mail_of(&server, "old@example.com", "notice_email_changed");
    assert!(changed.contains("new@example.org"));

    // The account lives at the new address; the old one is free.
    login(&server, "new@example.org", GOOD);
    login_reply(&server, "old@example.com", GOOD).assert_problem(404, "unknown_email");
    server
        .json(
            "POST",
            "/auth/password/reset",
            &json!({"token": reset_link, "new_password": NEW}),
        )
        .assert_problem(400, "invalid_reset_token");
}

#[test]
fn a_taken_address_is_refused_at_once_and_at_confirmation() {
    let server = Server::start();
    register(&server, "zoe@example.com", GOOD);
    register(&server, "taken@example.com", GOOD);
    let session = login(&server, "zoe@example.com", GOOD);
    let patch = |email: &str| {
        server.json_auth(
            "PATCH",
            "/auth/me",
            &session,
            &json!({"email": email, "current_password": GOOD}),
        )
    };
    patch("TAKEN@example.com").assert_problem(409, "email_taken");
    // Free when asked, taken by the time the link is used.
    assert_eq!(patch("later@example.com").status, 202);
    let confirm = link_token(&server, "later@example.com", "confirm_email_change");
    register(&server, "later@example.com", GOOD);
    server
        .json("POST", "/auth/email/confirm", &json!({"token": confirm}))
        .assert_problem(409, "email_taken");
    login(&server, "zoe@example.com", GOOD);
    // The other errors stay as they were.
    server
        .json_auth(
            "PATCH",
            "/auth/me",
            &session,
            &json!({"email": "x@example.com", "current_password": "not the password at all"}),
        )
        .assert_problem(401, "wrong_password");
    patch("not an address").assert_problem(422, "invalid_email");
    server
        .json_auth(
            "PATCH",
            "/auth/me",
            &session,
            &json!({"email": "y@example.com"}),
        )
        .assert_problem(400, "missing_field");
}

#[test]
fn every_security_event_mails_a_notice_without_a_link() {
    let server = Server::start();
    register(&server, "ned@example.com", GOOD);
    let changed = server.json(
        "POST",
        "/auth/password",
        &json!({"email": "ned@example.com", "current_password": GOOD, "new_password": NEW}),
    );
    assert_eq!(changed.status, 204, "{}", changed.text());
    server.json(
        "POST",
        "/auth/password/forgot",
        &json!({"email": "ned@example.com"}),
    );
    let reset = link_token(&server, "ned@example.com", "password_reset");
    let reply = server.json(
        "POST",
        "/auth/password/reset",
        &json!({"token": reset, "new_password": GOOD}),
    );
    assert_eq!(reply.status, 204);
    let session = login(&server, "ned@example.com", GOOD);
    let deleted = server.json_auth("DELETE", "/auth/me", &session, &json!({"password": GOOD}));
    assert_eq!(deleted.status, 204);
    assert_eq!(
        kinds_to(&server, "ned@example.com"),
        [
            "verify_email",
            "notice_password_changed",
            "password_reset",
            "notice_password_reset",
            "notice_account_deleted"
        ]
    );
    for kind in [
        "notice_password_changed",
        "notice_password_reset",
        "notice_account_deleted",
    ] {
        let body = wait_for_mail_of(&server, "ned@example.com", kind);
        assert!(
            !body.contains("token=") && !body.contains(GOOD),
            "{kind}: {body}"
        );
    }
}

#[test]
fn hide_account_existence_answers_alike_and_mails_the_owner() {
    let server = Server::builder()
        .env("HIDE_ACCOUNT_EXISTENCE", "true")
        .start();
    let signup = |email: &str, password: &str| {
        server.json(
            "POST",
            "/auth/register",
            &json!({"email": email, "password": password}),
        )
    };
    assert_eq!(signup("pam@example.com", GOOD).status, 201);
    // Login: unknown address and wrong password are one answer.
    login_reply(&server, "nobody@example.com", GOOD).assert_problem(401, "invalid_credentials");
    login_reply(&server, "pam@example.com", "a wrong password entirely")
        .assert_problem(401, "invalid_credentials");
    login(&server, "pam@example.com", GOOD);
    // Registration: a taken address answers like a free one.
    let fresh = server.json(
        "POST",
        "/auth/register",
        &json!({"email": "fresh@example.com", "password": GOOD}),
    );
    let taken = server.json(
        "POST",
        "/auth/register",
        &json!({"email": "PAM@example.com", "password": NEW}),
    );
    assert_eq!((fresh.status, taken.status), (201, 201));
    let shape = |r: &Reply| {
        let user = &r.json()["user"];
        let mut keys: Vec<String> = user.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        (keys, user["email_verified"].clone())
    };
    assert_eq!(shape(&fresh), shape(&taken));
    assert!(fresh.json()["user"].get("id").is_none());
    let notice = wait_for_mail_of(&server, "pam@example.com", "notice_address_in_use");
    assert!(!notice.contains("token="));
    // The owner's password did not change.
    login(&server, "pam@example.com", GOOD);
    // Password change answers as login does.
    server
        .json(
            "POST",
            "/auth/password",
            &json!({"email": "nobody@example.com", "current_password": GOOD, "new_password": NEW}),
        )
        .assert_problem(401, "invalid_credentials");
    // A move to a taken address: 202 like a free one, and a notice to its owner.
    assert_eq!(signup("quin@example.com", GOOD).status, 201);
    let session = login(&server, "quin@example.com", GOOD);
    let reply = server.json_auth(
        "PATCH",
        "/auth/me",
        &session,
        &json!({"email": "pam@example.com", "current_password": GOOD}),
    );
    assert_eq!(reply.status, 202, "{}", reply.text());
    wait_for_mail_worker(&server);
    let notices: u64 = server
        .db
        .conn()
        .query_first(
            "SELECT COUNT(*) FROM mail_outbox
             WHERE recipient = 'pam@example.com' AND kind = 'notice_address_in_use'",
        )
        .unwrap()
        .unwrap();
    assert_eq!(notices, 2);
}

#[test]
fn without_hide_account_existence_the_answers_say_what_is_wrong() {
    let server = Server::start();
    register(&server, "rae@example.com", GOOD);
    login_reply(&server, "nobody@example.com", GOOD).assert_problem(404, "unknown_email");
    login_reply(&server, "rae@example.com", NEW).assert_problem(401, "wrong_password");
    server
        .json(
            "POST",
            "/auth/register",
            &json!({"email": "rae@example.com", "password": GOOD}),
        )
        .assert_problem(409, "email_taken");
}

#[test]
fn the_pages_behind_the_links_change_nothing_until_their_button_is_pressed() {
    let server = Server::start();
    register(&server, "sal@example.com", GOOD);
    let token = link_token(&server, "sal@example.com", "verify_email");
    let path = format!("/verify-email?token={token}");
    for _ in 0..2 {
        let page = server.get(&path);
        assert_eq!(page.status, 200);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
        assert!(
            page.header("content-security-policy")
                .unwrap()
                .starts_with("default-src 'none'")
        );
        let html = String::from_utf8(page.body).unwrap();
        assert!(html.contains("Confirm my email address"), "{html}");
        assert!(html.contains(&format!("value=\"{token}\"")));
    }
    let session = login(&server, "sal@example.com", GOOD);
    assert_eq!(
        server.get_auth("/auth/me", &session).json()["user"]["email_verified"],
        false
    );
    let form = |token: &str| {
        server.request(
            "POST",
            "/verify-email",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &format!("token={token}"),
        )
    };
    let done = form(&token);
    assert_eq!(done.status, 200);
    assert!(
        String::from_utf8(done.body)
            .unwrap()
            .contains("is confirmed")
    );
    assert_eq!(
        server.get_auth("/auth/me", &session).json()["user"]["email_verified"],
        true
    );
    let again = form(&token);
    assert_eq!(again.status, 400);
    assert!(
        String::from_utf8(again.body)
            .unwrap()
            .contains("used, expired")
    );
    assert_eq!(server.get("/verify-email").status, 400);
    assert_eq!(server.get("/confirm-email?token=short").status, 400);
}

#[test]
fn the_confirm_page_moves_the_account() {
    let server = Server::start();
    register(&server, "tia@example.com", GOOD);
    let session = login(&server, "tia@example.com", GOOD);
    let reply = server.json_auth(
        "PATCH",
        "/auth/me",
        &session,
        &json!({"email": "tia.new@example.com", "current_password": GOOD}),
    );
    assert_eq!(reply.status, 202);
    let token = link_token(&server, "tia.new@example.com", "confirm_email_change");
    let page = server.get(&format!("/confirm-email?token={token}"));
    assert!(
        String::from_utf8(page.body)
            .unwrap()
            .contains("Confirm the new address")
    );
    let done = server.request(
        "POST",
        "/confirm-email",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={token}"),
    );
    assert_eq!(done.status, 200);
    assert!(
        String::from_utf8(done.body)
            .unwrap()
            .contains("tia.new@example.com")
    );
    login(&server, "tia.new@example.com", GOOD);
}
