//! Time-based one-time passwords (RFC 6238) as authenticator apps compute them.
//!
//! This module owns the arithmetic of the second factor: HOTP (RFC 4226), the
//! 30-second TOTP time step, checking a code a user typed, and the two ways a
//! secret reaches an authenticator app (its base32 text and the `otpauth://` URI
//! that the QR code carries). It stores nothing and knows no accounts; where a
//! secret is kept (sealed, see [`crate::mfa::seal`]) and which steps were already
//! used are the caller's business.
//!
//! The parameters are fixed on purpose: HMAC-SHA1, 6 digits, 30 seconds. That is
//! the only combination every authenticator app supports (several ignore the
//! `algorithm`, `digits` and `period` URI parameters and silently use these
//! values), and SHA-1's collision weakness does not touch HMAC-SHA1 as a PRF.
//!
//! # Threat model
//!
//! - **Guessing.** A 6-digit code is one in a million and three steps are
//!   accepted, so an attacker who knows the password guesses right with
//!   probability 3 in 10^6 per attempt: the caller must rate-limit attempts.
//! - **Replay.** A code stays valid for up to 90 seconds. [`matching_step`]
//!   returns the step that matched so the caller can record it and refuse that
//!   step, or an earlier one, next time.
//! - **Timing.** [`matching_step`] computes and compares all three candidate
//!   codes in constant time without stopping at the first match, so response
//!   time tells nothing about which step (if any) was close. Only the format of
//!   the input (6 ASCII digits or not), which is not secret, returns early.
//! - **Leaks.** Nothing here logs, and no error carries a secret or a code.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// Length of a TOTP time step in seconds (RFC 6238's default `X`).
pub const STEP_SECONDS: u64 = 30;

/// Number of digits of a TOTP code.
pub const DIGITS: u32 = 6;

/// Length of a freshly generated TOTP secret in bytes: 160 bits, the HMAC-SHA1
/// output size that RFC 4226 section 4 recommends.
pub const SECRET_BYTES: usize = 20;

type HmacSha1 = Hmac<Sha1>;

/// RFC 4648 base32 alphabet (section 6), the one authenticator apps decode.
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`), so a
/// `:` `@` `&` `?` `/` `#` or space in an issuer or account name cannot change
/// how the URI is parsed.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The TOTP time step that contains `unix_seconds`: `unix_seconds / 30`
/// (RFC 6238's `T` with `T0 = 0`).
pub fn step_at(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// The RFC 4226 HOTP value of `secret` at `counter`: HMAC-SHA1 over the counter
/// as 8 big-endian bytes, dynamic truncation to 31 bits, then modulo
/// `10^digits`.
///
/// `digits` is meant to be 6, 7 or 8 (RFC 4226 requires at least 6, and 8 is
/// the most RFC 6238 and authenticator apps use); a value outside `6..=8` is
/// clamped into it rather than panicking or giving a code weaker than 6 digits. The result is a number:
/// format it with leading zeros to `digits` places to get the code.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let digits = digits.clamp(6, 8);
    // HMAC is defined for keys of every length, so this cannot fail whatever the
    // secret is; the Result only exists because the trait is shared with other MACs.
    let mut mac = HmacSha1::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(&counter.to_be_bytes());
    let hash: [u8; 20] = mac.finalize().into_bytes().into();

    // Dynamic truncation (RFC 4226 section 5.3): the low nibble of the last byte
    // picks 4 bytes; the offset is at most 15, so offset + 3 = 18 is in range.
    let offset = usize::from(hash[19] & 0x0f);
    let binary = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

/// The 6-digit TOTP code of `secret` for time step `step`, zero-padded (for
/// example `"007081"`).
pub fn code(secret: &[u8], step: u64) -> String {
    format!("{:06}", hotp(secret, step, DIGITS))
}

/// The time step whose code is `given`, among the step containing `now` (unix
/// seconds) and one step either side, or `None`.
///
/// `given` must be exactly 6 ASCII digits; anything else (other lengths,
/// letters, non-ASCII digits, surrounding whitespace) is `None`. The caller
/// trims what the user typed. The three candidate codes are all computed and
/// compared in constant time with no early exit; if more than one matches, the
/// highest step is returned. Steps saturate at 0 and `u64::MAX`, so no input
/// panics. The caller should refuse a step it has already accepted for this
/// secret, which stops a code from being replayed within its window.
pub fn matching_step(secret: &[u8], given: &str, now: u64) -> Option<u64> {
    // The format is not secret, so refusing a malformed code early leaks nothing.
    let given = given.as_bytes();
    if given.len() != DIGITS as usize || !given.iter().all(u8::is_ascii_digit) {
        return None;
    }

    let current = step_at(now);
    let candidates = [
        current.saturating_sub(1),
        current,
        current.saturating_add(1),
    ];
    let mut matched = Choice::from(0);
    let mut step = 0u64;
    // Ascending order, so a later (higher) match overwrites an earlier one.
    for candidate in candidates {
        let hit = code(secret, candidate).as_bytes().ct_eq(given);
        step = u64::conditional_select(&step, &candidate, hit);
        matched |= hit;
    }
    if bool::from(matched) {
        Some(step)
    } else {
        None
    }
}

/// `bytes` in RFC 4648 base32: uppercase alphabet `A-Z2-7`, no `=` padding, as
/// authenticator apps expect in the `secret=` parameter and for manual entry.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    // `buffer` holds the `bits` not yet written (fewer than 5 between bytes), so
    // with the next byte shifted in it needs at most 12 bits.
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(base32_symbol(buffer >> bits));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        // The last symbol is the remaining bits padded with zero bits on the right.
        out.push(base32_symbol(buffer << (5 - bits)));
    }
    out
}

/// The base32 symbol for the low 5 bits of `value`.
fn base32_symbol(value: u32) -> char {
    // Masked to 0..=31, so the index is always in range.
    char::from(BASE32_ALPHABET[(value & 0x1f) as usize])
}

/// The `otpauth://` key URI (Google's "Key Uri Format") an authenticator app
/// imports, usually from a QR code:
/// `otpauth://totp/ISSUER:ACCOUNT?secret=SECRET&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`.
///
/// `issuer` and `account` are percent-encoded except for RFC 3986's unreserved
/// characters, so `:` `@` `&` `?` `/` `#` and spaces in them are escaped (an
/// email's `@` becomes `%40`) and cannot split the label or the query.
/// `secret_base32` is expected to come from [`base32`]; it is percent-encoded
/// the same way, which changes nothing for valid base32 but keeps the URI
/// well-formed whatever it contains. The URI contains the secret: treat it as
/// one.
pub fn otpauth_uri(issuer: &str, account: &str, secret_base32: &str) -> String {
    let issuer = utf8_percent_encode(issuer, URI_COMPONENT).to_string();
    let account = utf8_percent_encode(account, URI_COMPONENT);
    let secret = utf8_percent_encode(secret_base32, URI_COMPONENT);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}\
         &algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret of RFC 4226 appendix D and RFC 6238 appendix B (SHA-1).
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_appendix_b_sha1() {
        let rows: [(u64, &str); 6] = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, expected) in rows {
            let value = hotp(RFC_SECRET, step_at(time), 8);
            assert_eq!(format!("{value:08}"), expected, "time {time}");
        }
    }

    #[test]
    fn rfc4226_appendix_d() {
        let expected: [u32; 10] = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, value) in (0u64..).zip(expected) {
            assert_eq!(hotp(RFC_SECRET, counter, 6), value, "counter {counter}");
        }
    }

    #[test]
    fn hotp_clamps_digits() {
        assert_eq!(hotp(RFC_SECRET, 0, 0), hotp(RFC_SECRET, 0, 6));
        assert_eq!(hotp(RFC_SECRET, 0, 100), hotp(RFC_SECRET, 0, 8));
        assert_eq!(hotp(b"", u64::MAX, u32::MAX), hotp(b"", u64::MAX, 8));
    }

    #[test]
    fn code_is_six_zero_padded_digits() {
        // Step 37037036 (time 1111111109) gives 07081804 with 8 digits, so
        // 081804 with 6: the leading zero must survive.
        assert_eq!(code(RFC_SECRET, step_at(1_111_111_109)), "081804");
        assert_eq!(code(RFC_SECRET, 1), "287082");
    }

    #[test]
    fn step_at_divides_by_thirty() {
        assert_eq!(step_at(0), 0);
        assert_eq!(step_at(29), 0);
        assert_eq!(step_at(30), 1);
        assert_eq!(step_at(59), 1);
        assert_eq!(step_at(u64::MAX), u64::MAX / 30);
    }

    #[test]
    fn matching_step_accepts_one_step_of_skew() {
        let now = 1_111_111_111;
        let step = step_at(now);
        for candidate in [step - 1, step, step + 1] {
            let given = code(RFC_SECRET, candidate);
            assert_eq!(matching_step(RFC_SECRET, &given, now), Some(candidate));
        }
    }

    #[test]
    fn matching_step_refuses_two_steps_of_skew() {
        let now = 1_111_111_111;
        let step = step_at(now);
        for candidate in [step - 2, step + 2] {
            let given = code(RFC_SECRET, candidate);
            // Guard against a coincidental equal code in the window.
            let window: Vec<String> = (step - 1..=step + 1).map(|s| code(RFC_SECRET, s)).collect();
            assert!(!window.contains(&given));
            assert_eq!(matching_step(RFC_SECRET, &given, now), None);
        }
    }

    #[test]
    fn matching_step_refuses_malformed_input() {
        let now = 1_111_111_111;
        let good = code(RFC_SECRET, step_at(now));
        for given in [
            "",
            "12345",
            "1234567",
            "12345a",
            "１２３４５６",
            " 123456",
            "123456\n",
            "+12345",
            "-12345",
        ] {
            assert_eq!(matching_step(RFC_SECRET, given, now), None, "{given:?}");
        }
        assert_eq!(matching_step(RFC_SECRET, &format!(" {good}"), now), None);
        assert_eq!(matching_step(RFC_SECRET, &format!("{good} "), now), None);
        assert_eq!(matching_step(RFC_SECRET, &format!("{good}0"), now), None);
    }

    #[test]
    fn matching_step_saturates_at_the_edges() {
        assert_eq!(matching_step(RFC_SECRET, &code(RFC_SECRET, 0), 0), Some(0));
        assert_eq!(matching_step(RFC_SECRET, &code(RFC_SECRET, 1), 0), Some(1));
        let last = step_at(u64::MAX);
        assert_eq!(
            matching_step(RFC_SECRET, &code(RFC_SECRET, last + 1), u64::MAX),
            Some(last + 1)
        );
    }

    #[test]
    fn matching_step_returns_the_highest_of_several_matches() {
        // Steps 910737 and 910738 of the RFC secret share the code 911617 (found
        // by searching), so a window holding both must report the later one.
        let (first, second) = (910_737, 910_738);
        assert_eq!(code(RFC_SECRET, first), "911617");
        assert_eq!(code(RFC_SECRET, second), "911617");
        let at = |step: u64| step * STEP_SECONDS + 7;
        assert_eq!(
            matching_step(RFC_SECRET, "911617", at(first - 1)),
            Some(first)
        );
        assert_eq!(matching_step(RFC_SECRET, "911617", at(first)), Some(second));
        assert_eq!(
            matching_step(RFC_SECRET, "911617", at(second)),
            Some(second)
        );
        assert_eq!(
            matching_step(RFC_SECRET, "911617", at(second + 1)),
            Some(second)
        );
        // At time 0 the previous step saturates to 0, which is then a candidate
        // twice: still step 0, not some other step.
        assert_eq!(matching_step(RFC_SECRET, &code(RFC_SECRET, 0), 29), Some(0));
    }

    #[test]
    fn base32_rfc4648_vectors() {
        let vectors: [(&str, &str); 7] = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (input, expected) in vectors {
            assert_eq!(base32(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn base32_of_a_secret_is_32_symbols() {
        let encoded = base32(&[0xff; SECRET_BYTES]);
        assert_eq!(encoded, "7".repeat(32));
        assert_eq!(base32(RFC_SECRET), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn otpauth_uri_escapes_issuer_and_account() {
        let uri = otpauth_uri("My App", "ada@example.com", "JBSWY3DPEHPK3PXP");
        assert_eq!(
            uri,
            "otpauth://totp/My%20App:ada%40example.com?secret=JBSWY3DPEHPK3PXP\
             &issuer=My%20App&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn otpauth_uri_escapes_reserved_characters() {
        let uri = otpauth_uri("a:b/c?d#e&f", "x=y&z é", "ABC");
        assert_eq!(
            uri,
            "otpauth://totp/a%3Ab%2Fc%3Fd%23e%26f:x%3Dy%26z%20%C3%A9?secret=ABC\
             &issuer=a%3Ab%2Fc%3Fd%23e%26f&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(otpauth_uri("-._~", "", "").matches("-._~").count(), 2);
    }
}
