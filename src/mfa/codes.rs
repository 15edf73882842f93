//! Recovery codes: the one-time codes a user keeps on paper to log in when the
//! authenticator is lost.
//!
//! This module owns their shape: how they are generated and how what a user
//! types is turned back into the canonical form that is hashed (see
//! [`crate::mfa::seal::DataKeys::code_hash`]). It stores nothing; the caller
//! keeps only the hashes and marks a code used.
//!
//! Each code is 10 symbols of Crockford's base32 alphabet, lowercase
//! (`0123456789abcdefghjkmnpqrstvwxyz`), shown as `xxxxx-xxxxx`:
//!
//! - **50 bits of randomness** per code, straight from the operating system.
//!   Stored only as a keyed hash, and rate-limited online, that is far beyond
//!   guessing, while staying short enough to type from paper.
//! - **Unbiased**: each symbol is 5 random bits (a byte masked to its low 5
//!   bits; 256 is a multiple of 32), never a modulo over a non-power-of-two.
//! - **Easy to read and type**: the alphabet has no `i`, `l`, `o` or `u`, and
//!   [`normalize`] maps the look-alikes a reader may type (`i` and `l` to `1`,
//!   `o` to `0`), ignores case, spaces and hyphens.

/// How many recovery codes a user gets at a time.
pub const COUNT: usize = 10;

/// Symbols in one code (5 bits each, 50 bits in all).
const SYMBOLS: usize = 10;

/// Crockford's base32 alphabet in lowercase: digits and letters without `i`,
/// `l`, `o` and `u`, which are too easily confused (or, for `u`, too easily
/// spell words).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// [`COUNT`] fresh, distinct recovery codes in display form (`xxxxx-xxxxx`,
/// lowercase), each 10 uniformly random symbols of the alphabet.
///
/// # Errors
///
/// The operating system's error if it gives no randomness; never a weaker code.
pub fn generate() -> Result<Vec<String>, getrandom::Error> {
    let mut codes: Vec<String> = Vec::with_capacity(COUNT);
    // Two equal 50-bit codes among ten are about as likely as 45 in 2^50, but
    // checking costs nothing and makes "distinct" a guarantee.
    while codes.len() < COUNT {
        let code = one_code()?;
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    Ok(codes)
}

/// One code in display form.
fn one_code() -> Result<String, getrandom::Error> {
    let mut random = [0u8; SYMBOLS];
    getrandom::fill(&mut random)?;
    let mut code = String::with_capacity(SYMBOLS + 1);
    for (i, byte) in random.iter().enumerate() {
        if i == SYMBOLS / 2 {
            code.push('-');
        }
        // The low 5 bits of a uniform byte are uniform over 0..32.
        code.push(char::from(ALPHABET[usize::from(byte & 0x1f)]));
    }
    Ok(code)
}

/// The canonical form of a recovery code as a user typed it: the 10 symbols,
/// lowercase, without separators (`"ABCDE-FGHJK"` gives `"abcdefghjk"`).
///
/// Surrounding whitespace is trimmed; hyphens and spaces anywhere are dropped;
/// ASCII letters are lowercased; `i` and `l` become `1` and `o` becomes `0`,
/// as Crockford's base32 prescribes. `None` unless exactly 10 symbols of the
/// alphabet remain (so `u`, other punctuation and any non-ASCII character are
/// refused). Never panics, whatever the input.
pub fn normalize(given: &str) -> Option<String> {
    let mut out = String::with_capacity(SYMBOLS);
    for c in given.trim().chars() {
        let symbol = match c.to_ascii_lowercase() {
            '-' | ' ' => continue,
            'i' | 'l' => '1',
            'o' => '0',
            other => other,
        };
        // Any character beyond U+00FF fails the conversion; the Latin-1 ones
        // that pass are not in the alphabet. Either way: not a code.
        match u8::try_from(symbol) {
            Ok(byte) if ALPHABET.contains(&byte) => {}
            _ => return None,
        }
        if out.len() == SYMBOLS {
            // An eleventh symbol: refuse without reading the rest of a long input.
            return None;
        }
        out.push(symbol);
    }
    (out.len() == SYMBOLS).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_display_form(code: &str) -> bool {
        let bytes = code.as_bytes();
        bytes.len() == SYMBOLS + 1
            && bytes.iter().enumerate().all(|(i, b)| {
                if i == SYMBOLS / 2 {
                    *b == b'-'
                } else {
                    ALPHABET.contains(b)
                }
            })
    }

    #[test]
    fn generate_gives_distinct_codes_of_the_form() {
        let codes = generate().unwrap();
        assert_eq!(codes.len(), COUNT);
        for (i, code) in codes.iter().enumerate() {
            assert!(has_display_form(code), "{code}");
            assert_eq!(normalize(code), Some(code.replace('-', "")));
            assert!(!codes[..i].contains(code), "duplicate {code}");
        }
        assert_ne!(generate().unwrap(), codes);
    }

    #[test]
    fn generate_uses_the_whole_alphabet() {
        // 2000 symbols: every one of the 32 appears with overwhelming
        // probability (a given symbol is missing with probability about 1e-27).
        let mut seen = [false; 32];
        for _ in 0..20 {
            for code in generate().unwrap() {
                for b in code.bytes().filter(|&b| b != b'-') {
                    if let Some(i) = ALPHABET.iter().position(|&a| a == b) {
                        seen[i] = true;
                    }
                }
            }
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }

    #[test]
    fn normalize_accepts_what_users_type() {
        let canonical = Some("abcdefghjk".to_string());
        assert_eq!(normalize("ABCDE-FGHJK"), canonical);
        assert_eq!(normalize(" abcde fghjk "), canonical);
        assert_eq!(normalize("abcdefghjk"), canonical);
        assert_eq!(normalize("\tabcde-fghjk\n"), canonical);
        assert_eq!(normalize("a-b-c-d-e f g h j k"), canonical);
        assert_eq!(normalize("AbCdE-fGhJk"), canonical);
    }

    #[test]
    fn normalize_maps_look_alikes() {
        assert_eq!(normalize("oOiIlL0123"), Some("0011110123".to_string()));
        assert_eq!(normalize("ooooo-iiiii"), Some("0000011111".to_string()));
    }

    #[test]
    fn normalize_refuses_wrong_lengths_and_symbols() {
        for given in [
            "",
            "   ",
            "-----",
            "abcde-fghj",
            "abcde-fghjkm",
            "abcde-fghju",
            "Uabcd-fghjk",
            "abcde_fghjk",
            "abcde.fghjk",
            "abcde–fghjk",
            "abcdé-fghjk",
            "ＡＢＣＤＥ-ＦＧＨＪＫ",
            "abcde\u{0}fghjk",
            "abcde\u{a0}fghjk",
            "abcde\nfghjk",
        ] {
            assert_eq!(normalize(given), None, "{given:?}");
        }
        assert_eq!(normalize(&"a".repeat(100_000)), None);
    }

    #[test]
    fn normalize_never_panics_on_unicode() {
        for c in ['\u{0}', 'ß', 'İ', 'ı', '\u{feff}', '\u{10ffff}', '🦀'] {
            let given = format!("abcde{c}fghj");
            assert_eq!(normalize(&given), None, "{given:?}");
            let given = c.to_string().repeat(10);
            assert_eq!(normalize(&given), None, "{given:?}");
        }
    }
}
