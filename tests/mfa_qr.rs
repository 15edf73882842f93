//! The QR code of the TOTP setup answer (`qr_svg`) really encodes its
//! `otpauth_uri`, as an authenticator app scanning it would read it: the
//! SVG is rasterized and decoded by an independent, real QR decoder
//! (`tests/qr_decode.py`, zxing-cpp from PyPI), not by our own encoder, and
//! the secret read from the scan turns two-factor login on. The issuer and
//! account have a space, a non-ASCII letter and a `+`, so their
//! percent-encoding goes through the scan too.
//!
//! Needs `python3` with `zxing-cpp` and `numpy`
//! (`python3 -m pip install zxing-cpp numpy`); without them the test fails
//! saying so.

mod common;

use common::totp::{base32_decode, code_at, fresh_step};
use common::{Server, login, register};
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};

const PASSWORD: &str = "a perfectly good passphrase";
/// 32 bytes, base64.
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The text `tests/qr_decode.py` scans from `svg`; panics (never skips)
/// if python3 or the decoder is missing, or nothing decodes.
fn scan(svg: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/qr_decode.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 for the QR decoder ({e}): install Python 3, \
                 then `python3 -m pip install zxing-cpp numpy`"
            )
        });
    // The script reads all its input before it writes anything.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(svg.as_bytes())
        .expect("cannot write the SVG to tests/qr_decode.py");
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/qr_decode.py failed ({}): {stderr}\nthe SVG: {svg}",
        output.status
    );
    String::from_utf8(output.stdout).expect("the decoded text is not UTF-8")
}

#[test]
fn the_qr_code_scans_to_the_otpauth_uri_and_its_secret_enrols() {
    let server = Server::builder()
        .env("DATA_ENCRYPTION_KEY", KEY)
        .env("APP_NAME", "Acme Café")
        .start();
    let email = "ada+2fa@example.com";
    register(&server, email, PASSWORD);
    let token = login(&server, email, PASSWORD);
    let reply = server.json_auth(
        "POST",
        "/auth/mfa/totp/setup",
        &token,
        &json!({"password": PASSWORD}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    let uri = answer["otpauth_uri"].as_str().unwrap();
    let svg = answer["qr_svg"].as_str().unwrap();

    let scanned = scan(svg);
    assert_eq!(scanned, uri, "the QR code must scan to the otpauth_uri");
    assert!(
        scanned.starts_with("otpauth://totp/Acme%20Caf%C3%A9:ada%2B2fa%40example.com?"),
        "{scanned}"
    );
    assert!(scanned.contains("&issuer=Acme%20Caf%C3%A9&"), "{scanned}");

    // What the app keeps: the secret of the scanned text, not of the JSON.
    let query = scanned.split_once('?').expect("a query").1;
    let secret = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("secret="))
        .expect("a secret= parameter in the scanned text");
    assert_eq!(secret, answer["secret"], "the same secret as the JSON");

    let code = code_at(&base32_decode(secret), fresh_step());
    let reply = server.json_auth(
        "POST",
        "/auth/mfa/totp/confirm",
        &token,
        &json!({"code": code}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let recovery = reply.json()["recovery_codes"].as_array().unwrap().len();
    assert_eq!(recovery, 10, "ten recovery codes");
    let me = server.get_auth("/auth/me", &token).json();
    assert_eq!(me["user"]["mfa_enabled"], true, "{me}");
}
