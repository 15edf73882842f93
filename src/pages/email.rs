//! The pages behind the links that prove an address: `/verify-email`
//! (the account's own address) and `/confirm-email` (a move to a new one).
//!
//! Opening either page changes nothing: mail scanners open every link in a
//! message, and a link that acted on `GET` would be used up before the
//! person clicked it. The page shows one button; its `POST` calls the same
//! function as the JSON endpoint (`crate::handlers::verify_with_token`,
//! `confirm_with_token`) and shows the outcome in words.

use super::common::{incomplete_link, shaped_like_a_token, trouble, unreadable_form};
use super::form::Form;
use super::html::{Page, error, escape, paragraph, success};
use crate::db::User;
use crate::error::ApiError;
use crate::handlers::{Context, confirm_with_token, rate_limit, verify_with_token};
use crate::http::{Request, Response};

/// The form's one field.
const TOKEN: &str = "token";

/// What differs between the two pages.
struct Link {
    /// The page's path without its leading slash (the form's relative
    /// action, which also works under a `PUBLIC_URL` path prefix).
    path: &'static str,
    /// What kind of token the link holds, for the incomplete-link page.
    what: &'static str,
    heading: &'static str,
    explanation: &'static str,
    button: &'static str,
    /// The rule behind the button.
    act: fn(&Context, &str) -> Result<User, ApiError>,
    done_heading: &'static str,
    /// What the success page says, given the account's address now.
    done: fn(&User) -> String,
    /// The token is unknown, used, expired or superseded.
    invalid: ApiError,
    failed_heading: &'static str,
}

const VERIFY: Link = Link {
    path: "verify-email",
    what: "verification",
    heading: "Confirm your email address",
    explanation: "Press the button to confirm that this address is yours.",
    button: "Confirm my email address",
    act: verify_with_token,
    done_heading: "Your email address is confirmed",
    done: |user| format!("{} is confirmed. You can close this page.", user.email),
    invalid: ApiError::InvalidVerificationToken,
    failed_heading: "Your email address was not confirmed",
};

const CONFIRM: Link = Link {
    path: "confirm-email",
    what: "confirmation",
    heading: "Confirm your new email address",
    explanation: "Press the button to move your account to this new address.",
    button: "Confirm the new address",
    act: confirm_with_token,
    done_heading: "Your email address is changed",
    done: |user| {
        format!(
            "Your account now uses {}. Sign in with it from now on.",
            user.email
        )
    },
    invalid: ApiError::InvalidConfirmationToken,
    failed_heading: "Your email address was not changed",
};

/// `GET /verify-email?token=...`: the page with the button; writes nothing.
pub fn verify_page(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    Ok(show(ctx, request, &VERIFY))
}

/// `POST /verify-email`, a form with `token`: verifies the address.
pub fn verify_submit(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    Ok(submit(ctx, request, &VERIFY))
}

/// `GET /confirm-email?token=...`: the page with the button; writes nothing.
pub fn confirm_page(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    Ok(show(ctx, request, &CONFIRM))
}

/// `POST /confirm-email`, a form with `token`: moves the account to the
/// address the link was sent to.
pub fn confirm_submit(ctx: &Context, request: &Request) -> Result<Response, ApiError> {
    Ok(submit(ctx, request, &CONFIRM))
}

/// 200 with the button while the query holds a token of the right shape;
/// 400 "this link is incomplete" otherwise.
fn show(ctx: &Context, request: &Request, link: &Link) -> Response {
    let query = request.query.as_deref().unwrap_or("");
    let token = Form::parse(query.as_bytes())
        .ok()
        .and_then(|form| form.get(TOKEN).map(str::to_owned))
        .filter(|t| shaped_like_a_token(t));
    let Some(token) = token else {
        return incomplete_link(ctx, link.what);
    };
    let content = paragraph(link.explanation)
        + &format!(
            "<form method=\"post\" action=\"{path}\" accept-charset=\"UTF-8\">\n\
             <input type=\"hidden\" name=\"{TOKEN}\" value=\"{token}\">\n\
             <button type=\"submit\">{button}</button>\n\
             </form>\n",
            path = link.path,
            token = escape(&token),
            button = escape(link.button),
        );
    Page {
        status: 200,
        app_name: &ctx.config.app_name,
        heading: link.heading,
        content,
    }
    .into_response()
}

/// The button's `POST`: the outcome of [`Link::act`] in words.
fn submit(ctx: &Context, request: &Request, link: &Link) -> Response {
    if let Err(e) = rate_limit(ctx, request) {
        return trouble(ctx, request, &e, link.failed_heading);
    }
    let form = match Form::from_body(request) {
        Ok(form) => form,
        Err(e) => return unreadable_form(ctx, &e, link.failed_heading),
    };
    let token = match form.required(TOKEN) {
        Ok(token) => token,
        Err(e) => return unreadable_form(ctx, &e, link.failed_heading),
    };
    let (status, content) = match (link.act)(ctx, token) {
        Ok(user) => {
            let page = Page {
                status: 200,
                app_name: &ctx.config.app_name,
                heading: link.done_heading,
                content: success(&(link.done)(&user)),
            };
            return page.into_response();
        }
        Err(e) if e == link.invalid => (
            400,
            error("This link is used, expired or replaced by a newer one.")
                + &paragraph("Use the link in the newest email, or ask for a new one."),
        ),
        Err(ApiError::EmailTaken) => (
            409,
            error("That address now belongs to another account, so yours stays as it was."),
        ),
        Err(e) => return trouble(ctx, request, &e, link.failed_heading),
    };
    Page {
        status,
        app_name: &ctx.config.app_name,
        heading: link.failed_heading,
        content,
    }
    .into_response()
}
