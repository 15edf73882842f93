//! The settings that are keys, passwords or the files that hold them: the
//! token keyring, the Argon2 pepper, the database URL, the data key of the
//! second factor, the first admin, the TLS pair. Each reason for a refusal
//! names its variable and never repeats the secret.

use super::vars::Vars;
use super::{AdminBootstrap, ConfigError, MfaConfig, TlsFiles};
use crate::mfa::seal::DataKeys;
use crate::password::{DEFAULT_ITERATIONS, DEFAULT_MEMORY_KIB, DEFAULT_PARALLELISM, Hasher};
use crate::token::{Key, Keyring};

/// `TLS_CERT_FILE` and `TLS_KEY_FILE`: both or neither (the error names the
/// one missing). Whether they can be read is for start-up to say.
pub(super) fn tls_files(vars: &Vars<'_>) -> Result<Option<TlsFiles>, ConfigError> {
    match (vars.get("TLS_CERT_FILE"), vars.get("TLS_KEY_FILE")) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        })),
        (Some(_), None) => Err(ConfigError {
            variable: "TLS_KEY_FILE",
            reason: "required with TLS_CERT_FILE".into(),
        }),
        (None, Some(_)) => Err(ConfigError {
            variable: "TLS_CERT_FILE",
            reason: "required with TLS_KEY_FILE".into(),
        }),
    }
}

/// The second factor's settings. The keys are base64 of 32 random bytes;
/// the reason for a bad one never repeats it.
pub(super) fn mfa_config(vars: &Vars<'_>) -> Result<MfaConfig, ConfigError> {
    let current = vars
        .secret("DATA_ENCRYPTION_KEY", "DATA_ENCRYPTION_KEY_FILE")?
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|_| ConfigError {
                variable: "DATA_ENCRYPTION_KEY",
                reason: "must be base64 text".into(),
            })
        })
        .transpose()?;
    let previous = vars.get("DATA_ENCRYPTION_KEYS_PREVIOUS");
    let keys = DataKeys::parse(current.as_deref(), previous.as_deref())
        .map_err(|(variable, reason)| ConfigError { variable, reason })?;
    Ok(MfaConfig {
        keys,
        token_ttl: vars.number("MFA_TOKEN_TTL_SECONDS", 300, 1, 3_600)? as u64,
        admin_require: vars.flag("ADMIN_REQUIRE_MFA")?,
    })
}

/// `ADMIN_EMAIL` and its password: both or neither, a valid address, and a
/// password the registration rules accept (the reason names the rule, never
/// the password).
pub(super) fn admin_bootstrap(vars: &Vars<'_>) -> Result<Option<AdminBootstrap>, ConfigError> {
    let password = vars.secret("ADMIN_PASSWORD", "ADMIN_PASSWORD_FILE")?;
    let (email, password) = match (vars.get("ADMIN_EMAIL"), password) {
        (None, None) => return Ok(None),
        (Some(email), Some(password)) => (email, password),
        (None, Some(_)) => {
            return Err(ConfigError {
                variable: "ADMIN_EMAIL",
                reason: "required with ADMIN_PASSWORD or ADMIN_PASSWORD_FILE".into(),
            });
        }
        (Some(_), None) => {
            return Err(ConfigError {
                variable: "ADMIN_PASSWORD",
                reason: "required with ADMIN_EMAIL (or set ADMIN_PASSWORD_FILE)".into(),
            });
        }
    };
    let address = crate::email::normalize(&email).map_err(|e| ConfigError {
        variable: "ADMIN_EMAIL",
        reason: e.to_string(),
    })?;
    let password = String::from_utf8(password).map_err(|_| ConfigError {
        variable: "ADMIN_PASSWORD",
        reason: "must be UTF-8 text".into(),
    })?;
    crate::password::check_strength(&password, &address.email).map_err(|e| ConfigError {
        variable: "ADMIN_PASSWORD",
        reason: format!("breaks the password rules: {e}"),
    })?;
    Ok(Some(AdminBootstrap { address, password }))
}

/// The token keyring: `TOKEN_SECRET` (required) signs, and each of
/// `TOKEN_SECRETS_PREVIOUS` (comma- or newline-separated) still verifies.
pub(super) fn keyring(vars: &Vars) -> Result<Keyring, ConfigError> {
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
    // One rule for every key, so a key moved from TOKEN_SECRET into the
    // list of previous keys stays the same key: no whitespace, no commas.
    let key = |variable, secret: &[u8]| {
        if secret.iter().any(|b| b.is_ascii_whitespace() || *b == b',') {
            return Err(ConfigError {
                variable,
                reason: "a secret must not contain whitespace or commas".into(),
            });
        }
        Key::new(secret).map_err(|_| short(variable))
    };
    let current = key("TOKEN_SECRET", &current)?;
    let previous = vars
        .secret("TOKEN_SECRETS_PREVIOUS", "TOKEN_SECRETS_PREVIOUS_FILE")?
        .unwrap_or_default();
    let previous = previous
        .split(|b| *b == b',' || *b == b'\n')
        .map(|s| s.trim_ascii())
        .filter(|s| !s.is_empty())
        .map(|s| key("TOKEN_SECRETS_PREVIOUS", s))
        .collect::<Result<Vec<Key>, ConfigError>>()?;
    Keyring::new(current, previous).map_err(|_| ConfigError {
        variable: "TOKEN_SECRETS_PREVIOUS",
        reason: "lists a secret twice, or TOKEN_SECRET again".into(),
    })
}

/// The Argon2id hasher from `ARGON2_*` and the optional pepper.
pub(super) fn hasher(vars: &Vars) -> Result<Hasher, ConfigError> {
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
pub(super) fn database_url(vars: &Vars) -> Result<String, ConfigError> {
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

/// Validates the URL's shape (one host or several, comma-separated)
/// without echoing any of it.
fn check_database_url(url: &str, variable: &'static str) -> Result<(), ConfigError> {
    crate::db::parse_url(url)
        .map(drop)
        .map_err(|reason| ConfigError { variable, reason })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SECRET, URL, parse};

    #[test]
    fn one_rule_for_every_token_key() {
        let spaced = "0123456789abcdef 0123456789abcdef";
        let comma = "0123456789abcdef,0123456789abcdef";
        for bad in [spaced, comma, "0123456789abcdef0123456789abcdef\t"] {
            let e = parse(&[URL, ("TOKEN_SECRET", bad)]).unwrap_err();
            assert_eq!(e.variable, "TOKEN_SECRET", "{bad:?}");
            assert!(!e.to_string().contains("0123"));
            let e = parse(&[URL, SECRET, ("TOKEN_SECRETS_PREVIOUS", spaced)]).unwrap_err();
            assert_eq!(e.variable, "TOKEN_SECRETS_PREVIOUS");
        }
        // A key moved from TOKEN_SECRET into the previous list still
        // verifies what it signed; spaces around list items are not keys.
        let old = parse(&[URL, SECRET]).unwrap();
        let claims = crate::token::Claims {
            user_id: 7,
            session_id: [1; 16],
            issued_at: 100,
            expires_at: 200,
        };
        let token = old.keyring.sign(&claims);
        let moved = parse(&[
            URL,
            ("TOKEN_SECRET", "a-new-key-of-32-bytes-or-more-000"),
            (
                "TOKEN_SECRETS_PREVIOUS",
                " 0123456789abcdef0123456789abcdef , x-other-key-of-32-bytes-or-more-0",
            ),
        ])
        .unwrap();
        assert_eq!(moved.keyring.verify(&token, 150), Ok(claims));
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
