//! The HTML pages that mailed links open: today the one behind a password
//! reset link. Everything else this server serves is JSON for programs;
//! these are for people, in a browser, often on a phone.
//!
//! Pages are plain handlers like those in [`crate::handlers`], routed in
//! [`crate::router`], but every answer they give is a page in words: a
//! failure a person can cause (a used link, a weak password, a garbled
//! form) becomes a page saying so, never problem+json. The rules behind a
//! page are not repeated here: the reset page calls the same function as
//! the JSON endpoint.
//!
//! | file | owns |
//! |---|---|
//! | `reset.rs` | `GET` and `POST /reset-password` |
//! | `form.rs` | form bodies and query strings, read strictly |
//! | `html.rs` | escaping, the layout, the headers of every HTML response |
//!
//! No scripts, fonts, images or other origins: a page is one HTML document
//! with one inline style, under a `Content-Security-Policy` that allows only
//! that style, and works without JavaScript.

mod form;
mod html;
mod reset;

pub use reset::{reset_page, reset_submit};
