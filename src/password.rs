//! Password storage (Argon2id) and the rules a new password must meet.
//!
//! This module owns the only code that touches a plaintext password after the request parser:
//! [`Hasher`] turns it into a PHC string for the database and checks a login attempt against
//! one, and [`check_strength`] decides whether a password may be set at all.
//!
//! # Threat model
//!
//! The attacker we design for has a copy of the `users` table (a backup, an SQL injection, a
//! stolen replica) and tries to recover passwords offline, to log in here or, more likely, on
//! other sites where users reused them. We cannot stop the copy; we can make each guess
//! expensive and make the cheapest guesses useless:
//!
//! - **Argon2id**, the memory-hard KDF recommended first by the OWASP Password Storage Cheat
//!   Sheet and RFC 9106. Memory hardness is what hurts GPU and ASIC attackers: each guess needs
//!   its own ~19 MiB, so parallel hardware cannot run thousands at once cheaply. The `id`
//!   variant makes the first half-pass data-independent (Argon2i, resisting cache-timing side
//!   channels) and the rest data-dependent (Argon2d, resisting time-memory trade-offs), the
//!   variant RFC 9106 recommends by default.
//! - **Defaults m=19456 KiB (19 MiB), t=2, p=1**: the OWASP cheat sheet's minimum
//!   configuration for Argon2id (the [`DEFAULT_MEMORY_KIB`], [`DEFAULT_ITERATIONS`] and
//!   [`DEFAULT_PARALLELISM`] constants). They are configurable upward; [`Hasher::needs_rehash`]
//!   lets the login path upgrade old hashes once the cost is raised.
//! - **A random 16-byte salt per hash** from the operating system (`getrandom::fill`), so equal
//!   passwords give different hashes and precomputed tables are useless.
//! - **An optional pepper**, passed to Argon2 as its secret input `K` (RFC 9106 §3.1), not
//!   concatenated to the password. It lives in the server's configuration, never in the
//!   database, so an attacker holding only a database dump cannot test a single guess: every
//!   hash is a keyed function of a key they do not have. It does nothing against an attacker
//!   who also has the server's configuration or memory.
//! - **Constant-time comparison** of the computed and stored hash: `argon2`'s verifier compares
//!   `password_hash::Output` values with `subtle`'s `ct_eq`, so response timing reveals nothing
//!   about how many bytes of a guess's hash matched.
//! - **The rules** in [`check_strength`] keep the passwords guessed first out of the table.
//!
//! Out of scope here, and required elsewhere: rate limiting of login attempts (an online
//! attacker gets each guess verified by us for free), TLS, and keeping the pepper out of logs.
//!
//! # The pepper, and why rotating it is expensive
//!
//! Every stored hash depends on the pepper. Rotating or losing it makes **every stored hash
//! unverifiable**: no user can log in until they reset their password. A deployment that wants
//! to rotate without that cost has to keep the old pepper, verify with it, and rehash with the
//! new one at each user's next login. **This server supports exactly one pepper**, so rotation
//! means a forced password reset for everyone. Treat the pepper as long-lived: generate 32
//! random bytes once, store them apart from the database backups, and never change them casually.
//! Without a pepper, hashes are plain Argon2id; a hash made with a pepper never verifies without
//! it, and the reverse.
//!
//! # Cost for callers
//!
//! One [`Hasher::hash`] or [`Hasher::verify`] at the defaults allocates ~19 MiB and keeps one
//! core busy for ~20 ms (measured below). An attacker who can trigger hashing at will can
//! exhaust memory and CPU, so **callers must bound concurrency** (for example a fixed-size
//! worker pool or a semaphore around hashing) and rate-limit the endpoints that hash.
//! [`Hasher::verify`] honours the cost written in the stored string, which is therefore trusted:
//! only this server writes it.
//!
//! # Why RustCrypto `argon2` and not `rust-argon2`
//!
//! Both are pure Rust and produce identical, mutually verifiable PHC strings (checked by
//! `benches/argon2.rs`, also with a secret). RustCrypto `argon2` 0.5 was faster in every run of
//! that bench: at m=19456, t=2, p=1 on a shared 2-core AMD EPYC with AVX2, two runs gave medians
//! of 18.9 ms and 21.4 ms per hash against 33.6 ms and 36.1 ms for `rust-argon2` 3, a ratio of
//! 1.78 and 1.68 (RustCrypto uses an AVX2 compression function when the CPU has it). Attackers
//! run optimised crackers whatever we choose, so a slow implementation on our side only costs us:
//! a faster one buys a higher cost parameter for the same login latency. RustCrypto's crate
//! also implements the
//! `password-hash` traits (PHC parsing, constant-time output comparison), so this module
//! contains no hand-written PHC encoding.
//!
//! # Password rules (NIST SP 800-63B-4 §3.1.1.2, OWASP ASVS 5.0 §6.2)
//!
//! - Length [`MIN_CHARS`]..=[`MAX_CHARS`], counted in Unicode scalar values (`char`s), not
//!   bytes: 8 × 'é' is 8 characters. The minimum of 8 is ASVS 6.2.1's floor, and NIST's floor
//!   when the password is one factor of several; NIST 800-63B-4 requires 15 when the password is
//!   the only factor, and ASVS 6.2.1 strongly recommends 15. The maximum is far above the 64
//!   both standards ask us to allow (ASVS 6.2.9) and only keeps inputs to a sane size: Argon2's
//!   cost hardly depends on password length. [`Hasher::verify`] applies no length limit, so
//!   the request parser must bound body size.
//! - Any Unicode is accepted and there are no composition rules (ASVS 6.2.5).
//! - The password is hashed exactly as received: no truncation, trimming, case folding or
//!   Unicode normalisation, as ASVS 6.2.8 requires. NIST says verifiers SHOULD normalise
//!   Unicode; we follow ASVS instead, so a password typed once with a precomposed 'é' and once
//!   with 'e' + combining accent are two different passwords. Adding normalisation later would
//!   strand every hash made before it, so the choice is effectively permanent.
//! - Not on Django's list of 20,000 common passwords (19,640 after lowercasing and
//!   deduplication; ASVS 6.2.4 asks for at least the top 3,000), compared case-insensitively;
//!   see `data/README.md` for origin and licence.
//! - Not equal to the account's email address (NIST's "context-specific words").

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use argon2::password_hash::{self, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;

thread_local! {
    /// This thread's Argon2 working memory (19 MiB at the defaults), kept
    /// from one hash to the next. Allocating it afresh per hash let glibc
    /// scatter freed blocks over its arenas (the server grew to gigabytes
    /// under a login flood) and made the kernel zero new pages each time.
    /// The server hashes on `HASH_CONCURRENCY` fixed threads, so this is
    /// that many blocks in all. Argon2 writes every block before reading it,
    /// so reuse needs no clearing.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `count` blocks of this thread's Argon2 memory. Memory grown
/// for an unusually costly stored hash is given back afterwards, down to
/// `keep` blocks (the configured cost).
fn with_blocks<R>(count: usize, keep: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        if blocks.len() < count {
            blocks.resize(count, Block::default());
        }
        let result = f(&mut blocks[..count]);
        if blocks.len() > keep {
            blocks.truncate(keep);
            blocks.shrink_to_fit();
        }
        result
    })
}

/// PHC strings use standard base64 without padding ("B64" in the PHC spec).
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// Fewest characters (Unicode scalar values) a new password may have.
pub const MIN_CHARS: usize = 8;

/// Most characters (Unicode scalar values) a new password may have.
pub const MAX_CHARS: usize = 256;

/// Default Argon2 memory cost in KiB (19 MiB), the OWASP minimum for Argon2id.
pub const DEFAULT_MEMORY_KIB: u32 = 19_456;

/// Default Argon2 iteration count (time cost), the OWASP minimum for Argon2id at 19 MiB.
pub const DEFAULT_ITERATIONS: u32 = 2;

/// Default Argon2 parallelism (lanes). One lane keeps each request on one core; concurrency
/// comes from serving several requests at once, not from splitting one hash.
pub const DEFAULT_PARALLELISM: u32 = 1;

/// Salt length in bytes: 128 bits, the size RFC 9106 recommends.
const SALT_LEN: usize = 16;

/// Hash output length in bytes, the `argon2` crate's and RFC 9106's default.
const OUTPUT_LEN: usize = 32;

/// The common-password list, one lowercase password per line, parsed on first use.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .filter(|line| !line.is_empty())
        .collect()
});

/// Argon2id hasher with the configured cost and optional pepper.
///
/// Cheap to clone and safe to share between threads; every call builds its own Argon2 context
/// and memory. `Debug` shows the cost but only whether a pepper is set, never its bytes.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    pepper: Option<Vec<u8>>,
}

impl Hasher {
    /// Builds a hasher for Argon2id v1.3 with `memory_kib` KiB of memory, `iterations` passes
    /// and `parallelism` lanes, producing 32-byte hashes.
    ///
    /// `pepper`, when given, is used as Argon2's secret input for every hash and verification;
    /// see the module docs for what it protects and what changing it costs.
    ///
    /// # Errors
    ///
    /// When `argon2::Params::new` rejects the cost (memory below 8 KiB per lane, zero
    /// iterations, zero or more than 2^24 − 1 lanes), naming the offending setting; when the
    /// pepper is empty (an empty secret would silently mean "no pepper": pass `None` instead);
    /// or when the pepper is longer than Argon2 allows. The error never contains the pepper.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        pepper: Option<Vec<u8>>,
    ) -> Result<Hasher, HashError> {
        let params =
            Params::new(memory_kib, iterations, parallelism, Some(OUTPUT_LEN)).map_err(|e| {
                HashError::new(ErrorKind::InvalidParams {
                    memory_kib,
                    iterations,
                    parallelism,
                    source: e,
                })
            })?;
        if pepper.as_ref().is_some_and(|p| p.is_empty()) {
            return Err(HashError::new(ErrorKind::EmptyPepper));
        }
        let hasher = Hasher { params, pepper };
        hasher.context()?;
        Ok(hasher)
    }

    /// Hashes `password` with a fresh random 16-byte salt and returns the PHC string, e.g.
    /// `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` (salt and hash in unpadded B64).
    ///
    /// The password is hashed byte for byte as given; strength rules are [`check_strength`]'s
    /// job. CPU- and memory-heavy: see the module docs on bounding concurrency.
    ///
    /// # Errors
    ///
    /// When the operating system's random source fails, or Argon2 itself fails (only for
    /// inputs beyond its 4 GiB limits). The error never contains the password or pepper.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| HashError::new(ErrorKind::Randomness(e)))?;
        let mut out = [0u8; OUTPUT_LEN];
        let context = self.context()?;
        let count = self.params.block_count();
        with_blocks(count, count, |blocks| {
            context.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
        })
        .map_err(|e| HashError::new(ErrorKind::Hashing(e.into())))?;
        // The PHC string `argon2`'s own PasswordHasher writes, built here
        // because that API allocates fresh memory for every hash.
        Ok(format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost(),
            B64.encode(salt),
            B64.encode(out)
        ))
    }

    /// Checks `password` against the stored PHC string `phc`.
    ///
    /// Returns `Ok(true)` on a match and `Ok(false)` on a mismatch. The algorithm, version and
    /// cost are read from `phc`, so hashes made with older settings (or Argon2i/Argon2d, or
    /// v1.0) still verify; the configured pepper is always used, so a hash made with another
    /// pepper, or none, does not match. The final comparison is constant-time.
    ///
    /// The cost in `phc` is trusted: a stored string asking for an enormous memory cost would
    /// make this call allocate it. Only this server writes the stored strings.
    ///
    /// # Errors
    ///
    /// Only when `phc` is not a valid Argon2 PHC string (unparseable, another algorithm, an
    /// invalid version or cost, a missing or too-short salt, a missing hash). The error never
    /// contains the password or pepper.
    pub fn verify(&self, password: &str, phc: &str) -> Result<bool, HashError> {
        let malformed = |e| HashError::new(ErrorKind::MalformedHash(e));
        let parsed = PasswordHash::new(phc).map_err(malformed)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(HashError::new(ErrorKind::MissingSaltOrHash));
        };
        // The stored string's own algorithm, version and cost, so hashes made
        // with other parameters still verify (and are upgraded by the caller).
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(malformed)?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|e| malformed(e.into()))?,
            None => Version::V0x13,
        };
        let params = Params::try_from(&parsed).map_err(malformed)?;
        let mut salt_bytes = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_bytes).map_err(malformed)?;
        let context = match &self.pepper {
            Some(pepper) => Argon2::new_with_secret(pepper, algorithm, version, params.clone())
                .map_err(|e| HashError::new(ErrorKind::InvalidPepper(e)))?,
            None => Argon2::new(algorithm, version, params.clone()),
        };
        let mut out = vec![0u8; expected.len()];
        with_blocks(params.block_count(), self.params.block_count(), |blocks| {
            context.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
        })
        .map_err(|e| malformed(e.into()))?;
        let computed = password_hash::Output::new(&out).map_err(malformed)?;
        // `Output`'s equality is constant-time (it compares with `subtle`).
        Ok(computed == expected)
    }

    /// Returns true when `phc` is not exactly what [`Hasher::hash`] produces today: Argon2id,
    /// an explicit `v=19`, the configured m, t and p, no key id or associated data, a 32-byte
    /// hash. The login path calls this after a successful [`Hasher::verify`] and, when it is
    /// true, stores a fresh hash of the password it just verified.
    ///
    /// An unparseable string also returns true; [`Hasher::verify`] is the place that reports
    /// it as an error.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        if parsed.algorithm != Algorithm::Argon2id.ident()
            || parsed.version != Some(Version::V0x13.into())
            || parsed.salt.is_none()
        {
            return true;
        }
        let Ok(stored) = Params::try_from(&parsed) else {
            return true;
        };
        stored.m_cost() != self.params.m_cost()
            || stored.t_cost() != self.params.t_cost()
            || stored.p_cost() != self.params.p_cost()
            || stored.output_len() != Some(OUTPUT_LEN)
            || !stored.keyid().is_empty()
            || !stored.data().is_empty()
    }

    /// True when a pepper is set.
    pub fn has_pepper(&self) -> bool {
        self.pepper.is_some()
    }

    /// This hasher without its pepper: for verifying hashes made elsewhere and imported while
    /// a pepper is set (see `import-users`), which the first login then replaces.
    pub fn without_pepper(&self) -> Hasher {
        Hasher {
            params: self.params.clone(),
            pepper: None,
        }
    }

    /// An Argon2id v1.3 context with the configured cost, keyed with the pepper if one is set.
    fn context(&self) -> Result<Argon2<'_>, HashError> {
        match &self.pepper {
            Some(pepper) => Argon2::new_with_secret(
                pepper,
                Algorithm::Argon2id,
                Version::V0x13,
                self.params.clone(),
            )
            .map_err(|e| HashError::new(ErrorKind::InvalidPepper(e))),
            None => Ok(Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                self.params.clone(),
            )),
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("memory_kib", &self.params.m_cost())
            .field("iterations", &self.params.t_cost())
            .field("parallelism", &self.params.p_cost())
            .field(
                "pepper",
                &if self.pepper.is_some() {
                    "<redacted>"
                } else {
                    "<none>"
                },
            )
            .finish()
    }
}

/// Why hashing, verifying or building a [`Hasher`] failed.
///
/// `Display` says what went wrong in terms an operator can act on. It never contains the
/// password or the pepper: none of the wrapped errors carries either.
#[derive(Debug)]
pub struct HashError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    InvalidParams {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        source: argon2::Error,
    },
    EmptyPepper,
    InvalidPepper(argon2::Error),
    Randomness(getrandom::Error),
    Hashing(password_hash::Error),
    MalformedHash(password_hash::Error),
    MissingSaltOrHash,
}

impl HashError {
    fn new(kind: ErrorKind) -> HashError {
        HashError { kind }
    }
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::InvalidParams {
                memory_kib,
                iterations,
                parallelism,
                source,
            } => {
                write!(
                    f,
                    "invalid Argon2 parameters (memory_kib={memory_kib}, \
                     iterations={iterations}, parallelism={parallelism}): "
                )?;
                match source {
                    argon2::Error::MemoryTooLittle => write!(
                        f,
                        "memory_kib must be at least {} (8 KiB per lane)",
                        u64::from(*parallelism).max(1) * 8
                    ),
                    argon2::Error::TimeTooSmall => f.write_str("iterations must be at least 1"),
                    argon2::Error::ThreadsTooFew => f.write_str("parallelism must be at least 1"),
                    argon2::Error::ThreadsTooMany => {
                        write!(f, "parallelism must be at most {}", Params::MAX_P_COST)
                    }
                    other => write!(f, "{other}"),
                }
            }
            ErrorKind::EmptyPepper => {
                f.write_str("the Argon2 pepper is empty; configure no pepper instead")
            }
            ErrorKind::InvalidPepper(e) => write!(f, "the Argon2 pepper is unusable: {e}"),
            ErrorKind::Randomness(e) => {
                write!(f, "could not read a salt from the OS random source: {e}")
            }
            ErrorKind::Hashing(e) => write!(f, "Argon2 hashing failed: {e}"),
            ErrorKind::MalformedHash(e) => {
                write!(
                    f,
                    "the stored password hash is not a valid Argon2 PHC string: {e}"
                )
            }
            ErrorKind::MissingSaltOrHash => f.write_str(
                "the stored password hash is not a valid Argon2 PHC string: salt or hash missing",
            ),
        }
    }
}

impl std::error::Error for HashError {}

/// Which rule a rejected password failed.
///
/// `Display` gives a sentence meant for the end user (the API's `detail` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeakPassword {
    /// Fewer than [`MIN_CHARS`] characters.
    TooShort,
    /// More than [`MAX_CHARS`] characters.
    TooLong,
    /// In the common-password list, ignoring case.
    Common,
    /// The same as the account's email address, ignoring case.
    EqualsEmail,
}

impl fmt::Display for WeakPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeakPassword::TooShort => {
                write!(f, "Password must be at least {MIN_CHARS} characters long.")
            }
            WeakPassword::TooLong => {
                write!(f, "Password must be at most {MAX_CHARS} characters long.")
            }
            WeakPassword::Common => {
                f.write_str("This password is too common and easy to guess; please choose another.")
            }
            WeakPassword::EqualsEmail => {
                f.write_str("Password must not be the same as your email address.")
            }
        }
    }
}

impl std::error::Error for WeakPassword {}

/// Checks the rules a new password must meet (see the module docs for their sources).
///
/// - [`MIN_CHARS`]..=[`MAX_CHARS`] characters, counted as Unicode scalar values (`char`s);
///   any Unicode is allowed and there are no composition rules;
/// - not in the embedded common-password list, compared after lowercasing (the list is
///   lowercase);
/// - not equal to `normalized_email` ignoring case; callers pass the address as returned by
///   `email::normalize`.
///
/// The password itself is never changed: whatever passes is what gets hashed.
///
/// # Errors
///
/// The first rule that fails, checked in the order above.
pub fn check_strength(password: &str, normalized_email: &str) -> Result<(), WeakPassword> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(WeakPassword::TooShort);
    }
    if chars > MAX_CHARS {
        return Err(WeakPassword::TooLong);
    }
    let lowered = password.to_lowercase();
    if COMMON_PASSWORDS.contains(lowered.as_str()) {
        return Err(WeakPassword::Common);
    }
    if lowered == normalized_email.to_lowercase() {
        return Err(WeakPassword::EqualsEmail);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};

    /// The smallest cost Argon2 accepts, so most tests run in microseconds.
    fn cheap() -> Hasher {
        Hasher::new(Params::MIN_M_COST, 1, 1, None).expect("minimum params are valid")
    }

    fn cheap_with_pepper(pepper: &[u8]) -> Hasher {
        Hasher::new(Params::MIN_M_COST, 1, 1, Some(pepper.to_vec()))
            .expect("minimum params are valid")
    }

    /// A PHC string made directly with the `argon2` crate, for hashes `Hasher` never makes.
    fn foreign_hash(algorithm: Algorithm, version: Version, m: u32, t: u32, p: u32) -> String {
        let params = Params::new(m, t, p, None).expect("valid params");
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("valid salt");
        Argon2::new(algorithm, version, params)
            .hash_password(b"hunter2hunter2", &salt)
            .expect("hashing works")
            .to_string()
    }

    #[test]
    fn round_trip_verifies_and_wrong_password_does_not() {
        let hasher = cheap();
        let phc = hasher.hash("correct horse battery staple").unwrap();
        assert!(hasher.verify("correct horse battery staple", &phc).unwrap());
        assert!(
            !hasher
                .verify("correct horse battery stapler", &phc)
                .unwrap()
        );
        assert!(!hasher.verify("Correct horse battery staple", &phc).unwrap());
        assert!(!hasher.verify("", &phc).unwrap());
    }

    #[test]
    fn unicode_passwords_round_trip() {
        let hasher = cheap();
        for password in [
            "🔐🦀 secret 🚀🌍",
            "密码是一个秘密的东西",
            "パスワードは秘密です",
            "e\u{301}le\u{300}ve a\u{308}ußerst",
            "\u{0}nul inside\u{7f}",
        ] {
            let phc = hasher.hash(password).unwrap();
            assert!(hasher.verify(password, &phc).unwrap(), "{password:?}");
            let mut altered = password.to_owned();
            altered.push('x');
            assert!(!hasher.verify(&altered, &phc).unwrap(), "{password:?}");
        }
    }

    #[test]
    fn passwords_are_not_unicode_normalised() {
        let hasher = cheap();
        let decomposed = "cafe\u{301} au lait";
        let precomposed = "caf\u{e9} au lait";
        let phc = hasher.hash(decomposed).unwrap();
        assert!(hasher.verify(decomposed, &phc).unwrap());
        assert!(!hasher.verify(precomposed, &phc).unwrap());
    }

    #[test]
    fn phc_string_has_expected_format_and_sizes() {
        let hasher = Hasher::new(64, 3, 2, None).unwrap();
        let phc = hasher.hash("format check").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=3,p=2$"), "{phc}");
        let parsed = PasswordHash::new(&phc).unwrap();
        let mut salt = [0u8; 64];
        let salt = parsed.salt.unwrap().decode_b64(&mut salt).unwrap();
        assert_eq!(salt.len(), SALT_LEN);
        assert_eq!(parsed.hash.unwrap().len(), OUTPUT_LEN);
    }

    #[test]
    fn same_password_gets_a_different_salt_each_time() {
        let hasher = cheap();
        let first = hasher.hash("same password").unwrap();
        let second = hasher.hash("same password").unwrap();
        assert_ne!(first, second);
        let salt_of = |phc: &str| PasswordHash::new(phc).unwrap().salt.unwrap().to_string();
        assert_ne!(salt_of(&first), salt_of(&second));
        assert!(hasher.verify("same password", &first).unwrap());
        assert!(hasher.verify("same password", &second).unwrap());
    }

    #[test]
    fn default_params_produce_owasp_phc_string() {
        let hasher = Hasher::new(
            DEFAULT_MEMORY_KIB,
            DEFAULT_ITERATIONS,
            DEFAULT_PARALLELISM,
            Some(b"a 32-byte pepper for the tests..".to_vec()),
        )
        .unwrap();
        let phc = hasher.hash("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(hasher.verify("correct horse battery staple", &phc).unwrap());
        assert!(!hasher.verify("correct horse battery stapl", &phc).unwrap());
        assert!(!hasher.needs_rehash(&phc));
    }

    #[test]
    fn pepper_must_match() {
        let peppered = cheap_with_pepper(b"pepper one");
        let other_pepper = cheap_with_pepper(b"pepper two");
        let unpeppered = cheap();

        let phc = peppered.hash("pepper test").unwrap();
        assert!(peppered.verify("pepper test", &phc).unwrap());
        assert!(!unpeppered.verify("pepper test", &phc).unwrap());
        assert!(!other_pepper.verify("pepper test", &phc).unwrap());

        let plain = unpeppered.hash("pepper test").unwrap();
        assert!(unpeppered.verify("pepper test", &plain).unwrap());
        assert!(!peppered.verify("pepper test", &plain).unwrap());
    }

    #[test]
    fn verify_uses_the_cost_stored_in_the_hash() {
        let old = Hasher::new(32, 2, 2, None).unwrap();
        let phc = old.hash("upgraded later").unwrap();
        let current = cheap();
        assert!(current.verify("upgraded later", &phc).unwrap());
        assert!(!current.verify("upgraded sooner", &phc).unwrap());
        assert!(current.needs_rehash(&phc));
    }

    #[test]
    fn verify_accepts_other_argon2_variants_and_versions() {
        let hasher = cheap();
        for (algorithm, version) in [
            (Algorithm::Argon2i, Version::V0x13),
            (Algorithm::Argon2d, Version::V0x13),
            (Algorithm::Argon2id, Version::V0x10),
        ] {
            let phc = foreign_hash(algorithm, version, 16, 1, 1);
            assert!(hasher.verify("hunter2hunter2", &phc).unwrap(), "{phc}");
            assert!(!hasher.verify("hunter2hunter3", &phc).unwrap(), "{phc}");
        }
    }

    #[test]
    fn malformed_phc_strings_are_errors() {
        let hasher = cheap();
        let good = hasher.hash("malformed").unwrap();
        let (head, hash) = good.rsplit_once('$').unwrap();
        let cases = [
            String::new(),
            "not a hash".to_owned(),
            "$argon2id".to_owned(),
            head.to_owned(),
            format!("{head}$"),
            format!("{head}$!!!not-base64!!!"),
            good.replacen("argon2id", "scrypt", 1),
            good.replacen("argon2id", "argon2x", 1),
            good.replacen("v=19", "v=18", 1),
            good.replacen("m=8,", "m=0,", 1),
            good.replacen("t=1,", "t=0,", 1),
            good.replacen("p=1", "p=0", 1),
            good.replacen("m=8,", "m=eight,", 1),
            good.replacen("p=1", "p=1,x=3", 1),
            format!("$argon2id$v=19$m=8,t=1,p=1$YWJjZA${hash}"),
        ];
        for phc in &cases {
            let error = hasher
                .verify("malformed", phc)
                .expect_err(&format!("{phc:?} should be rejected"));
            let message = error.to_string();
            assert!(
                message.contains("not a valid Argon2 PHC string"),
                "{phc:?}: {message}"
            );
            assert!(!message.contains("malformed"), "password leaked: {message}");
        }
    }

    #[test]
    fn needs_rehash_false_only_for_the_configured_shape() {
        // Twice the minimum memory, so that the p=2 variant below is a valid hash.
        let m = 2 * Params::MIN_M_COST;
        let hasher = Hasher::new(m, 1, 1, None).unwrap();
        let current = hasher.hash("rehash").unwrap();
        assert!(!hasher.needs_rehash(&current));

        assert!(!hasher.needs_rehash(&foreign_hash(Algorithm::Argon2id, Version::V0x13, m, 1, 1)));
        let others = [
            foreign_hash(Algorithm::Argon2id, Version::V0x13, m * 2, 1, 1),
            foreign_hash(Algorithm::Argon2id, Version::V0x13, m, 2, 1),
            foreign_hash(Algorithm::Argon2id, Version::V0x13, m, 1, 2),
            foreign_hash(Algorithm::Argon2i, Version::V0x13, m, 1, 1),
            foreign_hash(Algorithm::Argon2d, Version::V0x13, m, 1, 1),
            foreign_hash(Algorithm::Argon2id, Version::V0x10, m, 1, 1),
            current.replacen("v=19$", "", 1),
            String::new(),
            "garbage".to_owned(),
        ];
        for phc in &others {
            assert!(hasher.needs_rehash(phc), "{phc:?}");
        }

        let stronger = Hasher::new(m * 2, 1, 1, None).unwrap();
        assert!(stronger.needs_rehash(&current));
        assert!(!stronger.needs_rehash(&stronger.hash("rehash").unwrap()));
    }

    #[test]
    fn new_rejects_invalid_params_naming_the_problem() {
        let cases = [
            (0, 1, 1, "memory_kib must be at least 8"),
            (15, 1, 2, "memory_kib must be at least 16"),
            (64, 0, 1, "iterations must be at least 1"),
            (64, 1, 0, "parallelism must be at least 1"),
            (
                u32::MAX,
                1,
                0x0100_0000,
                "parallelism must be at most 16777215",
            ),
        ];
        for (m, t, p, expected) in cases {
            let error = Hasher::new(m, t, p, Some(b"s3cret-pepper".to_vec()))
                .expect_err(&format!("m={m} t={t} p={p} should be rejected"));
            let message = error.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("s3cret-pepper"), "{message}");
        }
    }

    #[test]
    fn empty_pepper_is_rejected() {
        let error = Hasher::new(64, 1, 1, Some(Vec::new())).unwrap_err();
        assert!(error.to_string().contains("pepper is empty"), "{error}");
    }

    #[test]
    fn debug_redacts_the_pepper() {
        let peppered = cheap_with_pepper(b"very-secret-pepper");
        let shown = format!("{peppered:?}");
        assert!(!shown.contains("very-secret-pepper"), "{shown}");
        assert!(
            !shown.contains("118, 101, 114"),
            "pepper bytes leaked: {shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(format!("{:?}", cheap()).contains("<none>"));
    }

    #[test]
    fn length_is_counted_in_chars_not_bytes() {
        let email = "someone@example.com";
        assert_eq!(
            check_strength(&"é".repeat(7), email),
            Err(WeakPassword::TooShort)
        );
        assert_eq!(check_strength(&"é".repeat(8), email), Ok(()));
        assert_eq!(check_strength(&"🦀".repeat(8), email), Ok(()));
        assert_eq!(check_strength(&"é".repeat(256), email), Ok(()));
        assert_eq!(
            check_strength(&"é".repeat(257), email),
            Err(WeakPassword::TooLong)
        );
        assert_eq!(check_strength("", email), Err(WeakPassword::TooShort));
        assert_eq!(
            check_strength("seven7x", email),
            Err(WeakPassword::TooShort)
        );
        assert_eq!(check_strength("eight8xq", email), Ok(()));
        assert_eq!(check_strength(&"q".repeat(256), email), Ok(()));
        assert_eq!(
            check_strength(&"q".repeat(257), email),
            Err(WeakPassword::TooLong)
        );
    }

    #[test]
    fn combining_marks_count_as_separate_chars() {
        let four_graphemes_eight_chars = "e\u{301}".repeat(4);
        assert_eq!(four_graphemes_eight_chars.chars().count(), 8);
        assert_eq!(
            check_strength(&four_graphemes_eight_chars, "a@b.io"),
            Ok(())
        );
    }

    #[test]
    fn common_passwords_are_rejected_in_any_case() {
        for password in [
            "password", "PASSWORD", "PassWord", "iloveyou", "ILoveYou", "12345678",
        ] {
            assert_eq!(
                check_strength(password, "someone@example.com"),
                Err(WeakPassword::Common),
                "{password}"
            );
        }
        assert_eq!(
            check_strength("correct horse battery staple", "a@b.io"),
            Ok(())
        );
    }

    #[test]
    fn common_password_list_is_loaded_and_lowercase() {
        assert!(
            COMMON_PASSWORDS.len() > 10_000,
            "{}",
            COMMON_PASSWORDS.len()
        );
        for entry in COMMON_PASSWORDS.iter() {
            assert!(!entry.is_empty());
            assert_eq!(*entry, entry.to_lowercase(), "not lowercase: {entry:?}");
        }
    }

    #[test]
    fn password_equal_to_email_is_rejected_ignoring_case() {
        let email = "alice.liddell@example.com";
        assert_eq!(check_strength(email, email), Err(WeakPassword::EqualsEmail));
        assert_eq!(
            check_strength("Alice.Liddell@Example.COM", email),
            Err(WeakPassword::EqualsEmail)
        );
        assert_eq!(check_strength("alice.liddell@example.org", email), Ok(()));
    }

    #[test]
    fn weak_password_messages_are_sentences() {
        for weak in [
            WeakPassword::TooShort,
            WeakPassword::TooLong,
            WeakPassword::Common,
            WeakPassword::EqualsEmail,
        ] {
            let message = weak.to_string();
            assert!(message.ends_with('.'), "{message}");
            assert!(message.starts_with(char::is_uppercase), "{message}");
        }
        assert!(WeakPassword::TooShort.to_string().contains('8'));
        assert!(WeakPassword::TooLong.to_string().contains("256"));
    }

    #[test]
    fn the_hand_built_phc_string_is_what_the_argon2_crate_reads_and_writes() {
        for pepper in [None, Some(b"pepper-for-the-interop-test".to_vec())] {
            let hasher = Hasher::new(64, 1, 1, pepper.clone()).unwrap();
            let ours = hasher.hash("interop password").unwrap();
            // The crate's own verifier accepts our string...
            let context = match &pepper {
                Some(p) => Argon2::new_with_secret(
                    p,
                    Algorithm::Argon2id,
                    Version::V0x13,
                    hasher.params.clone(),
                )
                .unwrap(),
                None => Argon2::new(Algorithm::Argon2id, Version::V0x13, hasher.params.clone()),
            };
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(
                context
                    .verify_password(b"interop password", &parsed)
                    .is_ok()
            );
            assert!(
                context
                    .verify_password(b"another password", &parsed)
                    .is_err()
            );
            // ...and writes the very same string for the same salt.
            let salt = SaltString::encode_b64(&B64.decode(parsed.salt.unwrap().as_str()).unwrap())
                .unwrap();
            let theirs = context
                .hash_password(b"interop password", &salt)
                .unwrap()
                .to_string();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn working_memory_is_reused_and_trimmed_back_to_the_configured_cost() {
        let hasher = Hasher::new(64, 1, 1, None).unwrap();
        let costly = Hasher::new(256, 1, 1, None)
            .unwrap()
            .hash("a costlier stored hash")
            .unwrap();
        assert!(hasher.verify("a costlier stored hash", &costly).unwrap());
        // Grown to 256 blocks for that verification, then back to 64.
        assert_eq!(BLOCKS.with(|b| b.borrow().len()), 64);
        hasher.hash("another one").unwrap();
        assert_eq!(BLOCKS.with(|b| b.borrow().len()), 64);
    }
}
