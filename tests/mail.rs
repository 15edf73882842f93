//! The SMTP courier against a real SMTP server (aiosmtpd, started by
//! `common::smtp`), the real binary and a real database (issue 13): what
//! arrives and how it looks, an outage, temporary and permanent failures, a
//! courier dying mid-send, two instances, TLS that must hold, and the
//! hourly cap per recipient.

mod common;

use common::smtp::{Options, Security, SmtpServer, TestCa};
use common::{Server, register};
use mysql::prelude::Queryable;
use serde_json::json;
use std::time::{Duration, Instant};

const GOOD: &str = "correct horse battery staple";
const NEW: &str = "a different long passphrase";

fn forgot(server: &Server, email: &str) {
    let reply = server.json("POST", "/auth/password/forgot", &json!({"email": email}));
    assert_eq!(reply.status, 202, "{}", reply.text());
}

fn reset(server: &Server, token: &str) -> u16 {
    server
        .json(
            "POST",
            "/auth/password/reset",
            &json!({"token": token, "new_password": NEW}),
        )
        .status
}

/// The newest outbox row of `kind` for `recipient`: (sent_at, failed_at,
/// attempts, last_error, body, html).
type Row = (
    Option<u64>,
    Option<u64>,
    u32,
    Option<String>,
    String,
    Option<String>,
);

fn row_of(server: &Server, recipient: &str, kind: &str) -> Option<Row> {
    server
        .db
        .conn()
        .exec_first(
            "SELECT sent_at, failed_at, attempts, last_error, body, html FROM mail_outbox
             WHERE recipient = ? AND kind = ? ORDER BY id DESC LIMIT 1",
            (recipient, kind),
        )
        .unwrap()
}

/// The newest reset mail's row for `recipient` (registration queues a
/// verification mail too; these tests follow the reset mail).
fn outbox_row(server: &Server, recipient: &str) -> Option<Row> {
    row_of(server, recipient, "password_reset")
}

/// Waits up to `within` until `done` holds for the newest reset mail's row
/// to `recipient`.
#[track_caller]
fn wait_row(
    server: &Server,
    recipient: &str,
    within: Duration,
    done: impl Fn(&Row) -> bool,
) -> Row {
    wait_row_of(server, recipient, "password_reset", within, done)
}

/// [`wait_row`] for the newest row of `kind`.
#[track_caller]
fn wait_row_of(
    server: &Server,
    recipient: &str,
    kind: &str,
    within: Duration,
    done: impl Fn(&Row) -> bool,
) -> Row {
    let deadline = Instant::now() + within;
    loop {
        let row = row_of(server, recipient, kind);
        if let Some(row) = row.as_ref().filter(|r| done(r)) {
            return row.clone();
        }
        assert!(
            Instant::now() < deadline,
            "outbox row never got there: {row:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(server: &Server, name: &str) -> f64 {
    let text = String::from_utf8(server.get("/metrics").body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_reset_mail_arrives_within_seconds_looks_right_and_its_link_works_once() {
    let smtp = SmtpServer::start(Options::default());
    let server = Server::builder()
        .mail_to(&smtp)
        .env("APP_NAME", "Exämple Accounts")
        .env("PUBLIC_URL", "https://accounts.example.com")
        .start();
    register(&server, "ada@example.com", GOOD);
    let asked = Instant::now();
    forgot(&server, "ADA@example.com");
    let mail = smtp.reset_mail("ada@example.com");
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "the mail took {took:?}");

    // The envelope, the connection, the headers.
    assert_eq!(mail.mail_from, "no-reply@example.com");
    assert_eq!(mail.rcpt_tos, ["ada@example.com"]);
    assert!(mail.tls && mail.authenticated, "{mail:?}");
    assert_eq!(mail.content_type, "multipart/alternative");
    assert_eq!(mail.header("Auto-Submitted"), Some("auto-generated"));
    assert!(mail.header("Date").is_some());
    assert_eq!(mail.header("To"), Some("ada@example.com"));
    assert_eq!(
        mail.header("From"),
        Some("Auth Tests <no-reply@example.com>")
    );
    assert!(
        mail.header("Subject").unwrap().contains("Exämple Accounts"),
        "{:?}",
        mail.header("Subject")
    );
    let id = server
        .db
        .conn()
        .query_first::<u64, _>("SELECT id FROM mail_outbox WHERE kind = 'password_reset'")
        .unwrap()
        .unwrap();
    assert!(
        mail.header("Message-ID")
            .unwrap()
            .starts_with(&format!("<outbox.{id}.")),
        "{:?}",
        mail.header("Message-ID")
    );
    // Both parts carry the link to the server's page under PUBLIC_URL.
    let token = mail.token();
    assert_eq!(token.len(), 43);
    let link = format!("https://accounts.example.com/reset-password?token={token}");
    assert!(mail.text.contains(&link), "{}", mail.text);
    assert!(mail.html.contains(&link), "{}", mail.html);
    assert!(mail.text.contains("Exämple Accounts") && mail.html.contains("Exämple Accounts"));
    assert!(!mail.html.contains("<img") && !mail.html.contains("src="));

    // Sent, and blanked: the row no longer holds a live link.
    let (sent_at, failed_at, attempts, _, body, html) =
        wait_row(&server, "ada@example.com", Duration::from_secs(5), |r| {
            r.0.is_some()
        });
    assert!(sent_at.is_some() && failed_at.is_none());
    assert_eq!(attempts, 1);
    assert_eq!((body.as_str(), html.as_deref()), ("", Some("")));

    // The verification mail of the registration, and the reset mail.
    assert_eq!(metric(&server, "auth_mail_sent_total"), 2.0);
    assert_eq!(metric(&server, "auth_mail_queued_total"), 2.0);
    assert_eq!(reset(&server, &token), 204);
    assert_eq!(reset(&server, &token), 400);
    assert!(!server.log().contains(&token), "the token reached the log");
    // And the notice that the password was reset, which carries no link.
    let notice = smtp.mail_with("ada@example.com", "with a reset link");
    assert!(!notice.text.contains("token="), "{}", notice.text);
    assert_eq!(metric(&server, "auth_mail_queued_total"), 3.0);
}

#[test]
fn an_smtp_outage_loses_nothing_and_the_backlog_shows_in_the_metrics() {
    let mut smtp = SmtpServer::start(Options::default());
    let server = Server::builder().mail_to(&smtp).start();
    register(&server, "bob@example.com", GOOD);
    smtp.mail_with("bob@example.com", "/verify-email");
    smtp.stop();
    forgot(&server, "bob@example.com");
    // Tried and failed at least once, and waiting.
    let row = wait_row(&server, "bob@example.com", Duration::from_secs(10), |r| {
        r.2 >= 1 && r.3.is_some()
    });
    assert!(row.0.is_none() && row.1.is_none(), "{row:?}");
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(metric(&server, "auth_mail_waiting"), 1.0);
    assert!(metric(&server, "auth_mail_retries_total") >= 1.0);
    std::thread::sleep(Duration::from_millis(1100));
    assert!(metric(&server, "auth_mail_oldest_waiting_seconds") >= 1.0);

    smtp.restart();
    let mail = smtp.reset_mail("bob@example.com");
    wait_row(&server, "bob@example.com", Duration::from_secs(5), |r| {
        r.0.is_some()
    });
    assert_eq!(metric(&server, "auth_mail_waiting"), 0.0);
    // Nothing was lost or sent twice: the verification and the reset.
    assert_eq!(smtp.received().len(), 2);
    assert_eq!(reset(&server, &mail.token()), 204);
}

#[test]
fn a_temporary_rejection_is_retried_and_a_permanent_one_is_not() {
    let smtp = SmtpServer::start(Options {
        tempfail: 1,
        reject: vec!["gone@example.com".into()],
        ..Options::default()
    });
    let server = Server::builder().mail_to(&smtp).start();
    register(&server, "cid@example.com", GOOD);
    register(&server, "gone@example.com", GOOD);

    // The first message, cid's verification mail, met the 451.
    smtp.mail_with("cid@example.com", "/verify-email");
    // The relay has it; the courier records that a moment later.
    let verify = wait_row_of(
        &server,
        "cid@example.com",
        "verify_email",
        Duration::from_secs(5),
        |r| r.0.is_some(),
    );
    assert_eq!(verify.2, 2, "one 451, then delivered: {verify:?}");

    forgot(&server, "gone@example.com");
    let (sent, failed, attempts, error, body, _) =
        wait_row(&server, "gone@example.com", Duration::from_secs(10), |r| {
            r.1.is_some()
        });
    assert!(sent.is_none() && failed.is_some());
    assert_eq!(attempts, 1);
    assert!(error.as_deref().unwrap_or("").contains("550"), "{error:?}");
    assert_eq!(body, "", "a message given up on is blanked too");
    // Never tried again.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(outbox_row(&server, "gone@example.com").unwrap().2, 1);
    // Its verification mail and its reset mail.
    assert_eq!(metric(&server, "auth_mail_failed_total"), 2.0);
    assert!(server.log().contains("mail given up"));
}

#[test]
fn a_message_whose_courier_died_mid_send_is_delivered_by_another_after_the_lease() {
    // The relay never answers the first message's DATA: the verification
    // mail of the registration.
    let smtp = SmtpServer::start(Options {
        stall_first: true,
        ..Options::default()
    });
    let first = Server::builder()
        .mail_to(&smtp)
        .env("MAIL_LEASE_SECONDS", "5")
        .env("MAIL_TIMEOUT_MS", "60000")
        .start();
    register(&first, "dee@example.com", GOOD);
    // The first courier has claimed it and is stuck in DATA.
    let verifying = |server: &Server| row_of(server, "dee@example.com", "verify_email");
    let deadline = Instant::now() + Duration::from_secs(5);
    while verifying(&first).is_none_or(|r| r.2 != 1) {
        assert!(Instant::now() < deadline, "never claimed");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let db = std::sync::Arc::clone(&first.db);
    drop(first); // SIGKILL, between claim and mark.
    let second = Server::builder()
        .db(&db)
        .mail_to(&smtp)
        .env("MAIL_LEASE_SECONDS", "5")
        .env("MAIL_POLL_MS", "500")
        .start();
    let claimed = Instant::now();
    let mail = smtp.mail_with("dee@example.com", "/verify-email");
    assert!(claimed.elapsed() < Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(5);
    while verifying(&second).is_none_or(|r| r.0.is_none()) {
        assert!(Instant::now() < deadline, "never marked sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(verifying(&second).unwrap().2, 2, "claimed twice, sent once");
    let verified = second.json(
        "POST",
        "/auth/email/verify",
        &json!({"token": mail.token()}),
    );
    assert_eq!(verified.status, 200, "{}", verified.text());
    assert_eq!(smtp.received().len(), 1);
}

#[test]
fn two_instances_on_one_database_send_each_message_once() {
    let smtp = SmtpServer::start(Options::default());
    let first = Server::builder()
        .mail_to(&smtp)
        .env("MAIL_POLL_MS", "200")
        .start();
    let second = Server::builder()
        .db(&first.db)
        .mail_to(&smtp)
        .env("MAIL_POLL_MS", "200")
        .start();
    let emails: Vec<String> = (0..20).map(|n| format!("user{n}@example.com")).collect();
    for email in &emails {
        register(&first, email, GOOD);
    }
    for (n, email) in emails.iter().enumerate() {
        forgot(if n % 2 == 0 { &first } else { &second }, email);
    }
    // A verification mail and a reset mail each.
    smtp.wait_for(40, Duration::from_secs(30));
    // Give a duplicate every chance to arrive.
    std::thread::sleep(Duration::from_secs(2));
    let mut received: Vec<(String, bool)> = smtp
        .received()
        .into_iter()
        .map(|m| (m.rcpt_tos.join(","), m.text.contains("/reset-password")))
        .collect();
    received.sort();
    let mut expected: Vec<(String, bool)> = emails
        .iter()
        .flat_map(|e| [(e.clone(), false), (e.clone(), true)])
        .collect();
    expected.sort();
    assert_eq!(received, expected);
}

#[test]
fn starttls_is_required_and_certificates_are_verified() {
    // A relay that offers no STARTTLS gets nothing.
    let plain = SmtpServer::start(Options {
        security: Security::Plain,
        auth: None,
        ..Options::default()
    });
    let starttls_url = plain.url().replace("/?tls=none", "");
    let server = Server::builder()
        .mail_to(&plain)
        .env("SMTP_URL", &starttls_url)
        .start();
    register(&server, "eve@example.com", GOOD);
    forgot(&server, "eve@example.com");
    let row = wait_row(&server, "eve@example.com", Duration::from_secs(10), |r| {
        r.3.is_some()
    });
    assert!(row.0.is_none(), "{row:?}");
    assert!(server.wait_for_log("mail delivery failed", Duration::from_secs(5)));
    assert!(plain.received().is_empty());

    // A relay whose certificate another CA signed is refused.
    let stranger = SmtpServer::start_with_ca(Options::default(), TestCa::new("someone else's CA"));
    let trusted = TestCa::new("the CA we trust");
    let ca_file = std::env::temp_dir().join(format!("auth-other-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, &trusted.pem).unwrap();
    let server = Server::builder()
        .mail_to(&stranger)
        .env("SMTP_CA_FILE", ca_file.to_str().unwrap())
        .start();
    register(&server, "fay@example.com", GOOD);
    forgot(&server, "fay@example.com");
    let row = wait_row(&server, "fay@example.com", Duration::from_secs(10), |r| {
        r.3.is_some()
    });
    assert!(row.3.as_deref().unwrap().contains("certificate"), "{row:?}");
    assert!(stranger.received().is_empty());
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn implicit_tls_and_a_plaintext_relay_asked_for_by_name_both_deliver() {
    for options in [
        Options {
            security: Security::Implicit,
            ..Options::default()
        },
        Options {
            security: Security::Plain,
            auth: None,
            ..Options::default()
        },
    ] {
        let smtp = SmtpServer::start(options.clone());
        let server = Server::builder().mail_to(&smtp).start();
        register(&server, "gus@example.com", GOOD);
        forgot(&server, "gus@example.com");
        let sent = wait_row(&server, "gus@example.com", Duration::from_secs(10), |r| {
            r.0.is_some() || r.3.is_some()
        });
        assert!(sent.0.is_some(), "{:?}: {sent:?}", options.security);
        let mail = smtp.reset_mail("gus@example.com");
        assert_eq!(
            mail.tls,
            options.security == Security::Implicit,
            "{}",
            server.log()
        );
    }
}

#[test]
fn no_address_gets_more_than_the_hourly_cap() {
    let smtp = SmtpServer::start(Options::default());
    let server = Server::builder()
        .mail_to(&smtp)
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")
        .env("MAIL_MAX_PER_RECIPIENT_PER_HOUR", "3")
        .start();
    register(&server, "hal@example.com", GOOD);
    for _ in 0..4 {
        forgot(&server, "hal@example.com");
        common::wait_for_mail_worker(&server);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let failed: Vec<String> = server
            .db
            .conn()
            .query("SELECT last_error FROM mail_outbox WHERE failed_at IS NOT NULL")
            .unwrap();
        if failed.len() == 2 || Instant::now() > deadline {
            break failed;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The verification mail and two reset mails went out; two did not.
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[0].contains("MAIL_MAX_PER_RECIPIENT_PER_HOUR"));
    assert_eq!(smtp.received().len(), 3);
}

#[test]
fn without_smtp_url_mail_waits_in_the_outbox_and_start_up_says_so() {
    let server = Server::start();
    assert!(
        server.log().contains("SMTP_URL is not set"),
        "{}",
        server.log()
    );
    register(&server, "ivy@example.com", GOOD);
    forgot(&server, "ivy@example.com");
    common::wait_for_mail(&server, "ivy@example.com");
    std::thread::sleep(Duration::from_millis(500));
    let row = outbox_row(&server, "ivy@example.com").unwrap();
    assert_eq!((row.0, row.2), (None, 0), "nothing tried to send it");
}

#[test]
fn bad_mail_settings_stop_start_up_naming_the_variable() {
    for (env, variable) in [
        (vec![("SMTP_URL", "smtp://mail.example.com")], "MAIL_FROM"),
        (
            vec![
                ("SMTP_URL", "ftp://u:secret@x"),
                ("MAIL_FROM", "a@example.com"),
            ],
            "SMTP_URL",
        ),
        (
            vec![
                ("SMTP_URL", "smtp://mail.example.com"),
                ("MAIL_FROM", "a@example.com"),
                ("SMTP_CA_FILE", "/nonexistent.pem"),
            ],
            "SMTP_CA_FILE",
        ),
    ] {
        let db = common::TestDb::new();
        let mut vars: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), db.url()),
            ("TOKEN_SECRET".into(), common::TEST_SECRET.into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (mut child, log) = common::spawn(&vars, &[], None);
        assert_eq!(
            common::wait_exit(&mut child, Duration::from_secs(10)),
            Some(1)
        );
        let log = common::final_log(&log);
        assert!(log.contains(variable), "{variable}: {log}");
        assert!(!log.contains("secret"), "{log}");
    }
}
