//! The second factor: TOTP codes from an authenticator app (RFC 6238), and
//! recovery codes for when the app is lost.
//!
//! This module holds the pieces that need no database: the codes
//! themselves (`totp.rs`), recovery codes (`codes.rs`), the QR code an app
//! scans (`qr.rs`) and the encryption of secrets at rest (`seal.rs`). The
//! flows (enrolment, the two-step login, disabling) are
//! `crate::handlers::mfa`, and their SQL `crate::db::mfa`.
//!
//! **What it defends against.** A password alone falls to phishing, reuse
//! and stuffing; with TOTP a login also needs a code from a device the
//! owner holds. The server keeps the guarantees a code needs to be worth
//! something:
//!
//! - *No replay.* A time step once accepted for an account, and every older
//!   one, is refused from then on (RFC 6238 section 5.2), by a write
//!   conditioned on the last accepted step, so a code seen over someone's
//!   shoulder or phished in real time works once, through any instance or
//!   cluster node.
//! - *No offline attack on a database copy.* Secrets are sealed with
//!   AES-256-GCM under `DATA_ENCRYPTION_KEY`, which is not in the database,
//!   and recovery codes are kept only as HMACs under a key derived from it.
//! - *No second factor without the first.* The `mfa_token` of a login's
//!   first step is bound to the account and to the password hash it was
//!   issued for, dies after 5 wrong codes, and wrong codes count toward the
//!   account's lockout like wrong passwords; only a completed login clears
//!   that count.

pub mod codes;
pub mod qr;
pub mod seal;
pub mod totp;
