//! Session tokens: a small, fixed-layout HMAC-SHA256 token format (not JWT).
//!
//! This module owns the byte format of the access token handed to clients after
//! log-in, the keys that sign it, and the one function that decides whether a token
//! string is acceptable. The refresh token, signed by the same keys, is
//! [`refresh`]. The full specification, with rationale and a worked test
//! vector, is `docs/token.md`; `docs/verify_token.py` is an independent reference
//! verifier in Python. What follows is the normative summary.
//!
//! # Format (version 1)
//!
//! ```text
//! payload (45 bytes) = version   1 byte   = 1
//!                   || key_id    4 bytes  = first 4 bytes of HMAC-SHA256(secret, "auth-server token key id v1")
//!                   || user_id   u64 big-endian
//!                   || session_id 16 bytes
//!                   || issued_at  u64 big-endian, Unix seconds
//!                   || expires_at u64 big-endian, Unix seconds
//! P     = base64url-no-padding(payload)          (always 60 characters)
//! token = P "." base64url-no-padding(HMAC-SHA256(secret, ASCII bytes of P))   (always 104 characters)
//! ```
//!
//! Every field is fixed width and big-endian, so each claim set has exactly one
//! byte string and, with the strict base64url decoder, exactly one token string.
//! There is no JSON and no algorithm field: the version byte fixes the algorithm
//! and the layout, which removes the parser and "alg" confusion problems of JWT.
//! The MAC covers the payload text exactly as transmitted, so there is nothing to
//! re-serialise before checking it.
//!
//! # Verification, in this order (first failure wins)
//!
//! 1. Token longer than [`MAX_TOKEN_LEN`] bytes: `Malformed` (bounds all later work).
//! 2. Not exactly one `.`, or an empty part: `Malformed`.
//! 3. Either part not canonical unpadded base64url (padding, `+`, `/`, whitespace,
//!    non-zero trailing bits, impossible length): `Malformed`.
//! 4. Payload not exactly 45 bytes or MAC not exactly 32 bytes: `Malformed`.
//! 5. Version byte not [`VERSION`]: `Malformed`.
//! 6. Key id not in the [`Keyring`]: `UnknownKey`. The id selects the key; keys are
//!    never tried in turn.
//! 7. MAC wrong (constant-time comparison): `BadSignature`.
//! 8. Only now are the claims read. `expires_at <= issued_at`: `Malformed`.
//! 9. `issued_at > now + MAX_CLOCK_SKEW_SECS`: `Malformed` (a token from the future).
//! 10. `now >= expires_at`: `Expired`.
//!
//! # Threat model
//!
//! - Forgery and tampering: without a secret nobody can produce a valid 256-bit MAC,
//!   and any change to either part of the string is rejected before the claims are
//!   read. Strict decoding means no second spelling of a valid token exists.
//! - Timing: the MAC is compared with `hmac::Mac::verify_slice` (constant time). Only
//!   public values (lengths, version, key id) are compared in variable time.
//! - Denial of service: at most [`MAX_TOKEN_LEN`] bytes are decoded and at most one
//!   HMAC is computed per token.
//! - Replay: a stolen token is valid until it expires. Revocation (logout, password
//!   change) is the server's check that the session is still live in the database,
//!   which is done outside this module and must not be skipped.
//! - Key compromise: whoever holds a secret can mint tokens for any user (the
//!   database session check still demands a live session id). Build a new [`Keyring`]
//!   whose current key is fresh and that no longer contains the compromised key;
//!   every token it signed then fails with `UnknownKey`. Routine rotation keeps the
//!   old key in `previous` until its tokens have expired.
//! - Not covered: confidentiality. The claims are signed, not encrypted; anyone who
//!   holds a token can read its user id, session id and times.
//!
//! Secrets never appear in `Debug` output or errors: [`Key`] prints only its id and
//! no error carries a secret or a token.

pub mod refresh;

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Format version written into every token and the only version [`Keyring::verify`]
/// accepts. A different layout or algorithm would get a new version number.
pub const VERSION: u8 = 1;

/// Minimum secret length in bytes accepted by [`Key::new`]. Thirty-two bytes match
/// the HMAC-SHA256 output size; the secret should come from a CSPRNG, since length
/// alone says nothing about its entropy.
pub const MIN_SECRET_LEN: usize = 32;

/// Longest token string, in bytes, that [`Keyring::verify`] will look at. A valid
/// version 1 token is always exactly 104 bytes; the cap only exists to reject
/// absurdly long input before decoding anything.
pub const MAX_TOKEN_LEN: usize = 256;

/// How far in the future `issued_at` may be, in seconds, before [`Keyring::verify`]
/// rejects the token as `Malformed`. It absorbs small clock differences between the
/// servers that share a keyring.
pub const MAX_CLOCK_SKEW_SECS: u64 = 60;

/// Domain-separation label for deriving a key id from a secret.
const KEY_ID_LABEL: &[u8] = b"auth-server token key id v1";

const PAYLOAD_LEN: usize = 45;
const MAC_LEN: usize = 32;

// Byte offsets of the payload fields; the layout is documented at the top of the file.
const VERSION_AT: usize = 0;
const KEY_ID_AT: usize = 1;
const USER_ID_AT: usize = 5;
const SESSION_ID_AT: usize = 13;
const ISSUED_AT_AT: usize = 29;
const EXPIRES_AT_AT: usize = 37;
const _: () = assert!(EXPIRES_AT_AT + 8 == PAYLOAD_LEN);

/// Unpadded base64url that accepts exactly one spelling of each byte string: no
/// padding, no standard-alphabet characters, no non-zero trailing bits. A lenient
/// decoder would let several token strings carry the same bytes.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// One token signing and verifying key.
///
/// It holds the HMAC state keyed with the secret (equivalent to the secret, so it is
/// treated as one) and the 4-byte key id derived from it. `Debug` prints only the id.
#[derive(Clone)]
pub struct Key {
    id: [u8; 4],
    mac: HmacSha256,
}

impl Key {
    /// Builds a key from a raw secret.
    ///
    /// The key id is the first 4 bytes of `HMAC-SHA256(secret, "auth-server token key
    /// id v1")`: it is published in every token, and being derived from the secret it
    /// needs no separate configuration and cannot name two different secrets on the
    /// same server.
    ///
    /// # Errors
    ///
    /// [`KeyError::SecretTooShort`] if `secret` is shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Key, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::SecretTooShort { len: secret.len() });
        }
        // HMAC is defined for keys of every length, so this cannot fail whatever the
        // secret is; the Result only exists because the trait is shared with other MACs.
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        let mut id_mac = mac.clone();
        id_mac.update(KEY_ID_LABEL);
        let digest = id_mac.finalize().into_bytes();
        let id = [digest[0], digest[1], digest[2], digest[3]];
        Ok(Key { id, mac })
    }

    /// The public 4-byte key id carried in every token this key signs.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    /// HMAC state over `text`, ready to finalize or to verify.
    fn mac_over(&self, text: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(text);
        mac
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &hex(&self.id))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a [`Key`] or [`Keyring`] could not be built. Neither the message nor `Debug`
/// contains a secret; key ids are public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// The secret has `len` bytes, fewer than [`MIN_SECRET_LEN`].
    SecretTooShort {
        /// Length of the rejected secret in bytes.
        len: usize,
    },
    /// Two keys of a keyring have the same id: the same secret was given twice, or
    /// two secrets collide on the 32-bit id (then generate a new secret).
    DuplicateKeyId {
        /// The shared key id.
        id: [u8; 4],
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::SecretTooShort { len } => write!(
                f,
                "token secret is {len} bytes long, at least {MIN_SECRET_LEN} are required"
            ),
            KeyError::DuplicateKeyId { id } => write!(
                f,
                "two token keys have the same key id {} (same secret twice, or an id collision: generate a new secret)",
                hex(id)
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// The set of keys a server signs and verifies with.
///
/// The current key signs; previous keys only verify, so that tokens issued before a
/// rotation stay valid until they expire. Removing a key from the keyring revokes
/// every token it signed.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl Keyring {
    /// Builds a keyring from the signing key and the keys that may still verify.
    ///
    /// # Errors
    ///
    /// [`KeyError::DuplicateKeyId`] if two of the keys share an id, which includes the
    /// same secret given twice. Ids must be unique because a token's id alone picks the
    /// key that verifies it.
    pub fn new(current: Key, previous: Vec<Key>) -> Result<Keyring, KeyError> {
        let keyring = Keyring { current, previous };
        let ids: Vec<[u8; 4]> = keyring.keys().map(Key::id).collect();
        for (i, id) in ids.iter().enumerate() {
            if ids[i + 1..].contains(id) {
                return Err(KeyError::DuplicateKeyId { id: *id });
            }
        }
        Ok(keyring)
    }

    /// Signs `claims` with the current key and returns the token string (104 ASCII
    /// characters, safe in URLs, headers and cookies).
    ///
    /// The caller is responsible for the claims: `expires_at` must be greater than
    /// `issued_at`, or the token is produced but every verification rejects it as
    /// `Malformed`.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload_text = B64URL.encode(encode_payload(self.current.id, claims));
        let tag = self
            .current
            .mac_over(payload_text.as_bytes())
            .finalize()
            .into_bytes();
        format!("{payload_text}.{}", B64URL.encode(tag))
    }

    /// Checks `token` at time `now` (Unix seconds) and returns its claims.
    ///
    /// The steps and their order are the specification at the top of this module. A
    /// successful result only means the token is authentic and unexpired: the caller
    /// must still check that the session is live in the database.
    ///
    /// # Errors
    ///
    /// - [`TokenError::Malformed`]: not a canonical version 1 token, or its signed
    ///   times are impossible (`expires_at <= issued_at`, or `issued_at` more than
    ///   [`MAX_CLOCK_SKEW_SECS`] after `now`).
    /// - [`TokenError::UnknownKey`]: signed with a key this keyring does not hold.
    /// - [`TokenError::BadSignature`]: the MAC does not match.
    /// - [`TokenError::Expired`]: `now >= expires_at`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload_text, mac_text) = split_token(token)?;
        let payload: [u8; PAYLOAD_LEN] = decode_exact(payload_text)?;
        let tag: [u8; MAC_LEN] = decode_exact(mac_text)?;

        // Version and key id are the only fields read before the MAC is checked: they
        // decide which key and which rules apply.
        if payload[VERSION_AT] != VERSION {
            return Err(TokenError::Malformed);
        }
        let key_id: [u8; 4] = read_field(&payload, KEY_ID_AT);
        let key = self.key_by_id(key_id).ok_or(TokenError::UnknownKey)?;
        key.mac_over(payload_text.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;

        let claims = decode_claims(&payload);
        if claims.expires_at <= claims.issued_at {
            return Err(TokenError::Malformed);
        }
        if claims.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(TokenError::Malformed);
        }
        if now >= claims.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    fn keys(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    fn key_by_id(&self, id: [u8; 4]) -> Option<&Key> {
        self.keys().find(|key| key.id == id)
    }
}

/// What a token asserts. All times are Unix seconds.
///
/// None of this is secret in the cryptographic sense (tokens are not encrypted), but
/// it is only trustworthy when it comes out of [`Keyring::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// The user the session belongs to.
    pub user_id: u64,
    /// The server-side session this token stands for; the caller checks it is live.
    pub session_id: [u8; 16],
    /// When the token was issued.
    pub issued_at: u64,
    /// First second at which the token is no longer valid.
    pub expires_at: u64,
}

/// Why [`Keyring::verify`] rejected a token. Carries no data, so it can never leak
/// the token or a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a well-formed, canonical version 1 token, or its signed times are impossible.
    Malformed,
    /// Well formed, but its key id is not in the keyring (never issued by us, or the
    /// key was retired).
    UnknownKey,
    /// Well formed and from a known key, but the MAC does not match: forged or altered.
    BadSignature,
    /// Authentic, but `now >= expires_at`.
    Expired,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            TokenError::Malformed => "malformed session token",
            TokenError::UnknownKey => "session token signed with an unknown key",
            TokenError::BadSignature => "session token signature does not match",
            TokenError::Expired => "session token has expired",
        };
        f.write_str(text)
    }
}

impl std::error::Error for TokenError {}

/// Splits at the single `.`; more dots or an empty side is `Malformed`.
fn split_token(token: &str) -> Result<(&str, &str), TokenError> {
    let (payload_text, mac_text) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if payload_text.is_empty() || mac_text.is_empty() || mac_text.contains('.') {
        return Err(TokenError::Malformed);
    }
    Ok((payload_text, mac_text))
}

/// Strictly decodes `text` and requires exactly `N` bytes.
fn decode_exact<const N: usize>(text: &str) -> Result<[u8; N], TokenError> {
    let bytes = B64URL.decode(text).map_err(|_| TokenError::Malformed)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| TokenError::Malformed)
}

fn encode_payload(key_id: [u8; 4], claims: &Claims) -> [u8; PAYLOAD_LEN] {
    let mut payload = [0u8; PAYLOAD_LEN];
    payload[VERSION_AT] = VERSION;
    write_field(&mut payload, KEY_ID_AT, &key_id);
    write_field(&mut payload, USER_ID_AT, &claims.user_id.to_be_bytes());
    write_field(&mut payload, SESSION_ID_AT, &claims.session_id);
    write_field(&mut payload, ISSUED_AT_AT, &claims.issued_at.to_be_bytes());
    write_field(
        &mut payload,
        EXPIRES_AT_AT,
        &claims.expires_at.to_be_bytes(),
    );
    payload
}

fn decode_claims(payload: &[u8; PAYLOAD_LEN]) -> Claims {
    Claims {
        user_id: u64::from_be_bytes(read_field(payload, USER_ID_AT)),
        session_id: read_field(payload, SESSION_ID_AT),
        issued_at: u64::from_be_bytes(read_field(payload, ISSUED_AT_AT)),
        expires_at: u64::from_be_bytes(read_field(payload, EXPIRES_AT_AT)),
    }
}

// Offsets and widths are the constants above, never input, so these slices are in range.
fn write_field(payload: &mut [u8; PAYLOAD_LEN], offset: usize, field: &[u8]) {
    payload[offset..offset + field.len()].copy_from_slice(field);
}

/// The `N` bytes of a fixed-layout payload (this module's, or a refresh
/// token's) at `offset`.
fn read_field<const N: usize>(payload: &[u8], offset: usize) -> [u8; N] {
    let mut field = [0u8; N];
    field.copy_from_slice(&payload[offset..offset + N]);
    field
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;
    use std::process::{Command, Output};

    // The worked example of docs/token.md, computed independently with Python's
    // hmac/base64 and checked with openssl and coreutils' basenc.
    const VECTOR_SECRET: &[u8; 32] = b"test-secret-0123456789-abcdefghi";
    const VECTOR_KEY_ID: [u8; 4] = [0x17, 0x0a, 0x0f, 0x36];
    const VECTOR_TOKEN: &str = "ARcKDzYAAAAAAAAAKgABAgMEBQYHCAkKCwwNDg8AAAAAZVPxAAAAAABlU_8Q.wdkPjyryRmPB3_lVChDQXLWQG7bTsBstIukFjIW7_qs";
    const VECTOR_CLAIMS: Claims = Claims {
        user_id: 42,
        session_id: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        issued_at: 1_700_000_000,
        expires_at: 1_700_003_600,
    };
    const NOW: u64 = 1_700_000_010;

    const OTHER_SECRET: &[u8; 32] = b"another-secret-with-32-bytes-xyz";
    const THIRD_SECRET: &[u8; 32] = b"third-secret-for-rotation-tests!";

    fn key(secret: &[u8]) -> Key {
        Key::new(secret).unwrap()
    }

    fn ring(secret: &[u8]) -> Keyring {
        Keyring::new(key(secret), Vec::new()).unwrap()
    }

    fn vector_ring() -> Keyring {
        ring(VECTOR_SECRET)
    }

    /// A token over arbitrary payload bytes, MAC'd correctly with `secret`, so that
    /// only the property under test is wrong.
    fn token_from_payload(secret: &[u8], payload: &[u8]) -> String {
        let payload_text = B64URL.encode(payload);
        let tag = key(secret)
            .mac_over(payload_text.as_bytes())
            .finalize()
            .into_bytes();
        format!("{payload_text}.{}", B64URL.encode(tag))
    }

    fn vector_payload() -> Vec<u8> {
        B64URL
            .decode(VECTOR_TOKEN.split_once('.').unwrap().0)
            .unwrap()
    }

    fn with_claims(claims: &Claims) -> String {
        vector_ring().sign(claims)
    }

    fn parts(token: &str) -> (String, String) {
        let (p, m) = token.split_once('.').unwrap();
        (p.to_string(), m.to_string())
    }

    #[test]
    fn test_vector_signs_and_verifies() {
        let k = key(VECTOR_SECRET);
        assert_eq!(k.id(), VECTOR_KEY_ID);
        let ring = vector_ring();
        assert_eq!(ring.sign(&VECTOR_CLAIMS), VECTOR_TOKEN);
        assert_eq!(ring.verify(VECTOR_TOKEN, NOW), Ok(VECTOR_CLAIMS));
    }

    #[test]
    fn test_vector_payload_layout() {
        let payload = vector_payload();
        let mut expected = vec![VERSION];
        expected.extend_from_slice(&VECTOR_KEY_ID);
        expected.extend_from_slice(&42u64.to_be_bytes());
        expected.extend_from_slice(&VECTOR_CLAIMS.session_id);
        expected.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        expected.extend_from_slice(&1_700_003_600u64.to_be_bytes());
        assert_eq!(payload, expected);
        assert_eq!(VECTOR_TOKEN.len(), 104);
    }

    #[test]
    fn round_trip_various_claims() {
        let ring = ring(OTHER_SECRET);
        for (user_id, issued_at, expires_at) in [
            (0, 0, 1),
            (1, 1_700_000_000, 1_700_000_001),
            (u64::MAX, u64::MAX - 1, u64::MAX),
            (7, 1_000, 2_000_000_000),
        ] {
            let claims = Claims {
                user_id,
                session_id: [0xA5; 16],
                issued_at,
                expires_at,
            };
            let token = ring.sign(&claims);
            assert_eq!(token.len(), 104);
            assert_eq!(ring.verify(&token, issued_at), Ok(claims));
        }
    }

    #[test]
    fn flipping_any_decoded_bit_is_rejected_with_the_right_error() {
        let ring = vector_ring();
        let (payload_text, mac_text) = parts(VECTOR_TOKEN);
        let payload = B64URL.decode(&payload_text).unwrap();
        let mac = B64URL.decode(&mac_text).unwrap();

        for i in 0..payload.len() {
            for bit in 0..8 {
                let mut altered = payload.clone();
                altered[i] ^= 1 << bit;
                let token = format!("{}.{mac_text}", B64URL.encode(&altered));
                let expected = match i {
                    VERSION_AT => TokenError::Malformed,
                    1..=4 => TokenError::UnknownKey,
                    _ => TokenError::BadSignature,
                };
                assert_eq!(ring.verify(&token, NOW), Err(expected), "payload byte {i}");
            }
        }
        for i in 0..mac.len() {
            for bit in 0..8 {
                let mut altered = mac.clone();
                altered[i] ^= 1 << bit;
                let token = format!("{payload_text}.{}", B64URL.encode(&altered));
                assert_eq!(
                    ring.verify(&token, NOW),
                    Err(TokenError::BadSignature),
                    "mac byte {i}"
                );
            }
        }
    }

    #[test]
    fn changing_any_character_is_rejected() {
        let ring = vector_ring();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
        let original: Vec<char> = VECTOR_TOKEN.chars().collect();
        for i in 0..original.len() {
            for c in alphabet.chars().filter(|&c| c != original[i]) {
                let mut altered = original.clone();
                altered[i] = c;
                let token: String = altered.into_iter().collect();
                assert!(ring.verify(&token, NOW).is_err(), "position {i} -> {c:?}");
            }
        }
    }

    #[test]
    fn mac_from_another_secret_under_our_key_id_is_bad_signature() {
        let forged = token_from_payload(OTHER_SECRET, &vector_payload());
        assert_eq!(
            vector_ring().verify(&forged, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn wrong_key_is_unknown_key() {
        assert_eq!(
            ring(OTHER_SECRET).verify(VECTOR_TOKEN, NOW),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn rotation_previous_key_verifies_and_removed_key_does_not() {
        let old = Keyring::new(key(VECTOR_SECRET), Vec::new()).unwrap();
        let old_token = old.sign(&VECTOR_CLAIMS);

        let rotated = Keyring::new(key(OTHER_SECRET), vec![key(VECTOR_SECRET)]).unwrap();
        assert_eq!(rotated.verify(&old_token, NOW), Ok(VECTOR_CLAIMS));
        let new_token = rotated.sign(&VECTOR_CLAIMS);
        assert_ne!(new_token, old_token);
        assert_eq!(
            new_token
                .split_once('.')
                .map(|(p, _)| B64URL.decode(p).unwrap()[1..5].to_vec()),
            Some(key(OTHER_SECRET).id().to_vec()),
            "the current key signs"
        );
        assert_eq!(old.verify(&new_token, NOW), Err(TokenError::UnknownKey));

        let retired = Keyring::new(key(THIRD_SECRET), vec![key(OTHER_SECRET)]).unwrap();
        assert_eq!(retired.verify(&old_token, NOW), Err(TokenError::UnknownKey));
        assert_eq!(retired.verify(&new_token, NOW), Ok(VECTOR_CLAIMS));
    }

    #[test]
    fn keyring_rejects_duplicate_ids() {
        let id = key(VECTOR_SECRET).id();
        assert_eq!(
            Keyring::new(key(VECTOR_SECRET), vec![key(VECTOR_SECRET)]).unwrap_err(),
            KeyError::DuplicateKeyId { id }
        );
        assert_eq!(
            Keyring::new(
                key(OTHER_SECRET),
                vec![key(VECTOR_SECRET), key(THIRD_SECRET), key(VECTOR_SECRET)]
            )
            .unwrap_err(),
            KeyError::DuplicateKeyId { id }
        );
        assert!(
            Keyring::new(
                key(OTHER_SECRET),
                vec![key(VECTOR_SECRET), key(THIRD_SECRET)]
            )
            .is_ok()
        );
    }

    #[test]
    fn short_secret_is_rejected() {
        assert_eq!(
            Key::new(&VECTOR_SECRET[..31]).unwrap_err(),
            KeyError::SecretTooShort { len: 31 }
        );
        assert_eq!(
            Key::new(b"").unwrap_err(),
            KeyError::SecretTooShort { len: 0 }
        );
        assert!(Key::new(&[0x42; MIN_SECRET_LEN]).is_ok());
    }

    #[test]
    fn secrets_do_not_leak_into_debug_or_errors() {
        let k = key(VECTOR_SECRET);
        let secret_text = std::str::from_utf8(VECTOR_SECRET).unwrap();
        let debug = format!("{k:?}");
        assert!(debug.contains("170a0f36"), "{debug}");
        assert!(!debug.contains(secret_text), "{debug}");
        assert!(!debug.contains("test-secret"), "{debug}");
        let ring_debug = format!("{:?}", vector_ring());
        assert!(!ring_debug.contains("test-secret"), "{ring_debug}");

        let too_short = Key::new(&VECTOR_SECRET[..20]).unwrap_err().to_string();
        assert!(!too_short.contains("test-secret"), "{too_short}");
        let duplicate = Keyring::new(key(VECTOR_SECRET), vec![key(VECTOR_SECRET)])
            .unwrap_err()
            .to_string();
        assert!(!duplicate.contains("test-secret"), "{duplicate}");
        assert!(duplicate.contains("170a0f36"), "{duplicate}");

        for err in [
            TokenError::Malformed,
            TokenError::UnknownKey,
            TokenError::BadSignature,
            TokenError::Expired,
        ] {
            let text = err.to_string();
            assert!(!text.is_empty());
            assert!(!text.contains(&VECTOR_TOKEN[..10]), "{text}");
        }
    }

    /// Every non-canonical or structurally wrong spelling of the vector token.
    fn malformed_variants() -> Vec<(&'static str, String)> {
        let (p, m) = parts(VECTOR_TOKEN);
        let payload = vector_payload();
        let with_payload = |bytes: &[u8]| token_from_payload(VECTOR_SECRET, bytes);

        // The MAC part is 43 characters for 32 bytes, so its last character carries
        // 2 unused bits; flipping the lowest gives a different string for the same bytes.
        let last = m.as_bytes()[m.len() - 1];
        let last_index = alphabet_index(last);
        let non_canonical_last = char::from(URL_SAFE_CHARS[last_index ^ 1]);
        assert_eq!(
            last_index & 0b11,
            0,
            "canonical last char has zero trailing bits"
        );
        let trailing_bits = format!("{p}.{}{non_canonical_last}", &m[..m.len() - 1]);

        let mut v0 = payload.clone();
        v0[0] = 0;
        let mut v2 = payload.clone();
        v2[0] = 2;
        let mut payload_46 = payload.clone();
        payload_46.push(0);
        let mac_bytes = B64URL.decode(&m).unwrap();
        let mut mac_33 = mac_bytes.clone();
        mac_33.push(0);

        vec![
            ("payload padded", format!("{p}=.{m}")),
            ("mac padded", format!("{p}.{m}=")),
            ("standard alphabet '/'", VECTOR_TOKEN.replace('_', "/")),
            ("standard alphabet '+'", format!("+{}", &VECTOR_TOKEN[1..])),
            ("extra dot at end", format!("{VECTOR_TOKEN}.")),
            ("extra dot in mac", format!("{p}.{}.{}", &m[..20], &m[20..])),
            ("three parts", format!("{p}.{m}.{m}")),
            ("no dot", format!("{p}{m}")),
            ("payload only", p.clone()),
            ("mac only", m.clone()),
            ("empty payload", format!(".{m}")),
            ("empty mac", format!("{p}.")),
            ("just a dot", ".".to_string()),
            ("empty string", String::new()),
            ("leading space", format!(" {VECTOR_TOKEN}")),
            ("trailing newline", format!("{VECTOR_TOKEN}\n")),
            ("space after dot", format!("{p}. {m}")),
            (
                "space inside",
                format!("{}  {}", &p[..30], &p[30..]) + "." + &m,
            ),
            ("trailing bits", trailing_bits),
            ("impossible base64 length", format!("{p}A.{m}")),
            ("payload 44 bytes", with_payload(&payload[..44])),
            ("payload 46 bytes", with_payload(&payload_46)),
            (
                "mac 31 bytes",
                format!("{p}.{}", B64URL.encode(&mac_bytes[..31])),
            ),
            ("mac 33 bytes", format!("{p}.{}", B64URL.encode(&mac_33))),
            ("version 0", with_payload(&v0)),
            ("version 2", with_payload(&v2)),
            ("absurdly long", "A".repeat(100_000)),
            (
                "just over the cap",
                format!("{VECTOR_TOKEN}{}", "A".repeat(MAX_TOKEN_LEN)),
            ),
            ("non-ascii", VECTOR_TOKEN.replacen('A', "\u{00c4}", 1)),
        ]
    }

    const URL_SAFE_CHARS: &[u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    fn alphabet_index(c: u8) -> usize {
        URL_SAFE_CHARS.iter().position(|&x| x == c).unwrap()
    }

    /// `token` with the base64url character at `index` replaced by the next one of
    /// the alphabet.
    fn change_char(token: &str, index: usize) -> String {
        let mut bytes = token.as_bytes().to_vec();
        bytes[index] = URL_SAFE_CHARS[(alphabet_index(bytes[index]) + 1) % 64];
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn non_canonical_and_structural_errors_are_malformed() {
        let ring = vector_ring();
        for (name, token) in malformed_variants() {
            assert_ne!(token, VECTOR_TOKEN, "{name}");
            assert_eq!(
                ring.verify(&token, NOW),
                Err(TokenError::Malformed),
                "{name}"
            );
        }
    }

    #[test]
    fn lenient_decoder_would_have_accepted_the_trailing_bits_variant() {
        // Guards the previous test: the variant really is the same bytes spelled
        // differently, so only the strict decoder stands between it and acceptance.
        let lenient = GeneralPurpose::new(
            &alphabet::URL_SAFE,
            GeneralPurposeConfig::new()
                .with_decode_padding_mode(DecodePaddingMode::RequireNone)
                .with_decode_allow_trailing_bits(true),
        );
        let (_, trailing_bits) = malformed_variants()
            .into_iter()
            .find(|(name, _)| *name == "trailing bits")
            .unwrap();
        let (_, m_variant) = parts(&trailing_bits);
        let (_, m) = parts(VECTOR_TOKEN);
        assert_ne!(m_variant, m);
        assert_eq!(
            lenient.decode(&m_variant).unwrap(),
            lenient.decode(&m).unwrap()
        );
        assert!(B64URL.decode(&m_variant).is_err());
    }

    #[test]
    fn impossible_times_are_malformed() {
        let ring = vector_ring();
        for (issued_at, expires_at) in [(100, 100), (200, 100), (u64::MAX, 0)] {
            let claims = Claims {
                issued_at,
                expires_at,
                ..VECTOR_CLAIMS
            };
            let token = with_claims(&claims);
            assert_eq!(ring.verify(&token, 50), Err(TokenError::Malformed));
        }
    }

    #[test]
    fn expiry_boundary() {
        let ring = vector_ring();
        let expires_at = VECTOR_CLAIMS.expires_at;
        assert_eq!(ring.verify(VECTOR_TOKEN, expires_at - 1), Ok(VECTOR_CLAIMS));
        assert_eq!(
            ring.verify(VECTOR_TOKEN, expires_at),
            Err(TokenError::Expired)
        );
        assert_eq!(
            ring.verify(VECTOR_TOKEN, u64::MAX),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn issued_in_the_future_within_skew_only() {
        let ring = vector_ring();
        let issued_at = VECTOR_CLAIMS.issued_at;
        assert_eq!(
            ring.verify(VECTOR_TOKEN, issued_at - MAX_CLOCK_SKEW_SECS),
            Ok(VECTOR_CLAIMS)
        );
        assert_eq!(
            ring.verify(VECTOR_TOKEN, issued_at - MAX_CLOCK_SKEW_SECS - 1),
            Err(TokenError::Malformed)
        );
        assert_eq!(ring.verify(VECTOR_TOKEN, 0), Err(TokenError::Malformed));
    }

    #[test]
    fn bad_signature_takes_precedence_over_time_checks() {
        // A forged token must say BadSignature whatever times it claims, so the
        // claims cannot be probed without the key.
        let ring = vector_ring();
        let claims = Claims {
            issued_at: 10,
            expires_at: 5,
            ..VECTOR_CLAIMS
        };
        let forged = ring_for_forgery().sign(&claims);
        assert_eq!(ring.verify(&forged, NOW), Err(TokenError::BadSignature));
    }

    /// A keyring whose key claims the vector key's id but has another secret.
    fn ring_for_forgery() -> Keyring {
        let mut impostor = key(OTHER_SECRET);
        impostor.id = VECTOR_KEY_ID;
        Keyring::new(impostor, Vec::new()).unwrap()
    }

    fn verdict(result: &Result<Claims, TokenError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(TokenError::Malformed) => "malformed",
            Err(TokenError::UnknownKey) => "unknown_key",
            Err(TokenError::BadSignature) => "bad_signature",
            Err(TokenError::Expired) => "expired",
        }
    }

    fn run_python_verifier(token: &str, now: u64) -> Output {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/verify_token.py");
        let secret = std::str::from_utf8(VECTOR_SECRET).unwrap();
        match Command::new("python3")
            .arg(&script)
            .arg(secret)
            .arg(token)
            .arg(now.to_string())
            .output()
        {
            Ok(output) => output,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "python3 is required by this test (it runs docs/verify_token.py): install python3, e.g. `apt-get install python3`"
            ),
            Err(err) => panic!("could not run python3 {}: {err}", script.display()),
        }
    }

    #[test]
    fn python_verifier_accepts_the_vector() {
        let output = run_python_verifier(VECTOR_TOKEN, NOW);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "user_id": VECTOR_CLAIMS.user_id,
                "session_id": hex(&VECTOR_CLAIMS.session_id),
                "issued_at": VECTOR_CLAIMS.issued_at,
                "expires_at": VECTOR_CLAIMS.expires_at,
                "key_id": hex(&VECTOR_KEY_ID),
            })
        );
    }

    #[test]
    fn python_verifier_rejects_a_tampered_token() {
        let tampered_mac = change_char(VECTOR_TOKEN, 80);
        let output = run_python_verifier(&tampered_mac, NOW);
        assert_eq!(output.status.code(), Some(1));
        assert!(output.stdout.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&output.stderr).trim(),
            "bad_signature"
        );
    }

    #[test]
    fn python_and_rust_agree_on_every_case() {
        let keyring = vector_ring();
        let mut cases: Vec<(String, String, u64)> = malformed_variants()
            .into_iter()
            .map(|(name, token)| (name.to_string(), token, NOW))
            .collect();
        let extra = [
            ("vector", VECTOR_TOKEN.to_string(), NOW),
            ("tampered payload", change_char(VECTOR_TOKEN, 40), NOW),
            ("tampered mac", change_char(VECTOR_TOKEN, 80), NOW),
            ("unknown key", ring(OTHER_SECRET).sign(&VECTOR_CLAIMS), NOW),
            ("forged", ring_for_forgery().sign(&VECTOR_CLAIMS), NOW),
            (
                "expired",
                VECTOR_TOKEN.to_string(),
                VECTOR_CLAIMS.expires_at,
            ),
            (
                "last valid second",
                VECTOR_TOKEN.to_string(),
                VECTOR_CLAIMS.expires_at - 1,
            ),
            ("from the future", VECTOR_TOKEN.to_string(), 1_000),
            (
                "expires before issued",
                with_claims(&Claims {
                    expires_at: 1,
                    ..VECTOR_CLAIMS
                }),
                NOW,
            ),
        ];
        cases.extend(extra.into_iter().map(|(n, t, now)| (n.to_string(), t, now)));

        for (name, token, now) in cases {
            let rust = verdict(&keyring.verify(&token, now));
            let output = run_python_verifier(&token, now);
            let python = match output.status.code() {
                Some(0) => "ok".to_string(),
                Some(1) => String::from_utf8_lossy(&output.stderr).trim().to_string(),
                other => panic!("{name}: python exited with {other:?}"),
            };
            assert_eq!(python, rust, "case {name:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_verify(s in "\\PC{0,300}") {
            prop_assert!(vector_ring().verify(&s, NOW).is_err());
        }

        #[test]
        fn base64ish_strings_never_verify(s in "[A-Za-z0-9_=+/.-]{0,120}") {
            prop_assert!(vector_ring().verify(&s, NOW).is_err());
        }

        #[test]
        fn random_payload_and_mac_under_a_known_key_is_bad_signature(
            body in proptest::collection::vec(any::<u8>(), PAYLOAD_LEN - 5),
            mac in proptest::collection::vec(any::<u8>(), MAC_LEN),
        ) {
            let mut payload = vec![VERSION];
            payload.extend_from_slice(&VECTOR_KEY_ID);
            payload.extend_from_slice(&body);
            let token = format!("{}.{}", B64URL.encode(&payload), B64URL.encode(&mac));
            prop_assert_eq!(vector_ring().verify(&token, NOW), Err(TokenError::BadSignature));
        }

        #[test]
        fn mutated_tokens_verify_only_when_unchanged(
            edits in proptest::collection::vec(
                (
                    0u8..3,
                    any::<prop::sample::Index>(),
                    prop_oneof![
                        prop::sample::select(URL_SAFE_CHARS.iter().map(|&b| char::from(b)).collect::<Vec<_>>()),
                        Just('.'),
                        any::<char>(),
                    ],
                ),
                1..4,
            )
        ) {
            let mut chars: Vec<char> = VECTOR_TOKEN.chars().collect();
            for (op, index, c) in edits {
                match op {
                    0 if !chars.is_empty() => {
                        let i = index.index(chars.len());
                        chars[i] = c;
                    }
                    1 => {
                        let i = index.index(chars.len() + 1);
                        chars.insert(i, c);
                    }
                    _ if !chars.is_empty() => {
                        let i = index.index(chars.len());
                        chars.remove(i);
                    }
                    _ => {}
                }
            }
            let mutated: String = chars.into_iter().collect();
            let result = vector_ring().verify(&mutated, NOW);
            if mutated == VECTOR_TOKEN {
                prop_assert_eq!(result, Ok(VECTOR_CLAIMS));
            } else {
                prop_assert!(result.is_err(), "mutated token verified: {:?}", mutated);
            }
        }
    }
}
