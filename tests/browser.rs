//! The pages that emailed links open, in a real browser (Debian's Chromium,
//! headless): the whole flow a user goes through, from the mail the test's
//! SMTP server received to logging in over the API: a password reset,
//! verifying an address, and moving the account to a new one.
//! Screenshots of each page are kept under `target/browser/`.

mod common;

use common::smtp::{Options, SmtpServer};
use common::{Server, login, register};
use serde_json::json;

const GOOD: &str = "correct horse battery staple";
const NEW: &str = "a brand new passphrase";

#[test]
fn a_password_reset_from_the_mailed_link_in_a_browser() {
    let smtp = SmtpServer::start(Options::default());
    let port = common::free_port();
    let server = Server::builder()
        .mail_to(&smtp)
        .env("BIND_ADDR", &format!("127.0.0.1:{port}"))
        .env("PUBLIC_URL", &format!("http://127.0.0.1:{port}"))
        .env("APP_NAME", "Browser Test")
        .start();
    register(&server, "walt@example.com", GOOD);
    let reply = server.json(
        "POST",
        "/auth/password/forgot",
        &json!({"email": "walt@example.com"}),
    );
    assert_eq!(reply.status, 202);
    let link = smtp.reset_mail("walt@example.com").link();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/reset-password?token=")),
        "{link}"
    );

    let shots = common::browser::screenshot_dir();
    common::browser::drive(
        &link,
        &json!([
            {"expect": "Browser Test"},
            {"fill": "New password", "value": NEW},
            {"fill": "New password again", "value": NEW},
            {"screenshot": shots.join("reset-form.png")},
            {"click": "Set the new password"},
            {"expect": "Your new password is set."},
            {"screenshot": shots.join("reset-done.png")},
        ]),
    );
    login(&server, "walt@example.com", NEW);
    common::login_reply(&server, "walt@example.com", GOOD).assert_problem(401, "wrong_password");
    assert!(shots.join("reset-form.png").exists() && shots.join("reset-done.png").exists());
}

#[test]
fn verifying_an_address_from_the_mailed_link_in_a_browser() {
    let smtp = SmtpServer::start(Options::default());
    let port = common::free_port();
    let server = Server::builder()
        .mail_to(&smtp)
        .env("BIND_ADDR", &format!("127.0.0.1:{port}"))
        .env("PUBLIC_URL", &format!("http://127.0.0.1:{port}"))
        .env("APP_NAME", "Browser Test")
        .env("REQUIRE_VERIFIED_EMAIL", "true")
        .start();
    register(&server, "vera@example.com", GOOD);
    common::login_reply(&server, "vera@example.com", GOOD)
        .assert_problem(403, "email_not_verified");
    let link = smtp.mail_with("vera@example.com", "/verify-email").link();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/verify-email?token=")),
        "{link}"
    );

    let shots = common::browser::screenshot_dir();
    common::browser::drive(
        &link,
        &json!([
            {"expect": "Confirm your email address"},
            {"screenshot": shots.join("verify-page.png")},
            {"click": "Confirm my email address"},
            {"expect": "vera@example.com is confirmed"},
            {"screenshot": shots.join("verify-done.png")},
        ]),
    );
    login(&server, "vera@example.com", GOOD);
}

#[test]
fn changing_the_address_from_the_mailed_link_in_a_browser() {
    let smtp = SmtpServer::start(Options::default());
    let port = common::free_port();
    let server = Server::builder()
        .mail_to(&smtp)
        .env("BIND_ADDR", &format!("127.0.0.1:{port}"))
        .env("PUBLIC_URL", &format!("http://127.0.0.1:{port}"))
        .env("APP_NAME", "Browser Test")
        .start();
    register(&server, "old@example.com", GOOD);
    let token = login(&server, "old@example.com", GOOD);
    let pending = server.json_auth(
        "PATCH",
        "/auth/me",
        &token,
        &json!({"email": "new@example.com", "current_password": GOOD}),
    );
    assert_eq!(pending.status, 202, "{}", pending.text());
    let link = smtp.mail_with("new@example.com", "/confirm-email").link();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/confirm-email?token=")),
        "{link}"
    );

    let shots = common::browser::screenshot_dir();
    common::browser::drive(
        &link,
        &json!([
            {"expect": "Confirm your new email address"},
            {"screenshot": shots.join("confirm-page.png")},
            {"click": "Confirm the new address"},
            {"expect": "Your account now uses new@example.com"},
            {"screenshot": shots.join("confirm-done.png")},
        ]),
    );
    login(&server, "new@example.com", GOOD);
    common::login_reply(&server, "old@example.com", GOOD).assert_problem(404, "unknown_email");
}
