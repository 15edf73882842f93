//! The binary's subcommands other than `serve`: `healthcheck` (the container
//! health check) and `init-secret` (the compose file's first-start key).

mod common;

use common::{Server, spawn, wait_exit};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn run(args: &[&str], env: &[(&str, &str)]) -> Option<i32> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (mut child, _) = spawn(&env, args, None);
    wait_exit(&mut child, Duration::from_secs(10))
}

#[test]
fn healthcheck_exits_0_for_a_healthy_server_and_1_otherwise() {
    let server = Server::start();
    let bind = format!("0.0.0.0:{}", server.addr.port());
    assert_eq!(run(&["healthcheck"], &[("BIND_ADDR", &bind)]), Some(0));
    drop(server);
    assert_eq!(run(&["healthcheck"], &[("BIND_ADDR", &bind)]), Some(1));
}

#[test]
fn init_secret_creates_a_private_key_file_once_and_the_server_uses_it() {
    let dir = std::env::temp_dir().join(format!("auth-init-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token_secret");
    let _ = std::fs::remove_file(&path);
    let path_str = path.to_str().unwrap();

    assert_eq!(run(&["init-secret", path_str], &[]), Some(0));
    let secret = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(secret.trim_end().len() >= 32, "{secret:?}");

    // A second run keeps the existing key.
    assert_eq!(run(&["init-secret", path_str], &[]), Some(0));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), secret);

    // Two generated keys differ.
    let other = dir.join("other");
    let _ = std::fs::remove_file(&other);
    assert_eq!(run(&["init-secret", other.to_str().unwrap()], &[]), Some(0));
    assert_ne!(std::fs::read_to_string(&other).unwrap(), secret);

    let server = Server::builder()
        .unset("TOKEN_SECRET")
        .env("TOKEN_SECRET_FILE", path_str)
        .start();
    assert_eq!(server.get("/healthz").status, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_commands_exit_2_with_usage() {
    assert_eq!(run(&["frobnicate"], &[]), Some(2));
    assert_eq!(run(&["--help"], &[]), Some(0));
}
