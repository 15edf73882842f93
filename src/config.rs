//! Configuration from environment variables, read once at start-up.
//!
//! The variable names are the public interface (see the README's table). A
//! missing or invalid setting stops start-up with one line naming the
//! variable; the message never repeats a value, because some values are
//! secrets (the database password inside `DATABASE_URL`, keys, peppers).
//!
//! Parsing takes a lookup function instead of reading the environment
//! directly, so tests can feed any set of variables without touching the
//! process environment.
//!
//! This file holds the settings and the parsing of the plain ones;
//! `config/secrets.rs` parses those that are keys, passwords or files
//! holding them (and the TLS pair), and `config/vars.rs` the typed access
//! to a variable that every parser uses.

use crate::cors::Cors;
use crate::db::CausalReads;
use crate::http::Limits;
use crate::limits::TrustedProxies;
use crate::log::Level;
use crate::mail::MailConfig;
use crate::mail::smtp::{self, Relay};
use crate::mfa::seal::DataKeys;
use crate::password::Hasher;
use crate::token::Keyring;
use secrets::{admin_bootstrap, database_url, hasher, keyring, mfa_config, tls_files};
use std::fmt;
use std::time::Duration;
use vars::Vars;

mod secrets;
mod vars;

/// Timeout of each response write; not a setting, since no honest client
/// needs longer to accept a few kilobytes.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's settings. `Debug` leaves the database URL out, since it
/// holds a password; the keyring and hasher redact their own secrets.
#[derive(Clone)]
pub struct Config {
    /// `TOKEN_SECRET` signs new tokens; `TOKEN_SECRETS_PREVIOUS` only verify.
    pub keyring: Keyring,
    /// `TOKEN_TTL_SECONDS`: how long an access token is valid (never past
    /// its session's end).
    pub token_ttl: u64,
    /// `SESSION_IDLE_SECONDS`, `SESSION_MAX_SECONDS` and
    /// `REFRESH_REUSE_GRACE_SECONDS`: how long sessions live.
    pub sessions: SessionPolicy,
    /// Argon2id with `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`,
    /// `ARGON2_PARALLELISM` and the optional `PASSWORD_PEPPER`.
    pub hasher: Hasher,
    /// `DATABASE_URL` (or the file `DATABASE_URL_FILE` names):
    /// `mysql://user:pass@host:port/db`. Secret.
    pub database_url: String,
    /// `BIND_ADDR`: the listen address.
    pub bind_addr: String,
    /// Connection cap, deadlines and timeouts of the HTTP layer.
    pub limits: Limits,
    /// `DB_POOL_MAX`: most database connections open at once.
    pub db_pool_max: usize,
    /// `DB_TIMEOUT_MS`: bound on waiting for a pooled connection, on opening
    /// one, and on each read or write to the database.
    pub db_timeout: Duration,
    /// `DB_CONNECT_RETRY_SECONDS`: how long start-up retries an unreachable
    /// database before giving up.
    pub db_connect_retry: Duration,
    /// `DB_CAUSAL_READS`: `auto`, `on` or `off`; see `src/db/node.rs`.
    pub db_causal_reads: CausalReads,
    /// `LOG_LEVEL`.
    pub log_level: Level,
    /// `HASH_CONCURRENCY`: most Argon2 computations at once.
    pub hash_concurrency: usize,
    /// `HASH_QUEUE_TIMEOUT_MS`: longest wait for a hashing slot.
    pub hash_queue_timeout: Duration,
    /// `LOCKOUT_THRESHOLD`: wrong passwords that lock an account.
    pub lockout_threshold: u32,
    /// `LOCKOUT_WINDOW_SECONDS`: how long failures count, and the lock lasts.
    pub lockout_window: u64,
    /// `RATE_LIMIT_PER_MINUTE`: requests regained per minute per address.
    pub rate_limit_per_minute: u32,
    /// `RATE_LIMIT_BURST`: requests an address may make at once (0: off).
    pub rate_limit_burst: u32,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// `PUBLIC_URL`: the server's address as users reach it, without a
    /// trailing slash; the links in mails start with it.
    pub public_url: String,
    /// `APP_NAME`: the product's name in mail subjects, bodies and pages.
    pub app_name: String,
    /// `RESET_URL_BASE`: the page a reset email links to, `?token=` appended
    /// (default: `PUBLIC_URL/reset-password`, the server's own page).
    pub reset_url_base: String,
    /// `RESET_TOKEN_TTL_SECONDS`: how long a reset token works.
    pub reset_token_ttl: u64,
    /// `INVITE_TOKEN_TTL_SECONDS`: how long the set-password link of an
    /// invitation (an account an admin created without a password) works.
    pub invite_token_ttl: u64,
    /// `RESET_MAX_LIVE_TOKENS`: reset links live at once per account; a new
    /// one retires the oldest beyond this.
    pub reset_max_live_tokens: u32,
    /// The `MAIL_*` and `SMTP_*` settings: cooldown, polling, the relay.
    pub mail: MailConfig,
    /// `VERIFY_TOKEN_TTL_SECONDS`: how long a link that proves an address
    /// (verification, or confirming a move to a new one) works.
    pub verify_token_ttl: u64,
    /// `REQUIRE_VERIFIED_EMAIL`: a login with the right password for an
    /// unverified address answers 403 and creates no session.
    pub require_verified_email: bool,
    /// `HIDE_ACCOUNT_EXISTENCE`: login, registration and password change
    /// answer alike, in code and in time, whether an address has an account.
    pub hide_account_existence: bool,
    /// `CORS_ALLOWED_ORIGINS`: origins browser pages may call from.
    pub cors: Cors,
    /// `METRICS_BIND_ADDR`: serve `/metrics` there instead of on `BIND_ADDR`.
    pub metrics_bind_addr: Option<String>,
    /// `AUDIT_RETENTION_DAYS`: audit events older than this are purged.
    pub audit_retention_days: u64,
    /// `ADMIN_BIND_ADDR`: serve `/admin/*` there instead of on `BIND_ADDR`.
    pub admin_bind_addr: Option<String>,
    /// `ADMIN_EMAIL` with `ADMIN_PASSWORD` (or `ADMIN_PASSWORD_FILE`): the
    /// admin account created at start-up if there is no admin yet.
    pub admin_bootstrap: Option<AdminBootstrap>,
    /// `SHUTDOWN_GRACE_SECONDS`: how long requests in flight may take to
    /// finish after SIGTERM or SIGINT.
    pub shutdown_grace: Duration,
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE`: serve HTTPS on `BIND_ADDR` with
    /// this PEM certificate chain and key (read at start-up and on SIGHUP).
    pub tls: Option<TlsFiles>,
    /// `HSTS_MAX_AGE_SECONDS` (default one year; 0 sends none): with TLS
    /// on, answers carry `Strict-Transport-Security: max-age=` this.
    pub hsts_max_age: u64,
    /// The second factor's settings: `DATA_ENCRYPTION_KEY*`,
    /// `MFA_TOKEN_TTL_SECONDS`, `ADMIN_REQUIRE_MFA`.
    pub mfa: MfaConfig,
}

/// The files of native HTTPS (see `crate::http`'s `tls.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `TLS_CERT_FILE`: the PEM certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// `TLS_KEY_FILE`: its PEM private key.
    pub key: std::path::PathBuf,
}

/// The second factor's settings (see `crate::mfa`).
#[derive(Debug, Clone)]
pub struct MfaConfig {
    /// `DATA_ENCRYPTION_KEY` (or `DATA_ENCRYPTION_KEY_FILE`) seals TOTP
    /// secrets and keys recovery-code hashes; each of
    /// `DATA_ENCRYPTION_KEYS_PREVIOUS` still opens what it sealed. Without
    /// a key, enrolment answers 503 `mfa_unavailable`.
    pub keys: DataKeys,
    /// `MFA_TOKEN_TTL_SECONDS` (default 300): how long the `mfa_token` of a
    /// login's first step works.
    pub token_ttl: u64,
    /// `ADMIN_REQUIRE_MFA`: the admin API answers 403 `mfa_required` to an
    /// admin session whose login did not pass a second factor.
    pub admin_require: bool,
}

/// How long a session lives: until it has not been refreshed for `idle`
/// seconds, or `max` seconds after its login, whichever comes first (see
/// `db::sessions`). All in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// `SESSION_IDLE_SECONDS` (default 7 days): the longest time between a
    /// login or refresh and the next refresh.
    pub idle: u64,
    /// `SESSION_MAX_SECONDS` (default 30 days): the longest a session lives
    /// from its login, however often it is refreshed.
    pub max: u64,
    /// `REFRESH_REUSE_GRACE_SECONDS` (default 10): how long after a refresh
    /// the refresh token it replaced is still answered (with the current
    /// tokens) instead of ending the session as reused.
    pub reuse_grace: u64,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("keyring", &self.keyring)
            .field("token_ttl", &self.token_ttl)
            .field("sessions", &self.sessions)
            .field("hasher", &self.hasher)
            .field("database_url", &"<redacted>")
            .field("bind_addr", &self.bind_addr)
            .field("limits", &self.limits)
            .field("db_pool_max", &self.db_pool_max)
            .field("db_timeout", &self.db_timeout)
            .field("db_connect_retry", &self.db_connect_retry)
            .field("db_causal_reads", &self.db_causal_reads)
            .field("log_level", &self.log_level)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("hash_queue_timeout", &self.hash_queue_timeout)
            .field("lockout_threshold", &self.lockout_threshold)
            .field("lockout_window", &self.lockout_window)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("public_url", &self.public_url)
            .field("app_name", &self.app_name)
            .field("reset_url_base", &self.reset_url_base)
            .field("reset_token_ttl", &self.reset_token_ttl)
            .field("invite_token_ttl", &self.invite_token_ttl)
            .field("reset_max_live_tokens", &self.reset_max_live_tokens)
            .field("mail", &self.mail)
            .field("verify_token_ttl", &self.verify_token_ttl)
            .field("require_verified_email", &self.require_verified_email)
            .field("hide_account_existence", &self.hide_account_existence)
            .field("cors", &self.cors)
            .field("metrics_bind_addr", &self.metrics_bind_addr)
            .field("audit_retention_days", &self.audit_retention_days)
            .field("admin_bind_addr", &self.admin_bind_addr)
            .field("admin_bootstrap", &self.admin_bootstrap)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("tls", &self.tls)
            .field("hsts_max_age", &self.hsts_max_age)
            .field("mfa", &self.mfa)
            .finish()
    }
}

/// The first admin, from `ADMIN_EMAIL` and `ADMIN_PASSWORD` (or the file
/// `ADMIN_PASSWORD_FILE` names). The password passed the registration rules
/// when the configuration was read.
#[derive(Clone)]
pub struct AdminBootstrap {
    /// The admin's address, normalised.
    pub address: crate::email::Address,
    /// The admin's password; never printed.
    pub password: String,
}

impl fmt::Debug for AdminBootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminBootstrap")
            .field("email", &self.address.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A setting that is missing or invalid. Displays as
/// `invalid configuration: VARIABLE: what is expected`, never with the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong, without the value itself.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: {}: {}",
            self.variable, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, which returns a variable's
    /// value or `None` when it is unset. Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let vars = Vars(&lookup);
        let database_url = database_url(&vars)?;
        Ok(Config {
            keyring: keyring(&vars)?,
            token_ttl: vars.number("TOKEN_TTL_SECONDS", 3600, 1, 31_536_000)? as u64,
            sessions: SessionPolicy {
                idle: vars.number("SESSION_IDLE_SECONDS", 604_800, 1, 31_536_000)? as u64,
                max: vars.number("SESSION_MAX_SECONDS", 2_592_000, 1, 31_536_000)? as u64,
                reuse_grace: vars.number("REFRESH_REUSE_GRACE_SECONDS", 10, 0, 300)? as u64,
            },
            hasher: hasher(&vars)?,
            database_url,
            bind_addr: vars
                .get("BIND_ADDR")
                .unwrap_or_else(|| "0.0.0.0:8080".into()),
            limits: Limits {
                max_connections: vars.number("MAX_CONNECTIONS", 1024, 1, 1_000_000)?,
                header_timeout: vars.millis("HEADER_TIMEOUT_MS", 10_000)?,
                body_timeout: vars.millis("BODY_TIMEOUT_MS", 10_000)?,
                keepalive_timeout: vars.millis("KEEPALIVE_TIMEOUT_MS", 5_000)?,
                write_timeout: WRITE_TIMEOUT,
            },
            db_pool_max: vars.number("DB_POOL_MAX", 16, 1, 10_000)?,
            db_timeout: vars.millis("DB_TIMEOUT_MS", 3_000)?,
            db_causal_reads: match vars.get("DB_CAUSAL_READS") {
                None => CausalReads::Auto,
                Some(s) => CausalReads::parse(&s).ok_or(ConfigError {
                    variable: "DB_CAUSAL_READS",
                    reason: "must be one of auto, on, off".into(),
                })?,
            },
            db_connect_retry: Duration::from_secs(vars.number(
                "DB_CONNECT_RETRY_SECONDS",
                60,
                0,
                86_400,
            )? as u64),
            hash_concurrency: vars.number("HASH_CONCURRENCY", cores(), 1, 1024)?,
            hash_queue_timeout: vars.millis("HASH_QUEUE_TIMEOUT_MS", 2_000)?,
            lockout_threshold: vars.number("LOCKOUT_THRESHOLD", 5, 1, 1_000)? as u32,
            lockout_window: vars.number("LOCKOUT_WINDOW_SECONDS", 900, 1, 86_400)? as u64,
            rate_limit_per_minute: vars.number("RATE_LIMIT_PER_MINUTE", 600, 0, 1_000_000)? as u32,
            rate_limit_burst: vars.number("RATE_LIMIT_BURST", 100, 0, 1_000_000)? as u32,
            trusted_proxies: TrustedProxies::parse(
                &vars.get("TRUSTED_PROXIES").unwrap_or_default(),
            )
            .ok_or(ConfigError {
                variable: "TRUSTED_PROXIES",
                reason: "must be comma-separated IP addresses or CIDR ranges".into(),
            })?,
            public_url: public_url(&vars)?,
            app_name: app_name(&vars)?,
            reset_url_base: match vars.get("RESET_URL_BASE") {
                Some(url) => page_url("RESET_URL_BASE", url)?,
                None => format!("{}/reset-password", public_url(&vars)?),
            },
            reset_token_ttl: vars.number("RESET_TOKEN_TTL_SECONDS", 900, 1, 86_400)? as u64,
            invite_token_ttl: vars.number("INVITE_TOKEN_TTL_SECONDS", 604_800, 1, 30 * 86_400)?
                as u64,
            reset_max_live_tokens: vars.number("RESET_MAX_LIVE_TOKENS", 3, 1, 100)? as u32,
            mail: mail_config(&vars)?,
            verify_token_ttl: vars.number("VERIFY_TOKEN_TTL_SECONDS", 86_400, 1, 30 * 86_400)?
                as u64,
            require_verified_email: vars.flag("REQUIRE_VERIFIED_EMAIL")?,
            hide_account_existence: vars.flag("HIDE_ACCOUNT_EXISTENCE")?,
            cors: Cors::parse(&vars.get("CORS_ALLOWED_ORIGINS").unwrap_or_default()).ok_or(ConfigError {
                variable: "CORS_ALLOWED_ORIGINS",
                reason: "must be comma-separated origins such as https://app.example.com (no paths, no *)".into(),
            })?,
            metrics_bind_addr: vars.get("METRICS_BIND_ADDR"),
            audit_retention_days: vars.number("AUDIT_RETENTION_DAYS", 90, 1, 36_500)? as u64,
            admin_bind_addr: vars.get("ADMIN_BIND_ADDR"),
            admin_bootstrap: admin_bootstrap(&vars)?,
            shutdown_grace: Duration::from_secs(vars.number("SHUTDOWN_GRACE_SECONDS", 10, 0, 3_600)? as u64),
            tls: tls_files(&vars)?,
            hsts_max_age: vars.number("HSTS_MAX_AGE_SECONDS", 31_536_000, 0, 2 * 31_536_000)? as u64,
            mfa: mfa_config(&vars)?,
            log_level: match vars.get("LOG_LEVEL") {
                None => Level::Info,
                Some(s) => Level::parse(&s).ok_or(ConfigError {
                    variable: "LOG_LEVEL",
                    reason: "must be one of error, warn, info, debug".into(),
                })?,
            },
        })
    }
}

/// `RESET_URL_BASE`: an http(s) URL without a query, since `?token=` is
/// appended to it.
fn page_url(variable: &'static str, url: String) -> Result<String, ConfigError> {
    let valid = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains(['?', '#'])
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(url)
    } else {
        Err(ConfigError {
            variable,
            reason: "must be an http:// or https:// URL without a query or fragment".into(),
        })
    }
}

/// The mail settings. `SMTP_URL` (or `SMTP_URL_FILE`, since it may hold a
/// password) turns the courier on, and then `MAIL_FROM` is required.
fn mail_config(vars: &Vars) -> Result<MailConfig, ConfigError> {
    let invalid = |variable, reason: String| ConfigError { variable, reason };
    let relay = match vars.secret("SMTP_URL", "SMTP_URL_FILE")? {
        None => None,
        Some(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| invalid("SMTP_URL", "must be UTF-8".into()))?;
            Some(Relay::parse(&text).map_err(|e| invalid("SMTP_URL", e))?)
        }
    };
    let ca = match vars.get("SMTP_CA_FILE") {
        None => None,
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|e| {
                invalid(
                    "SMTP_CA_FILE",
                    format!("cannot read the file it names: {}", e.kind()),
                )
            })?;
            smtp::check_ca(&pem).map_err(|e| invalid("SMTP_CA_FILE", e))?;
            Some(pem)
        }
    };
    let from = match (vars.get("MAIL_FROM"), &relay) {
        (Some(text), _) => Some(smtp::parse_from(&text).map_err(|e| invalid("MAIL_FROM", e))?),
        (None, Some(_)) => {
            return Err(invalid(
                "MAIL_FROM",
                "required when SMTP_URL is set, e.g. Example <no-reply@example.com>".into(),
            ));
        }
        (None, None) => None,
    };
    Ok(MailConfig {
        relay,
        ca,
        from,
        timeout: vars.millis("MAIL_TIMEOUT_MS", 10_000)?,
        poll: vars.millis("MAIL_POLL_MS", 2_000)?,
        lease: vars.number("MAIL_LEASE_SECONDS", 60, 5, 3_600)? as u64,
        retry_base: vars.number("MAIL_RETRY_BASE_SECONDS", 30, 1, 3_600)? as u64,
        max_attempts: vars.number("MAIL_MAX_ATTEMPTS", 10, 1, 100)? as u32,
        max_per_recipient_per_hour: vars.number("MAIL_MAX_PER_RECIPIENT_PER_HOUR", 10, 1, 10_000)?
            as u64,
        recipient_cooldown: vars.number("MAIL_RECIPIENT_COOLDOWN_SECONDS", 60, 0, 86_400)? as u64,
        retention_days: vars.number("MAIL_RETENTION_DAYS", 30, 1, 3_650)? as u64,
    })
}

/// `PUBLIC_URL`: like `RESET_URL_BASE`, without a trailing slash (a path
/// prefix is allowed, for a server behind a proxy under `/auth`).
fn public_url(vars: &Vars) -> Result<String, ConfigError> {
    let url = vars
        .get("PUBLIC_URL")
        .unwrap_or_else(|| "http://localhost:8080".into());
    let url = page_url("PUBLIC_URL", url)?;
    Ok(url.trim_end_matches('/').to_string())
}

/// `APP_NAME`: 1 to 64 characters, no control characters (it goes into
/// mail headers).
fn app_name(vars: &Vars) -> Result<String, ConfigError> {
    let name = vars.get("APP_NAME").unwrap_or_else(|| "auth-server".into());
    if name.chars().count() > 64 || name.chars().any(char::is_control) || name.trim().is_empty() {
        return Err(ConfigError {
            variable: "APP_NAME",
            reason: "must be 1 to 64 characters without control characters".into(),
        });
    }
    Ok(name)
}

/// The number of CPU cores, the default hashing concurrency.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(super) fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    pub(super) const URL: (&str, &str) = ("DATABASE_URL", "mysql://u:hunter2@127.0.0.1:3306/auth");
    pub(super) const SECRET: (&str, &str) = ("TOKEN_SECRET", "0123456789abcdef0123456789abcdef");

    #[test]
    fn defaults() {
        let c = parse(&[URL, SECRET]).unwrap();
        assert_eq!(c.bind_addr, "0.0.0.0:8080");
        assert_eq!(c.limits.max_connections, 1024);
        assert_eq!(c.limits.header_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.body_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.keepalive_timeout, Duration::from_secs(5));
        assert_eq!(c.db_pool_max, 16);
        assert_eq!(c.log_level, Level::Info);
        assert_eq!(c.hash_concurrency, cores());
        assert_eq!(c.hash_queue_timeout, Duration::from_secs(2));
        assert_eq!((c.lockout_threshold, c.lockout_window), (5, 900));
        assert_eq!((c.rate_limit_per_minute, c.rate_limit_burst), (600, 100));
        assert_eq!(c.trusted_proxies, TrustedProxies::default());
        assert_eq!(c.reset_url_base, "http://localhost:8080/reset-password");
        assert_eq!(c.reset_token_ttl, 900);
        assert_eq!(c.invite_token_ttl, 604_800);
        assert_eq!(
            c.sessions,
            SessionPolicy {
                idle: 604_800,
                max: 2_592_000,
                reuse_grace: 10
            }
        );
        let e = parse(&[URL, SECRET, ("RESET_URL_BASE", "https://x.io/r?a=1")]).unwrap_err();
        assert_eq!(e.variable, "RESET_URL_BASE");
        let e = parse(&[URL, SECRET, ("TRUSTED_PROXIES", "10.0.0.0/99")]).unwrap_err();
        assert_eq!(e.variable, "TRUSTED_PROXIES");
    }

    #[test]
    fn mail_settings_have_defaults_and_bounds() {
        let c = parse(&[URL, SECRET]).unwrap();
        assert_eq!(c.mail.recipient_cooldown, 60);
        assert_eq!(c.reset_max_live_tokens, 3);
        assert_eq!(c.mail.poll, Duration::from_millis(2000));
        assert!(c.mail.relay.is_none() && c.mail.from.is_none());
        let c = parse(&[URL, SECRET, ("MAIL_RECIPIENT_COOLDOWN_SECONDS", "0")]).unwrap();
        assert_eq!(c.mail.recipient_cooldown, 0);
        // SMTP_URL needs MAIL_FROM; errors never repeat the URL.
        let smtp = ("SMTP_URL", "smtp://u:hunter2@mail.example.com:587");
        let e = parse(&[URL, SECRET, smtp]).unwrap_err();
        assert_eq!(e.variable, "MAIL_FROM");
        let from = ("MAIL_FROM", "Example <no-reply@example.com>");
        let c = parse(&[URL, SECRET, smtp, from]).unwrap();
        assert_eq!(c.mail.relay.as_ref().unwrap().port, 587);
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = parse(&[URL, SECRET, ("SMTP_URL", "http://u:hunter2@x"), from]).unwrap_err();
        assert_eq!(e.variable, "SMTP_URL");
        assert!(!e.to_string().contains("hunter2"));
        let e = parse(&[URL, SECRET, smtp, ("MAIL_FROM", "nobody")]).unwrap_err();
        assert_eq!(e.variable, "MAIL_FROM");
        let e = parse(&[
            URL,
            SECRET,
            smtp,
            from,
            ("SMTP_CA_FILE", "/nonexistent/ca.pem"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "SMTP_CA_FILE");
        let e = parse(&[URL, SECRET, ("RESET_MAX_LIVE_TOKENS", "0")]).unwrap_err();
        assert_eq!(e.variable, "RESET_MAX_LIVE_TOKENS");
    }

    #[test]
    fn errors_name_the_variable_and_never_the_value() {
        let e = parse(&[SECRET]).unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL");
        let e = parse(&[SECRET, ("DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL");
        assert!(!e.to_string().contains("hunter2"));
        let e = parse(&[SECRET, ("DATABASE_URL", "mysql://u:hunter2@h:3306")]).unwrap_err();
        assert!(e.to_string().contains("must name a database"));
        let e = parse(&[URL, SECRET, ("MAX_CONNECTIONS", "0")]).unwrap_err();
        assert_eq!(e.variable, "MAX_CONNECTIONS");
        let e = parse(&[URL, SECRET, ("HEADER_TIMEOUT_MS", "soon")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: HEADER_TIMEOUT_MS: must be a whole number from 1 to 3600000"
        );
        let e = parse(&[URL, SECRET, ("LOG_LEVEL", "loud")]).unwrap_err();
        assert_eq!(e.variable, "LOG_LEVEL");
    }

    #[test]
    fn debug_redacts_every_secret() {
        let c = parse(&[URL, SECRET, ("PASSWORD_PEPPER", "pepper-pepper-pepper")]).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        assert!(!debug.contains("pepper-pepper"), "{debug}");
    }
}
