//! `auth-server import-users` driven as an operator would, against a real
//! database, with the real server then logging the imported users in:
//! per-line reasons, the summary counts and the exit code, normalised
//! emails, plaintext and PHC-hash lines, an idempotent re-run, `-` for
//! stdin, and hashes made elsewhere imported while a `PASSWORD_PEPPER` is
//! set (verified without the pepper, then rehashed with it at the first
//! login).
//!
//! The harness's `common::spawn` discards stdout, which is where
//! `import-users` reports, so this file runs the subcommand with its own
//! small spawner.

mod common;

use common::{Server, TestDb, login, login_reply, register};
use mysql::prelude::Queryable;
use serde_json::json;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A password that breaks no rule.
const GOOD: &str = "correct horse battery staple";

fn stored_hash(db: &TestDb, email: &str) -> String {
    stored(db, email).0
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What a finished `import-users` run left.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `auth-server import-users {arg}` against `db`, feeding `stdin` if
/// given, and collects its exit code and output (killed after 15 s).
fn import_users(db: &TestDb, arg: &str, stdin: Option<&str>) -> Run {
    import_users_with(db, arg, stdin, &[])
}

/// [`import_users`] with extra environment variables.
fn import_users_with(db: &TestDb, arg: &str, stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args(["import-users", arg])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .env("TOKEN_SECRET", common::TEST_SECRET)
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the auth-server binary");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = String::new();
            pipe.read_to_string(&mut out).unwrap();
            out
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
        // Dropping the pipe is the end of input.
    }
    let code = common::wait_exit(&mut child, Duration::from_secs(15));
    Run {
        code,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// A file in the temp directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "lifecycle-{}-{name}-{}.jsonl",
            std::process::id(),
            now()
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An Argon2id PHC string made outside the server, with other parameters
/// than the server's (m=1024, t=2), as another system would have stored it.
fn foreign_phc(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"lifecycle salt!!").unwrap();
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(1024, 2, 1, None).unwrap(),
    )
    .hash_password(password.as_bytes(), &salt)
    .unwrap()
    .to_string()
}

/// The users table, for comparing before and after.
fn users(db: &TestDb) -> Vec<(u64, String, String, u64, u64)> {
    db.conn()
        .query("SELECT id, email, password_hash, created_at, updated_at FROM users ORDER BY id")
        .unwrap()
}

#[test]
fn import_reports_bad_lines_and_imports_the_rest_once() {
    let server = Server::start();
    register(&server, "existing@example.com", GOOD);
    let existing_hash = stored_hash(&server.db, "existing@example.com");

    let hashed_password = "imported from elsewhere";
    let phc = foreign_phc(hashed_password);
    let bcrypt = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
    let broken = "$argon2id$v=19$m=1024,t=2,p=1$not-base64!$nor-this!";
    let lines = [
        json!({"email": "Ann@Example.COM", "password": "ann's fine passphrase"}).to_string(),
        String::new(),
        "this is not json".to_string(),
        json!({"email": "bob@example.com", "password": "bob's fine passphrase"}).to_string(),
        json!({"email": "not-an-email", "password": "a fine passphrase"}).to_string(),
        json!({"email": "weak@example.com", "password": "iloveyou"}).to_string(),
        json!({"email": "bcrypt@example.com", "password_hash": bcrypt}).to_string(),
        json!({"email": "nopass@example.com"}).to_string(),
        json!({"email": "Hashed@Example.com", "password_hash": phc}).to_string(),
        json!({"email": "ANN@example.com", "password": "a second ann passphrase"}).to_string(),
        json!({"email": "Existing@Example.com", "password": "an overwriting passphrase"})
            .to_string(),
        json!({"email": "broken@example.com", "password_hash": broken}).to_string(),
        json!({"email": "both@example.com", "password": "a fine passphrase", "password_hash": phc})
            .to_string(),
    ];
    let file = TempFile::new("mixed", &(lines.join("\n") + "\n"));

    let run = import_users(&server.db, file.path(), None);
    assert_eq!(
        run.code,
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let out: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(out.len(), 8, "stdout:\n{}", run.stdout);
    // Each rejected line by number, in order, with a reason about it.
    for (got, (number, about)) in out.iter().zip([
        (3, "json"),
        (5, "email"),
        (6, "weak"),
        (7, "argon2"),
        (8, "missing"),
        (12, "argon2"),
        (13, "both"),
    ]) {
        let prefix = format!("line {number}: ");
        let reason = got
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{got:?} does not start with {prefix:?}"));
        assert!(
            reason.to_lowercase().contains(about),
            "line {number}: reason {reason:?} does not mention {about:?}"
        );
    }
    assert_eq!(
        out[7],
        "12 lines: 3 imported, 2 already existed, 7 rejected"
    );
    // Reports never repeat a secret from the file.
    for secret in [
        "iloveyou",
        "fine passphrase",
        "ann passphrase",
        bcrypt,
        broken,
        phc.as_str(),
    ] {
        assert!(!run.stdout.contains(secret), "{secret:?} in stdout");
        assert!(!run.stderr.contains(secret), "{secret:?} in stderr");
    }

    let emails: Vec<String> = users(&server.db).into_iter().map(|u| u.1).collect();
    assert_eq!(
        emails,
        [
            "existing@example.com",
            "ann@example.com",
            "bob@example.com",
            "hashed@example.com"
        ]
    );
    let ann_hash = stored_hash(&server.db, "ann@example.com");
    assert!(
        ann_hash.starts_with("$argon2id$v=19$m=256,t=1,"),
        "{ann_hash}"
    );
    assert_eq!(stored_hash(&server.db, "hashed@example.com"), phc);
    assert_eq!(
        stored_hash(&server.db, "existing@example.com"),
        existing_hash
    );

    // The first line for an email wins; an existing account is not overwritten.
    login(&server, "ANN@example.com", "ann's fine passphrase");
    login_reply(&server, "ann@example.com", "a second ann passphrase")
        .assert_problem(401, "wrong_password");
    login(&server, "bob@example.com", "bob's fine passphrase");
    login(&server, "existing@example.com", GOOD);
    login_reply(&server, "existing@example.com", "an overwriting passphrase")
        .assert_problem(401, "wrong_password");
    // The foreign hash works as it is, and is brought to the server's
    // parameters by that first login.
    login(&server, "hashed@example.com", hashed_password);
    let upgraded = stored_hash(&server.db, "hashed@example.com");
    assert!(upgraded.contains("m=256,t=1"), "{upgraded}");
    for rejected in [
        "weak@example.com",
        "bcrypt@example.com",
        "nopass@example.com",
    ] {
        login_reply(&server, rejected, GOOD).assert_problem(404, "unknown_email");
    }

    // Re-running the same file changes nothing.
    let before = users(&server.db);
    let again = import_users(&server.db, file.path(), None);
    assert_eq!(again.code, Some(1), "{}", again.stdout);
    assert_eq!(
        again.stdout.lines().last(),
        Some("12 lines: 0 imported, 5 already existed, 7 rejected"),
        "{}",
        again.stdout
    );
    assert_eq!(again.stdout.lines().count(), 8, "{}", again.stdout);
    assert_eq!(users(&server.db), before);
}

#[test]
fn import_of_good_lines_exits_0_from_a_file_and_from_stdin() {
    // The first import meets a database no server has prepared yet.
    let db = Arc::new(TestDb::new());
    let first = [
        json!({"email": "Nina@Example.com", "password": "nina's fine passphrase"}).to_string(),
        json!({"email": "oscar@example.com", "password": "oscar's fine passphrase"}).to_string(),
    ];
    let file = TempFile::new("good", &(first.join("\n") + "\n"));
    let run = import_users(&db, file.path(), None);
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        run.stdout.trim_end(),
        "2 lines: 2 imported, 0 already existed, 0 rejected"
    );

    // From stdin, with one line already imported: existing is not an error.
    let second = [
        json!({"email": "OSCAR@example.com", "password": "oscar's other passphrase"}).to_string(),
        json!({"email": "Peggy@Example.com", "password": "peggy's fine passphrase"}).to_string(),
    ];
    let server = Server::builder().db(&db).start();
    let run = import_users(&server.db, "-", Some(&second.join("\n")));
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        run.stdout.trim_end(),
        "2 lines: 1 imported, 1 already existed, 0 rejected"
    );

    let emails: Vec<String> = users(&server.db).into_iter().map(|u| u.1).collect();
    assert_eq!(
        emails,
        ["nina@example.com", "oscar@example.com", "peggy@example.com"]
    );
    login(&server, "nina@example.com", "nina's fine passphrase");
    login(&server, "oscar@example.com", "oscar's fine passphrase");
    login(&server, "peggy@example.com", "peggy's fine passphrase");

    // A file that cannot be opened is a failure with a reason, not an
    // empty import.
    let missing = std::env::temp_dir().join("lifecycle-no-such-file.jsonl");
    let run = import_users(&server.db, missing.to_str().unwrap(), None);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stderr.contains("lifecycle-no-such-file"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("imported"), "{}", run.stdout);
}

const PEPPER: &str = "a pepper of at least some length";

/// The account's stored hash and whether it is marked as made without the
/// pepper.
fn stored(db: &TestDb, email: &str) -> (String, bool) {
    db.conn()
        .exec_first(
            "SELECT password_hash, password_unpeppered FROM users WHERE email = ?",
            (email,),
        )
        .unwrap()
        .unwrap_or_else(|| panic!("no user {email}"))
}

#[test]
fn hashes_imported_while_a_pepper_is_set_log_in_and_are_rehashed_with_it() {
    let db = Arc::new(TestDb::new());
    let lines = [
        json!({"email": "quinn@example.com", "password_hash": foreign_phc("quinn's passphrase")})
            .to_string(),
        json!({"email": "rita@example.com", "password": "rita's fine passphrase"}).to_string(),
    ];
    let run = import_users_with(
        &db,
        "-",
        Some(&lines.join("\n")),
        &[("PASSWORD_PEPPER", PEPPER)],
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let (foreign, marked) = stored(&db, "quinn@example.com");
    assert!(
        marked,
        "a foreign hash must be marked as made without the pepper"
    );
    assert!(
        !stored(&db, "rita@example.com").1,
        "a hash made here has the pepper"
    );

    let server = Server::builder()
        .db(&db)
        .env("PASSWORD_PEPPER", PEPPER)
        .start();
    login_reply(&server, "quinn@example.com", "a wrong passphrase")
        .assert_problem(401, "wrong_password");
    assert_eq!(stored(&db, "quinn@example.com"), (foreign.clone(), true));
    login(&server, "quinn@example.com", "quinn's passphrase");
    let (rehashed, marked) = stored(&db, "quinn@example.com");
    assert!(!marked);
    assert_ne!(rehashed, foreign);
    // Keyed by the pepper now: it no longer verifies without it.
    assert!(!rust_argon2::verify_encoded(&rehashed, b"quinn's passphrase").unwrap());
    login(&server, "quinn@example.com", "quinn's passphrase");
    login(&server, "rita@example.com", "rita's fine passphrase");
}

#[test]
fn without_a_pepper_imported_hashes_are_not_marked_and_log_in() {
    let db = Arc::new(TestDb::new());
    let line =
        json!({"email": "sam@example.com", "password_hash": foreign_phc("sam's passphrase")});
    let run = import_users(&db, "-", Some(&line.to_string()));
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(!stored(&db, "sam@example.com").1);
    let server = Server::builder().db(&db).start();
    login(&server, "sam@example.com", "sam's passphrase");
    // The upgrade to the server's parameters kept it pepperless.
    let (hash, _) = stored(&db, "sam@example.com");
    assert!(rust_argon2::verify_encoded(&hash, b"sam's passphrase").unwrap());
}

#[test]
fn imported_addresses_are_unverified_unless_the_line_says_so() {
    let db = Arc::new(TestDb::new());
    let lines = [
        json!({"email": "uma@example.com", "password": "uma's fine passphrase"}).to_string(),
        json!({"email": "val@example.com", "password": "val's fine passphrase", "email_verified": true})
            .to_string(),
        json!({"email": "wyn@example.com", "password": "wyn's fine passphrase", "email_verified": "yes"})
            .to_string(),
    ];
    let run = import_users(&db, "-", Some(&lines.join("\n")));
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("line 3: \"email_verified\" must be true or false"),
        "{}",
        run.stdout
    );
    let server = Server::builder().db(&db).start();
    let verified = |email: &str, password: &str| {
        let reply = login_reply(&server, email, password);
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()["user"]["email_verified"].clone()
    };
    assert_eq!(verified("uma@example.com", "uma's fine passphrase"), false);
    assert_eq!(verified("val@example.com", "val's fine passphrase"), true);
    // No verification mail is queued for imported accounts.
    let mails: u64 = db
        .conn()
        .query_first("SELECT COUNT(*) FROM mail_outbox")
        .unwrap()
        .unwrap();
    assert_eq!(mails, 0);
}
