//! Profiles (issue 17), against the real binary and a real database: a
//! name, a locale and metadata given at registration, changed through
//! `PATCH /auth/me` without the password, by an admin, and by an import,
//! each under the same rules (400 `invalid_field` for a wrong type, 422
//! `invalid_profile` naming the member for a broken rule).

mod common;

use common::{Server, login, register};
use mysql::prelude::Queryable;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

fn me(server: &Server, token: &str) -> Value {
    let reply = server.get_auth("/auth/me", token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["user"].clone()
}

#[test]
fn a_profile_given_at_registration_round_trips_and_changes_without_the_password() {
    let server = Server::start();
    let reply = server.json(
        "POST",
        "/auth/register",
        &json!({
            "email": "ada@example.com", "password": PASSWORD, "name": "Ada Lovelace",
            "locale": "en-GB", "metadata": {"country": "GB", "customer_id": "c-42"}
        }),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let user = &reply.json()["user"];
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(
        user["metadata"],
        json!({"country": "GB", "customer_id": "c-42"})
    );
    let token = login(&server, "ada@example.com", PASSWORD);
    assert_eq!(me(&server, &token)["locale"], "en-GB");

    let reply = server.json_auth(
        "PATCH",
        "/auth/me",
        &token,
        &json!({"name": "Countess", "locale": null}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let user = me(&server, &token);
    assert_eq!(
        (user["name"].clone(), user["locale"].clone()),
        (json!("Countess"), Value::Null)
    );
    assert_eq!(
        user["metadata"]["customer_id"], "c-42",
        "members not given stay"
    );
    let reply = server.json_auth(
        "PATCH",
        "/auth/me",
        &token,
        &json!({"metadata": {"plan": "pro"}}),
    );
    assert_eq!(
        reply.json()["user"]["metadata"],
        json!({"plan": "pro"}),
        "metadata is replaced whole"
    );

    // With an address change the password is still needed, for both.
    let both = json!({"name": "Ada", "email": "ada@new.example"});
    server
        .json_auth("PATCH", "/auth/me", &token, &both)
        .assert_problem(400, "missing_field");
    assert_eq!(me(&server, &token)["name"], "Countess");
    let both = json!({"name": "Ada", "email": "ada@new.example", "current_password": PASSWORD});
    assert_eq!(
        server.json_auth("PATCH", "/auth/me", &token, &both).status,
        202
    );
    assert_eq!(me(&server, &token)["name"], "Ada");

    // A registration without a profile has the empty one.
    let id = register(&server, "bob@example.com", PASSWORD);
    let bob = login(&server, "bob@example.com", PASSWORD);
    let user = me(&server, &bob);
    assert_eq!(user["id"], id);
    assert_eq!(
        (user["name"].clone(), user["metadata"].clone()),
        (Value::Null, json!({}))
    );
    // An ended session changes nothing.
    assert_eq!(
        server
            .json_auth("POST", "/auth/logout", &bob, &json!({}))
            .status,
        204
    );
    server
        .json_auth("PATCH", "/auth/me", &bob, &json!({"name": "Robert"}))
        .assert_problem(401, "token_revoked");
}

#[test]
fn profile_members_are_checked_wherever_they_are_written() {
    let server = Server::start();
    let token = {
        register(&server, "carol@example.com", PASSWORD);
        login(&server, "carol@example.com", PASSWORD)
    };
    for (body, member) in [
        (json!({"name": 5}), "name"),
        (json!({"locale": ["fr"]}), "locale"),
        (json!({"metadata": "x"}), "metadata"),
    ] {
        let reply = server.json_auth("PATCH", "/auth/me", &token, &body);
        reply.assert_problem(400, "invalid_field");
        assert!(
            reply.json()["detail"].as_str().unwrap().contains(member),
            "{}",
            reply.text()
        );
    }
    for (body, member) in [
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"name": "line\nbreak"}), "name"),
        (json!({"locale": "french"}), "locale"),
        (json!({"locale": "fr_FR"}), "locale"),
        (json!({"metadata": {"blob": "y".repeat(5000)}}), "metadata"),
    ] {
        let reply = server.json_auth("PATCH", "/auth/me", &token, &body);
        reply.assert_problem(422, "invalid_profile");
        assert!(
            reply.json()["detail"].as_str().unwrap().contains(member),
            "{}",
            reply.text()
        );
        let register = json!({"email": "dave@example.com", "password": PASSWORD})
            .as_object()
            .unwrap()
            .clone();
        let mut register = Value::Object(register);
        for (k, v) in body.as_object().unwrap() {
            register[k] = v.clone();
        }
        server
            .json("POST", "/auth/register", &register)
            .assert_problem(422, "invalid_profile");
    }
    let user = me(&server, &token);
    assert_eq!(
        (user["name"].clone(), user["locale"].clone()),
        (Value::Null, Value::Null)
    );
    let accounts: u64 = server
        .db
        .conn()
        .query_first("SELECT COUNT(*) FROM users")
        .unwrap()
        .unwrap();
    assert_eq!(accounts, 1, "no refused registration made an account");
}

#[test]
fn admins_and_imports_write_profiles_too() {
    let server = Server::builder()
        .env("ADMIN_EMAIL", "root@example.com")
        .env("ADMIN_PASSWORD", PASSWORD)
        .start();
    let admin = login(&server, "root@example.com", PASSWORD);
    let id = register(&server, "erin@example.com", PASSWORD);
    let path = format!("/admin/users/{id}");
    let reply = server.json_auth(
        "PATCH",
        &path,
        &admin,
        &json!({"name": "Erin", "metadata": {"tier": 2}}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["user"]["name"], "Erin");
    assert_eq!(reply.json()["user"]["metadata"], json!({"tier": 2}));
    server
        .json_auth("PATCH", &path, &admin, &json!({"locale": "!!"}))
        .assert_problem(422, "invalid_profile");

    let lines = [
        json!({"email": "frank@example.com", "password": PASSWORD, "name": "Frank", "locale": "fr-FR", "metadata": {"from": "legacy"}}),
        json!({"email": "grace@example.com", "password": PASSWORD, "locale": "no way"}),
    ];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (code, report, _) = common::cli(&server.db, &["import-users", "-"], &input);
    assert_eq!(code, Some(1), "one line was rejected: {report}");
    assert!(report.contains("line 2: invalid profile"), "{report}");
    let token = login(&server, "frank@example.com", PASSWORD);
    let user = me(&server, &token);
    assert_eq!(user["name"], "Frank");
    assert_eq!(user["locale"], "fr-FR");
    assert_eq!(user["metadata"], json!({"from": "legacy"}));
}
