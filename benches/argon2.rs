//! Compares the two Rust Argon2 implementations at the server's production cost, so the choice
//! of RustCrypto `argon2` over `rust-argon2` in `src/password.rs` rests on a measurement that
//! anyone can repeat on their own hardware with `cargo bench --bench argon2`.
//!
//! Method: both crates hash the same password with the same 16-byte salt at Argon2id v1.3,
//! m=19456 KiB, t=2, p=1, 32-byte output (the OWASP minimum the server uses by default). After
//! a warm-up, each crate runs `RUNS` times; the runs are interleaved and the order within each
//! pair alternates, so drift in CPU frequency or load from other processes on a shared machine
//! falls on both crates alike instead of on whichever ran second. The result is a markdown table
//! of median, p10 and p90 milliseconds per hash, and the ratio of the medians.
//!
//! The bench also checks interoperability, because a timing comparison only means something if
//! both crates compute the same function: each crate must verify the other's PHC string, with
//! and without a secret (the server's pepper), and must reject a wrong password. Any failure
//! makes the bench exit with an error rather than print figures.
//!
//! `rust-argon2`'s library is also called `argon2`, which clashes with RustCrypto's crate, so
//! the manifest imports it under the name `rust_argon2`.

use std::fmt::Display;
use std::hint::black_box;
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;
const WARMUP_RUNS: usize = 3;
const RUNS: usize = 30;

const PASSWORD: &[u8] = "correct horse battery staple 🔐".as_bytes();
const WRONG_PASSWORD: &[u8] = b"correct horse battery stapler";
const PEPPER: &[u8] = b"bench-only pepper, not a real secret";

fn main() -> Result<(), String> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| failed("reading the OS random source", e))?;
    let salt_b64 = SaltString::encode_b64(&salt).map_err(|e| failed("encoding the salt", e))?;

    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_LEN))
        .map_err(|e| failed("building RustCrypto params", e))?;
    let rustcrypto = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let rustcrypto_peppered =
        Argon2::new_with_secret(PEPPER, Algorithm::Argon2id, Version::V0x13, params)
            .map_err(|e| failed("building the peppered RustCrypto context", e))?;
    let reference = reference_config(&[]);
    let reference_peppered = reference_config(PEPPER);

    let hash_rustcrypto = |ctx: &Argon2| -> Result<String, String> {
        ctx.hash_password(PASSWORD, &salt_b64)
            .map(|h| h.to_string())
            .map_err(|e| failed("hashing with RustCrypto argon2", e))
    };
    let hash_reference = |cfg: &rust_argon2::Config| -> Result<String, String> {
        rust_argon2::hash_encoded(PASSWORD, &salt, cfg)
            .map_err(|e| failed("hashing with rust-argon2", e))
    };

    println!("# Argon2id: RustCrypto `argon2` vs `rust-argon2`\n");
    println!(
        "Parameters: m={MEMORY_KIB} KiB, t={ITERATIONS}, p={PARALLELISM}, \
         {SALT_LEN}-byte salt, {OUTPUT_LEN}-byte output; {WARMUP_RUNS} warm-up runs, \
         then {RUNS} interleaved runs each.\n"
    );
    println!("CPU: {}\n", cpu_description());

    println!("## Interoperability\n");
    let phc_rustcrypto = hash_rustcrypto(&rustcrypto)?;
    let phc_reference = hash_reference(&reference)?;
    let peppered_rustcrypto = hash_rustcrypto(&rustcrypto_peppered)?;
    let peppered_reference = hash_reference(&reference_peppered)?;
    let checks = [
        (
            "same salt gives the identical PHC string",
            phc_rustcrypto == phc_reference,
        ),
        (
            "RustCrypto verifies rust-argon2's hash",
            rustcrypto_verifies(&rustcrypto, PASSWORD, &phc_reference)?,
        ),
        (
            "rust-argon2 verifies RustCrypto's hash",
            reference_verifies(PASSWORD, &phc_rustcrypto, &[])?,
        ),
        (
            "RustCrypto verifies rust-argon2's peppered hash",
            rustcrypto_verifies(&rustcrypto_peppered, PASSWORD, &peppered_reference)?,
        ),
        (
            "rust-argon2 verifies RustCrypto's peppered hash",
            reference_verifies(PASSWORD, &peppered_rustcrypto, PEPPER)?,
        ),
        (
            "RustCrypto rejects a wrong password",
            !rustcrypto_verifies(&rustcrypto, WRONG_PASSWORD, &phc_reference)?,
        ),
        (
            "rust-argon2 rejects a wrong password",
            !reference_verifies(WRONG_PASSWORD, &phc_rustcrypto, &[])?,
        ),
        (
            "a peppered hash is rejected without the pepper",
            !rustcrypto_verifies(&rustcrypto, PASSWORD, &peppered_reference)?,
        ),
    ];
    println!("| check | result |\n| --- | --- |");
    for (name, ok) in &checks {
        println!("| {name} | {} |", if *ok { "yes" } else { "NO" });
    }
    println!("\nRustCrypto PHC string: `{phc_rustcrypto}`\n");
    if checks.iter().any(|(_, ok)| !ok) {
        return Err("interoperability check failed; timings would be meaningless".to_owned());
    }

    for _ in 0..WARMUP_RUNS {
        black_box(hash_rustcrypto(&rustcrypto)?);
        black_box(hash_reference(&reference)?);
    }

    let mut times_rustcrypto = Vec::with_capacity(RUNS);
    let mut times_reference = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        if run % 2 == 0 {
            times_rustcrypto.push(time_ms(|| hash_rustcrypto(&rustcrypto))?);
            times_reference.push(time_ms(|| hash_reference(&reference))?);
        } else {
            times_reference.push(time_ms(|| hash_reference(&reference))?);
            times_rustcrypto.push(time_ms(|| hash_rustcrypto(&rustcrypto))?);
        }
    }
    let rustcrypto_stats = Stats::from_samples(times_rustcrypto);
    let reference_stats = Stats::from_samples(times_reference);

    println!("## Time per hash (ms)\n");
    println!("| implementation | median | p10 | p90 |\n| --- | ---: | ---: | ---: |");
    println!("| RustCrypto `argon2` 0.5 | {rustcrypto_stats} |");
    println!("| `rust-argon2` 3 | {reference_stats} |");
    println!(
        "\nRatio of medians (rust-argon2 / RustCrypto): {:.2}",
        reference_stats.median / rustcrypto_stats.median
    );
    Ok(())
}

fn reference_config(secret: &[u8]) -> rust_argon2::Config<'_> {
    rust_argon2::Config {
        ad: &[],
        hash_length: OUTPUT_LEN as u32,
        lanes: PARALLELISM,
        mem_cost: MEMORY_KIB,
        secret,
        thread_mode: rust_argon2::ThreadMode::Sequential,
        time_cost: ITERATIONS,
        variant: rust_argon2::Variant::Argon2id,
        version: rust_argon2::Version::Version13,
    }
}

/// Ok(false) only for a mismatch; any other failure is a bug in the bench and is reported.
fn rustcrypto_verifies(ctx: &Argon2, password: &[u8], phc: &str) -> Result<bool, String> {
    let parsed = PasswordHash::new(phc).map_err(|e| failed("parsing a PHC string", e))?;
    match ctx.verify_password(password, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(failed("verifying with RustCrypto argon2", e)),
    }
}

fn reference_verifies(password: &[u8], phc: &str, secret: &[u8]) -> Result<bool, String> {
    rust_argon2::verify_encoded_ext(phc, password, secret, &[])
        .map_err(|e| failed("verifying with rust-argon2", e))
}

fn time_ms(hash: impl FnOnce() -> Result<String, String>) -> Result<f64, String> {
    let start = Instant::now();
    black_box(hash()?);
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

fn failed(what: &str, error: impl Display) -> String {
    format!("{what}: {error}")
}

fn cpu_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown model".to_owned());
    format!("{model}, AVX2 {}", if has_avx2() { "yes" } else { "no" })
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn has_avx2() -> bool {
    false
}

/// Median and the 10th/90th percentiles, interpolated linearly between the closest ranks.
struct Stats {
    median: f64,
    p10: f64,
    p90: f64,
}

impl Stats {
    fn from_samples(mut samples: Vec<f64>) -> Stats {
        samples.sort_by(f64::total_cmp);
        Stats {
            median: quantile(&samples, 0.5),
            p10: quantile(&samples, 0.1),
            p90: quantile(&samples, 0.9),
        }
    }
}

impl Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} | {:.1} | {:.1}", self.median, self.p10, self.p90)
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}
