//! What several pages share: the pages for a link that cannot be read or a
//! form that is not the page's own, how busy or limited answers look, and
//! which tokens may be put back into a page.

use super::form::FormError;
use super::html::{Page, error, paragraph};
use crate::error::ApiError;
use crate::handlers::Context;
use crate::http::{Request, Response};

/// True for 43 base64url characters, the shape of every link's token
/// (`crate::secret::token`: 32 random bytes, base64url without padding).
/// Only text of that shape is put back into a page, so what a page reflects
/// is base64url, whatever the request sent.
pub fn shaped_like_a_token(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 400: a page address without a token; `what` names the link ("reset").
pub fn incomplete_link(ctx: &Context, what: &str) -> Response {
    let content = error(&format!(
        "This address does not hold a {what} token that can be read."
    )) + &paragraph(
        "Open the link in the email again. If your mail program split it over two lines, \
             copy the whole link into the address bar.",
    );
    Page {
        status: 400,
        app_name: &ctx.config.app_name,
        heading: "This link is incomplete",
        content,
    }
    .into_response()
}

/// 400: a body that is not the form the page sends, under `heading`.
pub fn unreadable_form(ctx: &Context, e: &FormError, heading: &str) -> Response {
    let content = error(&e.sentence())
        + &paragraph("Open the link in the email again and send the form from that page.");
    Page {
        status: 400,
        app_name: &ctx.config.app_name,
        heading,
        content,
    }
    .into_response()
}

/// The page for a failure that says nothing about the link: the rate
/// limits (429), a busy server (503), both with `Retry-After`, or a bug
/// (its status, with the request id for support), under `heading`.
pub fn trouble(ctx: &Context, request: &Request, e: &ApiError, heading: &str) -> Response {
    let (status, reason, retry_after) = match e {
        ApiError::RateLimited(secs) | ApiError::TooManyAttempts(secs) => (
            429,
            format!(
                "There have been too many attempts. Wait {} and try again.",
                crate::time::duration_in_words(*secs)
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
                "Something went wrong on our side. Try again; if it keeps happening, give \
                 this reference to support: {}.",
                request.request_id
            ),
            None,
        ),
    };
    let mut response = Page {
        status,
        app_name: &ctx.config.app_name,
        heading,
        content: error(&reason),
    }
    .into_response();
    if let Some(secs) = retry_after {
        response.set_header("Retry-After", secs.to_string());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_has_a_token_shape_is_put_back_into_a_form() {
        let token = crate::secret::token().unwrap();
        assert!(shaped_like_a_token(&token));
        assert!(!shaped_like_a_token(&token[1..]));
        assert!(!shaped_like_a_token(&format!("{token}A")));
        let evil = format!("\"><b>{}", &token[5..]);
        assert_eq!(evil.len(), 43);
        assert!(!shaped_like_a_token(&evil));
        assert!(!shaped_like_a_token(""));
    }
}
