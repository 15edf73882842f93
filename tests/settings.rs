//! The settings the server reads are the ones its documents list: every
//! variable `src/config.rs` (and its `src/config/` files) reads has a row in the README's configuration
//! table, a line in `.env.example`, and a pass-through in
//! `docker-compose.yml`, unless the compose file fixes it itself (the
//! secrets, which it generates, and the listen addresses). A setting added
//! without its documentation, or documentation left behind by a removed
//! one, fails here rather than surprising an operator.
//!
//! No server or database: these tests read files.

use std::collections::BTreeSet;

/// Settings the compose file sets itself, so `.env.example` has no line for
/// them: the secrets come from files `secrets-init` generates, and the app
/// listens where the compose file publishes it.
const FIXED_BY_COMPOSE: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "TOKEN_SECRET",
    "TOKEN_SECRET_FILE",
    "TOKEN_SECRETS_PREVIOUS",
    "TOKEN_SECRETS_PREVIOUS_FILE",
    "PASSWORD_PEPPER",
    "PASSWORD_PEPPER_FILE",
    "DATA_ENCRYPTION_KEY",
    "DATA_ENCRYPTION_KEY_FILE",
    "SMTP_URL_FILE",
    "BIND_ADDR",
    "METRICS_BIND_ADDR",
];

fn read(path: &str) -> String {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every quoted upper-case name in `src/config.rs` and `src/config/*.rs`,
/// outside their tests.
fn settings() -> BTreeSet<String> {
    let dir = format!("{}/src/config", env!("CARGO_MANIFEST_DIR"));
    let mut files = vec!["src/config.rs".to_string()];
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".rs") {
            files.push(format!("src/config/{name}"));
        }
    }
    let code: String = files
        .iter()
        .map(|file| read(file).split("#[cfg(test)]").next().unwrap().to_string())
        .collect();
    let mut names = BTreeSet::new();
    for piece in code.split('"').skip(1).step_by(2) {
        let is_name = piece.len() > 2
            && piece.starts_with(|c: char| c.is_ascii_uppercase())
            && piece
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if is_name {
            names.insert(piece.to_string());
        }
    }
    assert!(
        names.len() > 40 && names.contains("DATABASE_URL"),
        "found too few settings in src/config*: {names:?}"
    );
    names
}

/// The names in `.env.example`'s `NAME=` lines, each as often as it occurs.
fn env_example_names() -> Vec<String> {
    read(".env.example")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            line.split_once('=')
                .map(|(name, _)| name.trim().to_string())
        })
        .collect()
}

#[test]
fn every_setting_has_a_row_in_the_readme_table() {
    let readme = read("README.md");
    let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
    let missing: Vec<String> = settings()
        .into_iter()
        .filter(|name| {
            let quoted = format!("`{name}`");
            !rows.iter().any(|row| row.contains(&quoted))
        })
        .collect();
    assert!(missing.is_empty(), "not in a README table row: {missing:?}");
}

#[test]
fn env_example_lists_every_setting_the_compose_file_leaves_open_once() {
    let names = env_example_names();
    let mut seen = BTreeSet::new();
    let twice: Vec<&String> = names.iter().filter(|n| !seen.insert(*n)).collect();
    assert!(twice.is_empty(), "listed twice in .env.example: {twice:?}");

    let compose_only = ["APP_PORT", "MAIL_UI_PORT", "MYSQL_DATABASE", "MYSQL_USER"];
    let settings = settings();
    let expected: BTreeSet<&String> = settings
        .iter()
        .filter(|n| !FIXED_BY_COMPOSE.contains(&n.as_str()))
        .collect();
    let listed: BTreeSet<&String> = names
        .iter()
        .filter(|n| !compose_only.contains(&n.as_str()))
        .collect();
    let missing: Vec<_> = expected.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&expected).collect();
    assert!(missing.is_empty(), "not in .env.example: {missing:?}");
    assert!(
        unknown.is_empty(),
        "in .env.example but not read by the server: {unknown:?}"
    );
}

#[test]
fn the_compose_file_passes_every_open_setting_to_the_app() {
    let compose = read("docker-compose.yml");
    let app = compose
        .split("\n  app:\n")
        .nth(1)
        .expect("docker-compose.yml has an app service");
    let missing: Vec<String> = settings()
        .into_iter()
        .filter(|n| !FIXED_BY_COMPOSE.contains(&n.as_str()))
        .filter(|n| !app.contains(&format!("{n}: ${{{n}:-")))
        .collect();
    assert!(
        missing.is_empty(),
        "not passed through as `NAME: ${{NAME:-...}}` in the app service: {missing:?}"
    );
}
