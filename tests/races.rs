//! Account changes that race, against the real binary and a real database:
//! what the outside security review reproduced (issue 12), each run many
//! times so that a window the server left open would be hit.
//!
//! - A change made with a session and a password (`PATCH` or `DELETE
//!   /auth/me`) must not go through when the session ended while the
//!   password was being checked. The window is made wide and certain: one
//!   hashing slot (`HASH_CONCURRENCY=1`), held by a slow wrong-password login
//!   for another account, so the change has passed its session check and
//!   waits for the slot while the test ends the session.
//! - A `forgot` racing an email change must never leave a working link in a
//!   mail to the old address.
//! - Parallel `forgot`s for one account, over two instances, all answer 202
//!   and queue one mail.

mod common;

use common::{Reply, Server, login, register, wait_for_mail_worker};
use mysql::prelude::Queryable;
use serde_json::json;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery staple";
const OTHER: &str = "another long passphrase";
const TRIES: usize = 40;

/// A server whose one hashing slot a test can hold: a password check costs
/// about 0.15 s in the debug build here (25 iterations took 61 ms on a
/// quiet machine, under the 80 ms the tests need).
fn one_slot_server() -> Server {
    Server::builder()
        .env("HASH_CONCURRENCY", "1")
        .env("HASH_QUEUE_TIMEOUT_MS", "10000")
        .env("ARGON2_ITERATIONS", "60")
        // The blocker guesses wrong on every try.
        .env("LOCKOUT_THRESHOLD", "1000")
        .start()
}

/// Runs `change` (a request that needs the password) while the hashing slot
/// is busy, ends the session with `end` once `change` is waiting for the
/// slot, and returns the change's reply. Also returns how long the blocker
/// held the slot, which must be longer than the pause before `end`.
fn change_after_session_ends(
    server: &Server,
    blocker_email: &str,
    change: impl FnOnce() -> Reply + Send,
    end: impl FnOnce() -> Reply,
) -> Reply {
    std::thread::scope(|scope| {
        let blocker = scope.spawn(|| {
            let started = Instant::now();
            let reply = common::login_reply(server, blocker_email, "a wrong password guess");
            (reply, started.elapsed())
        });
        // The blocker holds the slot before the change asks for it.
        std::thread::sleep(Duration::from_millis(20));
        let change = scope.spawn(change);
        // The change has passed its session check and waits for the slot.
        std::thread::sleep(Duration::from_millis(40));
        let ended = end();
        assert_eq!(ended.status, 204, "{}", ended.text());
        let (blocked, held) = blocker.join().unwrap();
        blocked.assert_problem(401, "wrong_password");
        assert!(
            held > Duration::from_millis(80),
            "the blocker held the hashing slot for only {held:?}: raise ARGON2_ITERATIONS"
        );
        change.join().unwrap()
    })
}

#[test]
fn an_email_change_never_outlives_a_logout_all_during_its_password_check() {
    let server = one_slot_server();
    register(&server, "blocker@example.com", PASSWORD);
    let id = register(&server, "owner@example.com", PASSWORD);
    for n in 0..TRIES {
        let token = login(&server, "owner@example.com", PASSWORD);
        let target = format!("attacker-{n}@example.net");
        let reply = change_after_session_ends(
            &server,
            "blocker@example.com",
            || {
                server.json_auth(
                    "PATCH",
                    "/auth/me",
                    &token,
                    &json!({"email": target, "current_password": PASSWORD}),
                )
            },
            || server.json_auth("POST", "/auth/logout-all", &token, &json!({})),
        );
        reply.assert_problem(401, "token_revoked");
        let email: String = server
            .db
            .conn()
            .exec_first("SELECT email FROM users WHERE id = ?", (id,))
            .unwrap()
            .unwrap();
        assert_eq!(email, "owner@example.com", "try {n}");
    }
}

#[test]
fn an_account_deletion_never_outlives_a_logout_all_during_its_password_check() {
    let server = one_slot_server();
    register(&server, "blocker@example.com", PASSWORD);
    register(&server, "owner@example.com", PASSWORD);
    for _ in 0..TRIES {
        let token = login(&server, "owner@example.com", PASSWORD);
        let reply = change_after_session_ends(
            &server,
            "blocker@example.com",
            || server.json_auth("DELETE", "/auth/me", &token, &json!({"password": PASSWORD})),
            || server.json_auth("POST", "/auth/logout-all", &token, &json!({})),
        );
        reply.assert_problem(401, "token_revoked");
        // Still there: the owner logs in.
        login(&server, "owner@example.com", PASSWORD);
    }
}

#[test]
fn an_email_change_after_a_password_reset_ended_the_session_is_refused() {
    // The reset hashes too, so here the window is the change's own password
    // check: the owner's hash is made at a high cost by one server, and the
    // change and the reset go to a second, cheap one. Verifying the stored
    // hash takes its own cost (about 0.5 s); hashing the new password is fast.
    let costly = Server::builder().env("ARGON2_ITERATIONS", "100").start();
    let server = Server::builder().db(&costly.db).start();
    let id = register(&costly, "owner@example.com", PASSWORD);
    // Logging in on the cheap server would upgrade the hash to its cost.
    let token = login(&costly, "owner@example.com", PASSWORD);
    server.json(
        "POST",
        "/auth/password/forgot",
        &json!({"email": "owner@example.com"}),
    );
    let body = common::wait_for_mail(&server, "owner@example.com");
    let start = body.find("?token=").unwrap() + "?token=".len();
    let reset_token: String = body[start..].chars().take(43).collect();
    let started = Instant::now();
    let (changed, reset) = std::thread::scope(|scope| {
        let change = scope.spawn(|| {
            let reply = server.json_auth(
                "PATCH",
                "/auth/me",
                &token,
                &json!({"email": "attacker@example.net", "current_password": PASSWORD}),
            );
            (reply, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        let reset = server.json(
            "POST",
            "/auth/password/reset",
            &json!({"token": reset_token, "new_password": OTHER}),
        );
        let reset_took = started.elapsed();
        let (changed, change_took) = change.join().unwrap();
        assert!(
            reset_took < change_took,
            "the reset ({reset_took:?}) did not finish during the change ({change_took:?})"
        );
        (changed, reset)
    });
    assert_eq!(reset.status, 204, "{}", reset.text());
    changed.assert_problem(401, "token_revoked");
    let email: String = server
        .db
        .conn()
        .exec_first("SELECT email FROM users WHERE id = ?", (id,))
        .unwrap()
        .unwrap();
    assert_eq!(email, "owner@example.com");
    login(&server, "owner@example.com", OTHER);
}

#[test]
fn a_forgot_racing_an_email_change_never_leaves_a_working_link_to_the_old_address() {
    let server = Server::builder()
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")
        .start();
    for n in 0..TRIES {
        let old = format!("mover-{n}@example.com");
        let new = format!("moved-{n}@example.org");
        register(&server, &old, PASSWORD);
        let token = login(&server, &old, PASSWORD);
        let asked = server.json_auth(
            "PATCH",
            "/auth/me",
            &token,
            &json!({"email": new, "current_password": PASSWORD}),
        );
        assert_eq!(asked.status, 202, "{}", asked.text());
        let body = common::wait_for_mail_of(&server, &new, "confirm_email_change");
        let start = body.find("?token=").unwrap() + "?token=".len();
        let confirm: String = body[start..].chars().take(43).collect();
        // The forgot lands at a different point of the move each time.
        let offset = Duration::from_micros((n as u64 * 250) % 5_000);
        std::thread::scope(|scope| {
            let change = scope
                .spawn(|| server.json("POST", "/auth/email/confirm", &json!({"token": confirm})));
            std::thread::sleep(offset);
            let forgot = server.json("POST", "/auth/password/forgot", &json!({"email": old}));
            assert_eq!(forgot.status, 202, "{}", forgot.text());
            let changed = change.join().unwrap();
            assert_eq!(changed.status, 200, "{}", changed.text());
        });
        wait_for_mail_worker(&server);
        let mails: Vec<String> = server
            .db
            .conn()
            .exec(
                "SELECT body FROM mail_outbox WHERE recipient = ? AND kind = 'password_reset'",
                (old.as_str(),),
            )
            .unwrap();
        for body in mails {
            let start = body.find("?token=").unwrap() + "?token=".len();
            let link: String = body[start..].chars().take(43).collect();
            server
                .json(
                    "POST",
                    "/auth/password/reset",
                    &json!({"token": link, "new_password": OTHER}),
                )
                .assert_problem(400, "invalid_reset_token");
        }
        login(&server, &new, PASSWORD);
    }
}

#[test]
fn parallel_forgots_over_two_instances_all_answer_202_and_queue_one_mail() {
    let first = Server::start();
    let second = Server::builder().db(&first.db).start();
    let servers = [&first, &second];
    for n in 0..10 {
        let email = format!("popular-{n}@example.com");
        register(&first, &email, PASSWORD);
        let replies: Vec<Reply> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let (server, email) = (servers[i % 2], &email);
                    scope.spawn(move || {
                        server.json("POST", "/auth/password/forgot", &json!({"email": email}))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for reply in &replies {
            assert_eq!(reply.status, 202, "{}", reply.text());
        }
        wait_for_mail_worker(&first);
        let mails: u64 = first
            .db
            .conn()
            .exec_first(
                "SELECT COUNT(*) FROM mail_outbox WHERE recipient = ? AND kind = 'password_reset'",
                (email.as_str(),),
            )
            .unwrap()
            .unwrap();
        assert_eq!(mails, 1, "round {n}: the cooldown allows one mail");
    }
    for server in servers {
        assert!(
            !server.log().contains("\"level\":\"error\""),
            "{}",
            server.log()
        );
    }
}
