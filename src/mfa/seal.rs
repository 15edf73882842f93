//! Encryption at rest for second-factor secrets, and keyed hashes of recovery
//! codes, under the data encryption key.
//!
//! This module owns the data encryption keys (`DATA_ENCRYPTION_KEY` and
//! `DATA_ENCRYPTION_KEYS_PREVIOUS`), the sealed format of a TOTP secret in the
//! database, and the keyed hash stored instead of a recovery code.
//!
//! # Threat model
//!
//! The adversary is a reader of the database: a dump, a backup, a replica, a
//! read-only SQL injection. That reader must not learn TOTP secrets (which would
//! let them compute every future code) and must not be able to test guesses of
//! recovery codes offline. The key lives outside the database, in the
//! environment, so the database alone is not enough:
//!
//! - **TOTP secrets are sealed** with AES-256-GCM under the current key, with a
//!   fresh random 96-bit nonce per seal. Random nonces are safe for far more
//!   seals than a server will ever make (the usual bound is 2^32 per key).
//! - **A sealed value is bound to its account**: the account id is associated
//!   data, so a row copied into another account's row (by someone who can write
//!   the database but not read the key) does not open there.
//! - **Recovery codes are stored as HMAC-SHA256** under a subkey of the data
//!   key, over the account id and the code. Without the key a stolen hash cannot
//!   be checked against the 2^50 possible codes, and the same code for two
//!   accounts hashes differently.
//! - **Rotation**: new values are always sealed under the current key; values
//!   sealed under a key listed in `DATA_ENCRYPTION_KEYS_PREVIOUS` still open, and
//!   [`DataKeys::sealed_with_previous`] tells the caller to re-seal them. Each
//!   sealed value names its key by a 4-byte key id (a prefix of the key's
//!   SHA-256, which reveals nothing useful about a 256-bit random key).
//!
//! Out of scope: an attacker who can read the server's environment or memory
//! has the key, and one who can run code as the server can ask it to open
//! anything. Keys are never logged: `Debug` shows only how many there are, and
//! neither errors nor messages contain a key or a plaintext.
//!
//! Sealed format: `key id (4) || nonce (12) || ciphertext || GCM tag (16)`.

use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Length of a data encryption key in bytes (AES-256).
const KEY_BYTES: usize = 32;
/// Length of the key id that prefixes every sealed value.
const KEY_ID_BYTES: usize = 4;
/// Length of an AES-GCM nonce (96 bits, the size GCM is designed for).
const NONCE_BYTES: usize = 12;
/// Length of an AES-GCM authentication tag.
const TAG_BYTES: usize = 16;

/// Associated data label: ties a sealed value to this use, so a ciphertext made
/// for another purpose under the same key (should one ever exist) does not
/// open as a TOTP secret. The account id follows it as 8 big-endian bytes.
const SEAL_CONTEXT: &[u8] = b"auth-server/mfa/seal/v1";

/// Label of the recovery-code subkey, so the hash key is never the AES key
/// itself and a later version can derive a different one.
const CODE_HASH_LABEL: &[u8] = b"recovery-code-v1";

/// What every key error tells the operator, without echoing the value.
const KEY_FORMAT_HINT: &str =
    "must be 32 random bytes in base64 (44 characters), e.g. from `openssl rand -base64 32`";

/// Standard base64 alphabet, padding optional: operators paste keys from
/// different tools, and the padding carries no information.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One 256-bit data encryption key and its public id.
#[derive(Clone)]
struct DataKey {
    id: [u8; KEY_ID_BYTES],
    bytes: [u8; KEY_BYTES],
}

impl DataKey {
    fn new(bytes: [u8; KEY_BYTES]) -> DataKey {
        let digest = Sha256::digest(bytes);
        let id = [digest[0], digest[1], digest[2], digest[3]];
        DataKey { id, bytes }
    }

    fn cipher(&self) -> Aes256Gcm {
        // Named in full rather than imported: `KeyInit` in scope would make
        // `HmacSha256::new_from_slice` below ambiguous with `Mac`'s.
        <Aes256Gcm as aes_gcm::KeyInit>::new(&Key::<Aes256Gcm>::from(self.bytes))
    }

    /// HMAC-SHA256 of `user_id (8 bytes BE) || code` under this key's
    /// recovery-code subkey.
    fn code_hash(&self, user_id: u64, code: &str) -> [u8; 32] {
        // HMAC is defined for keys of every length, so these cannot fail whatever
        // the input is; the Result only exists because the trait is shared with
        // other MACs.
        let mut derive =
            HmacSha256::new_from_slice(&self.bytes).expect("HMAC accepts keys of any length");
        derive.update(CODE_HASH_LABEL);
        let subkey = derive.finalize().into_bytes();

        let mut mac = HmacSha256::new_from_slice(&subkey).expect("HMAC accepts keys of any length");
        mac.update(&user_id.to_be_bytes());
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The data encryption keys: an optional current key that seals and hashes new
/// values, and previous keys that still open (and match) old ones.
///
/// Built by [`DataKeys::parse`] from the environment, or empty by `Default`
/// (then [`DataKeys::is_available`] is false and sealing fails with
/// [`SealError::NoKey`]). `Debug` shows only how many keys there are.
#[derive(Clone, Default)]
pub struct DataKeys {
    current: Option<DataKey>,
    previous: Vec<DataKey>,
}

impl fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeys")
            .field("current", &usize::from(self.current.is_some()))
            .field("previous", &self.previous.len())
            .finish()
    }
}

impl DataKeys {
    /// The keys from the values of `DATA_ENCRYPTION_KEY` (`current`) and
    /// `DATA_ENCRYPTION_KEYS_PREVIOUS` (`previous`, comma-separated; empty items
    /// are ignored).
    ///
    /// Each key is standard base64, with or without padding, surrounding
    /// whitespace ignored, and must decode to exactly 32 bytes. Both `None` is
    /// no keys (the server runs without a second factor).
    ///
    /// # Errors
    ///
    /// `(variable, reason)`: the name of the variable at fault
    /// (`"DATA_ENCRYPTION_KEY"` or `"DATA_ENCRYPTION_KEYS_PREVIOUS"`) and why,
    /// never the value itself, for the caller to report as `"{variable}: {reason}"`.
    /// Previous keys without a current key are an error, since nothing could
    /// then seal new values.
    pub fn parse(
        current: Option<&str>,
        previous: Option<&str>,
    ) -> Result<DataKeys, (&'static str, String)> {
        const CURRENT: &str = "DATA_ENCRYPTION_KEY";
        const PREVIOUS: &str = "DATA_ENCRYPTION_KEYS_PREVIOUS";

        let current = match current {
            Some(text) => Some(decode_key(text).map_err(|reason| (CURRENT, reason))?),
            None => None,
        };

        let mut keys = Vec::new();
        let items = previous.unwrap_or("").split(',').map(str::trim);
        // Numbered from 1 among all items, empty ones included, so the number
        // matches what the operator sees when counting commas.
        for (number, item) in (1..).zip(items) {
            if item.is_empty() {
                continue;
            }
            let key =
                decode_key(item).map_err(|reason| (PREVIOUS, format!("key {number} {reason}")))?;
            keys.push(key);
        }

        if current.is_none() && !keys.is_empty() {
            return Err((PREVIOUS, format!("{PREVIOUS} needs {CURRENT}")));
        }
        Ok(DataKeys {
            current,
            previous: keys,
        })
    }

    /// Whether a current key is set, so that values can be sealed and recovery
    /// codes hashed.
    pub fn is_available(&self) -> bool {
        self.current.is_some()
    }

    /// `plaintext` sealed under the current key for account `user_id`:
    /// `key id (4) || nonce (12) || ciphertext || tag (16)`, with a fresh random
    /// nonce per call, so sealing the same plaintext twice gives different
    /// values. Only [`DataKeys::open`] with the same `user_id` opens it.
    ///
    /// # Errors
    ///
    /// [`SealError::NoKey`] without a current key; [`SealError::Randomness`] if
    /// the operating system gives no random nonce; [`SealError::Corrupt`] only
    /// for a plaintext too long for AES-GCM (over 64 GiB).
    pub fn seal(&self, user_id: u64, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let key = self.current.as_ref().ok_or(SealError::NoKey)?;
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Randomness)?;

        let aad = associated_data(user_id);
        let ciphertext = key
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Corrupt)?;

        let mut sealed = Vec::with_capacity(KEY_ID_BYTES + NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(&key.id);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// The plaintext of `sealed`, a value made by [`DataKeys::seal`] for account
    /// `user_id` under the current key or one of the previous keys.
    ///
    /// # Errors
    ///
    /// [`SealError::NoKey`] if no configured key has the value's key id (it was
    /// sealed under a key since removed); [`SealError::Corrupt`] if the value is
    /// too short, was altered, or belongs to another account. Never panics,
    /// whatever `sealed` holds.
    pub fn open(&self, user_id: u64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (id, rest) = sealed
            .split_first_chunk::<KEY_ID_BYTES>()
            .ok_or(SealError::Corrupt)?;
        let (nonce, ciphertext) = rest
            .split_first_chunk::<NONCE_BYTES>()
            .ok_or(SealError::Corrupt)?;
        if ciphertext.len() < TAG_BYTES {
            return Err(SealError::Corrupt);
        }

        let aad = associated_data(user_id);
        let mut known_id = false;
        // Every key with this id is tried, so two keys colliding on the 32-bit id
        // (about one chance in 4 billion) still both work.
        for key in self.keys().filter(|key| key.id == *id) {
            known_id = true;
            let opened = key.cipher().decrypt(
                &Nonce::from(*nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            );
            if let Ok(plaintext) = opened {
                return Ok(plaintext);
            }
        }
        Err(if known_id {
            SealError::Corrupt
        } else {
            SealError::NoKey
        })
    }

    /// Whether `sealed` carries the key id of a previous key rather than the
    /// current one, so the caller should open it and seal it again under the
    /// current key. False for a value under the current key, under an unknown
    /// key, or too short to have a key id; a previous key equal to the current
    /// one does not count, so re-sealing never loops.
    pub fn sealed_with_previous(&self, sealed: &[u8]) -> bool {
        let Some((id, _)) = sealed.split_first_chunk::<KEY_ID_BYTES>() else {
            return false;
        };
        let under_current = self.current.as_ref().is_some_and(|key| key.id == *id);
        !under_current && self.previous.iter().any(|key| key.id == *id)
    }

    /// The keyed hash stored for recovery code `code` of account `user_id`:
    /// HMAC-SHA256 under a subkey of the current key (HMAC-SHA256 of the key
    /// over `"recovery-code-v1"`), over `user_id` as 8 big-endian bytes followed
    /// by `code`. `None` without a current key. The caller passes the normalised
    /// code (see [`crate::mfa::codes::normalize`]) so equal codes hash equally.
    pub fn code_hash(&self, user_id: u64, code: &str) -> Option<[u8; 32]> {
        self.current
            .as_ref()
            .map(|key| key.code_hash(user_id, code))
    }

    /// [`DataKeys::code_hash`] under the current key and then every previous key,
    /// in that order, to match a hash stored before a rotation. Empty without
    /// keys. The caller compares each with the stored hash in constant time.
    pub fn code_hashes(&self, user_id: u64, code: &str) -> Vec<[u8; 32]> {
        self.keys()
            .map(|key| key.code_hash(user_id, code))
            .collect()
    }

    /// The current key (if any), then the previous keys.
    fn keys(&self) -> impl Iterator<Item = &DataKey> {
        self.current.iter().chain(self.previous.iter())
    }
}

/// The associated data of a sealed value: the context label, then the account
/// id as 8 big-endian bytes (fixed length, so no two pairs give the same bytes).
fn associated_data(user_id: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEAL_CONTEXT.len() + 8);
    aad.extend_from_slice(SEAL_CONTEXT);
    aad.extend_from_slice(&user_id.to_be_bytes());
    aad
}

/// One key from its base64 text, or why not (without the text).
fn decode_key(text: &str) -> Result<DataKey, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("is empty; {KEY_FORMAT_HINT}"));
    }
    let decoded = KEY_BASE64
        .decode(text)
        .map_err(|_| format!("is not valid base64; {KEY_FORMAT_HINT}"))?;
    // The length is not secret, and telling it helps spot a hex or truncated key.
    let bytes: [u8; KEY_BYTES] = decoded
        .as_slice()
        .try_into()
        .map_err(|_| format!("decodes to {} bytes; {KEY_FORMAT_HINT}", decoded.len()))?;
    Ok(DataKey::new(bytes))
}

/// Why a value could not be sealed or opened. Neither `Display` nor `Debug`
/// contains a key, a plaintext or a sealed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// No key can do this: no current key to seal with, or no configured key has
    /// the key id of the value to open (its key was removed too early).
    NoKey,
    /// The operating system gave no randomness for a nonce.
    Randomness,
    /// The value to open is truncated, altered or belongs to another account
    /// (or, from [`DataKeys::seal`], the plaintext is too long for AES-GCM).
    Corrupt,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::NoKey => "no data encryption key for this value",
            SealError::Randomness => "no randomness from the operating system",
            SealError::Corrupt => "sealed value is corrupt or belongs to another account",
        })
    }
}

impl std::error::Error for SealError {}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    fn key_text(byte: u8) -> String {
        STANDARD.encode([byte; KEY_BYTES])
    }

    fn keys(current: u8, previous: &[u8]) -> DataKeys {
        let previous: Vec<String> = previous.iter().map(|&b| key_text(b)).collect();
        DataKeys::parse(Some(&key_text(current)), Some(&previous.join(","))).unwrap()
    }

    #[test]
    fn round_trip() {
        let keys = keys(1, &[]);
        assert!(keys.is_available());
        let sealed = keys.seal(42, b"totp secret bytes").unwrap();
        assert_eq!(sealed.len(), 4 + 12 + 17 + 16);
        assert_eq!(keys.open(42, &sealed).unwrap(), b"totp secret bytes");
        assert!(!keys.sealed_with_previous(&sealed));
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let keys = keys(1, &[]);
        let sealed = keys.seal(0, b"").unwrap();
        assert_eq!(keys.open(0, &sealed).unwrap(), b"");
    }

    #[test]
    fn fresh_nonce_per_seal() {
        let keys = keys(1, &[]);
        let a = keys.seal(42, b"same").unwrap();
        let b = keys.seal(42, b"same").unwrap();
        assert_ne!(a, b);
        assert_eq!(a[..4], b[..4], "same key id");
    }

    #[test]
    fn another_user_does_not_open() {
        let keys = keys(1, &[]);
        let sealed = keys.seal(42, b"secret").unwrap();
        assert_eq!(keys.open(43, &sealed), Err(SealError::Corrupt));
        assert_eq!(keys.open(42 << 32, &sealed), Err(SealError::Corrupt));
    }

    #[test]
    fn any_flipped_byte_fails() {
        let keys = keys(1, &[]);
        let sealed = keys.seal(42, b"secret").unwrap();
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            // A flipped key id byte is an unknown key; anything else a bad tag.
            assert!(keys.open(42, &altered).is_err(), "byte {i}");
        }
    }

    #[test]
    fn truncated_values_fail() {
        let keys = keys(1, &[]);
        let sealed = keys.seal(42, b"secret").unwrap();
        for len in 0..sealed.len() {
            assert!(keys.open(42, &sealed[..len]).is_err(), "length {len}");
        }
        assert_eq!(keys.open(42, &[]), Err(SealError::Corrupt));
        assert!(!keys.sealed_with_previous(&[]));
        assert!(!keys.sealed_with_previous(&sealed[..3]));
    }

    #[test]
    fn rotation_keeps_old_values_open() {
        let before = keys(1, &[]);
        let sealed = before.seal(7, b"secret").unwrap();

        let after = keys(2, &[3, 1]);
        assert_eq!(after.open(7, &sealed).unwrap(), b"secret");
        assert!(after.sealed_with_previous(&sealed));

        let resealed = after.seal(7, b"secret").unwrap();
        assert!(!after.sealed_with_previous(&resealed));
        assert_eq!(after.open(7, &resealed).unwrap(), b"secret");
        // The old key alone cannot open what the new one sealed.
        assert_eq!(before.open(7, &resealed), Err(SealError::NoKey));
    }

    #[test]
    fn previous_equal_to_current_is_not_previous() {
        let keys = keys(1, &[1]);
        let sealed = keys.seal(7, b"secret").unwrap();
        assert!(!keys.sealed_with_previous(&sealed));
        assert_eq!(keys.open(7, &sealed).unwrap(), b"secret");
    }

    #[test]
    fn unknown_key_fails() {
        let sealed = keys(1, &[]).seal(7, b"secret").unwrap();
        let other = keys(2, &[3]);
        assert_eq!(other.open(7, &sealed), Err(SealError::NoKey));
        assert!(!other.sealed_with_previous(&sealed));
    }

    #[test]
    fn no_keys() {
        let keys = DataKeys::default();
        assert!(!keys.is_available());
        assert_eq!(keys.seal(1, b"x"), Err(SealError::NoKey));
        assert_eq!(keys.open(1, &[0; 64]), Err(SealError::NoKey));
        assert_eq!(keys.code_hash(1, "abc"), None);
        assert!(keys.code_hashes(1, "abc").is_empty());
        let parsed = DataKeys::parse(None, None).unwrap();
        assert!(!parsed.is_available());
        let parsed = DataKeys::parse(None, Some(" , ")).unwrap();
        assert!(!parsed.is_available());
    }

    #[test]
    fn parse_accepts_base64_with_or_without_padding() {
        let padded = key_text(9);
        assert_eq!(padded.len(), 44);
        let unpadded = STANDARD_NO_PAD.encode([9u8; KEY_BYTES]);
        assert_eq!(unpadded.len(), 43);

        let a = DataKeys::parse(Some(&padded), None).unwrap();
        let b = DataKeys::parse(Some(&format!("  {unpadded}\n")), None).unwrap();
        let sealed = a.seal(1, b"x").unwrap();
        assert_eq!(b.open(1, &sealed).unwrap(), b"x");

        let list = format!(" {padded} ,, {unpadded},");
        let c = DataKeys::parse(Some(&key_text(8)), Some(&list)).unwrap();
        assert_eq!(format!("{c:?}"), "DataKeys { current: 1, previous: 2 }");
    }

    #[test]
    fn parse_refuses_bad_keys_without_echoing_them() {
        let short = STANDARD.encode([5u8; 31]);
        let long = STANDARD.encode([5u8; 33]);
        let not_base64 = "this is not base64 at all!!".to_string();
        let hex = "ab".repeat(32);
        for bad in [&short, &long, &not_base64, &hex, &"  ".to_string()] {
            let (variable, reason) = DataKeys::parse(Some(bad), None).unwrap_err();
            assert_eq!(variable, "DATA_ENCRYPTION_KEY");
            assert!(reason.contains("openssl rand -base64 32"), "{reason}");
            assert!(
                bad.trim().is_empty() || !reason.contains(bad.as_str()),
                "{reason}"
            );
        }
        let (_, reason) = DataKeys::parse(Some(&short), None).unwrap_err();
        assert!(reason.starts_with("decodes to 31 bytes"), "{reason}");

        let list = format!("{},{short}", key_text(1));
        let (variable, reason) = DataKeys::parse(Some(&key_text(2)), Some(&list)).unwrap_err();
        assert_eq!(variable, "DATA_ENCRYPTION_KEYS_PREVIOUS");
        assert!(reason.starts_with("key 2 decodes to 31 bytes"), "{reason}");
        assert!(!reason.contains(&short));
    }

    #[test]
    fn parse_refuses_previous_without_current() {
        let err = DataKeys::parse(None, Some(&key_text(1))).unwrap_err();
        assert_eq!(
            err,
            (
                "DATA_ENCRYPTION_KEYS_PREVIOUS",
                "DATA_ENCRYPTION_KEYS_PREVIOUS needs DATA_ENCRYPTION_KEY".to_string()
            )
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        let current = [0xa5u8; KEY_BYTES];
        let previous = [0x5au8; KEY_BYTES];
        let keys = DataKeys::parse(
            Some(&STANDARD.encode(current)),
            Some(&STANDARD.encode(previous)),
        )
        .unwrap();
        let debug = format!("{keys:?} {keys:#?}");
        for key in [current, previous] {
            assert!(!debug.contains(&STANDARD.encode(key)));
            assert!(!debug.contains(&STANDARD_NO_PAD.encode(key)));
            assert!(!debug.contains("165"), "no decimal bytes: {debug}");
            assert!(!debug.contains("a5a5"), "no hex bytes: {debug}");
        }
        assert_eq!(format!("{keys:?}"), "DataKeys { current: 1, previous: 1 }");
    }

    #[test]
    fn errors_display_without_secrets() {
        for err in [SealError::NoKey, SealError::Randomness, SealError::Corrupt] {
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn code_hash_depends_on_user_key_and_code() {
        let one = keys(1, &[]);
        let two = keys(2, &[]);
        let a = one.code_hash(1, "abcde12345").unwrap();
        assert_eq!(one.code_hash(1, "abcde12345").unwrap(), a);
        assert_ne!(one.code_hash(2, "abcde12345").unwrap(), a);
        assert_ne!(one.code_hash(1, "abcde12346").unwrap(), a);
        assert_ne!(two.code_hash(1, "abcde12345").unwrap(), a);
        // The subkey is derived: the hash is not plain HMAC under the data key.
        let mut plain = HmacSha256::new_from_slice(&[1u8; KEY_BYTES]).unwrap();
        plain.update(&1u64.to_be_bytes());
        plain.update(b"abcde12345");
        assert_ne!(<[u8; 32]>::from(plain.finalize().into_bytes()), a);
    }

    #[test]
    fn code_hashes_cover_previous_keys() {
        let before = keys(1, &[]);
        let stored = before.code_hash(5, "abcde12345").unwrap();
        let after = keys(2, &[1]);
        let hashes = after.code_hashes(5, "abcde12345");
        assert_eq!(hashes.len(), 2);
        assert_eq!(hashes[0], after.code_hash(5, "abcde12345").unwrap());
        assert_eq!(hashes[1], stored);
    }
}
