//! Accounts an admin creates (`POST /admin/users`), with a password or with
//! an invitation mailed to the address, and addresses an admin changes
//! (`PATCH /admin/users/{id} {email}`), against the real binary and a real
//! database.

mod common;

use common::{
    ADMIN, ADMIN_PASSWORD, Reply, Server, login, login_reply, register, token_in, wait_for_mail,
    wait_for_mail_of, wait_for_mail_worker,
};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::time::Duration;

const PASSWORD: &str = "a perfectly good passphrase";
const NEW: &str = "another perfectly good passphrase";
/// Where the invitation's link points with the tests' `PUBLIC_URL`.
const RESET_PAGE: &str = "http://localhost:8080/reset-password";

fn admin_server(builder: common::Builder) -> (Server, String) {
    let server = builder
        .admin()
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")
        .start();
    let token = login(&server, ADMIN, ADMIN_PASSWORD);
    (server, token)
}

fn create(server: &Server, token: &str, body: Value) -> Reply {
    server.json_auth("POST", "/admin/users", token, &body)
}

fn reset(server: &Server, token: &str, new_password: &str) -> Reply {
    server.json(
        "POST",
        "/auth/password/reset",
        &json!({"token": token, "new_password": new_password}),
    )
}

fn mails_to(server: &Server, recipient: &str) -> Vec<String> {
    server
        .db
        .conn()
        .exec(
            "SELECT kind FROM mail_outbox WHERE recipient = ? ORDER BY id",
            (recipient,),
        )
        .unwrap()
}

/// The events of `type_` as the admin API lists them.
fn events(server: &Server, token: &str, type_: &str) -> Vec<Value> {
    let reply = server.get_auth(&format!("/admin/audit?type={type_}"), token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["events"].as_array().unwrap().clone()
}

fn id_of(server: &Server, token: &str) -> Value {
    server.get_auth("/auth/me", token).json()["user"]["id"].clone()
}

#[test]
fn an_admin_creates_an_account_with_a_password_and_nothing_is_mailed() {
    let (server, admin) = admin_server(Server::builder());
    let body = json!({
        "email": "Ada@Example.com", "password": PASSWORD, "name": "Ada",
        "email_verified": true, "metadata": {"team": "ops"},
    });
    let reply = create(&server, &admin, body);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let user = reply.json()["user"].clone();
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["role"], "user");
    assert_eq!(user["name"], "Ada");
    assert_eq!(user["metadata"], json!({"team": "ops"}));
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["disabled"], false);
    assert_eq!(user["live_sessions"], 0);
    let id = user["id"].as_u64().unwrap();

    login(&server, "ada@example.com", PASSWORD);
    assert!(mails_to(&server, "ada@example.com").is_empty());
    let created = events(&server, &admin, "user_created_by_admin");
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["user_id"], id);
    assert_eq!(created[0]["actor_id"], id_of(&server, &admin));
    assert_eq!(
        created[0]["detail"],
        json!({"role": "user", "email_verified": true, "invited": false})
    );

    // The same mailbox in another spelling is taken: the database decides.
    create(&server, &admin, json!({"email": "ADA@example.com"})).assert_problem(409, "email_taken");
    for (body, status, code) in [
        (json!({"password": PASSWORD}), 400, "missing_field"),
        (
            json!({"email": "bob@example.com", "password": "short"}),
            422,
            "weak_password",
        ),
        (json!({"email": "not an address"}), 422, "invalid_email"),
        (
            json!({"email": "bob@example.com", "role": "root"}),
            400,
            "invalid_field",
        ),
        (
            json!({"email": "bob@example.com", "email_verified": "yes"}),
            400,
            "invalid_field",
        ),
        (
            json!({"email": "bob@example.com", "password": 12}),
            400,
            "invalid_field",
        ),
        (
            json!({"email": "bob@example.com", "locale": "not a tag"}),
            422,
            "invalid_profile",
        ),
    ] {
        create(&server, &admin, body.clone()).assert_problem(status, code);
    }
    // Only an admin may; none of the refusals created anything.
    let user_token = login(&server, "ada@example.com", PASSWORD);
    create(&server, &user_token, json!({"email": "bob@example.com"}))
        .assert_problem(403, "forbidden");
    let accounts: u64 = server
        .db
        .conn()
        .query_first("SELECT COUNT(*) FROM users")
        .unwrap()
        .unwrap();
    assert_eq!(accounts, 2, "the admin and ada, nobody else");
}

#[test]
fn an_invitation_mails_a_set_password_link_that_works_once_for_a_week() {
    let (server, admin) = admin_server(Server::builder());
    let email = "grace@example.com";
    let reply = create(&server, &admin, json!({"email": email, "role": "admin"}));
    assert_eq!(reply.status, 201, "{}", reply.text());
    let user = reply.json()["user"].clone();
    assert_eq!(
        (user["role"].as_str(), user["email_verified"].as_bool()),
        (Some("admin"), Some(false))
    );
    let id = user["id"].as_u64().unwrap();

    let body = wait_for_mail_of(&server, email, "invitation");
    assert!(body.contains("7 days"), "{body}");
    let token = token_in(&body, RESET_PAGE);
    let (created, expires): (u64, u64) = server
        .db
        .conn()
        .exec_first(
            "SELECT created_at, expires_at FROM password_resets WHERE user_id = ?",
            (id,),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        expires - created,
        604_800,
        "default INVITE_TOKEN_TTL_SECONDS"
    );

    // Before the link is used, no password opens the account, and trying
    // is an ordinary wrong password (not an error about a missing hash).
    login_reply(&server, email, PASSWORD).assert_problem(401, "wrong_password");
    login_reply(&server, email, "").assert_problem(401, "wrong_password");
    let page = server.get(&format!("/reset-password?token={token}"));
    assert_eq!(page.status, 200, "{}", page.text());

    assert_eq!(reset(&server, &token, PASSWORD).status, 204);
    reset(&server, &token, NEW).assert_problem(400, "invalid_reset_token");
    let new_admin = login(&server, email, PASSWORD);
    let me = server.get_auth("/auth/me", &new_admin).json()["user"].clone();
    assert_eq!(
        me["email_verified"], true,
        "using the invitation proves the address"
    );
    assert_eq!(me["role"], "admin");
    let created = events(&server, &admin, "user_created_by_admin");
    assert_eq!(created[0]["detail"]["invited"], true);
    assert_eq!(
        mails_to(&server, email),
        ["invitation", "notice_password_reset"]
    );
    let log = server.log();
    assert!(
        !log.contains(&token),
        "the invitation token reached the log"
    );
    assert!(!log.contains(" error "), "{log}");
}

#[test]
fn an_invitation_stops_working_after_invite_token_ttl_seconds() {
    let (server, admin) = admin_server(Server::builder().env("INVITE_TOKEN_TTL_SECONDS", "1"));
    let email = "heidi@example.com";
    let reply = create(&server, &admin, json!({"email": email}));
    assert_eq!(reply.status, 201, "{}", reply.text());
    let id = reply.json()["user"]["id"].as_u64().unwrap();
    let token = token_in(&wait_for_mail_of(&server, email, "invitation"), RESET_PAGE);
    std::thread::sleep(Duration::from_millis(2200));
    reset(&server, &token, PASSWORD).assert_problem(400, "invalid_reset_token");
    login_reply(&server, email, PASSWORD).assert_problem(401, "wrong_password");
    // What the admin does next: a fresh reset link, under the reset's TTL.
    let path = format!("/admin/users/{id}/password-reset");
    let sent = server.json_auth("POST", &path, &admin, &json!({}));
    assert_eq!(sent.status, 202, "{}", sent.text());
    wait_for_mail_worker(&server);
    let fresh = token_in(&wait_for_mail(&server, email), RESET_PAGE);
    assert_eq!(reset(&server, &fresh, PASSWORD).status, 204);
    login(&server, email, PASSWORD);
}

#[test]
fn an_admin_moves_an_account_to_a_new_address_at_once() {
    let (server, admin) = admin_server(Server::builder());
    let id = register(&server, "ivan@example.com", PASSWORD);
    let session = login(&server, "ivan@example.com", PASSWORD);
    let path = format!("/admin/users/{id}");
    // A reset link mailed to the old address must not outlive the move.
    let sent = server.json_auth(
        "POST",
        &format!("{path}/password-reset"),
        &admin,
        &json!({}),
    );
    assert_eq!(sent.status, 202);
    wait_for_mail_worker(&server);
    let old_link = token_in(&wait_for_mail(&server, "ivan@example.com"), RESET_PAGE);

    let reply = server.json_auth(
        "PATCH",
        &path,
        &admin,
        &json!({"email": "Judy@Example.com"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let user = reply.json()["user"].clone();
    assert_eq!(user["email"], "judy@example.com");
    assert_eq!(user["email_verified"], false, "an address nobody proved");
    reset(&server, &old_link, NEW).assert_problem(400, "invalid_reset_token");
    wait_for_mail_of(&server, "ivan@example.com", "notice_email_changed");
    login(&server, "judy@example.com", PASSWORD);
    login_reply(&server, "ivan@example.com", PASSWORD).assert_problem(404, "unknown_email");
    assert_eq!(
        server.get_auth("/auth/me", &session).status,
        200,
        "a move by an admin keeps the sessions"
    );
    let changed = events(&server, &admin, "email_changed");
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["actor_id"], id_of(&server, &admin));
    assert_eq!(
        changed[0]["detail"],
        json!({"old_email": "ivan@example.com", "new_email": "judy@example.com"})
    );

    // A taken address refuses the whole patch: the role stays as it was.
    register(&server, "mallory@example.com", PASSWORD);
    let taken = json!({"email": "mallory@example.com", "role": "admin"});
    server
        .json_auth("PATCH", &path, &admin, &taken)
        .assert_problem(409, "email_taken");
    let view = server.get_auth(&path, &admin).json()["user"].clone();
    assert_eq!(
        (view["email"].as_str(), view["role"].as_str()),
        (Some("judy@example.com"), Some("user"))
    );
    server
        .json_auth("PATCH", &path, &admin, &json!({"email": "nope"}))
        .assert_problem(422, "invalid_email");

    // The same address with `email_verified`: no move, no second notice.
    let same = json!({"email": "judy@example.com", "email_verified": true});
    let reply = server.json_auth("PATCH", &path, &admin, &same);
    assert_eq!(
        reply.json()["user"]["email_verified"],
        true,
        "{}",
        reply.text()
    );
    assert_eq!(events(&server, &admin, "email_changed").len(), 1);
    let notices: u64 = server
        .db
        .conn()
        .query_first("SELECT COUNT(*) FROM mail_outbox WHERE kind = 'notice_email_changed'")
        .unwrap()
        .unwrap();
    assert_eq!(notices, 1);
}
