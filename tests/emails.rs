//! One mailbox, one account (issue 12), against the real binary and a real
//! database: addresses that look alike but differ are refused, every
//! spelling of one mailbox is one account, and accounts stored before
//! mailbox keys existed are keyed at start-up.

mod common;

use common::{Server, TestDb, login, login_reply, register};
use mysql::prelude::Queryable;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

const GOOD: &str = "correct horse battery staple";

fn register_reply(server: &Server, email: &str) -> common::Reply {
    server.json(
        "POST",
        "/auth/register",
        &json!({"email": email, "password": GOOD}),
    )
}

#[test]
fn invisible_format_characters_are_refused() {
    let server = Server::start();
    for email in [
        "ad\u{200B}min@example.com",
        "admin@exam\u{200D}ple.com",
        "\u{202E}moc.elpmaxe@nimda",
        "admin\u{FEFF}@example.com",
        "ad\u{AD}min@example.com",
    ] {
        register_reply(&server, email).assert_problem(422, "invalid_email");
    }
    // The look-alike could not be registered, so the real one is free.
    register(&server, "admin@example.com", GOOD);
}

#[test]
fn every_spelling_of_one_mailbox_is_one_account() {
    let server = Server::start();
    // café in NFC; its NFD spelling is taken.
    let reply = register_reply(&server, "caf\u{e9}@example.com");
    assert_eq!(reply.status, 201, "{}", reply.text());
    register_reply(&server, "cafe\u{301}@example.com").assert_problem(409, "email_taken");
    login(&server, "CAFE\u{301}@EXAMPLE.COM", GOOD);

    // A Unicode domain and its A-label; stored as the A-label.
    let reply = register_reply(&server, "reader@bücher.de");
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["user"]["email"], "reader@xn--bcher-kva.de");
    register_reply(&server, "reader@xn--bcher-kva.de").assert_problem(409, "email_taken");
    register_reply(&server, "READER@BÜCHER.DE").assert_problem(409, "email_taken");
    login(&server, "reader@xn--bcher-kva.de", GOOD);

    // A Greek name ending in a capital sigma lowercases to the final form;
    // typed in lowercase it ends in σ. One account, logging in either way.
    let reply = register_reply(&server, "ΟΔΥΣΣΕΑΣ@example.gr");
    assert_eq!(reply.status, 201, "{}", reply.text());
    login(&server, "οδυσσεασ@example.gr", GOOD);
    login(&server, "οδυσσεας@example.gr", GOOD);
    register_reply(&server, "οδυσσεασ@example.gr").assert_problem(409, "email_taken");

    // Full case folding: ß and ss are one mailbox.
    assert_eq!(register_reply(&server, "strasse@example.de").status, 201);
    register_reply(&server, "STRAßE@example.de").assert_problem(409, "email_taken");
}

#[test]
fn concurrent_registrations_of_two_spellings_make_one_account() {
    let server = Server::start();
    let replies: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let email = if i % 2 == 0 {
                    "josé@example.com"
                } else {
                    "JOSE\u{301}@EXAMPLE.COM"
                };
                let server = &server;
                scope.spawn(move || register_reply(server, email).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        replies.iter().filter(|s| **s == 201).count(),
        1,
        "{replies:?}"
    );
    assert!(
        replies.iter().all(|s| *s == 201 || *s == 409),
        "{replies:?}"
    );
}

/// A database at schema version 4 (before mailbox keys), as an older server
/// left it, holding `users` rows with the emails given.
fn database_before_keys(emails: &[&str]) -> Arc<TestDb> {
    let db = Arc::new(TestDb::new());
    let mut conn = db.conn();
    conn.query_drop(
        "CREATE TABLE schema_migrations (
            version INT UNSIGNED NOT NULL PRIMARY KEY,
            name VARCHAR(255) NOT NULL,
            checksum CHAR(64) NOT NULL,
            applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    )
    .unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
    for (version, name) in [
        "0001_users.sql",
        "0002_sessions.sql",
        "0003_login_failures.sql",
        "0004_password_resets.sql",
    ]
    .iter()
    .enumerate()
    {
        let sql = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        let mut statement = String::new();
        for line in sql.lines().filter(|l| !l.trim_start().starts_with("--")) {
            statement.push_str(line);
            statement.push('\n');
            if line.trim_end().ends_with(';') {
                conn.query_drop(&statement).unwrap();
                statement.clear();
            }
        }
        let checksum: String = Sha256::digest(sql.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        conn.exec_drop(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
            (version + 1, name, checksum),
        )
        .unwrap();
    }
    let config = rust_argon2::Config {
        mem_cost: 256,
        time_cost: 1,
        variant: rust_argon2::Variant::Argon2id,
        ..rust_argon2::Config::original()
    };
    let hash = rust_argon2::hash_encoded(GOOD.as_bytes(), b"sixteen byte slt", &config).unwrap();
    for (n, email) in emails.iter().enumerate() {
        conn.exec_drop(
            "INSERT INTO users (email, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (
                email,
                &hash,
                1_700_000_000 + n as u64,
                1_700_000_000 + n as u64,
            ),
        )
        .unwrap();
    }
    db
}

#[test]
fn accounts_from_before_mailbox_keys_are_keyed_at_start_up() {
    // As the old rules stored them: lowercased, NFD kept, Unicode domain kept.
    let db = database_before_keys(&[
        "old.user@example.com",
        "rene\u{301}@bücher.de",
        "σοφια@example.gr",
    ]);
    let server = Server::builder().db(&db).start();
    login(&server, "Old.User@Example.com", GOOD);
    login(&server, "REN\u{c9}@xn--bcher-kva.de", GOOD);
    login(&server, "ΣΟΦΙΑ@example.gr", GOOD);
    let stored: Vec<String> = db
        .conn()
        .query("SELECT email FROM users WHERE email_key IS NOT NULL ORDER BY id")
        .unwrap();
    assert_eq!(
        stored,
        [
            "old.user@example.com",
            "ren\u{e9}@xn--bcher-kva.de",
            "σοφια@example.gr"
        ]
    );
    // Taken, in any spelling.
    register_reply(&server, "rene\u{301}@BÜCHER.de").assert_problem(409, "email_taken");
    // A restart finds nothing left to key.
    drop(server);
    let again = Server::builder().db(&db).start();
    assert!(!again.log().contains("accounts given mailbox keys"));
    login(&again, "old.user@example.com", GOOD);
}

#[test]
fn two_old_accounts_of_one_mailbox_keep_the_first_and_name_both_in_the_log() {
    let db = database_before_keys(&["caf\u{e9}@example.com", "cafe\u{301}@example.com"]);
    let server = Server::builder().db(&db).start();
    assert!(
        server.wait_for_log("two accounts have one mailbox", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("two accounts have one mailbox"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("\"user_id\":2") && line.contains("\"other_user_id\":1"),
        "{line}"
    );
    assert!(line.contains("\"level\":\"error\""), "{line}");
    // The first account is reachable by either spelling; the second by none.
    let id = login_reply(&server, "cafe\u{301}@example.com", GOOD).json()["user"]["id"].clone();
    assert_eq!(id, 1);
}
