//! The pages that emailed links open, in a real browser (Debian's Chromium,
//! headless): the whole flow a user goes through, from the mail the test's
//! SMTP server received to logging in with the new password over the API.
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
