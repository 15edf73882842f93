//! Query strings of the listing endpoints (`/admin/users`, `/admin/audit`,
//! `/auth/me/events`), read strictly: an unknown parameter, one given
//! twice, or a value not of its form answers 400 `invalid_query` saying
//! which, rather than being ignored, so a typo in a filter never silently
//! lists everything.

use crate::error::ApiError;
use crate::http::Request;
use crate::pages::form::Form;

/// The request's query string, with only the parameters in `known`.
pub(super) fn parse(request: &Request, known: &[&str]) -> Result<Form, ApiError> {
    let query = Form::parse(request.query.as_deref().unwrap_or("").as_bytes())
        .map_err(|e| ApiError::InvalidQuery(e.sentence()))?;
    if let Some(unknown) = query.names().find(|n| !known.contains(n)) {
        return Err(ApiError::InvalidQuery(format!(
            "Unknown parameter \"{}\"; known: {}.",
            unknown.chars().take(40).collect::<String>(),
            known.join(", ")
        )));
    }
    Ok(query)
}

/// `limit`: a page size from 1 to `max`, `default` if absent.
pub(super) fn limit(query: &Form, default: u32, max: u32) -> Result<u32, ApiError> {
    match query.get("limit") {
        None => Ok(default),
        Some(n) => n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::InvalidQuery(format!("\"limit\" is a number from 1 to {max}."))
            }),
    }
}

/// A cursor or an id parameter: a decimal number, if present.
pub(super) fn number(query: &Form, name: &'static str) -> Result<Option<u64>, ApiError> {
    match query.get(name) {
        None => Ok(None),
        Some(value) => value.parse::<u64>().map(Some).map_err(|_| {
            ApiError::InvalidQuery(format!(
                "\"{name}\" is a number (a cursor is a previous page's \"next\")."
            ))
        }),
    }
}

/// A `true`/`false` parameter, if present.
pub(super) fn boolean(query: &Form, name: &'static str) -> Result<Option<bool>, ApiError> {
    match query.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::InvalidQuery(format!(
            "\"{name}\" is true or false."
        ))),
    }
}
