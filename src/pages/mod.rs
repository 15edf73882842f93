//! The HTML pages that mailed links open: a password reset, verifying an
//! address, confirming a move to a new one. Everything else this server serves is JSON for programs;
//! these are for people, in a browser, often on a phone.
//!
//! Pages are plain handlers like those in [`crate::handlers`], routed in
//! [`crate::router`], but every answer they give is a page in words: a
//! failure a person can cause (a used link, a weak password, a garbled
//! form) becomes a page saying so, never problem+json. The rules behind a
//! page are not repeated here: each page calls the same function as its
//! JSON endpoint.
//!
//! | file | owns |
//! |---|---|
//! | `reset.rs` | `GET` and `POST /reset-password` |
//! | `email.rs` | `GET` and `POST /verify-email` and `/confirm-email` |
//! | `common.rs` | the pages for unreadable links and forms, busy and limited answers |
//! | `form.rs` | form bodies and query strings, read strictly |
//! | `html.rs` | escaping, the layout, the headers of every HTML response |
//!
//! No scripts, fonts, images or other origins: a page is one HTML document
//! with one inline style, under a `Content-Security-Policy` that allows only
//! that style, and works without JavaScript.

mod common;
mod email;
pub(crate) mod form;
mod html;
mod reset;

pub use email::{confirm_page, confirm_submit, verify_page, verify_submit};
pub use html::escape;
pub use reset::{reset_page, reset_submit};
