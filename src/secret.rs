//! Fresh secrets from the operating system, and the digests the database
//! keeps instead of them.
//!
//! Every token this server hands out (reset links, session ids) is random
//! bytes straight from `getrandom`; the database stores only the SHA-256 of
//! a bearer secret, so a reader of the database cannot use a row. Failing
//! randomness is a 500, logged, never a weaker secret.

use crate::error::ApiError;
use crate::log;
use base64::Engine;
use sha2::{Digest, Sha256};

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| {
        log::error("no OS randomness", &[("error", e.to_string().into())]);
        ApiError::Internal
    })?;
    Ok(out)
}

/// A fresh bearer token for a link: 32 random bytes (256 bits), base64url
/// without padding (43 characters).
pub fn token() -> Result<String, ApiError> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes::<32>()?))
}

/// The SHA-256 of `text`: how a bearer token is looked up and stored.
pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Lowercase hex, as session ids appear in the API and the logs.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_url_safe() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(hex(&[0x00, 0xab]), "00ab");
        assert_eq!(hex(&sha256("abc"))[..8], *"ba7816bf");
    }
}
