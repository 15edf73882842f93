//! Admins outside HTTP: the first admin, created at start-up from
//! `ADMIN_EMAIL`, and the `create-admin` and `set-role` commands for
//! operators with a shell.
//!
//! The bootstrap never promotes an account that exists: whoever registered
//! the address first may not be the operator (someone who guessed the
//! admin's address and registered it before the first start would become
//! an admin). It logs an error naming the setting and the server goes on;
//! `create-admin` promotes on purpose. Passwords are read, checked against
//! the registration rules and hashed, never logged or printed.

use crate::config::Config;
use crate::db::{AdminChange, AdminPatch, Bootstrap, Db, Role};
use crate::{email, log, password, time};
use std::io::BufRead;

/// Creates the admin of `ADMIN_EMAIL` unless an admin exists (see the
/// module docs). `Err` (which stops start-up) only if hashing or the
/// database fails.
pub fn bootstrap(config: &Config, db: &Db) -> Result<(), String> {
    let Some(admin) = &config.admin_bootstrap else {
        return Ok(());
    };
    let hash = config
        .hasher
        .hash(&admin.password)
        .map_err(|e| format!("ADMIN_PASSWORD: cannot hash it: {e}"))?;
    let outcome = db
        .bootstrap_admin(&admin.address, &hash, time::unix_now())
        .map_err(|e| format!("cannot create the ADMIN_EMAIL admin: {e}"))?;
    match outcome {
        Bootstrap::Created(user) => log::info(
            "admin account created from ADMIN_EMAIL",
            &[("user_id", user.id.into())],
        ),
        Bootstrap::AdminExists => log::debug("an admin exists; ADMIN_EMAIL left alone", &[]),
        Bootstrap::AddressTaken => log::error(
            "ADMIN_EMAIL names an account that is not an admin: not promoting it, since \
             whoever registered it may not be the operator; promote it with \
             `auth-server create-admin` if it is yours",
            &[],
        ),
    }
    Ok(())
}

/// `create-admin EMAIL`: promotes the account with this address, or, if
/// there is none, creates it as a verified admin with the password read as
/// one line from `input`. Returns what was done, for the operator.
pub fn create_admin(
    config: &Config,
    db: &Db,
    raw_email: &str,
    input: &mut dyn BufRead,
) -> Result<String, String> {
    let address = email::normalize(raw_email).map_err(|e| format!("{raw_email}: {e}"))?;
    if let Some(id) = user_id(db, &address.key)? {
        return change_role(db, id, Role::Admin)
            .map(|()| format!("promoted {} (id {id}) to admin", address.email));
    }
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(
            "no account has this address: give the new admin's password on \
                    standard input"
                .into(),
        );
    }
    password::check_strength(password, &address.email)
        .map_err(|e| format!("the password breaks the rules: {e}"))?;
    let hash = config
        .hasher
        .hash(password)
        .map_err(|e| format!("cannot hash the password: {e}"))?;
    match db
        .create_admin(&address, &hash, time::unix_now())
        .map_err(|e| e.to_string())?
    {
        Some(user) => Ok(format!("created admin {} (id {})", user.email, user.id)),
        None => Err(format!(
            "{} was registered meanwhile; run the command again to promote it",
            address.email
        )),
    }
}

/// `set-role EMAIL user|admin`: changes the account's role; refuses to
/// demote the last enabled admin.
pub fn set_role(db: &Db, raw_email: &str, role_name: &str) -> Result<String, String> {
    let role = Role::parse(role_name).ok_or_else(|| format!("{role_name}: not user or admin"))?;
    let address = email::normalize(raw_email).map_err(|e| format!("{raw_email}: {e}"))?;
    let id = user_id(db, &address.key)?
        .ok_or_else(|| format!("no account has the address {}", address.email))?;
    change_role(db, id, role)?;
    Ok(format!(
        "{} (id {id}) is now {}",
        address.email,
        role.as_str()
    ))
}

fn user_id(db: &Db, key: &[u8; 32]) -> Result<Option<u64>, String> {
    db.user_id_by_key(key).map_err(|e| e.to_string())
}

fn change_role(db: &Db, id: u64, role: Role) -> Result<(), String> {
    let patch = AdminPatch {
        role: Some(role),
        ..AdminPatch::default()
    };
    match db
        .patch_user(id, &patch, time::unix_now(), None, None)
        .map_err(|e| e.to_string())?
    {
        AdminChange::Done(_) => Ok(()),
        // A role change neither acts for an admin nor moves an address.
        AdminChange::NotFound | AdminChange::NotAnAdmin | AdminChange::EmailTaken => {
            Err("the account was deleted meanwhile".into())
        }
        AdminChange::LastAdmin => {
            Err("this is the last enabled admin; make another admin first".into())
        }
    }
}
