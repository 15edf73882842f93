//! The admin API (`/admin/*`): what operators do to accounts, for the
//! Bearer token of an admin's session (`authenticate_admin`: 401 as
//! anywhere without a valid token, 403 `forbidden` for anyone else).
//!
//! Accounts are addressed by id, `/admin/users/{id}`; an id that is not a
//! number, or that no account has, answers 404 `user_not_found`. The rules
//! (the last admin, what disabling ends) are the database layer's, in one
//! transaction each (`db::admin`); this file reads requests and shapes
//! answers. With `ADMIN_BIND_ADDR` these routes are served only there
//! (`crate::router`).

use super::auth::{Authenticated, authenticate_admin};
use super::credentials::hash_password;
use super::json::{
    json_object, nullable_string_member, optional_bool_member, optional_string_member,
    string_member,
};
use super::{Context, account::user_json, query};
use crate::db::{
    Actor, AdminChange, AdminPatch, AdminUser, Invitation, NewAccount, PASSWORD_RESET, Role,
    UserFilter,
};
use crate::email::{self, Address};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::mail::{mail_queued, texts};
use crate::{log, password, profile, secret, time};
use serde_json::{Map, Value, json};

/// Accounts are addressed under this prefix.
pub const USERS_PREFIX: &str = "/admin/users/";

/// A page of accounts unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 50;
/// The largest page.
const MAX_LIMIT: u32 = 500;
/// Longest `disabled_reason`, in characters (the column's size).
const MAX_REASON_CHARS: usize = 500;
/// Longest `query`: an email is at most 254 characters.
const MAX_QUERY_CHARS: usize = 254;

/// `GET /admin/users?query=&role=&disabled=&verified=&limit=&after=`:
/// 200 `{"users": [...], "next"}`, newest first. `next` is the cursor of
/// the following page (pass it as `after`), `null` on the last page.
/// Keyset pagination on the id: accounts created while paging appear on no
/// page they would shift, and none is repeated or skipped. With `query`,
/// `disabled` or `verified`, a page looks at most
/// [`SCAN_WINDOW`](crate::db::SCAN_WINDOW) accounts, so it may hold fewer
/// than `limit` (even none) while `next` is not `null`. 400
/// `invalid_query` for an unknown parameter or a value not of its form.
pub fn list_users(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    authenticate_admin(ctx, request)?;
    let known = ["query", "role", "disabled", "verified", "limit", "after"];
    let query = query::parse(request, &known)?;
    let text = query.get("query").filter(|q| !q.is_empty());
    if text.is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
        return Err(ApiError::InvalidQuery(format!(
            "\"query\" is at most {MAX_QUERY_CHARS} characters."
        )));
    }
    let filter = UserFilter {
        // Addresses are stored lowercased (see `crate::email`).
        query: text.map(str::to_lowercase),
        role: match query.get("role") {
            None => None,
            Some(name) => Some(
                Role::parse(name)
                    .ok_or_else(|| ApiError::InvalidQuery("\"role\" is user or admin.".into()))?,
            ),
        },
        disabled: query::boolean(&query, "disabled")?,
        verified: query::boolean(&query, "verified")?,
        before_id: query::number(&query, "after")?,
    };
    let limit = query::limit(&query, DEFAULT_LIMIT, MAX_LIMIT)?;
    // One more than the page tells whether another page follows; so does a
    // filter's window that stopped above the oldest account.
    let listing = ctx.db.list_users(&filter, limit + 1, ctx.now())?;
    let mut users = listing.users;
    let next = if users.len() > limit as usize {
        users.truncate(limit as usize);
        users.last().map(|u| u.user.id.to_string())
    } else {
        listing.scanned_to.map(|floor| floor.to_string())
    };
    let users: Vec<Value> = users.iter().map(|u| admin_json(ctx, u)).collect();
    Ok(Response::json(
        200,
        &json!({ "users": users, "next": next }),
    ))
}

/// `GET /admin/users/{id}`: 200 `{"user"}`, the account with its state
/// (role, verified, disabled and why, lockout, live sessions, last login).
pub fn get_user(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    authenticate_admin(ctx, request)?;
    let id = user_id(request, "")?;
    let user = ctx
        .db
        .admin_user(id, ctx.now())?
        .ok_or(ApiError::UserNotFound)?;
    Ok(Response::json(
        200,
        &json!({ "user": admin_json(ctx, &user) }),
    ))
}

/// `POST /admin/users {email, password?, role?, email_verified?, name?,
/// locale?, metadata?}`: 201 `{"user"}`, the new account in the form of
/// [`get_user`]. With `password` (under the usual rules: 422
/// `weak_password`) nothing is mailed; without it the address gets an
/// invitation, a set-password link working for `INVITE_TOKEN_TTL_SECONDS`
/// through the reset page, and nobody can log in until it is used. The
/// address is unverified unless `email_verified` is true (using the
/// invitation proves it). 422 `invalid_email`, `invalid_profile`; 409
/// `email_taken` (whatever `HIDE_ACCOUNT_EXISTENCE` says: admins may know).
pub fn create_user(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate_admin(ctx, request)?;
    let body = json_object(request)?;
    let address = address_member(string_member(&body, "email")?)?;
    let chosen = optional_string_member(&body, "password")?;
    let role = role_member(&body)?.unwrap_or(Role::User);
    let email_verified = optional_bool_member(&body, "email_verified")?.unwrap_or(false);
    let profile = profile::change_from(&body)?;
    if let Some(plain) = chosen {
        password::check_strength(plain, &address.email)
            .map_err(|e| ApiError::WeakPassword(e.to_string()))?;
    }
    // Without a password: the hash of a secret nobody is told (see
    // `db::invitations`), and the token of the invitation's link.
    let (hash, token) = match chosen {
        Some(plain) => (hash_password(ctx, plain)?, None),
        None => (
            hash_password(ctx, &secret::token()?)?,
            Some(secret::token()?),
        ),
    };
    let config = &ctx.config;
    let now = ctx.now();
    let mail = token.as_ref().map(|token| {
        let link = format!("{}?token={token}", config.reset_url_base);
        texts::invitation(
            &config.app_name,
            &address.email,
            &link,
            config.invite_token_ttl,
        )
    });
    let token_hash = token.as_deref().map(secret::sha256);
    let invitation = match (&token_hash, &mail) {
        (Some(token_hash), Some(mail)) => Some(Invitation {
            token_hash,
            expires_at: now + config.invite_token_ttl,
            mail,
        }),
        _ => None,
    };
    let account = NewAccount {
        address: &address,
        password_hash: &hash,
        role,
        email_verified,
        profile: &profile,
        invitation,
    };
    let id = match ctx.db.admin_create_user(&account, now, actor(&auth))? {
        AdminChange::Done(id) => id,
        other => return Err(refused(other)),
    };
    if mail.is_some() {
        mail_queued(ctx, 1);
    }
    log::info(
        "admin created an account",
        &[
            ("actor_id", auth.user.id.into()),
            ("user_id", id.into()),
            ("role", role.as_str().into()),
            ("invited", mail.is_some().into()),
        ],
    );
    // Read after the commit; deleted meanwhile is as good as not found.
    let user = ctx.db.admin_user(id, now)?.ok_or(ApiError::UserNotFound)?;
    Ok(Response::json(
        201,
        &json!({ "user": admin_json(ctx, &user) }),
    ))
}

/// `PATCH /admin/users/{id} {role?, disabled?, disabled_reason?,
/// email_verified?, email?, name?, locale?, metadata?}`: 200 `{"user"}` as
/// changed (the profile members under the rules of [`crate::profile`]: 422
/// `invalid_profile`). Disabling ends every
/// session of the account at once; enabling brings none back (and clears
/// the reason). A new `email` takes effect at once, without a
/// confirmation: unverified unless `email_verified` is true in the same
/// patch, every link mailed before void, a notice to the old address (422
/// `invalid_email`, 409 `email_taken`). 409 `last_admin` if the change
/// would leave no enabled admin; 400 `invalid_field` for a member of the
/// wrong type (`role` must be "user" or "admin").
pub fn patch_user(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate_admin(ctx, request)?;
    let id = user_id(request, "")?;
    let body = json_object(request)?;
    let role = role_member(&body)?;
    let email = optional_string_member(&body, "email")?
        .map(address_member)
        .transpose()?;
    let reason = nullable_string_member(&body, "disabled_reason")?;
    if reason
        .flatten()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(ApiError::InvalidField(
            "disabled_reason",
            "at most 500 characters",
        ));
    }
    let patch = AdminPatch {
        role,
        disabled: optional_bool_member(&body, "disabled")?,
        disabled_reason: reason.map(|r| r.map(str::to_string)),
        email_verified: optional_bool_member(&body, "email_verified")?,
        email,
        profile: profile::change_from(&body)?,
    };
    let app = &ctx.config.app_name;
    let now = ctx.now();
    let notice = |old: &str, new: &str| texts::email_changed(app, old, new, now);
    let patched = match ctx
        .db
        .patch_user(id, &patch, now, Some(actor(&auth)), Some(&notice))?
    {
        AdminChange::Done(patched) => patched,
        other => return Err(refused(other)),
    };
    ctx.metrics.sessions_ended(patched.sessions_ended);
    if patch.email.is_some() {
        // The notice of a move, if the address was not already the account's.
        ctx.courier.wake();
    }
    log::info(
        "admin changed an account",
        &[
            ("actor_id", auth.user.id.into()),
            ("user_id", id.into()),
            ("role", patched.account.user.role.as_str().into()),
            ("old_role", patched.old_role.as_str().into()),
            (
                "disabled",
                patched.account.user.disabled_at.is_some().into(),
            ),
            ("sessions_ended", patched.sessions_ended.into()),
        ],
    );
    Ok(Response::json(
        200,
        &json!({ "user": admin_json(ctx, &patched.account) }),
    ))
}

/// `DELETE /admin/users/{id}`: 204; the account goes with its sessions,
/// tokens and failure counts. 409 `last_admin` for the last enabled admin.
pub fn delete_user(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate_admin(ctx, request)?;
    let id = user_id(request, "")?;
    let ended = match ctx.db.admin_delete_user(id, ctx.now(), actor(&auth))? {
        AdminChange::Done(ended) => ended,
        other => return Err(refused(other)),
    };
    ctx.metrics.sessions_ended(ended);
    log::info(
        "admin deleted an account",
        &[("actor_id", auth.user.id.into()), ("user_id", id.into())],
    );
    Ok(Response::empty(204))
}

/// `DELETE /admin/users/{id}/sessions`: 204; every session of the account
/// ends at once (its tokens answer 401 `token_revoked`).
pub fn end_sessions(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate_admin(ctx, request)?;
    let id = existing_user(ctx, request, "/sessions")?;
    let ended = ctx.db.end_all_sessions(id, ctx.now(), Some(auth.user.id))?;
    ctx.metrics.sessions_ended(ended);
    log::info(
        "admin ended an account's sessions",
        &[
            ("actor_id", auth.user.id.into()),
            ("user_id", id.into()),
            ("sessions_ended", ended.into()),
        ],
    );
    Ok(Response::empty(204))
}

/// `DELETE /admin/users/{id}/lockout`: 204; the account's failed attempts
/// are forgotten, so a locked account can log in again at once.
pub fn clear_lockout(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate_admin(ctx, request)?;
    let id = user_id(request, "/lockout")?;
    if !ctx.db.clear_lockout(id, ctx.now(), auth.user.id)? {
        return Err(ApiError::UserNotFound);
    }
    log::info(
        "admin cleared an account's lockout",
        &[("actor_id", auth.user.id.into()), ("user_id", id.into())],
    );
    Ok(Response::empty(204))
}

/// `POST /admin/users/{id}/password-reset`: 202; a reset link is mailed to
/// the account's address, exactly as a `forgot` for it would (the same
/// cooldown; a disabled account is mailed nothing).
pub fn send_password_reset(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate_admin(ctx, request)?;
    let id = user_id(request, "/password-reset")?;
    let ip = ctx.client_ip(request).to_string();
    if !ctx
        .db
        .request_mail_for(id, PASSWORD_RESET, ctx.now(), &ip, auth.user.id)?
    {
        return Err(ApiError::UserNotFound);
    }
    ctx.mail.wake();
    log::info(
        "admin requested a password reset",
        &[("actor_id", auth.user.id.into()), ("user_id", id.into())],
    );
    Ok(Response::json(202, &json!({ "status": "accepted" })))
}

/// `DELETE /admin/users/{id}/mfa`: 204; two-factor login is off for the
/// account (its secret and recovery codes gone, a notice mailed), for a
/// user who lost both the app and the codes. 409 `mfa_not_enabled`.
pub fn disable_mfa(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let auth = authenticate_admin(ctx, request)?;
    let id = existing_user(ctx, request, "/mfa")?;
    let now = ctx.now();
    let app = &ctx.config.app_name;
    let notice = |email: &str| texts::mfa_disabled(app, email, now, "", true);
    if !ctx.db.disable_mfa(id, Some(auth.user.id), now, &notice)? {
        return Err(ApiError::MfaNotEnabled);
    }
    mail_queued(ctx, 1);
    log::info(
        "admin turned two-factor login off",
        &[("actor_id", auth.user.id.into()), ("user_id", id.into())],
    );
    Ok(Response::empty(204))
}

/// The admin making a change, for the database to check again.
fn actor(auth: &Authenticated) -> Actor<'_> {
    Actor {
        user_id: auth.user.id,
        session_id: &auth.session_id,
    }
}

/// The error for a change the database refused.
fn refused<T>(change: AdminChange<T>) -> ApiError {
    match change {
        AdminChange::NotFound => ApiError::UserNotFound,
        AdminChange::LastAdmin => ApiError::LastAdmin,
        AdminChange::EmailTaken => ApiError::EmailTaken,
        // Demoted or logged out while the request was in flight.
        AdminChange::NotAnAdmin | AdminChange::Done(_) => ApiError::Forbidden,
    }
}

/// The optional `role` member: "user" or "admin".
fn role_member(body: &Map<String, Value>) -> Result<Option<Role>, ApiError> {
    match optional_string_member(body, "role")? {
        None => Ok(None),
        Some(name) => Role::parse(name)
            .map(Some)
            .ok_or(ApiError::InvalidField("role", "\"user\" or \"admin\"")),
    }
}

/// An address given by an admin, in its stored form; 422 `invalid_email`.
fn address_member(raw: &str) -> Result<Address, ApiError> {
    email::normalize(raw).map_err(|e| ApiError::InvalidEmail(e.to_string()))
}

/// The id in `/admin/users/{id}{suffix}`; 404 `user_not_found` unless it
/// is a decimal number (the router checked the prefix and the suffix).
fn user_id(request: &Request, suffix: &str) -> Result<u64, ApiError> {
    request
        .path
        .strip_prefix(USERS_PREFIX)
        .and_then(|rest| rest.strip_suffix(suffix))
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse().ok())
        .ok_or(ApiError::UserNotFound)
}

/// [`user_id`], for an account that must exist.
fn existing_user(ctx: &Context, request: &Request, suffix: &str) -> Result<u64, ApiError> {
    let id = user_id(request, suffix)?;
    if ctx.db.user_exists(id)? {
        Ok(id)
    } else {
        Err(ApiError::UserNotFound)
    }
}

/// The admin API's form of an account: the `user` object everyone sees,
/// with its state.
fn admin_json(ctx: &Context, account: &AdminUser) -> Value {
    let mut value = user_json(&account.user);
    let window = ctx.config.lockout_window;
    let lock_ends = account.window_start + window;
    let locked_until = (account.failures >= ctx.config.lockout_threshold && lock_ends > ctx.now())
        .then(|| time::rfc3339(lock_ends));
    let state = json!({
        "disabled": account.user.disabled_at.is_some(),
        "disabled_at": account.user.disabled_at.map(time::rfc3339),
        "disabled_reason": account.disabled_reason,
        "lockout": { "failures": account.failures, "locked_until": locked_until },
        "live_sessions": account.live_sessions,
        "last_login_at": account.last_login_at.map(time::rfc3339),
        "last_login_ip": account.last_login_ip,
    });
    if let (Value::Object(map), Value::Object(extra)) = (&mut value, state) {
        map.extend(extra);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_paths_are_decimal_numbers_and_nothing_else() {
        let at = |path: &str, suffix| user_id(&Request::for_tests("GET", path), suffix);
        assert_eq!(at("/admin/users/42", ""), Ok(42));
        assert_eq!(at("/admin/users/42/sessions", "/sessions"), Ok(42));
        for path in [
            "/admin/users/",
            "/admin/users/-1",
            "/admin/users/+1",
            "/admin/users/4x",
            "/admin/users/99999999999999999999999",
            "/admin/users/42/",
        ] {
            assert_eq!(at(path, ""), Err(ApiError::UserNotFound), "{path}");
        }
        assert_eq!(
            at("/admin/users/42/lockout", "/sessions"),
            Err(ApiError::UserNotFound)
        );
    }
}
