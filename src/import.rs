//! `auth-server import-users FILE`: bulk import of accounts from JSON Lines,
//! for operators moving users over from another system.
//!
//! Each line is `{"email": ..., "password": ...}` (a plaintext password,
//! hashed here under the same rules as registration) or
//! `{"email": ..., "password_hash": ...}` (an Argon2 PHC string, kept as it
//! is and upgraded to the configured parameters at the user's first login).
//! A hash made elsewhere was made without this server's `PASSWORD_PEPPER`:
//! with a pepper set, such rows are marked, verified without the pepper, and
//! rehashed with it at the first login, so imported users are not locked out.
//! `"email_verified": true` marks the address as proven (the default is
//! unverified, as for a new registration); `name`, `locale` and `metadata`
//! give the profile, under the rules of registration ([`crate::profile`]).
//! Blank lines are skipped.
//!
//! Every line is validated first and each bad one is reported with its line
//! number and reason; the good ones are inserted in batches, one transaction
//! per batch. An email that already exists (in the database or earlier in
//! the file) is skipped and counted, never overwritten, so re-running the
//! same file changes nothing. Plaintext passwords are hashed on all cores.
//! On a terminal the import shows its progress; a summary ends the run.
//!
//! Reported reasons never include the password or hash of a line.

use crate::config::Config;
use crate::db::{Db, Import};
use crate::email::Address;
use crate::profile::ProfileChange;
use crate::{email, password};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};

/// Accounts per insert transaction.
const BATCH: usize = 500;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Non-blank lines read.
    pub lines: usize,
    /// Accounts inserted.
    pub imported: u64,
    /// Valid lines whose email already existed.
    pub existing: u64,
    /// Lines rejected, with their line numbers and reasons.
    pub rejected: Vec<(usize, String)>,
}

/// One line as read, before hashing.
struct Entry {
    address: Address,
    secret: Secret,
    /// `"email_verified": true` on the line: the address counts as proven.
    verified: bool,
    /// `name`, `locale` and `metadata` on the line.
    profile: ProfileChange,
}

/// A line's password, as given.
enum Secret {
    Plain(String),
    Hashed(String),
}

/// Parses and validates one line; `Err` is the reason to report.
fn parse_line(line: &str, hasher: &password::Hasher) -> Result<Entry, String> {
    let value: Value = serde_json::from_str(line).map_err(|_| "not a JSON object".to_string())?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".into());
    };
    let raw_email = match obj.get("email") {
        Some(Value::String(s)) => s,
        Some(_) => return Err("\"email\" must be a string".into()),
        None => return Err("\"email\" is missing".into()),
    };
    let address = email::normalize(raw_email).map_err(|e| format!("invalid email: {e}"))?;
    let verified = match obj.get("email_verified") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("\"email_verified\" must be true or false".into()),
    };
    let profile = crate::profile::change_from(&obj).map_err(|e| format!("invalid profile: {e}"))?;
    let entry = |secret| Entry {
        address: address.clone(),
        secret,
        verified,
        profile: profile.clone(),
    };
    match (obj.get("password"), obj.get("password_hash")) {
        (Some(_), Some(_)) => Err("give \"password\" or \"password_hash\", not both".into()),
        (Some(Value::String(plain)), None) => {
            password::check_strength(plain, &address.email)
                .map_err(|e| format!("weak password: {e}"))?;
            Ok(entry(Secret::Plain(plain.clone())))
        }
        (None, Some(Value::String(hash))) => {
            // A hash is accepted only if it parses as Argon2 and verifies as
            // such; verifying a dummy password proves the string is usable.
            if !hash.starts_with("$argon2") || hasher.verify("\u{0}", hash).is_err() {
                return Err("\"password_hash\" is not an Argon2 PHC string".into());
            }
            Ok(entry(Secret::Hashed(hash.clone())))
        }
        (Some(_), None) => Err("\"password\" must be a string".into()),
        (None, Some(_)) => Err("\"password_hash\" must be a string".into()),
        (None, None) => Err("\"password\" or \"password_hash\" is missing".into()),
    }
}

/// Imports the JSON Lines from `input` into `db`, hashing with the
/// configured hasher on `workers` threads. Progress goes to `progress` when
/// it is a terminal.
pub fn run(
    config: &Config,
    db: &Db,
    input: impl BufRead,
    now: u64,
    workers: usize,
) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut seen = HashSet::new();
    let mut pending: Vec<(usize, Entry)> = Vec::new();
    let show_progress = std::io::stderr().is_terminal();
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read the input: {e}"))?;
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        summary.lines += 1;
        match parse_line(&line, &config.hasher) {
            Err(reason) => summary.rejected.push((number, reason)),
            Ok(entry) => {
                // A repeat within the file is a duplicate like an existing row.
                if seen.insert(entry.address.key) {
                    pending.push((number, entry));
                } else {
                    summary.existing += 1;
                }
            }
        }
        if pending.len() >= BATCH {
            flush(config, db, &mut pending, now, workers, &mut summary)?;
            if show_progress {
                eprint!(
                    "\r{} lines read, {} imported",
                    summary.lines, summary.imported
                );
            }
        }
    }
    flush(config, db, &mut pending, now, workers, &mut summary)?;
    if show_progress {
        eprintln!(
            "\r{} lines read, {} imported",
            summary.lines, summary.imported
        );
    }
    Ok(summary)
}

/// Hashes the pending plaintext passwords in parallel and inserts the batch.
fn flush(
    config: &Config,
    db: &Db,
    pending: &mut Vec<(usize, Entry)>,
    now: u64,
    workers: usize,
    summary: &mut Summary,
) -> Result<(), String> {
    if pending.is_empty() {
        return Ok(());
    }
    let entries = std::mem::take(pending);
    let chunk = entries.len().div_ceil(workers.max(1));
    let hashed: Vec<Result<Import, (usize, String)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(number, entry)| {
                            let (password_hash, unpeppered) = match &entry.secret {
                                Secret::Hashed(hash) => (hash.clone(), config.hasher.has_pepper()),
                                Secret::Plain(password) => {
                                    let hash = config
                                        .hasher
                                        .hash(password)
                                        .map_err(|e| (*number, format!("hashing failed: {e}")))?;
                                    (hash, false)
                                }
                            };
                            Ok(Import {
                                address: entry.address.clone(),
                                password_hash,
                                unpeppered,
                                email_verified: entry.verified,
                                profile: entry.profile.clone(),
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut batch = Vec::with_capacity(hashed.len());
    for result in hashed {
        match result {
            Ok(import) => batch.push(import),
            Err(rejected) => summary.rejected.push(rejected),
        }
    }
    let inserted = db
        .import_users(&batch, now)
        .map_err(|e| format!("inserting a batch failed: {e}"))?;
    summary.imported += inserted;
    summary.existing += batch.len() as u64 - inserted;
    Ok(())
}

/// Prints the report: each rejected line, then the summary line.
pub fn report(summary: &Summary, out: &mut impl Write) -> std::io::Result<()> {
    for (line, reason) in &summary.rejected {
        writeln!(out, "line {line}: {reason}")?;
    }
    writeln!(
        out,
        "{} lines: {} imported, {} already existed, {} rejected",
        summary.lines,
        summary.imported,
        summary.existing,
        summary.rejected.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> password::Hasher {
        password::Hasher::new(64, 1, 1, None).unwrap()
    }

    #[test]
    fn lines_are_validated_with_reasons() {
        let h = hasher();
        let reject = |line: &str| match parse_line(line, &h) {
            Err(reason) => reason,
            Ok(_) => panic!("accepted {line}"),
        };
        assert_eq!(reject("nope"), "not a JSON object");
        assert_eq!(reject("[1]"), "not a JSON object");
        assert_eq!(
            reject(r#"{"password": "long enough pw"}"#),
            "\"email\" is missing"
        );
        assert!(
            reject(r#"{"email": "bad", "password": "long enough pw"}"#)
                .starts_with("invalid email")
        );
        assert!(reject(r#"{"email": "a@b.io", "password": "short"}"#).starts_with("weak password"));
        assert_eq!(
            reject(r#"{"email": "a@b.io"}"#),
            "\"password\" or \"password_hash\" is missing"
        );
        assert!(
            reject(r#"{"email": "a@b.io", "password_hash": "$2b$10$abc"}"#)
                .contains("not an Argon2")
        );
        assert!(
            reject(r#"{"email": "a@b.io", "password_hash": "$argon2id$garbage"}"#)
                .contains("not an Argon2")
        );
        let both = format!(
            r#"{{"email": "a@b.io", "password": "long enough pw", "password_hash": "{}"}}"#,
            "x"
        );
        assert!(reject(&both).contains("not both"));
        // No reason ever repeats the secret.
        assert!(!reject(r#"{"email": "a@b.io", "password": "iloveyou"}"#).contains("iloveyou"));

        let hash = h.hash("long enough pw").unwrap();
        let line = format!(r#"{{"email": "A@B.io", "password_hash": "{hash}"}}"#);
        assert!(
            matches!(parse_line(&line, &h), Ok(Entry { address, secret: Secret::Hashed(_), .. }) if address.email == "a@b.io")
        );
    }
}
