//! The page behind a reset link: `GET /reset-password?token=...` shows a
//! form for the new password, and the form posts to `POST /reset-password`.
//!
//! Opening the page changes nothing: mail scanners and link previews open
//! links before the person does, so a `GET` only reads whether the token
//! is live (one indexed `SELECT`), to show "this link no longer works"
//! instead of a form that cannot succeed. The `POST` spends the client
//! address's rate limit and then calls
//! [`crate::handlers::reset_with_token`], the function behind
//! `POST /auth/password/reset`, so both apply the same rules in the same
//! order. The one check of the page's own, that the two fields match,
//! comes before it, so a typo costs no hashing.
//!
//! Every answer is a page in words, never problem+json or internal detail:
//! the person in front of it is not a program. The password is never put
//! back into a page; the token is, as the form's hidden field, when the
//! form comes back.

use super::common::{incomplete_link, shaped_like_a_token, unreadable_form};
use super::form::Form;
use super::html::{Page, error, escape, paragraph, success};
use crate::error::ApiError;
use crate::handlers::{Context, rate_limit, reset_with_token};
use crate::http::{Request, Response};
use crate::password::MIN_CHARS;
use crate::secret::sha256;
use crate::time::duration_in_words;

/// The form's fields. Also what a client of the page must send.
const TOKEN: &str = "token";
const NEW_PASSWORD: &str = "new_password";
const CONFIRM_PASSWORD: &str = "confirm_password";
/// The heading of a page that says why the password stayed as it was.
const NOT_CHANGED: &str = "Your password was not changed";

/// `GET /reset-password?token=...`: 200 with the form while the token is
/// live; 400 with "this link no longer works" for an unknown, used, expired
/// or retired token, and "this link is incomplete" without one (or with a
/// query that is not a well-formed form, such as `token` twice). Writes
/// nothing.
pub fn reset_page(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    let query = request.query.as_deref().unwrap_or("");
    let token = match Form::parse(query.as_bytes()) {
        Ok(form) => form.get(TOKEN).map(str::to_owned),
        Err(_) => None,
    };
    let Some(token) = token else {
        return Ok(incomplete_link(ctx, "reset"));
    };
    Ok(match token_is_live(ctx, &token) {
        Ok(true) => form_page(ctx, 200, &token, None),
        Ok(false) => link_no_longer_works(ctx),
        Err(e) => failure(ctx, request, &e, Some(&token)),
    })
}

/// `POST /reset-password`, a form `token`, `new_password`,
/// `confirm_password`: 200 with a success page once the password is reset
/// (every session ended, the lockout cleared, the token used up).
/// Otherwise a page saying why, with the form again where trying again can
/// help: 422 when the two passwords differ or the password breaks a rule
/// (in the rule's words); 400 when the link no longer works; 429 past the
/// rate limits and 503 when busy (with `Retry-After`); 400 for a body that
/// is not a well-formed form with the three fields (see `Form`).
pub fn reset_submit(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    if let Err(e) = rate_limit(ctx, request) {
        let form = Form::from_body(request).ok();
        let token = form.as_ref().and_then(|f| f.get(TOKEN));
        return Ok(failure(ctx, request, &e, token));
    }
    let form = match Form::from_body(request) {
        Ok(form) => form,
        Err(e) => return Ok(unreadable_form(ctx, &e, NOT_CHANGED)),
    };
    let fields = (
        form.required(TOKEN),
        form.required(NEW_PASSWORD),
        form.required(CONFIRM_PASSWORD),
    );
    let (token, new_password, confirm) = match fields {
        (Ok(t), Ok(n), Ok(c)) => (t, n, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return Ok(unreadable_form(ctx, &e, NOT_CHANGED));
        }
    };
    if new_password != confirm {
        // Retyping cannot help a link that no longer works: say that first.
        return Ok(match token_is_live(ctx, token) {
            Ok(true) => form_page(
                ctx,
                422,
                token,
                Some("The two passwords are not the same. Type the new password twice."),
            ),
            Ok(false) => link_no_longer_works(ctx),
            Err(e) => failure(ctx, request, &e, Some(token)),
        });
    }
    Ok(match reset_with_token(ctx, request, token, new_password) {
        Ok(()) => done(ctx),
        Err(e) => failure(ctx, request, &e, Some(token)),
    })
}

/// Whether `token` is a live reset token now; reads, never writes.
fn token_is_live(ctx: &Context, token: &str) -> Result<bool, ApiError> {
    Ok(ctx.db.find_reset(&sha256(token), ctx.now())?.is_some())
}

/// The page for a failure of the reset's rules or of the server, in words.
/// With `token`, the form comes back wherever trying again can work. Some
/// failures come before the token could be looked up (the rate limit, the
/// database), so a token is put back only if it has a token's shape: then
/// what the page reflects is base64url, whatever the request sent.
fn failure(ctx: &Context, request: &Request, e: &ApiError, token: Option<&str>) -> Response {
    let token = token.filter(|t| shaped_like_a_token(t));
    let (status, reason, retry_after) = match e {
        ApiError::InvalidResetToken => return link_no_longer_works(ctx),
        ApiError::WeakPassword(rule) => {
            (422, format!("That password cannot be used. {rule}"), None)
        }
        ApiError::RateLimited(secs) | ApiError::TooManyAttempts(secs) => (
            429,
            format!(
                "There have been too many attempts. Wait {} and try again.",
                duration_in_words(*secs)
            ),
            Some(*secs),
        ),
        ApiError::Overloaded | ApiError::DatabaseUnavailable => (
            503,
            "The server is busy. Try again in a moment.".to_string(),
            Some(1),
        ),
        other => (
            other.status(),
            format!(
                "Something went wrong on our side and your password was not changed. \
                 Try again; if it keeps happening, give this reference to support: {}.",
                request.request_id
            ),
            None,
        ),
    };
    let mut response = match token {
        Some(token) => form_page(ctx, status, token, Some(&reason)),
        None => Page {
            status,
            app_name: &ctx.config.app_name,
            heading: NOT_CHANGED,
            content: error(&reason),
        }
        .into_response(),
    };
    if let Some(secs) = retry_after {
        response.set_header("Retry-After", secs.to_string());
    }
    response
}

/// The form, with why it came back if it did. The action is relative
/// without a leading slash, so it resolves next to the page's own URL:
/// behind a proxy that serves this server under a path prefix
/// (`PUBLIC_URL=https://example.com/auth`), the page is
/// `/auth/reset-password` and the form posts to `/auth/reset-password`,
/// where `/reset-password` would miss the prefix. It also leaves the
/// token's query string behind.
fn form_page(ctx: &Context, status: u16, token: &str, why: Option<&str>) -> Response {
    let mut content = why.map(error).unwrap_or_default();
    content.push_str(&format!(
        "<form method=\"post\" action=\"reset-password\" accept-charset=\"UTF-8\">\n\
         <input type=\"hidden\" name=\"{TOKEN}\" value=\"{token}\">\n\
         <label for=\"{NEW_PASSWORD}\">New password</label>\n\
         <input id=\"{NEW_PASSWORD}\" name=\"{NEW_PASSWORD}\" type=\"password\" \
         autocomplete=\"new-password\" minlength=\"{MIN_CHARS}\" required \
         aria-describedby=\"rules\">\n\
         <p id=\"rules\" class=\"hint\">{rules}</p>\n\
         <label for=\"{CONFIRM_PASSWORD}\">New password again</label>\n\
         <input id=\"{CONFIRM_PASSWORD}\" name=\"{CONFIRM_PASSWORD}\" type=\"password\" \
         autocomplete=\"new-password\" minlength=\"{MIN_CHARS}\" required>\n\
         <button type=\"submit\">Set the new password</button>\n\
         </form>\n",
        token = escape(token),
        rules = escape(&format!(
            "At least {MIN_CHARS} characters; a few words make a good one. \
             Not a common password, and not your email address."
        )),
    ));
    Page {
        status,
        app_name: &ctx.config.app_name,
        heading: "Choose a new password",
        content,
    }
    .into_response()
}

/// 400: the token is unknown, used, expired or retired by newer links.
fn link_no_longer_works(ctx: &Context) -> Response {
    let content = error("This password reset link is used, expired or replaced by a newer one.")
        + &paragraph(&format!(
            "Request a new password reset and use the link in the newest email. \
             A link works once, for {}.",
            duration_in_words(ctx.config.reset_token_ttl)
        ));
    Page {
        status: 400,
        app_name: &ctx.config.app_name,
        heading: "This link no longer works",
        content,
    }
    .into_response()
}

/// 200: the password is reset.
fn done(ctx: &Context) -> Response {
    let content = success("Your new password is set.")
        + &paragraph(
            "For your safety you were signed out everywhere. Sign in again with the new password.",
        );
    Page {
        status: 200,
        app_name: &ctx.config.app_name,
        heading: "Your password is changed",
        content,
    }
    .into_response()
}
