//! # auth-server
//!
//! A small, auditable authentication server: HTTP clients register, log in,
//! change passwords and manage sessions with JSON requests; accounts live in
//! MySQL; passwords are kept only as Argon2id hashes; a login returns
//! HMAC-SHA256 access and refresh tokens in a documented format.
//!
//! The shape is deliberate: a synchronous server with few dependencies that
//! one person can audit in an afternoon. No async runtime, no web framework,
//! no ORM. Each module owns one thing:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | environment variables, validated once at start-up |
//! | [`http`] | the hardened HTTP/1.1 layer: connections, limits, deadlines |
//! | [`router`] | method and path to handler |
//! | [`context`] | what handlers and workers share: settings, database, defences |
//! | [`handlers`] | the endpoints' rules, one file per area of the API |
//! | [`pages`] | the HTML pages that mailed links open (reset, verify, confirm) |
//! | [`error`] | every failure's status, code and problem+json body |
//! | [`db`] | the connection pool, migrations and every SQL statement, one file per area |
//! | [`mail`] | the mail resolver (requests to outbox) and the SMTP courier (outbox to relay) |
//! | [`secret`] | fresh random tokens and the digests stored instead |
//! | [`token`] | the access and refresh token formats: signing and strict verification |
//! | [`password`] | Argon2id hashing and the password rules |
//! | [`mfa`] | the second factor's pieces: TOTP codes, recovery codes, QR codes, sealing secrets |
//! | [`email`] | email validation and normalisation |
//! | [`limits`] | the hashing gate, the rate limiter, trusted proxies |
//! | [`import`] | the `import-users` command |
//! | [`metrics`] | Prometheus metrics |
//! | [`cors`] | CORS headers for browser clients |
//! | [`log`] | JSON log lines |
//! | [`time`] | timestamps in RFC 3339 and HTTP-date form |
//!
//! The binary (`src/main.rs`) only wires these together.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod config;
pub mod context;
pub mod cors;
pub mod db;
pub mod email;
pub mod error;
pub mod handlers;
pub mod http;
pub mod import;
pub mod limits;
pub mod log;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod pages;
pub mod password;
pub mod profile;
pub mod router;
pub mod secret;
pub mod time;
pub mod token;
