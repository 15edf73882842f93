//! Refresh tokens: the long-lived half of a session's credentials, traded at
//! `POST /auth/refresh` for a new access token and the next refresh token.
//!
//! The full specification, with a worked test vector, is in
//! `docs/token.md`. The normative summary:
//!
//! ```text
//! payload (41 bytes) = type        1 byte   = 2 (refresh token, version 1)
//!                   || key_id      4 bytes  (as in access tokens)
//!                   || session_id 16 bytes
//!                   || generation  u32 big-endian
//!                   || nonce      16 bytes  (the session's refresh_nonce)
//! P     = base64url-no-padding(payload)                      (always 55 characters)
//! token = P "." base64url-no-padding(HMAC-SHA256(secret, LABEL || P))   (99 characters)
//! LABEL = ASCII "auth-server refresh token v1."
//! ```
//!
//! # Why a MAC, and what the database holds
//!
//! The token is computed, not stored: the server can give the *current*
//! refresh token again (a client retrying within the reuse grace, two tabs
//! racing) without keeping it anywhere. The database keeps the session's
//! nonce (128 random bits) and generation; the key is in the server's
//! configuration. Neither alone yields a token: a database reader lacks the
//! key, and a key holder lacks the nonce, which no access token carries.
//! The MAC is 256 bits under the key, so tokens cannot be guessed.
//!
//! # Verification, in this order (first failure wins)
//!
//! 1. Longer than [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN), not one `.`
//!    between two non-empty parts, not canonical base64url, a payload not
//!    of 41 bytes or a MAC not of 32, or a type byte other than 2:
//!    `Malformed`. An access token (45-byte payload, type 1) fails here.
//! 2. Key id not in the keyring: `UnknownKey`.
//! 3. MAC wrong (constant-time comparison): `BadSignature`.
//!
//! Then the claims (session, generation, nonce) are read, and the caller
//! checks them against the session row: the nonce in constant time, the
//! generation by the rules of `db::sessions`. A forged token never reaches
//! the database.
//!
//! # Separation from access tokens
//!
//! Type byte, payload length, token length and MAC input all differ: an
//! access token's MAC is over `P` alone, a refresh token's over
//! `LABEL || P`, and `LABEL` holds characters base64url never produces, so
//! no string is both. Each verifier rejects the other kind as malformed.

use super::{B64URL, Keyring, TokenError, decode_exact, read_field, split_token};
use base64::Engine as _;
use hmac::Mac;

/// The first payload byte of a refresh token (access tokens have 1).
pub const REFRESH_TYPE: u8 = 2;

/// Domain separation for the MAC; see the module docs.
const LABEL: &[u8] = b"auth-server refresh token v1.";

const PAYLOAD_LEN: usize = 41;
const MAC_LEN: usize = 32;
const KEY_ID_AT: usize = 1;
const SESSION_ID_AT: usize = 5;
const GENERATION_AT: usize = 21;
const NONCE_AT: usize = 25;
const _: () = assert!(NONCE_AT + 16 == PAYLOAD_LEN);

/// What a refresh token names. Not secret from its holder, and only
/// trustworthy when it comes out of [`Keyring::verify_refresh`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshClaims {
    /// The session the token belongs to.
    pub session_id: [u8; 16],
    /// Which refresh of the session this token is (1 at login).
    pub generation: u32,
    /// The session's random nonce, to compare with the stored one.
    pub nonce: [u8; 16],
}

impl Keyring {
    /// The refresh token for `claims`, signed with the current key.
    /// Deterministic: the same claims under the same key give the same
    /// string, which is how the current token is given again.
    pub fn sign_refresh(&self, claims: &RefreshClaims) -> String {
        let mut payload = [0u8; PAYLOAD_LEN];
        payload[0] = REFRESH_TYPE;
        payload[KEY_ID_AT..SESSION_ID_AT].copy_from_slice(&self.current.id);
        payload[SESSION_ID_AT..GENERATION_AT].copy_from_slice(&claims.session_id);
        payload[GENERATION_AT..NONCE_AT].copy_from_slice(&claims.generation.to_be_bytes());
        payload[NONCE_AT..].copy_from_slice(&claims.nonce);
        let payload_text = B64URL.encode(payload);
        let tag = refresh_mac(&self.current, &payload_text)
            .finalize()
            .into_bytes();
        format!("{payload_text}.{}", B64URL.encode(tag))
    }

    /// Checks a refresh token's form, key and MAC (see the module docs) and
    /// returns its claims; the session checks are the caller's.
    ///
    /// # Errors
    ///
    /// [`TokenError::Malformed`], [`TokenError::UnknownKey`] or
    /// [`TokenError::BadSignature`]; never `Expired`, since a refresh token
    /// carries no time: it lives as long as its session row.
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        if token.len() > super::MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload_text, mac_text) = split_token(token)?;
        let payload: [u8; PAYLOAD_LEN] = decode_exact(payload_text)?;
        let tag: [u8; MAC_LEN] = decode_exact(mac_text)?;
        if payload[0] != REFRESH_TYPE {
            return Err(TokenError::Malformed);
        }
        let key_id: [u8; 4] = read_field(&payload, KEY_ID_AT);
        let key = self.key_by_id(key_id).ok_or(TokenError::UnknownKey)?;
        refresh_mac(key, payload_text)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(RefreshClaims {
            session_id: read_field(&payload, SESSION_ID_AT),
            generation: u32::from_be_bytes(read_field(&payload, GENERATION_AT)),
            nonce: read_field(&payload, NONCE_AT),
        })
    }
}

fn refresh_mac(key: &super::Key, payload_text: &str) -> super::HmacSha256 {
    let mut mac = key.mac_over(LABEL);
    mac.update(payload_text.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::super::{Claims, Key};
    use super::*;

    // The worked example of docs/token.md, with the access tokens' vector
    // secret.
    const SECRET: &[u8; 32] = b"test-secret-0123456789-abcdefghi";
    const OTHER: &[u8; 32] = b"another-secret-with-32-bytes-xyz";
    const CLAIMS: RefreshClaims = RefreshClaims {
        session_id: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        generation: 7,
        nonce: [0xa5; 16],
    };

    fn ring(secret: &[u8], previous: &[&[u8]]) -> Keyring {
        let previous = previous.iter().map(|s| Key::new(s).unwrap()).collect();
        Keyring::new(Key::new(secret).unwrap(), previous).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims_and_has_the_documented_shape() {
        let ring = ring(SECRET, &[]);
        let token = ring.sign_refresh(&CLAIMS);
        assert_eq!(token.len(), 99, "{token}");
        assert_eq!(token.find('.'), Some(55));
        assert_eq!(ring.verify_refresh(&token), Ok(CLAIMS));
        assert_eq!(ring.sign_refresh(&CLAIMS), token, "deterministic");
    }

    #[test]
    fn the_worked_example_of_the_spec() {
        let token = ring(SECRET, &[]).sign_refresh(&CLAIMS);
        assert_eq!(token, VECTOR);
    }

    /// docs/token.md, "Refresh tokens": computed with Python's hmac and
    /// base64 (the commands are in the document).
    const VECTOR: &str = "AhcKDzYAAQIDBAUGBwgJCgsMDQ4PAAAAB6WlpaWlpaWlpaWlpaWlpaU.AetarUMPTg5oktAca2qc1BOhxeDasSwgu2SxCL5KD8w";

    #[test]
    fn every_changed_field_or_key_is_refused() {
        let ring = ring(SECRET, &[]);
        let token = ring.sign_refresh(&CLAIMS);
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            if changed != token {
                assert!(ring.verify_refresh(&changed).is_err(), "position {i}");
            }
        }
        let other = super::super::Keyring::new(Key::new(OTHER).unwrap(), vec![]).unwrap();
        assert_eq!(
            other.verify_refresh(&token),
            Err(TokenError::UnknownKey),
            "a key the ring does not hold"
        );
        for bad in ["", ".", "a.b", &format!("{token}."), &format!("{token}=")] {
            assert_eq!(
                ring.verify_refresh(bad),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            ring.verify_refresh(&"A".repeat(10_000)),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn access_and_refresh_tokens_are_never_taken_for_each_other() {
        let ring = ring(SECRET, &[]);
        let access = ring.sign(&Claims {
            user_id: 42,
            session_id: CLAIMS.session_id,
            issued_at: 1_700_000_000,
            expires_at: 1_700_003_600,
        });
        let refresh = ring.sign_refresh(&CLAIMS);
        assert_eq!(ring.verify_refresh(&access), Err(TokenError::Malformed));
        assert_eq!(
            ring.verify(&refresh, 1_700_000_010),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_previous_key_still_verifies_and_the_current_one_signs() {
        let old = ring(OTHER, &[]).sign_refresh(&CLAIMS);
        let rotated = ring(SECRET, &[OTHER]);
        assert_eq!(rotated.verify_refresh(&old), Ok(CLAIMS));
        let new = rotated.sign_refresh(&CLAIMS);
        assert_ne!(new, old);
        assert_eq!(ring(SECRET, &[]).verify_refresh(&new), Ok(CLAIMS));
    }
}
