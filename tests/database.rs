//! The server's side of the database, against the real binary and a real
//! database (issue 12):
//!
//! - a stalled database (a table lock held for seconds) is answered 503 on
//!   time, and the server-side connections of the instance stay within
//!   `DB_POOL_MAX` plus a small slack, because the server's own limits end
//!   each statement before the client gives up on it;
//! - the purge of expired rows does not stop after one batch, and takes
//!   outbox rows past `MAIL_RETENTION_DAYS` too;
//! - a body with a duplicate member name is refused.

mod common;

use common::{Server, login, register};
use mysql::prelude::Queryable;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GOOD: &str = "correct horse battery staple";
const POOL: u64 = 4;

/// Connections the database server holds on database `name`, ours included.
fn server_connections(db: &common::TestDb, name: &str) -> u64 {
    db.conn()
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE db = ?",
            (name,),
        )
        .unwrap()
        .unwrap()
}

#[test]
fn a_held_table_lock_is_answered_503_on_time_without_piling_up_connections() {
    let server = Server::builder()
        .env("DB_POOL_MAX", &POOL.to_string())
        .env("DB_TIMEOUT_MS", "1500")
        .start();
    register(&server, "stall@example.com", GOOD);
    let token = login(&server, "stall@example.com", GOOD);
    assert_eq!(server.get_auth("/auth/me", &token).status, 200);

    // Another client locks the table every authenticated request reads.
    let mut locker = server.db.conn();
    locker.query_drop("LOCK TABLES sessions WRITE").unwrap();
    let mut most = 0;
    for wave in 0..4 {
        let started = Instant::now();
        let replies: Vec<common::Reply> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| server.get_auth("/auth/me", &token)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let took = started.elapsed();
        for reply in &replies {
            reply.assert_problem(503, "database_unavailable");
            assert!(reply.header("retry-after").is_some());
        }
        // Eight requests over four connections, each bounded by the pool's
        // checkout wait and the server's one-second lock wait.
        assert!(took < Duration::from_secs(5), "wave {wave} took {took:?}");
        most = most.max(server_connections(&server.db, &server.db.name));
    }
    // The pool's connections, the locker and the one counting; nothing left
    // behind by a statement the server was told to give up on.
    assert!(
        most <= POOL + 2,
        "{most} connections on the database with DB_POOL_MAX={POOL}"
    );
    locker.query_drop("UNLOCK TABLES").unwrap();
    drop(locker);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get_auth("/auth/me", &token).status != 200 {
        assert!(Instant::now() < deadline, "no recovery after the unlock");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server_connections(&server.db, &server.db.name) <= POOL + 1);
}

#[test]
fn the_purge_goes_on_while_a_batch_was_full() {
    // A database prepared by one server, then filled with 2,500 expired
    // sessions and a few expired reset tokens: more than two batches of
    // the one, less than a batch of the other.
    let (db, id) = {
        let first = Server::start();
        let id = register(&first, "old@example.com", GOOD);
        (Arc::clone(&first.db), id)
    };
    let mut conn = db.conn();
    for chunk in 0..5u32 {
        let rows: Vec<String> = (0..500u32)
            .map(|n| {
                let sid = format!("{:032x}", chunk * 500 + n);
                format!("(UNHEX('{sid}'), {id}, 1000, 2000, '127.0.0.1', 'purge-test')")
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO sessions (id, user_id, created_at, expires_at, ip, user_agent) VALUES {}",
            rows.join(", ")
        ))
        .unwrap();
    }
    for n in 0..5u32 {
        conn.exec_drop(
            "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at)
             VALUES (UNHEX(SHA2(?, 256)), ?, 1000, 2000)",
            (n.to_string(), id),
        )
        .unwrap();
    }
    // Outbox rows past MAIL_RETENTION_DAYS, and one that is not.
    for created_at in [1000, 2000, 3000, 4_000_000_000u64] {
        conn.exec_drop(
            "INSERT INTO mail_outbox (recipient, subject, body, created_at) VALUES ('a@b.io', 's', '', ?)",
            (created_at,),
        )
        .unwrap();
    }
    // The purge runs at start-up.
    let server = Server::builder().db(&db).start();
    assert!(
        server.wait_for_log("\"sessions\":2508", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let left: (u64, u64, u64) = conn
        .query_first(
            "SELECT (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM password_resets),
                    (SELECT COUNT(*) FROM mail_outbox)",
        )
        .unwrap()
        .unwrap();
    // The future row, and the verification mail of the registration.
    assert_eq!(left, (0, 0, 2));
}

#[test]
fn a_body_with_a_duplicate_member_is_refused() {
    let server = Server::start();
    register(&server, "dup@example.com", GOOD);
    for body in [
        r#"{"email": "dup@example.com", "password": "x", "password": "correct horse battery staple"}"#,
        r#"{"email": "other@example.com", "email": "dup@example.com", "password": "correct horse battery staple"}"#,
    ] {
        server
            .request(
                "POST",
                "/auth/login",
                &[("Content-Type", "application/json")],
                body,
            )
            .assert_problem(400, "malformed_json");
    }
    let reply = server.json(
        "POST",
        "/auth/login",
        &json!({"email": "dup@example.com", "password": GOOD}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
}
