//! The audit log (issue 17), against the real binary and a real database:
//! each action writes its event with the request's origin, a change that is
//! refused or rolled back writes none, admins list and filter the events,
//! a user sees their own, and old events are purged.

mod common;

use common::{
    ADMIN, ADMIN_PASSWORD, Reply, Server, TestDb, audit_types, login, login_reply, register,
    wait_for_mail,
};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = ADMIN_PASSWORD;
const NEW: &str = "a brand new passphrase";
const WRONG: &str = "incorrect horse battery staple";

fn admin_server() -> (Server, String) {
    let server = Server::builder()
        .admin()
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")
        .start();
    let token = login(&server, ADMIN, PASSWORD);
    (server, token)
}

fn events(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["events"].as_array().unwrap().clone()
}

#[test]
fn each_action_writes_its_event_with_the_requests_origin() {
    let (server, admin) = admin_server();
    let email = "ada@example.com";
    let id = register(&server, email, PASSWORD);
    login_reply(&server, email, WRONG).assert_problem(401, "wrong_password");
    let token = login(&server, email, PASSWORD);
    let mut client = server.connect();
    let reply = client.request(
        "POST",
        "/auth/logout",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("User-Agent", "audit-test/1"),
        ],
        "",
    );
    assert_eq!(reply.status, 204);
    let token = login(&server, email, PASSWORD);
    let change = json!({"email": email, "current_password": PASSWORD, "new_password": NEW});
    assert_eq!(server.json("POST", "/auth/password", &change).status, 204);
    server.json("POST", "/auth/password/forgot", &json!({"email": email}));
    wait_for_mail(&server, email);
    let disable = json!({"disabled": true, "disabled_reason": "audit"});
    let path = format!("/admin/users/{id}");
    assert_eq!(
        server.json_auth("PATCH", &path, &admin, &disable).status,
        200
    );
    let enable = json!({"disabled": false, "role": "admin"});
    assert_eq!(
        server.json_auth("PATCH", &path, &admin, &enable).status,
        200
    );
    let lockout = format!("/admin/users/{id}/lockout");
    let bearer = format!("Bearer {admin}");
    assert_eq!(
        server
            .request("DELETE", &lockout, &[("Authorization", &bearer)], "")
            .status,
        204
    );
    drop(token);

    assert_eq!(
        audit_types(&server, id),
        [
            "user_registered",
            "login_failed",
            "login_succeeded",
            "logout",
            "login_succeeded",
            "password_changed",
            "password_reset_requested",
            "account_disabled",
            "role_changed",
            "account_enabled",
            "lockout_cleared",
        ]
    );
    let listed = events(&server.get_auth(&format!("/admin/audit?user_id={id}&limit=500"), &admin));
    let logout = listed.iter().find(|e| e["type"] == "logout").unwrap();
    assert_eq!(logout["user_agent"], "audit-test/1");
    assert_eq!(logout["ip"], "127.0.0.1");
    assert_eq!(logout["actor_id"], Value::Null);
    assert!(logout["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    let failed = listed.iter().find(|e| e["type"] == "login_failed").unwrap();
    assert_eq!(failed["detail"], json!({"reason": "wrong_password"}));
    let admin_id = server.get_auth("/auth/me", &admin).json()["user"]["id"].clone();
    let disabled = listed
        .iter()
        .find(|e| e["type"] == "account_disabled")
        .unwrap();
    assert_eq!(disabled["actor_id"], admin_id);
    assert_eq!(disabled["detail"]["reason"], "audit");
    let role = listed.iter().find(|e| e["type"] == "role_changed").unwrap();
    assert_eq!(role["detail"], json!({"from": "user", "to": "admin"}));
    let requested = listed
        .iter()
        .find(|e| e["type"] == "password_reset_requested")
        .unwrap();
    assert_eq!(requested["actor_id"], Value::Null, "a forgot is no admin's");

    // Nothing secret anywhere in the table.
    let all: Vec<String> = server
        .db
        .conn()
        .query("SELECT CONCAT(type, detail, user_agent) FROM audit_events")
        .unwrap();
    for row in &all {
        for secret in [PASSWORD, NEW, "$argon2"] {
            assert!(!row.contains(secret), "{row}");
        }
    }
}

#[test]
fn an_unknown_address_is_recorded_as_tried_and_a_refused_change_writes_nothing() {
    let (server, admin) = admin_server();
    login_reply(&server, "Nobody@Example.com", PASSWORD).assert_problem(404, "unknown_email");
    let failed = events(&server.get_auth("/admin/audit?type=login_failed", &admin));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["user_id"], Value::Null);
    assert_eq!(
        failed[0]["detail"],
        json!({"reason": "unknown_email", "email": "nobody@example.com"})
    );

    // Refused by the last-admin rule: the transaction wrote nothing.
    let me = server.get_auth("/auth/me", &admin).json()["user"]["id"]
        .as_u64()
        .unwrap();
    let demote = json!({"role": "user"});
    server
        .json_auth("PATCH", &format!("/admin/users/{me}"), &admin, &demote)
        .assert_problem(409, "last_admin");
    assert!(events(&server.get_auth("/admin/audit?type=role_changed", &admin)).is_empty());
    // A wrong current password changes nothing and records only the refusal.
    let id = register(&server, "bob@example.com", PASSWORD);
    let change =
        json!({"email": "bob@example.com", "current_password": WRONG, "new_password": NEW});
    server
        .json("POST", "/auth/password", &change)
        .assert_problem(401, "wrong_password");
    assert_eq!(
        audit_types(&server, id),
        ["user_registered", "login_failed"]
    );
    for bad in ["type=nonsense", "user_id=x", "limit=0", "colour=red"] {
        server
            .get_auth(&format!("/admin/audit?{bad}"), &admin)
            .assert_problem(400, "invalid_query");
    }
    let user = login(&server, "bob@example.com", PASSWORD);
    server
        .get_auth("/admin/audit", &user)
        .assert_problem(403, "forbidden");
}

#[test]
fn a_user_pages_through_their_own_history_only() {
    let (server, admin) = admin_server();
    let id = register(&server, "carol@example.com", PASSWORD);
    register(&server, "dave@example.com", PASSWORD);
    login(&server, "dave@example.com", PASSWORD);
    for _ in 0..4 {
        login(&server, "carol@example.com", PASSWORD);
    }
    let bearer = format!("Bearer {admin}");
    let sessions = format!("/admin/users/{id}/sessions");
    assert_eq!(
        server
            .request("DELETE", &sessions, &[("Authorization", &bearer)], "")
            .status,
        204
    );
    let token = login(&server, "carol@example.com", PASSWORD);
    let (mut seen, mut before) = (Vec::new(), None::<String>);
    loop {
        let path = match &before {
            Some(cursor) => format!("/auth/me/events?limit=2&before={cursor}"),
            None => "/auth/me/events?limit=2".to_string(),
        };
        let reply = server.get_auth(&path, &token);
        let page = events(&reply);
        assert!(page.len() <= 2);
        for event in &page {
            assert_eq!(
                event["user_id"], id,
                "only the caller's own events: {event}"
            );
            assert!(event.get("actor_id").is_none(), "{event}");
        }
        seen.extend(page);
        match reply.json()["next"].as_str() {
            Some(cursor) => before = Some(cursor.to_string()),
            None => break,
        }
    }
    let types: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "login_succeeded",
            "sessions_ended",
            "login_succeeded",
            "login_succeeded",
            "login_succeeded",
            "login_succeeded",
            "user_registered",
        ],
        "newest first, each once"
    );
    assert_eq!(seen[1]["by_admin"], true);
    assert_eq!(seen[0]["by_admin"], false);
    server
        .get_auth("/auth/me/events?user_id=1", &token)
        .assert_problem(400, "invalid_query");
    server
        .get("/auth/me/events")
        .assert_problem(401, "missing_token");
}

#[test]
fn events_older_than_the_retention_are_purged() {
    let db = Arc::new(TestDb::new());
    let first = Server::builder().db(&db).start();
    let id = register(&first, "erin@example.com", PASSWORD);
    drop(first);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = now - 91 * 86_400;
    db.conn()
        .exec_drop(
            "INSERT INTO audit_events (at, type, user_id, ip, user_agent, request_id, detail)
             VALUES (?, 'login_succeeded', ?, '', '', '', '{}')",
            (old, id),
        )
        .unwrap();
    let server = Server::builder()
        .db(&db)
        .env("AUDIT_RETENTION_DAYS", "90")
        .start();
    // The housekeeping runs at start-up.
    assert!(server.wait_for_log("expired sessions purged", Duration::from_secs(10)));
    assert_eq!(audit_types(&server, id), ["user_registered"]);
}
