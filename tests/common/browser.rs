//! A real browser for the tests: Debian's Chromium, headless, driven by
//! `tests/browser/drive.mjs` (playwright-core from npm, no browser
//! download). Screenshots go under `target/browser/` and are kept as CI
//! artefacts.

use std::path::PathBuf;
use std::process::Command;

/// Where screenshots are kept.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")));
    target.join("browser")
}

/// Opens `url` in Chromium and runs `steps` (see `drive.mjs`); panics with
/// the browser's error if a step fails, or with what to install if the
/// browser or playwright-core is missing.
#[track_caller]
pub fn drive(url: &str, steps: &serde_json::Value) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` (or set CHROMIUM)"
    );
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser"
    );
    let output = Command::new("node")
        .arg(format!("{dir}/drive.mjs"))
        .arg(url)
        .arg(steps.to_string())
        .output()
        .expect("cannot run node: install Node.js (Debian: apt-get install nodejs npm)");
    assert!(
        output.status.success(),
        "the browser run failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
