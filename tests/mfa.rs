//! Two-factor login (issue 18) against the real binary and a real
//! database: enrolment, the two-step login, replay through a second
//! instance, clock skew, the `mfa_token`'s rules, recovery codes, turning
//! it off (by the owner and by an admin), `ADMIN_REQUIRE_MFA`, secrets at
//! rest and key rotation, and wrong codes under the lockout.
//!
//! Codes are computed from the secret the server hands out by the tests'
//! own RFC 6238 (`common::totp`), not by the server's code.

mod common;

use common::totp::{base32_decode, code_at, fresh_step, step_now};
use common::{
    ADMIN, ADMIN_PASSWORD, Reply, Server, TestDb, audit_types, login, login_reply, register,
    token_in, wait_for_mail, wait_for_mail_of, wait_for_mail_worker,
};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "a perfectly good passphrase";
const NEW: &str = "another perfectly good passphrase";
/// 32 bytes, base64.
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const OTHER_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn with_key() -> common::Builder {
    Server::builder().env("DATA_ENCRYPTION_KEY", KEY)
}

/// An enrolled account: its secret, the step its confirmation spent, and
/// its recovery codes.
struct Enrolled {
    id: u64,
    secret: Vec<u8>,
    confirmed_step: u64,
    recovery: Vec<String>,
}

fn setup(server: &Server, token: &str) -> Value {
    let reply = server.json_auth(
        "POST",
        "/auth/mfa/totp/setup",
        token,
        &json!({"password": PASSWORD}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// Registers `email` and turns two-factor login on, confirming with the
/// code of `offset` steps from now.
fn enrolled(server: &Server, email: &str, offset: i64) -> Enrolled {
    let id = register(server, email, PASSWORD);
    let token = login(server, email, PASSWORD);
    let secret = base32_decode(setup(server, &token)["secret"].as_str().unwrap());
    let step = fresh_step().checked_add_signed(offset).unwrap();
    let reply = server.json_auth(
        "POST",
        "/auth/mfa/totp/confirm",
        &token,
        &json!({"code": code_at(&secret, step)}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let recovery = reply.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    Enrolled {
        id,
        secret,
        confirmed_step: step,
        recovery,
    }
}

/// The first step: the `mfa_token` of a right password.
fn first_step(server: &Server, email: &str) -> String {
    let reply = login_reply(server, email, PASSWORD);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("token").is_none(), "no session before the code");
    body["mfa_token"].as_str().unwrap().to_string()
}

fn second_step(server: &Server, mfa_token: &str, member: &str, code: &str) -> Reply {
    server.json(
        "POST",
        "/auth/login/mfa",
        &json!({"mfa_token": mfa_token, member: code}),
    )
}

#[test]
fn a_user_enrols_from_the_setup_answer_and_logs_in_in_two_steps() {
    let server = with_key().start();
    let email = "ada@example.com";
    register(&server, email, PASSWORD);
    let token = login(&server, email, PASSWORD);
    server
        .json_auth(
            "POST",
            "/auth/mfa/totp/setup",
            &token,
            &json!({"password": NEW}),
        )
        .assert_problem(401, "wrong_password");
    let answer = setup(&server, &token);
    let secret = answer["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "160 bits in base32");
    assert_eq!(
        answer["otpauth_uri"],
        format!(
            "otpauth://totp/auth-server:ada%40example.com?secret={secret}&issuer=auth-server\
             &algorithm=SHA1&digits=6&period=30"
        )
    );
    let svg = answer["qr_svg"].as_str().unwrap();
    assert!(svg.starts_with("<svg") && !svg.contains("<script"), "{svg}");
    let me = server.get_auth("/auth/me", &token).json();
    assert_eq!(
        me["user"]["mfa_enabled"], false,
        "nothing is on before the code"
    );
    login(&server, email, PASSWORD);

    let raw = base32_decode(secret);
    let wrong = code_at(&raw, step_now() + 5);
    server
        .json_auth(
            "POST",
            "/auth/mfa/totp/confirm",
            &token,
            &json!({"code": wrong}),
        )
        .assert_problem(401, "invalid_mfa_code");
    let step = fresh_step();
    let reply = server.json_auth(
        "POST",
        "/auth/mfa/totp/confirm",
        &token,
        &json!({"code": code_at(&raw, step)}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let codes: Vec<String> =
        serde_json::from_value(reply.json()["recovery_codes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);
    for code in &codes {
        assert!(
            code.len() == 11 && code.as_bytes()[5] == b'-',
            "grouped for reading: {code}"
        );
    }
    let mut distinct = codes.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    wait_for_mail_of(&server, email, "notice_mfa_enabled");
    let me = server.get_auth("/auth/me", &token).json();
    assert_eq!(
        (me["user"]["mfa_enabled"].as_bool(), me["mfa"].as_bool()),
        (Some(true), Some(false))
    );
    server
        .json_auth(
            "POST",
            "/auth/mfa/totp/setup",
            &token,
            &json!({"password": PASSWORD}),
        )
        .assert_problem(409, "mfa_already_enabled");

    let mfa_token = first_step(&server, email);
    server
        .get_auth("/auth/me", &mfa_token)
        .assert_problem(401, "invalid_token");
    // The code the confirmation spent is spent.
    second_step(&server, &mfa_token, "code", &code_at(&raw, step))
        .assert_problem(401, "invalid_mfa_code");
    let reply = second_step(&server, &mfa_token, "code", &code_at(&raw, step + 1));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let tokens = reply.json();
    assert!(tokens["refresh_token"].is_string());
    assert_eq!(tokens["user"]["mfa_enabled"], true);
    let session = tokens["token"].as_str().unwrap();
    assert_eq!(server.get_auth("/auth/me", session).json()["mfa"], true);
    let sessions = server.get_auth("/auth/sessions", session).json();
    let marks: Vec<bool> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mfa"].as_bool().unwrap())
        .collect();
    assert_eq!(marks.iter().filter(|m| **m).count(), 1, "{sessions}");
    // The token worked once.
    second_step(&server, &mfa_token, "code", &code_at(&raw, step + 1))
        .assert_problem(401, "invalid_mfa_token");
    let log = server.log();
    assert!(!log.contains(secret) && !log.contains(&mfa_token) && !log.contains(&codes[0]));
}

#[test]
fn a_code_is_accepted_once_whichever_instance_sees_it() {
    let db = Arc::new(TestDb::new());
    let a = with_key().db(&db).start();
    let b = with_key().db(&db).start();
    let email = "grace@example.com";
    let account = enrolled(&a, email, 0);
    let code = code_at(&account.secret, account.confirmed_step + 1);
    let on_a = first_step(&a, email);
    let on_b = first_step(&b, email);
    assert_eq!(second_step(&a, &on_a, "code", &code).status, 200);
    second_step(&b, &on_b, "code", &code).assert_problem(401, "invalid_mfa_code");
    // Nor any older step, on either.
    second_step(
        &b,
        &on_b,
        "code",
        &code_at(&account.secret, account.confirmed_step),
    )
    .assert_problem(401, "invalid_mfa_code");
}

#[test]
fn one_step_of_skew_is_accepted_and_two_are_not() {
    let server = with_key().env("LOCKOUT_THRESHOLD", "50").start();
    let email = "heidi@example.com";
    // Confirmed with the code of the step before now.
    let account = enrolled(&server, email, -1);
    let token = first_step(&server, email);
    let now = fresh_step();
    for far in [now + 2, now + 3, now.saturating_sub(2)] {
        second_step(&server, &token, "code", &code_at(&account.secret, far))
            .assert_problem(401, "invalid_mfa_code");
    }
    let token = first_step(&server, email);
    assert_eq!(
        second_step(&server, &token, "code", &code_at(&account.secret, now + 1)).status,
        200
    );
}

#[test]
fn an_mfa_token_expires_dies_after_five_wrong_codes_and_a_new_password_voids_it() {
    let server = with_key()
        .env("MFA_TOKEN_TTL_SECONDS", "1")
        .env("LOCKOUT_THRESHOLD", "50")
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")
        .start();
    let email = "ivan@example.com";
    let account = enrolled(&server, email, 0);
    let good = |offset| code_at(&account.secret, account.confirmed_step + offset);
    let first = first_step(&server, email);
    std::thread::sleep(Duration::from_millis(2100));
    second_step(&server, &first, "code", &good(1)).assert_problem(401, "invalid_mfa_token");
    drop(server);

    let server = with_key()
        .db(&Arc::new(TestDb::new()))
        .env("LOCKOUT_THRESHOLD", "50")
        .env("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")
        .start();
    let account = enrolled(&server, email, 0);
    let good = |offset| code_at(&account.secret, account.confirmed_step + offset);
    let token = first_step(&server, email);
    for _ in 0..5 {
        second_step(&server, &token, "code", "000000").assert_problem(401, "invalid_mfa_code");
    }
    second_step(&server, &token, "code", &good(1)).assert_problem(401, "invalid_mfa_token");

    // A password reset between the steps voids the token.
    let token = first_step(&server, email);
    let forgot = server.json("POST", "/auth/password/forgot", &json!({"email": email}));
    assert_eq!(forgot.status, 202);
    wait_for_mail_worker(&server);
    let reset = token_in(
        &wait_for_mail(&server, email),
        "http://localhost:8080/reset-password",
    );
    let body = json!({"token": reset, "new_password": NEW});
    assert_eq!(
        server.json("POST", "/auth/password/reset", &body).status,
        204
    );
    second_step(&server, &token, "code", &good(1)).assert_problem(401, "invalid_mfa_token");
    assert_eq!(
        audit_types(&server, account.id)
            .iter()
            .filter(|t| *t == "mfa_failed")
            .count(),
        5
    );
}

#[test]
fn recovery_codes_work_once_and_a_new_set_voids_the_old() {
    let server = with_key().env("LOCKOUT_THRESHOLD", "50").start();
    let email = "judy@example.com";
    let account = enrolled(&server, email, 0);
    let token = first_step(&server, email);
    // As typed from paper: upper case, no hyphen.
    let typed = account.recovery[0].replace('-', "").to_uppercase();
    let reply = second_step(&server, &token, "recovery_code", &typed);
    assert_eq!(reply.status, 200, "{}", reply.text());
    wait_for_mail_of(&server, email, "notice_recovery_code_used");
    let token = first_step(&server, email);
    second_step(&server, &token, "recovery_code", &account.recovery[0])
        .assert_problem(401, "invalid_mfa_code");
    second_step(&server, &token, "recovery_code", "not-a-code")
        .assert_problem(401, "invalid_mfa_code");

    let session = login_with_code(
        &server,
        email,
        &code_at(&account.secret, account.confirmed_step + 1),
    );
    let regenerate = |code: &str| {
        server.json_auth(
            "POST",
            "/auth/mfa/recovery-codes",
            &session,
            &json!({"password": PASSWORD, "code": code}),
        )
    };
    regenerate("123456").assert_problem(401, "invalid_mfa_code");
    let reply = regenerate(&account.recovery[1]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let fresh: Vec<String> =
        serde_json::from_value(reply.json()["recovery_codes"].clone()).unwrap();
    let token = first_step(&server, email);
    second_step(&server, &token, "recovery_code", &account.recovery[2])
        .assert_problem(401, "invalid_mfa_code");
    assert_eq!(
        second_step(&server, &token, "recovery_code", &fresh[0]).status,
        200
    );
    let types = audit_types(&server, account.id);
    assert_eq!(
        types.iter().filter(|t| *t == "recovery_code_used").count(),
        2,
        "{types:?}"
    );
    assert!(types.contains(&"recovery_codes_regenerated".to_string()));
}

/// Both steps; the session's token.
fn login_with_code(server: &Server, email: &str, code: &str) -> String {
    let token = first_step(server, email);
    let reply = second_step(server, &token, "code", code);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["token"].as_str().unwrap().to_string()
}

#[test]
fn a_password_change_without_a_session_needs_a_code_too() {
    let server = with_key().env("LOCKOUT_THRESHOLD", "50").start();
    let email = "mallory@example.com";
    let account = enrolled(&server, email, 0);
    let change = |code: Option<String>| {
        let mut body = json!({"email": email, "current_password": PASSWORD, "new_password": NEW});
        if let Some(code) = code {
            body["code"] = code.into();
        }
        server.json("POST", "/auth/password", &body)
    };
    change(None).assert_problem(401, "mfa_required");
    change(Some("000000".into())).assert_problem(401, "invalid_mfa_code");
    let reply = change(Some(code_at(&account.secret, account.confirmed_step + 1)));
    assert_eq!(reply.status, 204, "{}", reply.text());
    first_step_with(&server, email, NEW);
}

fn first_step_with(server: &Server, email: &str, password: &str) {
    let reply = login_reply(server, email, password);
    assert_eq!(reply.json()["mfa_required"], true, "{}", reply.text());
}

#[test]
fn turning_it_off_by_the_owner_or_an_admin() {
    let server = with_key().admin().env("LOCKOUT_THRESHOLD", "50").start();
    let admin = login(&server, ADMIN, ADMIN_PASSWORD);
    let email = "niaj@example.com";
    let account = enrolled(&server, email, 0);
    let session = login_with_code(
        &server,
        email,
        &code_at(&account.secret, account.confirmed_step + 1),
    );
    let off = |code: &str| {
        server.request(
            "DELETE",
            "/auth/mfa/totp",
            &[
                ("Authorization", &format!("Bearer {session}")),
                ("Content-Type", "application/json"),
            ],
            &json!({"password": PASSWORD, "code": code}).to_string(),
        )
    };
    off("000000").assert_problem(401, "invalid_mfa_code");
    assert_eq!(off(&account.recovery[0]).status, 204);
    wait_for_mail_of(&server, email, "notice_mfa_disabled");
    let plain = login_reply(&server, email, PASSWORD).json();
    assert!(plain["token"].is_string(), "{plain}");
    assert_eq!(plain["user"]["mfa_enabled"], false);
    off(&account.recovery[1]).assert_problem(409, "mfa_not_enabled");

    let other = enrolled(&server, "olivia@example.com", 0);
    let path = format!("/admin/users/{}/mfa", other.id);
    let bearer = format!("Bearer {admin}");
    let reply = server.request("DELETE", &path, &[("Authorization", &bearer)], "");
    assert_eq!(reply.status, 204, "{}", reply.text());
    server
        .request("DELETE", &path, &[("Authorization", &bearer)], "")
        .assert_problem(409, "mfa_not_enabled");
    assert!(login_reply(&server, "olivia@example.com", PASSWORD).json()["token"].is_string());
    let actor: Option<u64> = server
        .db
        .conn()
        .exec_first(
            "SELECT actor_id FROM audit_events WHERE user_id = ? AND type = 'mfa_disabled'",
            (other.id,),
        )
        .unwrap()
        .flatten();
    assert!(actor.is_some(), "the admin is the actor");
}

#[test]
fn admin_require_mfa_refuses_an_admin_session_without_a_second_factor() {
    let server = with_key().admin().env("ADMIN_REQUIRE_MFA", "true").start();
    let plain = login(&server, ADMIN, ADMIN_PASSWORD);
    server
        .get_auth("/admin/users", &plain)
        .assert_problem(403, "mfa_required");
    let setup = server.json_auth(
        "POST",
        "/auth/mfa/totp/setup",
        &plain,
        &json!({"password": ADMIN_PASSWORD}),
    );
    let secret = base32_decode(setup.json()["secret"].as_str().unwrap());
    let step = fresh_step();
    let confirm = json!({"code": code_at(&secret, step)});
    assert_eq!(
        server
            .json_auth("POST", "/auth/mfa/totp/confirm", &plain, &confirm)
            .status,
        200
    );
    let reply = login_reply(&server, ADMIN, ADMIN_PASSWORD);
    let mfa_token = reply.json()["mfa_token"].as_str().unwrap().to_string();
    let reply = second_step(&server, &mfa_token, "code", &code_at(&secret, step + 1));
    let strong = reply.json()["token"].as_str().unwrap().to_string();
    assert_eq!(server.get_auth("/admin/users", &strong).status, 200);
    server
        .get_auth("/admin/users", &plain)
        .assert_problem(403, "mfa_required");
}

#[test]
fn secrets_are_sealed_at_rest_and_survive_a_key_rotation() {
    let db = Arc::new(TestDb::new());
    let server = with_key().db(&db).start();
    let email = "peggy@example.com";
    let account = enrolled(&server, email, 0);
    drop(server);
    let sealed = || -> Vec<u8> {
        db.conn()
            .exec_first(
                "SELECT secret FROM mfa_totp WHERE user_id = ?",
                (account.id,),
            )
            .unwrap()
            .unwrap()
    };
    let stored = sealed();
    assert!(
        !stored
            .windows(account.secret.len())
            .any(|w| w == account.secret),
        "the raw secret is in the row"
    );
    let hashes: Vec<Vec<u8>> = db
        .conn()
        .exec(
            "SELECT code_hash FROM mfa_recovery_codes WHERE user_id = ?",
            (account.id,),
        )
        .unwrap();
    assert_eq!(hashes.len(), 10);

    // The old key moves to the previous list: the secret still opens, and
    // the login seals it again under the new key.
    let rotated = Server::builder()
        .db(&db)
        .env("DATA_ENCRYPTION_KEY", OTHER_KEY)
        .env("DATA_ENCRYPTION_KEYS_PREVIOUS", KEY)
        .start();
    login_with_code(
        &rotated,
        email,
        &code_at(&account.secret, account.confirmed_step + 1),
    );
    let resealed = sealed();
    assert_ne!(resealed[..4], stored[..4], "sealed under the new key's id");
    let token = first_step(&rotated, email);
    assert_eq!(
        second_step(&rotated, &token, "recovery_code", &account.recovery[0]).status,
        200
    );
    drop(rotated);

    // Sealed under the new key now: it opens without the old one (a wrong
    // code is just wrong), and no longer with the old one alone (503).
    let new_only = Server::builder()
        .db(&db)
        .env("DATA_ENCRYPTION_KEY", OTHER_KEY)
        .start();
    let token = first_step(&new_only, email);
    second_step(&new_only, &token, "code", "000000").assert_problem(401, "invalid_mfa_code");
    drop(new_only);
    let old_only = with_key().db(&db).start();
    let token = first_step(&old_only, email);
    let code = code_at(&account.secret, step_now() + 1);
    second_step(&old_only, &token, "code", &code).assert_problem(503, "mfa_unavailable");
    drop(old_only);

    // Without a key, enrolment is refused and says why.
    let keyless = Server::builder().db(&db).start();
    register(&keyless, "trent@example.com", PASSWORD);
    let token = login(&keyless, "trent@example.com", PASSWORD);
    keyless
        .json_auth(
            "POST",
            "/auth/mfa/totp/setup",
            &token,
            &json!({"password": PASSWORD}),
        )
        .assert_problem(503, "mfa_unavailable");
}

#[test]
fn wrong_codes_count_toward_the_lockout_and_only_a_full_login_clears_it() {
    let server = with_key().start();
    let email = "victor@example.com";
    let account = enrolled(&server, email, 0);
    let good = code_at(&account.secret, account.confirmed_step + 1);
    // The right password (counted until the code) and three wrong codes.
    let token = first_step(&server, email);
    for _ in 0..3 {
        second_step(&server, &token, "code", "000000").assert_problem(401, "invalid_mfa_code");
    }
    // Another right password (the fifth check) does not reset the count,
    // so the code after it is the sixth.
    let token = first_step(&server, email);
    second_step(&server, &token, "code", &good).assert_problem(429, "too_many_attempts");
    login_reply(&server, email, PASSWORD).assert_problem(429, "too_many_attempts");
    let failures: u32 = server
        .db
        .conn()
        .exec_first(
            "SELECT failures FROM login_failures WHERE user_id = ?",
            (account.id,),
        )
        .unwrap()
        .unwrap();
    assert_eq!(failures, 5);
}
