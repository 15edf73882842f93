//! Measures the two pieces of cryptography on the server's request paths, through the crate's
//! own public API, so that the load figures in `docs/benchmarks.md` can be compared with what
//! the CPU can do at all: one Argon2id password hash (`password::Hasher`, the cost of every
//! register and login) and one session token sign and verify (`token::Keyring`, the cost of
//! every login and every authenticated request).
//!
//! Run it with `cargo bench --bench crypto`; `benches/load.sh` runs it in the same session as
//! its HTTP scenarios and divides the login rate by the hash rate measured here.
//!
//! Method:
//! - Argon2id at the server's defaults (m=19456 KiB, t=2, p=1, or the `ARGON2_MEMORY_KIB`,
//!   `ARGON2_ITERATIONS` and `ARGON2_PARALLELISM` of the environment, read the same way the
//!   server reads them). After a warm-up, `hash` and `verify` run alternately on one thread,
//!   `HASH_RUNS` times each; the rate per core is one second over the median time of a hash.
//!   Then `threads` threads (default: the number of CPUs, like the server's default
//!   `HASH_CONCURRENCY`; or `BENCH_HASH_THREADS`) hash at once for a while, which shows how
//!   much of the per-core rate survives when every core hashes (memory bandwidth and shared
//!   caches are the usual loss).
//! - Tokens: a keyring with one key, claims like a login's. Each sample times a batch of
//!   `TOKEN_BATCH` signs (or verifies) and divides, so the clock's own cost is negligible; the
//!   result is the median over `TOKEN_SAMPLES` samples, in nanoseconds per operation.
//!
//! The figures are printed as a markdown table, followed by one `CRYPTO_RESULT key=value...`
//! line for scripts. Any failure of the code under test (a hash that does not verify, a token
//! that does not round-trip) ends the bench with an error instead of figures, since a timing of
//! broken code means nothing. The secret and password are fixed bench values, not real ones.

use std::fmt::Display;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auth_server::password::{DEFAULT_ITERATIONS, DEFAULT_MEMORY_KIB, DEFAULT_PARALLELISM, Hasher};
use auth_server::token::{Claims, Key, Keyring};

const HASH_WARMUP_RUNS: usize = 2;
const HASH_RUNS: usize = 15;
/// How long the parallel hashing phase runs; long enough for a few dozen hashes per thread.
const PARALLEL_DURATION: Duration = Duration::from_secs(3);
const TOKEN_BATCH: usize = 1_000;
const TOKEN_SAMPLES: usize = 201;
const TOKEN_TTL_SECS: u64 = 3_600;

const PASSWORD: &str = "correct horse battery staple 🔐";
const WRONG_PASSWORD: &str = "correct horse battery stapler";
const SECRET: &[u8] = b"bench-only token secret, not a real one!";

fn main() -> Result<(), String> {
    let memory_kib = env_u32("ARGON2_MEMORY_KIB", DEFAULT_MEMORY_KIB)?;
    let iterations = env_u32("ARGON2_ITERATIONS", DEFAULT_ITERATIONS)?;
    let parallelism = env_u32("ARGON2_PARALLELISM", DEFAULT_PARALLELISM)?;
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = match std::env::var("BENCH_HASH_THREADS") {
        Ok(value) => parse_positive(&value).ok_or_else(|| {
            format!("BENCH_HASH_THREADS must be a positive integer, got {value:?}")
        })?,
        Err(_) => cores,
    };
    let hasher = Hasher::new(memory_kib, iterations, parallelism, None)
        .map_err(|e| failed("building the hasher", e))?;

    let single = bench_single_thread(&hasher)?;
    let parallel_rate = bench_parallel(&hasher, threads)?;
    let (sign_ns, verify_ns) = bench_tokens()?;

    let per_core = 1000.0 / single.hash.median;
    println!("# Crypto micro-benchmark\n");
    println!("CPU: {} ({cores} CPUs)\n", cpu_model());
    println!(
        "Argon2id v1.3, m={memory_kib} KiB, t={iterations}, p={parallelism}, through \
         `auth_server::password::Hasher`; {HASH_WARMUP_RUNS} warm-up rounds, then \
         {HASH_RUNS} alternating hash/verify rounds on one thread.\n"
    );
    println!("| operation | median | p10 | p90 |\n| --- | ---: | ---: | ---: |");
    println!("| `Hasher::hash` (ms) | {} |", single.hash);
    println!(
        "| `Hasher::verify`, right password (ms) | {} |",
        single.verify
    );
    println!();
    println!(
        "Rate per core: {per_core:.1} hashes/s (1 s / median hash). With {threads} threads \
         hashing at once for {} s: {parallel_rate:.1} hashes/s in all, {:.1} per thread \
         ({:.0}% of the single-thread rate).\n",
        PARALLEL_DURATION.as_secs(),
        parallel_rate / threads as f64,
        100.0 * parallel_rate / (per_core * threads as f64)
    );
    println!(
        "Tokens through `auth_server::token::Keyring` (one key), median of {TOKEN_SAMPLES} \
         batches of {TOKEN_BATCH}:\n"
    );
    println!("| operation | ns/op (median) |\n| --- | ---: |");
    println!("| `Keyring::sign` | {sign_ns:.0} |");
    println!("| `Keyring::verify` | {verify_ns:.0} |");
    println!();
    println!(
        "CRYPTO_RESULT memory_kib={memory_kib} iterations={iterations} parallelism={parallelism} \
         hash_ms_p50={:.2} hash_ms_p10={:.2} hash_ms_p90={:.2} verify_ms_p50={:.2} \
         hashes_per_sec_per_core={per_core:.2} parallel_threads={threads} \
         parallel_hashes_per_sec={parallel_rate:.2} sign_ns_p50={sign_ns:.0} \
         verify_ns_p50={verify_ns:.0}",
        single.hash.median, single.hash.p10, single.hash.p90, single.verify.median
    );
    Ok(())
}

struct SingleThread {
    hash: Stats,
    verify: Stats,
}

/// Times `hash` and `verify` alternately on this thread, checking every result.
fn bench_single_thread(hasher: &Hasher) -> Result<SingleThread, String> {
    let phc = hash_checked(hasher)?;
    if hasher
        .verify(WRONG_PASSWORD, &phc)
        .map_err(|e| failed("verifying", e))?
    {
        return Err("the hasher accepted a wrong password".to_owned());
    }
    for _ in 0..HASH_WARMUP_RUNS {
        black_box(hash_checked(hasher)?);
    }
    let mut hash_ms = Vec::with_capacity(HASH_RUNS);
    let mut verify_ms = Vec::with_capacity(HASH_RUNS);
    for _ in 0..HASH_RUNS {
        let start = Instant::now();
        let fresh = hash_checked(hasher)?;
        hash_ms.push(start.elapsed().as_secs_f64() * 1000.0);

        let start = Instant::now();
        let matched = hasher
            .verify(PASSWORD, black_box(&fresh))
            .map_err(|e| failed("verifying", e))?;
        verify_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        if !matched {
            return Err("a fresh hash did not verify".to_owned());
        }
    }
    Ok(SingleThread {
        hash: Stats::from_samples(hash_ms),
        verify: Stats::from_samples(verify_ms),
    })
}

/// Hashes on `threads` threads at once for [`PARALLEL_DURATION`]; returns hashes per second in
/// all, counting only hashes that finished within the period's wall time.
fn bench_parallel(hasher: &Hasher, threads: usize) -> Result<f64, String> {
    let start = Instant::now();
    let counts: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = 0;
                    while start.elapsed() < PARALLEL_DURATION {
                        black_box(hash_checked(hasher)?);
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("a hashing thread panicked".to_owned()))
            })
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut total = 0;
    for count in counts {
        total += count?;
    }
    Ok(total as f64 / elapsed)
}

fn hash_checked(hasher: &Hasher) -> Result<String, String> {
    hasher
        .hash(black_box(PASSWORD))
        .map_err(|e| failed("hashing", e))
}

/// Median ns per `Keyring::sign` and per `Keyring::verify`.
fn bench_tokens() -> Result<(f64, f64), String> {
    let key = Key::new(SECRET).map_err(|e| failed("building the key", e))?;
    let keyring = Keyring::new(key, Vec::new()).map_err(|e| failed("building the keyring", e))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| failed("reading the clock", e))?
        .as_secs();
    let mut session_id = [0u8; 16];
    getrandom::fill(&mut session_id).map_err(|e| failed("reading the OS random source", e))?;
    let claims = Claims {
        user_id: 4_242,
        session_id,
        issued_at: now,
        expires_at: now + TOKEN_TTL_SECS,
    };
    let token = keyring.sign(&claims);
    match keyring.verify(&token, now) {
        Ok(decoded) if decoded == claims => {}
        Ok(_) => return Err("a token's claims changed in a round trip".to_owned()),
        Err(e) => return Err(format!("a fresh token did not verify: {e:?}")),
    }

    let sign = batch_median_ns(|| {
        black_box(keyring.sign(black_box(&claims)));
    });
    let mut rejected = false;
    let verify = batch_median_ns(|| {
        rejected |= keyring.verify(black_box(&token), black_box(now)).is_err();
    });
    if rejected {
        return Err("a valid token was rejected during the timing".to_owned());
    }
    Ok((sign, verify))
}

/// Runs `op` in [`TOKEN_SAMPLES`] timed batches of [`TOKEN_BATCH`] (after one untimed batch)
/// and returns the median time per call in nanoseconds.
fn batch_median_ns(mut op: impl FnMut()) -> f64 {
    for _ in 0..TOKEN_BATCH {
        op();
    }
    let mut samples = Vec::with_capacity(TOKEN_SAMPLES);
    for _ in 0..TOKEN_SAMPLES {
        let start = Instant::now();
        for _ in 0..TOKEN_BATCH {
            op();
        }
        samples.push(start.elapsed().as_nanos() as f64 / TOKEN_BATCH as f64);
    }
    Stats::from_samples(samples).median
}

/// `default` when `name` is unset, else its value as a positive integer.
fn env_u32(name: &str, default: u32) -> Result<u32, String> {
    match std::env::var(name) {
        Ok(value) => parse_positive(&value)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{name} must be a positive integer, got {value:?}")),
        Err(_) => Ok(default),
    }
}

fn parse_positive(value: &str) -> Option<usize> {
    value.trim().parse().ok().filter(|n| *n > 0)
}

fn failed(what: &str, error: impl Display) -> String {
    format!("{what}: {error}")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown model".to_owned())
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
