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

use crate::cors::Cors;
use crate::http::Limits;
use crate::limits::TrustedProxies;
use crate::log::Level;
use crate::password::{DEFAULT_ITERATIONS, DEFAULT_MEMORY_KIB, DEFAULT_PARALLELISM, Hasher};
use crate::token::{Key, Keyring};
use std::fmt;
use std::time::Duration;

/// Timeout of each response write; not a setting, since no honest client
/// needs longer to accept a few kilobytes.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's settings. `Debug` leaves the database URL out, since it
/// holds a password; the keyring and hasher redact their own secrets.
#[derive(Clone)]
pub struct Config {
    /// `TOKEN_SECRET` signs new tokens; `TOKEN_SECRETS_PREVIOUS` only verify.
    pub keyring: Keyring,
    /// `TOKEN_TTL_SECONDS`: how long a session token is valid.
    pub token_ttl: u64,
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
    /// `RESET_URL_BASE`: the page a reset email links to, `?token=` appended.
    pub reset_url_base: String,
    /// `RESET_TOKEN_TTL_SECONDS`: how long a reset token works.
    pub reset_token_ttl: u64,
    /// `CORS_ALLOWED_ORIGINS`: origins browser pages may call from.
    pub cors: Cors,
    /// `METRICS_BIND_ADDR`: serve `/metrics` there instead of on `BIND_ADDR`.
    pub metrics_bind_addr: Option<String>,
    /// `SHUTDOWN_GRACE_SECONDS`: how long requests in flight may take to
    /// finish after SIGTERM or SIGINT.
    pub shutdown_grace: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("keyring", &self.keyring)
            .field("token_ttl", &self.token_ttl)
            .field("hasher", &self.hasher)
            .field("database_url", &"<redacted>")
            .field("bind_addr", &self.bind_addr)
            .field("limits", &self.limits)
            .field("db_pool_max", &self.db_pool_max)
            .field("db_timeout", &self.db_timeout)
            .field("db_connect_retry", &self.db_connect_retry)
            .field("log_level", &self.log_level)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("hash_queue_timeout", &self.hash_queue_timeout)
            .field("lockout_threshold", &self.lockout_threshold)
            .field("lockout_window", &self.lockout_window)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("reset_url_base", &self.reset_url_base)
            .field("reset_token_ttl", &self.reset_token_ttl)
            .field("cors", &self.cors)
            .field("metrics_bind_addr", &self.metrics_bind_addr)
            .field("shutdown_grace", &self.shutdown_grace)
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
            reset_url_base: reset_url_base(&vars)?,
            reset_token_ttl: vars.number("RESET_TOKEN_TTL_SECONDS", 900, 1, 86_400)? as u64,
            cors: Cors::parse(&vars.get("CORS_ALLOWED_ORIGINS").unwrap_or_default()).ok_or(ConfigError {
                variable: "CORS_ALLOWED_ORIGINS",
                reason: "must be comma-separated origins such as https://app.example.com (no paths, no *)".into(),
            })?,
            metrics_bind_addr: vars.get("METRICS_BIND_ADDR"),
            shutdown_grace: Duration::from_secs(vars.number("SHUTDOWN_GRACE_SECONDS", 10, 0, 3_600)? as u64),
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
fn reset_url_base(vars: &Vars) -> Result<String, ConfigError> {
    let url = vars
        .get("RESET_URL_BASE")
        .unwrap_or_else(|| "http://localhost:8080/reset-password".into());
    let valid = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains(['?', '#'])
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(url)
    } else {
        Err(ConfigError {
            variable: "RESET_URL_BASE",
            reason: "must be an http:// or https:// URL without a query or fragment".into(),
        })
    }
}

/// The number of CPU cores, the default hashing concurrency.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Typed access to the variables, each failure naming its variable.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }

    fn number(
        &self,
        name: &'static str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        raw.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or(ConfigError {
                variable: name,
                reason: format!("must be a whole number from {min} to {max}"),
            })
    }

    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let ms = self.number(name, default as usize, 1, 3_600_000)?;
        Ok(Duration::from_millis(ms as u64))
    }

    /// A secret from `name`, or from the file named by `file_var` (the
    /// Docker secrets convention). Setting both is an error, since one would
    /// silently win. Trailing line breaks of the file are not part of it.
    fn secret(
        &self,
        name: &'static str,
        file_var: &'static str,
    ) -> Result<Option<Vec<u8>>, ConfigError> {
        match (self.get(name), self.get(file_var)) {
            (Some(_), Some(_)) => Err(ConfigError {
                variable: name,
                reason: format!("set either {name} or {file_var}, not both"),
            }),
            (Some(value), None) => Ok(Some(value.into_bytes())),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(&path).map_err(|e| ConfigError {
                    variable: file_var,
                    reason: format!("cannot read the file it names: {}", e.kind()),
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                Ok(Some(bytes))
            }
            (None, None) => Ok(None),
        }
    }
}

/// The token keyring: `TOKEN_SECRET` (required) signs, and each of
/// `TOKEN_SECRETS_PREVIOUS` (comma- or newline-separated) still verifies.
fn keyring(vars: &Vars) -> Result<Keyring, ConfigError> {
    let short = |variable| ConfigError {
        variable,
        reason: format!(
            "each secret must be at least {} bytes",
            crate::token::MIN_SECRET_LEN
        ),
    };
    let current = vars
        .secret("TOKEN_SECRET", "TOKEN_SECRET_FILE")?
        .ok_or(ConfigError {
            variable: "TOKEN_SECRET",
            reason: "required but not set (or set TOKEN_SECRET_FILE)".into(),
        })?;
    let current = Key::new(&current).map_err(|_| short("TOKEN_SECRET"))?;
    let previous = vars
        .secret("TOKEN_SECRETS_PREVIOUS", "TOKEN_SECRETS_PREVIOUS_FILE")?
        .unwrap_or_default();
    let previous = previous
        .split(|b| *b == b',' || *b == b'\n')
        .map(|s| s.trim_ascii())
        .filter(|s| !s.is_empty())
        .map(|s| Key::new(s).map_err(|_| short("TOKEN_SECRETS_PREVIOUS")))
        .collect::<Result<Vec<Key>, ConfigError>>()?;
    Keyring::new(current, previous).map_err(|_| ConfigError {
        variable: "TOKEN_SECRETS_PREVIOUS",
        reason: "lists a secret twice, or TOKEN_SECRET again".into(),
    })
}

/// The Argon2id hasher from `ARGON2_*` and the optional pepper.
fn hasher(vars: &Vars) -> Result<Hasher, ConfigError> {
    let memory = vars.number(
        "ARGON2_MEMORY_KIB",
        DEFAULT_MEMORY_KIB as usize,
        8,
        4 * 1024 * 1024,
    )?;
    let iterations = vars.number("ARGON2_ITERATIONS", DEFAULT_ITERATIONS as usize, 1, 100)?;
    let parallelism = vars.number("ARGON2_PARALLELISM", DEFAULT_PARALLELISM as usize, 1, 64)?;
    let pepper = vars.secret("PASSWORD_PEPPER", "PASSWORD_PEPPER_FILE")?;
    Hasher::new(memory as u32, iterations as u32, parallelism as u32, pepper).map_err(|e| {
        ConfigError {
            variable: "ARGON2_MEMORY_KIB",
            reason: format!("the Argon2 parameters are not valid together: {e}"),
        }
    })
}

/// `DATABASE_URL`, or the contents of the file `DATABASE_URL_FILE` names,
/// so that the password in it need not sit in the environment. Required;
/// an invalid URL is reported against the variable it came through.
fn database_url(vars: &Vars) -> Result<String, ConfigError> {
    let variable = if vars.get("DATABASE_URL_FILE").is_some() {
        "DATABASE_URL_FILE"
    } else {
        "DATABASE_URL"
    };
    let url = vars
        .secret("DATABASE_URL", "DATABASE_URL_FILE")?
        .ok_or(ConfigError {
            variable: "DATABASE_URL",
            reason: "required but not set (or set DATABASE_URL_FILE)".into(),
        })?;
    let url = String::from_utf8(url).map_err(|_| ConfigError {
        variable,
        reason: "must be a URL of the form mysql://user:password@host:port/database".into(),
    })?;
    check_database_url(&url, variable)?;
    Ok(url)
}

/// Validates the URL's shape without echoing any of it.
fn check_database_url(url: &str, variable: &'static str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError {
        variable,
        reason: reason.to_string(),
    };
    let opts = mysql::Opts::from_url(url).map_err(|_| {
        invalid("must be a URL of the form mysql://user:password@host:port/database")
    })?;
    match opts.get_db_name() {
        Some(name) if !name.is_empty() => Ok(()),
        _ => Err(invalid(
            "must name a database: mysql://user:password@host:port/database",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const URL: (&str, &str) = ("DATABASE_URL", "mysql://u:hunter2@127.0.0.1:3306/auth");
    const SECRET: (&str, &str) = ("TOKEN_SECRET", "0123456789abcdef0123456789abcdef");

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
        let e = parse(&[URL, SECRET, ("RESET_URL_BASE", "https://x.io/r?a=1")]).unwrap_err();
        assert_eq!(e.variable, "RESET_URL_BASE");
        let e = parse(&[URL, SECRET, ("TRUSTED_PROXIES", "10.0.0.0/99")]).unwrap_err();
        assert_eq!(e.variable, "TRUSTED_PROXIES");
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

    #[test]
    fn token_secrets() {
        let e = parse(&[URL]).unwrap_err();
        assert_eq!(e.variable, "TOKEN_SECRET");
        let e = parse(&[URL, ("TOKEN_SECRET", "too-short")]).unwrap_err();
        assert_eq!(e.variable, "TOKEN_SECRET");
        assert!(!e.to_string().contains("too-short"));
        let previous = (
            "TOKEN_SECRETS_PREVIOUS",
            "old-secret-old-secret-old-secret-1, old-secret-old-secret-old-secret-2",
        );
        assert!(parse(&[URL, SECRET, previous]).is_ok());
        let e = parse(&[URL, SECRET, ("TOKEN_SECRETS_PREVIOUS", SECRET.1)]).unwrap_err();
        assert_eq!(e.variable, "TOKEN_SECRETS_PREVIOUS");
        let e = parse(&[URL, SECRET, ("TOKEN_SECRET_FILE", "/nonexistent")]).unwrap_err();
        assert!(e.to_string().contains("not both"));
    }

    #[test]
    fn secret_files_drop_the_trailing_newline() {
        let path = std::env::temp_dir().join(format!("auth-server-secret-{}", std::process::id()));
        std::fs::write(&path, "file-secret-file-secret-file-secret\n").unwrap();
        let file = ("TOKEN_SECRET_FILE", path.to_str().unwrap());
        let from_file = parse(&[URL, file]).unwrap();
        let from_env =
            parse(&[URL, ("TOKEN_SECRET", "file-secret-file-secret-file-secret")]).unwrap();
        let claims = crate::token::Claims {
            user_id: 1,
            session_id: [0; 16],
            issued_at: 10,
            expires_at: 20,
        };
        assert_eq!(
            from_file.keyring.sign(&claims),
            from_env.keyring.sign(&claims)
        );
        std::fs::remove_file(&path).unwrap();
        let e = parse(&[URL, file]).unwrap_err();
        assert_eq!(e.variable, "TOKEN_SECRET_FILE");
    }

    #[test]
    fn database_url_from_a_file() {
        let path = std::env::temp_dir().join(format!("auth-server-db-url-{}", std::process::id()));
        let file = ("DATABASE_URL_FILE", path.to_str().unwrap());
        std::fs::write(&path, format!("{}\n", URL.1)).unwrap();
        assert_eq!(parse(&[file, SECRET]).unwrap().database_url, URL.1);

        let e = parse(&[file, URL, SECRET]).unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL");
        assert!(e.to_string().contains("not both"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");

        std::fs::write(&path, "postgres://u:hunter2@h/db\n").unwrap();
        let e = parse(&[file, SECRET]).unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL_FILE");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        std::fs::write(&path, b"mysql://u:\xffhunter2@h:3306/db").unwrap();
        let e = parse(&[file, SECRET]).unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL_FILE");
        assert!(!e.to_string().contains("hunter2"), "{e}");

        std::fs::remove_file(&path).unwrap();
        let e = parse(&[file, SECRET]).unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL_FILE");
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
