//! Method and path to handler: the whole public surface of the server in one
//! table.
//!
//! A path that matches no route answers 404 `not_found`; a known path with an
//! unsupported method answers 405 `method_not_allowed` with `Allow` listing
//! what the path supports. `HEAD` runs the route's `GET` handler (RFC 9110
//! sections 9.1 and 9.3.2: every GET resource answers HEAD too), so its
//! status and headers are GET's; the HTTP layer leaves the body out. Every `Err` a handler returns becomes its
//! problem+json response here, in one place. Here too, every response gets
//! its CORS headers and is counted in the metrics under its route's pattern.
//!
//! The admin API (`/admin/*`) is routed here too, on `BIND_ADDR` unless
//! `ADMIN_BIND_ADDR` is set: then only the admin listener serves it
//! ([`handle_admin`], which serves nothing else), and on `BIND_ADDR` its
//! paths answer 404 like any unknown path.

use crate::error::ApiError;
use crate::handlers::{self, Context};
use crate::http::{Request, Response};
use crate::pages;
use std::time::Instant;

/// A handler: a plain function of the context and the parsed request.
pub type Handler = fn(&Context, &Request) -> Result<Response, ApiError>;

/// The methods a path supports: its `Allow` value (which names HEAD after
/// GET, as HEAD is served by the GET handler) and a handler per method, and
/// the pattern that names the route in metrics.
struct Route {
    pattern: &'static str,
    allow: &'static str,
    methods: &'static [(&'static str, Handler)],
}

/// Sessions are addressed as `/auth/sessions/{id}`.
pub const SESSIONS_PREFIX: &str = "/auth/sessions/";

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// `BIND_ADDR` without `ADMIN_BIND_ADDR`: every route.
    Everything,
    /// `BIND_ADDR` with `ADMIN_BIND_ADDR` set: all but the admin API.
    Public,
    /// `ADMIN_BIND_ADDR`: the admin API only.
    Admin,
}

/// Finds the route for `path` among those `surface` serves.
fn resolve_on(path: &str, surface: Surface) -> Option<Route> {
    let admin = path == "/admin" || path.starts_with("/admin/");
    match (admin, surface) {
        (true, Surface::Public) | (false, Surface::Admin) => None,
        (true, _) => resolve_admin(path),
        (false, _) => resolve(path),
    }
}

/// Finds the admin API's route for `path`: `/admin/users` and
/// `/admin/users/{id}` with an optional `/sessions`, `/lockout` or
/// `/password-reset` after it. Any id shape reaches the handler, which
/// answers 404 `user_not_found` for ids that are not numbers.
fn resolve_admin(path: &str) -> Option<Route> {
    let route = |pattern, allow, methods| {
        Some(Route {
            pattern,
            allow,
            methods,
        })
    };
    if path == "/admin/audit" {
        return route(
            "/admin/audit",
            "GET, HEAD",
            &[("GET", handlers::admin_audit)],
        );
    }
    if path == "/admin/users" {
        return route(
            "/admin/users",
            "GET, HEAD, POST",
            &[
                ("GET", handlers::admin::list_users),
                ("POST", handlers::admin::create_user),
            ],
        );
    }
    let rest = path.strip_prefix(handlers::admin::USERS_PREFIX)?;
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    if id.is_empty() {
        return None;
    }
    match action {
        "" => route(
            "/admin/users/{id}",
            "GET, HEAD, PATCH, DELETE",
            &[
                ("GET", handlers::admin::get_user),
                ("PATCH", handlers::admin::patch_user),
                ("DELETE", handlers::admin::delete_user),
            ],
        ),
        "sessions" => route(
            "/admin/users/{id}/sessions",
            "DELETE",
            &[("DELETE", handlers::admin::end_sessions)],
        ),
        "lockout" => route(
            "/admin/users/{id}/lockout",
            "DELETE",
            &[("DELETE", handlers::admin::clear_lockout)],
        ),
        "password-reset" => route(
            "/admin/users/{id}/password-reset",
            "POST",
            &[("POST", handlers::admin::send_password_reset)],
        ),
        "mfa" => route(
            "/admin/users/{id}/mfa",
            "DELETE",
            &[("DELETE", handlers::admin::disable_mfa)],
        ),
        _ => None,
    }
}

/// Finds the route for `path` outside the admin API.
fn resolve(path: &str) -> Option<Route> {
    let route = |pattern, allow, methods| {
        Some(Route {
            pattern,
            allow,
            methods,
        })
    };
    match path {
        "/healthz" => route("/healthz", "GET, HEAD", &[("GET", handlers::healthz)]),
        "/metrics" => route("/metrics", "GET, HEAD", &[("GET", handlers::metrics_here)]),
        "/openapi.json" => route("/openapi.json", "GET, HEAD", &[("GET", handlers::openapi)]),
        "/auth/register" => route("/auth/register", "POST", &[("POST", handlers::register)]),
        "/auth/login" => route("/auth/login", "POST", &[("POST", handlers::login)]),
        "/auth/refresh" => route("/auth/refresh", "POST", &[("POST", handlers::refresh)]),
        "/auth/login/mfa" => route("/auth/login/mfa", "POST", &[("POST", handlers::login_mfa)]),
        "/auth/mfa/totp/setup" => route(
            "/auth/mfa/totp/setup",
            "POST",
            &[("POST", handlers::mfa_setup)],
        ),
        "/auth/mfa/totp/confirm" => route(
            "/auth/mfa/totp/confirm",
            "POST",
            &[("POST", handlers::mfa_confirm)],
        ),
        "/auth/mfa/totp" => route(
            "/auth/mfa/totp",
            "DELETE",
            &[("DELETE", handlers::mfa_disable)],
        ),
        "/auth/mfa/recovery-codes" => route(
            "/auth/mfa/recovery-codes",
            "POST",
            &[("POST", handlers::regenerate_recovery_codes)],
        ),
        "/auth/password" => route(
            "/auth/password",
            "POST",
            &[("POST", handlers::change_password)],
        ),
        "/auth/password/forgot" => route(
            "/auth/password/forgot",
            "POST",
            &[("POST", handlers::forgot_password)],
        ),
        "/auth/password/reset" => route(
            "/auth/password/reset",
            "POST",
            &[("POST", handlers::reset_password)],
        ),
        // The page a reset mail links to (HTML, for people; see `pages`).
        "/reset-password" => route(
            "/reset-password",
            "GET, HEAD, POST",
            &[("GET", pages::reset_page), ("POST", pages::reset_submit)],
        ),
        "/auth/email/verify" => route(
            "/auth/email/verify",
            "POST",
            &[("POST", handlers::verify_email)],
        ),
        "/auth/email/verify/resend" => route(
            "/auth/email/verify/resend",
            "POST",
            &[("POST", handlers::resend_verification)],
        ),
        "/auth/email/confirm" => route(
            "/auth/email/confirm",
            "POST",
            &[("POST", handlers::confirm_email_change)],
        ),
        // The pages the verification and confirmation mails link to.
        "/verify-email" => route(
            "/verify-email",
            "GET, HEAD, POST",
            &[("GET", pages::verify_page), ("POST", pages::verify_submit)],
        ),
        "/confirm-email" => route(
            "/confirm-email",
            "GET, HEAD, POST",
            &[
                ("GET", pages::confirm_page),
                ("POST", pages::confirm_submit),
            ],
        ),
        "/auth/me" => route(
            "/auth/me",
            "GET, HEAD, PATCH, DELETE",
            &[
                ("GET", handlers::me),
                ("PATCH", handlers::update_me),
                ("DELETE", handlers::delete_me),
            ],
        ),
        "/auth/me/events" => route(
            "/auth/me/events",
            "GET, HEAD",
            &[("GET", handlers::my_events)],
        ),
        "/auth/logout" => route("/auth/logout", "POST", &[("POST", handlers::logout)]),
        "/auth/logout-all" => route(
            "/auth/logout-all",
            "POST",
            &[("POST", handlers::logout_all)],
        ),
        "/auth/sessions" => route(
            "/auth/sessions",
            "GET, HEAD",
            &[("GET", handlers::sessions)],
        ),
        // Any id shape reaches the handler, which answers 404 for ids that
        // are malformed just as for ids that are unknown.
        p if p.len() > SESSIONS_PREFIX.len() && p.starts_with(SESSIONS_PREFIX) => route(
            "/auth/sessions/{id}",
            "DELETE",
            &[("DELETE", handlers::end_session)],
        ),
        _ => None,
    }
}

/// Answers `request` on `BIND_ADDR`: dispatches it, turns any error into
/// its response, adds CORS headers and counts it.
pub fn handle(ctx: &Context, request: &Request) -> Response {
    let surface = if ctx.config.admin_bind_addr.is_some() {
        Surface::Public
    } else {
        Surface::Everything
    };
    handle_on(ctx, request, surface)
}

/// Answers `request` on `ADMIN_BIND_ADDR`, as [`handle`] does, from the
/// admin API's routes alone.
pub fn handle_admin(ctx: &Context, request: &Request) -> Response {
    handle_on(ctx, request, Surface::Admin)
}

fn handle_on(ctx: &Context, request: &Request, surface: Surface) -> Response {
    let started = Instant::now();
    let route = resolve_on(&request.path, surface);
    let mut response = match &route {
        // Browsers' CORS preflight, answered for every API route when CORS
        // is on.
        Some(route) if request.method == "OPTIONS" && ctx.config.cors.enabled() => {
            Ok(ctx.config.cors.preflight(request, route.allow))
        }
        Some(route) => {
            // What the audit events of this request record as its origin.
            let origin = crate::audit::Origin {
                ip: ctx.client_ip(request).to_string(),
                user_agent: request
                    .header("user-agent")
                    .unwrap_or("")
                    .chars()
                    .take(255)
                    .collect(),
            };
            crate::audit::with_origin(origin, || dispatch(ctx, request, route))
        }
        None => Err(ApiError::NotFound),
    }
    .unwrap_or_else(|e| e.to_response(&request.request_id));
    ctx.config.cors.decorate(request, &mut response);
    let pattern = route.map_or("unmatched", |r| r.pattern);
    ctx.metrics
        .request(pattern, response.status, started.elapsed());
    response
}

fn dispatch(ctx: &Context, request: &Request, route: &Route) -> Result<Response, ApiError> {
    let method = match request.method.as_str() {
        "HEAD" => "GET",
        other => other,
    };
    let (_, handler) = route
        .methods
        .iter()
        .find(|(routed, _)| *routed == method)
        .ok_or(ApiError::MethodNotAllowed(route.allow))?;
    handler(ctx, request)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One path per route.
    const PATHS: &[&str] = &[
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/password",
        "/auth/password/forgot",
        "/auth/password/reset",
        "/reset-password",
        "/auth/email/verify",
        "/auth/email/verify/resend",
        "/auth/email/confirm",
        "/verify-email",
        "/confirm-email",
        "/auth/me",
        "/auth/logout",
        "/auth/logout-all",
        "/auth/sessions",
        "/auth/sessions/00112233445566778899aabbccddeeff",
        "/auth/me/events",
        "/admin/audit",
        "/admin/users",
        "/admin/users/7",
        "/admin/users/7/sessions",
        "/admin/users/7/lockout",
        "/admin/users/7/password-reset",
        "/admin/users/7/mfa",
        "/auth/login/mfa",
        "/auth/mfa/totp/setup",
        "/auth/mfa/totp/confirm",
        "/auth/mfa/totp",
        "/auth/mfa/recovery-codes",
    ];

    fn resolve(path: &str) -> Option<Route> {
        resolve_on(path, Surface::Everything)
    }

    #[test]
    fn the_admin_api_is_served_on_one_listener_only() {
        assert!(resolve_on("/admin/users", Surface::Public).is_none());
        assert!(resolve_on("/admin/users/7", Surface::Public).is_none());
        assert!(resolve_on("/admin/users", Surface::Admin).is_some());
        assert!(resolve_on("/auth/login", Surface::Admin).is_none());
        assert!(resolve_on("/healthz", Surface::Admin).is_none());
        assert!(resolve_on("/auth/login", Surface::Public).is_some());
        for path in [
            "/admin",
            "/admin/",
            "/admin/users/",
            "/admin/users/7/x",
            "/admin/users//sessions",
        ] {
            assert!(resolve(path).is_none(), "{path}");
        }
    }

    #[test]
    fn allow_lists_exactly_the_routed_methods_and_head_with_get() {
        for path in PATHS {
            let route = resolve(path).unwrap();
            let methods: Vec<&str> = route
                .methods
                .iter()
                .flat_map(|(m, _)| {
                    if *m == "GET" {
                        vec!["GET", "HEAD"]
                    } else {
                        vec![*m]
                    }
                })
                .collect();
            assert_eq!(methods.join(", "), route.allow, "{path}");
        }
        assert!(resolve("/nope").is_none());
        assert!(resolve("/healthz/").is_none());
        assert!(resolve("/auth/sessions/").is_none());
        for path in PATHS {
            let pattern = resolve(path).unwrap().pattern;
            assert!(
                pattern == *path
                    || pattern.replace("{id}", "7") == *path
                    || pattern == "/auth/sessions/{id}",
                "{path}: {pattern}"
            );
        }
    }

    /// The OpenAPI document describes every JSON route with exactly its
    /// methods, and nothing else; the HTML pages are for people, not
    /// clients, and stay out of it.
    #[test]
    fn the_openapi_document_lists_every_api_route_and_method() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../docs/openapi.json")).unwrap();
        let documented = doc["paths"].as_object().unwrap();
        let pages = ["/reset-password", "/verify-email", "/confirm-email"];
        let mut routed = Vec::new();
        for path in PATHS.iter().filter(|p| !pages.contains(p)) {
            let route = resolve(path).unwrap();
            routed.push(route.pattern);
            let operations = documented
                .get(route.pattern)
                .unwrap_or_else(|| panic!("{} is not in docs/openapi.json", route.pattern));
            let mut methods: Vec<String> = operations
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_uppercase())
                .collect();
            let mut expected: Vec<String> =
                route.methods.iter().map(|(m, _)| m.to_string()).collect();
            methods.sort();
            expected.sort();
            assert_eq!(methods, expected, "{}", route.pattern);
        }
        let extra: Vec<&String> = documented
            .keys()
            .filter(|p| !routed.contains(&p.as_str()))
            .collect();
        assert!(extra.is_empty(), "documented but not routed: {extra:?}");
    }
}
