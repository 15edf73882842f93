//! The page behind a reset link (issue 13), driven over TCP against the real
//! binary and a real database, with tokens taken from the mail the server
//! queued, as a person would take them from their inbox.
//!
//! Covered:
//!
//! - `GET /reset-password?token=...`: a form page with every security
//!   header, whose inline style is the one the CSP's hash allows; opening it
//!   (twice) changes nothing in the database, and the token still works;
//! - `POST /reset-password` with the form: the password is reset as by
//!   `POST /auth/password/reset` (sessions end, the lockout lifts, the token
//!   is used up, the new password logs in over the API); the two fields
//!   differing and a weak password bring the form back in words, before any
//!   hashing and without touching the token; a used or expired link says
//!   so; both endpoints share one rate limit and one token;
//! - `HEAD` answers the page's headers without its body, and uses nothing up;
//! - bad requests: missing fields, a wrong Content-Type, duplicate fields,
//!   garbled escapes, a body over the limit, other methods;
//! - reflected input is escaped or not reflected at all;
//! - the token never reaches the log, nor does a password.

mod common;

use common::{Reply, Server, login, login_reply, register, wait_for_mail};
use mysql::prelude::Queryable;
use serde_json::json;
use std::time::Duration;

const PAGE: &str = "/reset-password";
const GOOD: &str = "correct horse battery staple";
const NEW: &str = "Tr0ub4dor&3 but longer";
const FORM: &str = "application/x-www-form-urlencoded";

/// Asks for a reset of `email` and returns the token of the link in the
/// mail the server queued.
#[track_caller]
fn token_for(server: &Server, email: &str) -> String {
    let reply = server.json("POST", "/auth/password/forgot", &json!({"email": email}));
    assert_eq!(reply.status, 202, "{}", reply.text());
    let body = wait_for_mail(server, email);
    let start = body
        .find("/reset-password?token=")
        .unwrap_or_else(|| panic!("no reset link in {body:?}"))
        + "/reset-password?token=".len();
    let token: String = body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert_eq!(token.len(), 43, "{body:?}");
    token
}

/// A form body from pairs, encoded as a browser encodes it.
fn encode(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        out.append_pair(name, value);
    }
    out.finish()
}

/// Posts `body` to the page as a browser does.
fn submit_raw(server: &Server, body: &str) -> Reply {
    server.request("POST", PAGE, &[("Content-Type", FORM)], body)
}

/// Posts the form with `token`, `new_password` and `confirm_password`.
fn submit(server: &Server, token: &str, new: &str, confirm: &str) -> Reply {
    submit_raw(
        server,
        &encode(&[
            ("token", token),
            ("new_password", new),
            ("confirm_password", confirm),
        ]),
    )
}

fn page_of(token: &str) -> String {
    format!("{PAGE}?token={token}")
}

fn body(reply: &Reply) -> String {
    String::from_utf8(reply.body.clone()).expect("the page is not UTF-8")
}

/// Asserts an HTML page with `status` and every header an HTML response
/// carries; returns its body.
#[track_caller]
fn assert_page(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = reply.header("content-security-policy").unwrap_or("");
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-")
            && csp.ends_with("'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        "CSP: {csp}"
    );
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    let html = body(reply);
    assert!(html.starts_with("<!doctype html>"), "{html}");
    for never in ["problem", "\"code\"", "panicked", "SQL", "mysql"] {
        assert!(!html.contains(never), "{never} in {html}");
    }
    html
}

/// The `used_at` of each reset token of account `user_id`, oldest first.
fn token_used_at(server: &Server, user_id: u64) -> Vec<Option<u64>> {
    server
        .db
        .conn()
        .exec(
            "SELECT used_at FROM password_resets WHERE user_id = ? ORDER BY created_at",
            (user_id,),
        )
        .unwrap()
}

fn password_hash(server: &Server, user_id: u64) -> String {
    server
        .db
        .conn()
        .exec_first("SELECT password_hash FROM users WHERE id = ?", (user_id,))
        .unwrap()
        .unwrap()
}

/// Argon2 hashes and verifications done so far, from `/metrics`.
fn hashes(server: &Server) -> u64 {
    let text = body(&server.get("/metrics"));
    text.lines()
        .find_map(|l| l.strip_prefix("auth_hash_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no hash count in {text}"))
}

#[test]
fn the_page_serves_a_form_that_resets_the_password_and_opening_it_changes_nothing() {
    let server = Server::builder().env("APP_NAME", "Acme <Login>").start();
    let email = "page@example.com";
    let id = register(&server, email, GOOD);
    let before = login(&server, email, GOOD);
    let token = token_for(&server, email);

    // Opened twice, as by a mail scanner and then the person.
    for _ in 0..2 {
        let html = assert_page(&server.get(&page_of(&token)), 200);
        assert!(html.contains("<meta name=\"viewport\" content=\"width=device-width"));
        assert!(html.contains("<title>Choose a new password · Acme &lt;Login&gt;</title>"));
        assert!(!html.contains("<Login>"));
        assert!(
            html.contains(
                "<form method=\"post\" action=\"reset-password\" accept-charset=\"UTF-8\">"
            )
        );
        assert!(html.contains(&format!(
            "<input type=\"hidden\" name=\"token\" value=\"{token}\">"
        )));
        for field in ["new_password", "confirm_password"] {
            assert!(
                html.contains(&format!("<label for=\"{field}\">")),
                "{field}"
            );
            assert!(
                html.contains(&format!(
                    "<input id=\"{field}\" name=\"{field}\" type=\"password\" \
                     autocomplete=\"new-password\" minlength=\"8\" required"
                )),
                "{field}: {html}"
            );
        }
        assert!(!html.contains("<script"), "{html}");
        // The policy's hash is the hash of the page's one style element.
        let style = &html[html.find("<style>").unwrap() + 7..html.find("</style>").unwrap()];
        use base64::Engine;
        use sha2::Digest;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style));
        let reply = server.get(&page_of(&token));
        let csp = reply.header("content-security-policy").unwrap();
        assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
    }
    assert_eq!(
        token_used_at(&server, id),
        vec![None],
        "a GET used the token"
    );
    assert_eq!(server.get_auth("/auth/me", &before).status, 200);

    let html = assert_page(&submit(&server, &token, NEW, NEW), 200);
    assert!(html.contains("Your password is changed"), "{html}");
    assert!(!html.contains(&token), "the success page repeats the token");
    assert!(!html.contains(NEW), "the page repeats the password");
    // A new password voids every reset token of the account.
    assert_eq!(token_used_at(&server, id), Vec::<Option<u64>>::new());
    login(&server, email, NEW);
    login_reply(&server, email, GOOD).assert_problem(401, "wrong_password");
    server
        .get_auth("/auth/me", &before)
        .assert_problem(401, "token_revoked");

    // Used: both the page and the form say the link no longer works.
    let html = assert_page(&server.get(&page_of(&token)), 400);
    assert!(html.contains("This link no longer works"), "{html}");
    assert!(!html.contains("<form"), "{html}");
    let html = assert_page(
        &submit(
            &server,
            &token,
            "another good passphrase",
            "another good passphrase",
        ),
        400,
    );
    assert!(html.contains("used, expired or replaced"), "{html}");
    login(&server, email, NEW);
}

#[test]
fn differing_fields_and_weak_passwords_bring_the_form_back_in_words_before_any_hashing() {
    let server = Server::start();
    let email = "weak@example.com";
    let id = register(&server, email, GOOD);
    let token = token_for(&server, email);
    let hash_before = password_hash(&server, id);
    let hashed = hashes(&server);

    let cases: &[(&str, &str, &str)] = &[
        (
            NEW,
            "Tr0ub4dor&3 but longer!",
            "The two passwords are not the same.",
        ),
        ("password", "password", "This password is too common"),
        (
            "short",
            "short",
            "Password must be at least 8 characters long.",
        ),
        (
            email,
            email,
            "Password must not be the same as your email address.",
        ),
    ];
    for (new, confirm, why) in cases {
        let html = assert_page(&submit(&server, &token, new, confirm), 422);
        assert!(html.contains(why), "{why}: {html}");
        assert!(html.contains("role=\"alert\""), "{html}");
        // The form is back, with the token and without the password.
        assert!(html.contains(&format!("name=\"token\" value=\"{token}\"")));
        assert!(!html.contains(&format!("value=\"{new}\"")), "{html}");
    }
    assert_eq!(hashes(&server), hashed, "a rejected form was hashed");
    assert_eq!(password_hash(&server, id), hash_before);
    assert_eq!(token_used_at(&server, id), vec![None]);

    // The same link still works.
    assert_page(&submit(&server, &token, NEW, NEW), 200);
    login(&server, email, NEW);
}

#[test]
fn an_expired_link_says_so_on_the_page_and_in_the_form() {
    let server = Server::builder()
        .env("RESET_TOKEN_TTL_SECONDS", "1")
        .start();
    let email = "late@example.com";
    register(&server, email, GOOD);
    let token = token_for(&server, email);
    std::thread::sleep(Duration::from_millis(2100));

    let html = assert_page(&server.get(&page_of(&token)), 400);
    assert!(html.contains("This link no longer works"), "{html}");
    assert!(html.contains("A link works once, for 1 second."), "{html}");
    assert!(!html.contains("<form"));
    // Whether or not the fields agree, the expired link is the reason.
    for confirm in [NEW, "something else entirely"] {
        let html = assert_page(&submit(&server, &token, NEW, confirm), 400);
        assert!(html.contains("This link no longer works"), "{html}");
    }
    login(&server, email, GOOD);
}

#[test]
fn the_page_and_the_api_share_the_rules_the_token_and_the_lockout() {
    let server = Server::builder().env("LOCKOUT_THRESHOLD", "3").start();
    let email = "shared@example.com";
    register(&server, email, GOOD);
    for _ in 0..3 {
        login_reply(&server, email, "wrong wrong wrong");
    }
    login_reply(&server, email, GOOD).assert_problem(429, "too_many_attempts");

    // A reset through the page lifts the lockout, as one through the API does.
    let token = token_for(&server, email);
    assert_page(&submit(&server, &token, NEW, NEW), 200);
    login(&server, email, NEW);

    // A token used through the API is used for the page too.
    let other = "shared2@example.com";
    register(&server, other, GOOD);
    let token = token_for(&server, other);
    let reply = server.json(
        "POST",
        "/auth/password/reset",
        &json!({"token": token, "new_password": NEW}),
    );
    assert_eq!(reply.status, 204, "{}", reply.text());
    let html = assert_page(&submit(&server, &token, GOOD, GOOD), 400);
    assert!(html.contains("This link no longer works"), "{html}");
    login(&server, other, NEW);
}

#[test]
fn the_page_spends_the_same_rate_limit_as_the_api() {
    let server = Server::builder()
        .env("RATE_LIMIT_BURST", "3")
        .env("RATE_LIMIT_PER_MINUTE", "1")
        .start();
    let email = "limited@example.com";
    let id = register(&server, email, GOOD);
    let token = token_for(&server, email);
    // register and forgot spent two; one JSON reset with a bad token spends the last.
    let reply = server.json(
        "POST",
        "/auth/password/reset",
        &json!({"token": "x", "new_password": NEW}),
    );
    reply.assert_problem(400, "invalid_reset_token");

    let reply = submit(&server, &token, NEW, NEW);
    let html = assert_page(&reply, 429);
    assert!(
        reply
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok())
    );
    assert!(html.contains("too many attempts"), "{html}");
    assert!(
        html.contains(&format!("name=\"token\" value=\"{token}\"")),
        "{html}"
    );
    // Limited before the token is looked up: what is not shaped like a
    // token is not put back.
    let evil = "\"><script>alert(1)</script>";
    let html = assert_page(&submit(&server, evil, NEW, NEW), 429);
    assert!(
        !html.contains("alert(1)") && !html.contains("<form"),
        "{html}"
    );
    assert_eq!(token_used_at(&server, id), vec![None]);
}

#[test]
fn head_answers_the_pages_headers_without_a_body_and_uses_nothing_up() {
    use std::io::Read;
    let server = Server::start();
    let email = "head@example.com";
    let id = register(&server, email, GOOD);
    let token = token_for(&server, email);
    let get = server.get(&page_of(&token));

    // HEAD, then a GET on the same connection: what follows the HEAD's head
    // must be the second answer, so the HEAD carried no body.
    let mut client = server.connect();
    client.send(
        format!(
            "HEAD {} HTTP/1.1\r\nHost: t\r\n\r\n\
             GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            page_of(&token)
        )
        .as_bytes(),
    );
    let mut raw = Vec::new();
    let _ = client.stream.read_to_end(&mut raw);
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut fields);
    let Ok(httparse::Status::Complete(len)) = head.parse(&raw) else {
        panic!("no head in {:?}", String::from_utf8_lossy(&raw));
    };
    assert_eq!(head.code, Some(200));
    let field = |name: &str| {
        head.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    for name in [
        "content-type",
        "content-security-policy",
        "referrer-policy",
        "cache-control",
        "x-content-type-options",
        "content-length",
    ] {
        assert_eq!(field(name).as_deref(), get.header(name), "{name}");
    }
    assert!(
        raw[len..].starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(&raw[len..])
    );
    assert_eq!(token_used_at(&server, id), vec![None]);
    assert_page(&submit(&server, &token, NEW, NEW), 200);
}

#[test]
fn bad_requests_get_a_400_page_in_words_and_use_nothing_up() {
    let server = Server::start();
    let email = "bad@example.com";
    let id = register(&server, email, GOOD);
    let token = token_for(&server, email);
    let t = token.as_str();

    let missing = [
        (
            encode(&[("new_password", NEW), ("confirm_password", NEW)]),
            "\"token\"",
        ),
        (
            encode(&[("token", t), ("confirm_password", NEW)]),
            "\"new_password\"",
        ),
        (
            encode(&[("token", t), ("new_password", NEW)]),
            "\"confirm_password\"",
        ),
        (String::new(), "\"token\""),
    ];
    for (form, field) in &missing {
        let html = assert_page(&submit_raw(&server, form), 400);
        assert!(
            html.contains(&format!("missing its {}", field.replace('"', "&quot;"))),
            "{html}"
        );
    }
    let duplicated = [
        format!("token={t}&token={t}&new_password=a+b+c+d+e&confirm_password=a+b+c+d+e"),
        format!("token={t}&new_password=x&new_password=a+b+c+d+e&confirm_password=a+b+c+d+e"),
        format!("token={t}&tok%65n=x&new_password=a+b+c+d+e&confirm_password=a+b+c+d+e"),
    ];
    for form in &duplicated {
        let html = assert_page(&submit_raw(&server, form), 400);
        assert!(html.contains("more than once"), "{html}");
    }
    for form in [
        format!("token={t}&new_password=100%zz&confirm_password=100%zz"),
        format!("token={t}&new_password=%FFabcdefgh&confirm_password=%FFabcdefgh"),
    ] {
        let html = assert_page(&submit_raw(&server, &form), 400);
        assert!(html.contains("garbled"), "{html}");
    }
    let good = encode(&[
        ("token", t),
        ("new_password", NEW),
        ("confirm_password", NEW),
    ]);
    for content_type in [
        Some("application/json"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        Some("application/x-www-form-urlencoded; charset=iso-8859-1"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .iter()
            .map(|ct| ("Content-Type", *ct))
            .collect();
        let html = assert_page(&server.request("POST", PAGE, &headers, &good), 400);
        assert!(
            html.contains("not sent as an HTML form"),
            "{content_type:?}: {html}"
        );
    }
    let json = json!({"token": t, "new_password": NEW, "confirm_password": NEW}).to_string();
    let html = assert_page(
        &server.request("POST", PAGE, &[("Content-Type", "application/json")], &json),
        400,
    );
    assert!(html.contains("not sent as an HTML form"), "{html}");

    // Links without a readable token.
    for path in [
        PAGE.to_string(),
        format!("{PAGE}?x=1"),
        format!("{PAGE}?token={t}&token={t}"),
        format!("{PAGE}?token=%zz"),
    ] {
        let html = assert_page(&server.get(&path), 400);
        assert!(html.contains("This link is incomplete"), "{path}: {html}");
    }

    // The HTTP layer's limits hold for the form as for JSON.
    // (Only the head and a little of the body are sent: the server answers
    // on the declared length and closes without reading the rest.)
    let mut client = server.connect();
    client.send(
        format!(
            "POST {PAGE} HTTP/1.1\r\nHost: t\r\nContent-Type: {FORM}\r\n\
             Content-Length: {}\r\n\r\n{good}",
            70 * 1024
        )
        .as_bytes(),
    );
    let reply = client.read_reply().expect("no 413");
    reply.assert_problem(413, "payload_too_large");
    for method in ["PUT", "DELETE", "PATCH"] {
        let reply = server.request(method, PAGE, &[("Content-Type", FORM)], &good);
        reply.assert_problem(405, "method_not_allowed");
        assert_eq!(reply.header("allow"), Some("GET, HEAD, POST"));
    }

    assert_eq!(token_used_at(&server, id), vec![None]);
    assert_page(&submit_raw(&server, &good), 200);
}

#[test]
fn reflected_input_is_escaped_or_not_reflected() {
    let server = Server::start();
    let evil = "\"><script>alert(1)</script><p x='";
    // A token that is not live is never put into a page.
    let html = assert_page(
        &server.get(&format!("{PAGE}?{}", encode(&[("token", evil)]))),
        400,
    );
    assert!(
        !html.contains("<script>") && !html.contains("alert(1)"),
        "{html}"
    );
    let html = assert_page(&submit(&server, evil, NEW, "other"), 400);
    assert!(!html.contains("alert(1)"), "{html}");
    let html = assert_page(&submit(&server, evil, NEW, NEW), 400);
    assert!(!html.contains("alert(1)"), "{html}");
    // Field names sent are never named back.
    let html = assert_page(
        &submit_raw(&server, &encode(&[(evil, "1"), (evil, "2")])),
        400,
    );
    assert!(!html.contains("alert(1)"), "{html}");
}

#[test]
fn neither_the_token_nor_a_password_reaches_the_log() {
    let server = Server::start();
    let email = "quiet@example.com";
    register(&server, email, GOOD);
    let token = token_for(&server, email);
    server.get(&page_of(&token));
    submit(&server, &token, NEW, "not the same one");
    submit(&server, &token, "password", "password");
    assert_page(&submit(&server, &token, NEW, NEW), 200);
    submit(&server, &token, NEW, NEW);
    server.get(&page_of(&token));
    // Requests are logged in the order they are answered: once this last
    // one is in the log, every line before it is too.
    server.get("/healthz");
    assert!(server.wait_for_log("\"path\":\"/healthz\"", Duration::from_secs(5)));
    assert!(server.log().contains("\"msg\":\"password reset\""));

    let log = server.log();
    assert!(!log.contains(&token), "the reset token is in the log");
    assert!(
        !log.contains(NEW) && !log.contains("not the same one"),
        "a password is in the log"
    );
    // The request lines name the page by its path alone.
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"msg\":\"request\"") && l.contains(PAGE))
        .collect();
    assert_eq!(lines.len(), 6, "{log}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("\"path\":\"/reset-password\"")),
        "{lines:?}"
    );
}
