//! Operators (issue 17), against the real binary and a real database: the
//! first admin from `ADMIN_EMAIL`, the `create-admin` and `set-role`
//! commands, the admin API and its listener, disabled accounts, and the
//! last-admin rule under concurrency.

mod common;

use common::{
    ADMIN, ADMIN_PASSWORD, Client, Reply, Server, TestDb, cli, free_port, login, login_reply,
    register, wait_for_mail, wait_for_mail_worker,
};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::sync::{Arc, Barrier};

const PASSWORD: &str = ADMIN_PASSWORD;
const WRONG: &str = "incorrect horse battery staple";

/// A server whose first start makes `ADMIN` an admin.
fn with_admin(db: &Arc<TestDb>) -> common::Builder {
    Server::builder().db(db).admin()
}

/// A server with an admin, and the admin's token.
fn admin_server() -> (Server, String) {
    let server = with_admin(&Arc::new(TestDb::new())).start();
    let token = login(&server, ADMIN, PASSWORD);
    (server, token)
}

fn role_of(db: &TestDb, email: &str) -> Option<String> {
    db.conn()
        .exec_first("SELECT role FROM users WHERE email = ?", (email,))
        .unwrap()
}

fn patch(server: &Server, token: &str, id: u64, body: Value) -> Reply {
    server.json_auth("PATCH", &format!("/admin/users/{id}"), token, &body)
}

fn delete(server: &Server, token: &str, path: &str) -> Reply {
    server.request(
        "DELETE",
        path,
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
}

fn get_user(server: &Server, token: &str, id: u64) -> Value {
    let reply = server.get_auth(&format!("/admin/users/{id}"), token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["user"].clone()
}

#[test]
fn instances_starting_together_create_the_first_admin_once() {
    let db = Arc::new(TestDb::new());
    let gate = Barrier::new(3);
    let servers: Vec<Server> = std::thread::scope(|s| {
        let starts: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    gate.wait();
                    with_admin(&db).start()
                })
            })
            .collect();
        starts.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let admins: u64 = db
        .conn()
        .query_first("SELECT COUNT(*) FROM users WHERE role = 'admin'")
        .unwrap()
        .unwrap();
    assert_eq!(admins, 1);
    let created = servers
        .iter()
        .filter(|s| s.log().contains("admin account created from ADMIN_EMAIL"))
        .count();
    assert_eq!(created, 1, "exactly one instance creates the admin");
    for server in &servers {
        assert!(
            !server.log().contains(PASSWORD),
            "the password reached a log"
        );
    }
    let token = login(&servers[2], ADMIN, PASSWORD);
    let me = servers[0].get_auth("/auth/me", &token).json();
    assert_eq!(me["user"]["role"], "admin");
    assert_eq!(me["user"]["email_verified"], true);
    // A later start with another ADMIN_EMAIL creates nothing: an admin exists.
    drop(servers);
    let later = with_admin(&db)
        .env("ADMIN_EMAIL", "second@example.com")
        .start();
    assert_eq!(role_of(&later.db, "second@example.com"), None);
}

#[test]
fn an_address_registered_before_the_first_start_is_not_promoted() {
    let db = Arc::new(TestDb::new());
    let first = Server::builder().db(&db).start();
    register(&first, ADMIN, "someone else's passphrase");
    drop(first);
    let server = with_admin(&db).start();
    assert_eq!(role_of(&db, ADMIN).as_deref(), Some("user"));
    let log = server.log();
    assert!(
        log.contains("ADMIN_EMAIL names an account that is not an admin"),
        "{log}"
    );
    assert!(!log.contains(PASSWORD));
    login_reply(&server, ADMIN, PASSWORD).assert_problem(401, "wrong_password");
}

#[test]
fn half_or_weak_admin_settings_stop_the_start_with_the_setting_named() {
    let db = TestDb::new();
    for (env, named) in [
        (vec![("ADMIN_EMAIL", ADMIN)], "ADMIN_PASSWORD"),
        (vec![("ADMIN_PASSWORD", PASSWORD)], "ADMIN_EMAIL"),
        (
            vec![
                ("ADMIN_EMAIL", "not an address"),
                ("ADMIN_PASSWORD", PASSWORD),
            ],
            "ADMIN_EMAIL",
        ),
        (
            vec![("ADMIN_EMAIL", ADMIN), ("ADMIN_PASSWORD", "short")],
            "ADMIN_PASSWORD",
        ),
    ] {
        let log = common::failed_start(&db, &env);
        assert!(log.contains(named), "{env:?}: {log}");
        assert!(
            !log.contains(PASSWORD) && !log.contains("\"short\""),
            "{log}"
        );
    }
}

#[test]
fn create_admin_creates_or_promotes_and_set_role_keeps_one_admin() {
    let server = Server::start();
    let db = &server.db;
    let (code, out, err) = cli(
        db,
        &["create-admin", "Ops@Example.com"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("created admin ops@example.com"), "{out}");
    let token = login(&server, "ops@example.com", PASSWORD);
    assert_eq!(
        server.get_auth("/auth/me", &token).json()["user"]["role"],
        "admin"
    );

    // An existing account is promoted, with no password asked.
    register(&server, "dev@example.com", PASSWORD);
    let (code, out, _) = cli(db, &["create-admin", "dev@example.com"], "");
    assert_eq!(code, Some(0));
    assert!(out.contains("promoted dev@example.com"), "{out}");
    assert_eq!(role_of(db, "dev@example.com").as_deref(), Some("admin"));

    // A new account needs an acceptable password.
    let (code, _, err) = cli(db, &["create-admin", "new@example.com"], "short\n");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("password breaks the rules") && !err.contains("short\n"),
        "{err}"
    );
    let (code, _, _) = cli(db, &["create-admin", "new@example.com"], "");
    assert_eq!(code, Some(1));
    assert_eq!(role_of(db, "new@example.com"), None);

    let (code, out, _) = cli(db, &["set-role", "dev@example.com", "user"], "");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(role_of(db, "dev@example.com").as_deref(), Some("user"));
    let (code, _, err) = cli(db, &["set-role", "ops@example.com", "user"], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("last enabled admin"), "{err}");
    let (code, _, err) = cli(db, &["set-role", "ops@example.com", "root"], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("not user or admin"), "{err}");
    let (code, _, err) = cli(db, &["set-role", "nobody@example.com", "admin"], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("no account"), "{err}");
}

#[test]
fn the_admin_api_answers_only_an_admin_session() {
    let (server, admin) = admin_server();
    let id = register(&server, "user@example.com", PASSWORD);
    let user = login(&server, "user@example.com", PASSWORD);
    let paths = [
        ("GET", "/admin/users".to_string()),
        ("GET", format!("/admin/users/{id}")),
        ("PATCH", format!("/admin/users/{id}")),
        ("DELETE", format!("/admin/users/{id}")),
        ("DELETE", format!("/admin/users/{id}/sessions")),
        ("DELETE", format!("/admin/users/{id}/lockout")),
        ("POST", format!("/admin/users/{id}/password-reset")),
    ];
    for (method, path) in &paths {
        let json = [("Content-Type", "application/json")];
        server
            .request(method, path, &json, "{}")
            .assert_problem(401, "missing_token");
        let bearer = format!("Bearer {user}");
        let headers = [("Authorization", bearer.as_str()), json[0]];
        server
            .request(method, path, &headers, "{}")
            .assert_problem(403, "forbidden");
    }
    assert_eq!(server.get_auth("/admin/users", &admin).status, 200);
    // A demotion takes effect on the very next request.
    let other = register(&server, "second-admin@example.com", PASSWORD);
    assert_eq!(
        patch(&server, &admin, other, json!({"role": "admin"})).status,
        200
    );
    let second = login(&server, "second-admin@example.com", PASSWORD);
    let me = server.get_auth("/auth/me", &admin).json()["user"]["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        patch(&server, &second, me, json!({"role": "user"})).status,
        200
    );
    server
        .get_auth("/admin/users", &admin)
        .assert_problem(403, "forbidden");
}

#[test]
fn admin_bind_addr_serves_the_admin_api_there_and_nowhere_else() {
    let port = free_port();
    let server = with_admin(&Arc::new(TestDb::new()))
        .env("ADMIN_BIND_ADDR", &format!("127.0.0.1:{port}"))
        .start();
    let token = login(&server, ADMIN, PASSWORD);
    server
        .get_auth("/admin/users", &token)
        .assert_problem(404, "not_found");
    let bearer = format!("Bearer {token}");
    let mut admin = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    let reply = admin.request("GET", "/admin/users", &[("Authorization", &bearer)], "");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["users"][0]["email"], ADMIN);
    admin
        .request("GET", "/healthz", &[], "")
        .assert_problem(404, "not_found");
}

#[test]
fn listing_pages_have_no_gaps_or_repeats_while_accounts_are_created() {
    let (server, admin) = admin_server();
    let mut expected: Vec<u64> = (0..23)
        .map(|n| register(&server, &format!("member{n:02}@example.com"), PASSWORD))
        .collect();
    expected.push(
        server.get_auth("/auth/me", &admin).json()["user"]["id"]
            .as_u64()
            .unwrap(),
    );
    expected.sort_unstable_by(|a, b| b.cmp(a));
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for page in 0.. {
        let path = match &after {
            Some(cursor) => format!("/admin/users?limit=10&after={cursor}"),
            None => "/admin/users?limit=10".to_string(),
        };
        let reply = server.get_auth(&path, &admin);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        seen.extend(
            body["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_u64().unwrap()),
        );
        // New accounts are newer than every page still to come.
        register(&server, &format!("latecomer{page}@example.com"), PASSWORD);
        match body["next"].as_str() {
            Some(cursor) => after = Some(cursor.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, expected, "newest first, each account once");

    let ids = |query: &str| -> Vec<String> {
        let reply = server.get_auth(&format!("/admin/users?{query}"), &admin);
        assert_eq!(reply.status, 200, "{query}: {}", reply.text());
        let users = reply.json()["users"].as_array().unwrap().clone();
        users
            .iter()
            .map(|u| u["email"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("query=MEMBER0&limit=3").len(), 3);
    assert_eq!(
        ids("query=member1"),
        (0..10)
            .rev()
            .map(|n| format!("member1{n}@example.com"))
            .collect::<Vec<_>>()
    );
    assert_eq!(ids("query=%25"), Vec::<String>::new(), "% is literal");
    assert_eq!(ids("role=admin"), vec![ADMIN.to_string()]);
    assert_eq!(ids("verified=true"), vec![ADMIN.to_string()]);
    assert_eq!(ids("disabled=true"), Vec::<String>::new());
    for bad in [
        "limit=0",
        "limit=501",
        "limit=x",
        "role=root",
        "after=abc",
        "disabled=yes",
        "page=2",
        "role=admin&role=user",
    ] {
        let reply = server.get_auth(&format!("/admin/users?{bad}"), &admin);
        reply.assert_problem(400, "invalid_query");
    }
}

#[test]
fn an_account_view_shows_its_state() {
    let (server, admin) = admin_server();
    let id = register(&server, "state@example.com", PASSWORD);
    login_reply(&server, "state@example.com", WRONG).assert_problem(401, "wrong_password");
    let fresh = get_user(&server, &admin, id);
    assert_eq!(
        fresh["lockout"],
        json!({"failures": 1, "locked_until": null})
    );
    assert_eq!(fresh["last_login_at"], Value::Null);
    assert_eq!(fresh["role"], "user");
    assert_eq!(fresh["disabled"], false);
    login(&server, "state@example.com", PASSWORD);
    login(&server, "state@example.com", PASSWORD);
    let seen = get_user(&server, &admin, id);
    assert_eq!(seen["live_sessions"], 2);
    assert_eq!(seen["last_login_ip"], "127.0.0.1");
    assert!(seen["last_login_at"].is_string());
    assert_eq!(seen["lockout"]["failures"], 0);
    for missing in ["/admin/users/999999", "/admin/users/abc", "/admin/users/-1"] {
        server
            .get_auth(missing, &admin)
            .assert_problem(404, "user_not_found");
    }
}

#[test]
fn a_disabled_account_loses_its_sessions_and_cannot_get_back_in_until_enabled() {
    // No cooldown, so that only the disabling can keep a reset mail back.
    let server = with_admin(&Arc::new(TestDb::new()))
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")
        .start();
    let admin = login(&server, ADMIN, PASSWORD);
    let email = "suspect@example.com";
    let id = register(&server, email, PASSWORD);
    let session = login_reply(&server, email, PASSWORD).json();
    let token = session["token"].as_str().unwrap().to_string();
    let refresh = session["refresh_token"].as_str().unwrap().to_string();
    // A reset link mailed before the disabling must stop working with it.
    server.json("POST", "/auth/password/forgot", &json!({"email": email}));
    let mail = wait_for_mail(&server, email);
    let start = mail.find("?token=").unwrap() + "?token=".len();
    let reset_token: String = mail[start..].chars().take(43).collect();

    let reply = patch(
        &server,
        &admin,
        id,
        json!({"disabled": true, "disabled_reason": "chargeback"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let user = &reply.json()["user"];
    assert_eq!(
        (user["disabled"].clone(), user["disabled_reason"].clone()),
        (json!(true), json!("chargeback"))
    );
    assert_eq!(user["live_sessions"], 0);
    server
        .get_auth("/auth/me", &token)
        .assert_problem(401, "token_revoked");
    server
        .json("POST", "/auth/refresh", &json!({"refresh_token": refresh}))
        .assert_problem(401, "invalid_refresh_token");
    login_reply(&server, email, WRONG).assert_problem(401, "wrong_password");
    login_reply(&server, email, PASSWORD).assert_problem(403, "account_disabled");
    server
        .json(
            "POST",
            "/auth/password/reset",
            &json!({"token": reset_token, "new_password": "a brand new passphrase"}),
        )
        .assert_problem(400, "invalid_reset_token");
    let resets_before: u64 = count_resets(&server, email);
    let forgot = server.json("POST", "/auth/password/forgot", &json!({"email": email}));
    assert_eq!(forgot.status, 202);
    wait_for_mail_worker(&server);
    assert_eq!(
        count_resets(&server, email),
        resets_before,
        "a disabled account is mailed nothing"
    );

    let reply = patch(&server, &admin, id, json!({"disabled": false}));
    assert_eq!(reply.json()["user"]["disabled_reason"], Value::Null);
    server
        .get_auth("/auth/me", &token)
        .assert_problem(401, "token_revoked");
    login(&server, email, PASSWORD);
}

fn count_resets(server: &Server, email: &str) -> u64 {
    server
        .db
        .conn()
        .exec_first(
            "SELECT COUNT(*) FROM mail_outbox WHERE recipient = ? AND kind = 'password_reset'",
            (email,),
        )
        .unwrap()
        .unwrap()
}

#[test]
fn the_last_admin_cannot_be_demoted_disabled_or_deleted() {
    let (server, admin) = admin_server();
    let me = server.get_auth("/auth/me", &admin).json()["user"]["id"]
        .as_u64()
        .unwrap();
    patch(&server, &admin, me, json!({"role": "user"})).assert_problem(409, "last_admin");
    patch(&server, &admin, me, json!({"disabled": true})).assert_problem(409, "last_admin");
    delete(&server, &admin, &format!("/admin/users/{me}")).assert_problem(409, "last_admin");
    server
        .json_auth("DELETE", "/auth/me", &admin, &json!({"password": PASSWORD}))
        .assert_problem(409, "last_admin");
    assert_eq!(role_of(&server.db, ADMIN).as_deref(), Some("admin"));

    // Two admins demoting each other at once: one wins, one admin is left.
    let other = register(&server, "deputy@example.com", PASSWORD);
    let deputy = login(&server, "deputy@example.com", PASSWORD);
    for round in 0..10 {
        assert_eq!(
            patch(&server, &admin, other, json!({"role": "admin"})).status,
            200
        );
        let gate = Barrier::new(2);
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let a = s.spawn(|| {
                gate.wait();
                patch(&server, &admin, other, json!({"role": "user"})).status
            });
            let b = s.spawn(|| {
                gate.wait();
                patch(&server, &deputy, me, json!({"role": "user"})).status
            });
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        let admins: u64 = server
            .db
            .conn()
            .query_first("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .unwrap()
            .unwrap();
        assert_eq!(admins, 1, "round {round}: {statuses:?}");
        let mut sorted = statuses.clone();
        sorted.sort_unstable();
        // The loser is refused: 403, as it is no longer an admin when its
        // change runs (or 409, had it counted after the winner).
        assert!(
            sorted[0] == 200 && (sorted[1] == 409 || sorted[1] == 403),
            "round {round}: {statuses:?}"
        );
        if role_of(&server.db, ADMIN).as_deref() != Some("admin") {
            // Put the first admin back for the next round.
            assert_eq!(
                patch(&server, &deputy, me, json!({"role": "admin"})).status,
                200
            );
        }
    }
}

#[test]
fn admins_end_sessions_lift_lockouts_send_resets_and_delete_accounts() {
    let (server, admin) = admin_server();
    let email = "member@example.com";
    let id = register(&server, email, PASSWORD);
    let token = login(&server, email, PASSWORD);
    assert_eq!(
        delete(&server, &admin, &format!("/admin/users/{id}/sessions")).status,
        204
    );
    server
        .get_auth("/auth/me", &token)
        .assert_problem(401, "token_revoked");

    for _ in 0..5 {
        login_reply(&server, email, WRONG).assert_problem(401, "wrong_password");
    }
    login_reply(&server, email, PASSWORD).assert_problem(429, "too_many_attempts");
    assert!(get_user(&server, &admin, id)["lockout"]["locked_until"].is_string());
    assert_eq!(
        delete(&server, &admin, &format!("/admin/users/{id}/lockout")).status,
        204
    );
    let token = login(&server, email, PASSWORD);

    let path = format!("/admin/users/{id}/password-reset");
    let reply = server.json_auth("POST", &path, &admin, &json!({}));
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(wait_for_mail(&server, email).contains("?token="));
    // The reset the admin asked for is theirs in the audit log.
    let admin_id = server.get_auth("/auth/me", &admin).json()["user"]["id"].as_u64();
    let actors: Vec<Option<u64>> = server
        .db
        .conn()
        .exec(
            "SELECT actor_id FROM audit_events
             WHERE user_id = ? AND type = 'password_reset_requested'",
            (id,),
        )
        .unwrap();
    assert_eq!(actors, [admin_id]);

    let reply = patch(&server, &admin, id, json!({"email_verified": true}));
    assert_eq!(reply.json()["user"]["email_verified"], true);
    patch(&server, &admin, id, json!({"role": "root"})).assert_problem(400, "invalid_field");
    patch(&server, &admin, id, json!({"disabled": "yes"})).assert_problem(400, "invalid_field");
    patch(&server, &admin, id, json!({"disabled_reason": 5})).assert_problem(400, "invalid_field");
    patch(
        &server,
        &admin,
        id,
        json!({"disabled_reason": "x".repeat(501)}),
    )
    .assert_problem(400, "invalid_field");

    assert_eq!(
        delete(&server, &admin, &format!("/admin/users/{id}")).status,
        204
    );
    server
        .get_auth(&format!("/admin/users/{id}"), &admin)
        .assert_problem(404, "user_not_found");
    server
        .get_auth("/auth/me", &token)
        .assert_problem(401, "token_revoked");
    delete(&server, &admin, &format!("/admin/users/{id}")).assert_problem(404, "user_not_found");
    let missing = server.json_auth("POST", &path, &admin, &json!({}));
    missing.assert_problem(404, "user_not_found");
}

#[test]
fn filtered_pages_each_look_at_one_window_and_together_miss_nothing() {
    let (server, admin) = admin_server();
    // Accounts further apart than one window (20 000 ids), written straight
    // into the table with ids of their own.
    let ids = [70_000u64, 45_000, 44_999, 20_001, 3];
    let mut conn = server.db.conn();
    for id in ids {
        conn.exec_drop(
            "INSERT INTO users (id, email, email_key, password_hash, created_at, updated_at)
             VALUES (?, ?, UNHEX(SHA2(?, 256)), 'not-a-hash', 0, 0)",
            (id, format!("far-{id}@example.com"), format!("far-{id}")),
        )
        .unwrap();
    }
    let (mut found, mut pages, mut after) = (Vec::new(), 0, None::<String>);
    loop {
        pages += 1;
        assert!(pages < 20, "paging did not end: {found:?}");
        let path = match &after {
            Some(cursor) => format!("/admin/users?query=far-&after={cursor}"),
            None => "/admin/users?query=far-".to_string(),
        };
        let reply = server.get_auth(&path, &admin);
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        found.extend(
            body["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_u64().unwrap()),
        );
        match body["next"].as_str() {
            Some(cursor) => after = Some(cursor.to_string()),
            None => break,
        }
    }
    assert_eq!(found, ids, "every match once, newest first");
    // 70 001 ids in windows of 20 000: four pages, some of them empty.
    assert_eq!(pages, 4);
    // Without a filter that needs a window, one page reaches them all.
    let all = server.get_auth("/admin/users?limit=10", &admin).json();
    assert_eq!(all["users"].as_array().unwrap().len(), 6);
    assert_eq!(all["next"], Value::Null);
}
