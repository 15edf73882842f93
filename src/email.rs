//! Email address validation and canonicalisation: the one place that decides whether a string
//! may be an account's login name, how it is stored, and which key identifies its mailbox.
//!
//! The checks are deliberately shallow. The only proof that an address works is mail reaching
//! it; a full RFC 5322 parser would accept quoted local parts and comments that no user types,
//! and still not tell us whether the mailbox exists. So this module rejects only what is
//! certainly a mistake or an attack on our own handling of the string:
//!
//! - more than [`MAX_CHARS`] characters (RFC 5321's 256-octet path limit minus the angle
//!   brackets), counted in Unicode scalar values before and after normalising, so the stored
//!   form obeys the limit too and the length of what we compare is bounded;
//! - whitespace (`char::is_whitespace`), control characters (`char::is_control`), or invisible
//!   format characters (Unicode category Cf: zero-width spaces and joiners, bidirectional
//!   overrides, the BOM) anywhere. Nothing is trimmed: `" a@b.io"` is rejected rather than
//!   silently turned into another string. Control characters (newlines above all) cannot reach
//!   logs or mail headers, and an address cannot look like another one while being a different
//!   string (`admin\u{200B}@x.io`, or text reversed by U+202E);
//! - anything but exactly one `@`, with a non-empty local part before it;
//! - a domain that IDNA (UTS #46) refuses, that is not letters, digits and hyphens once in
//!   ASCII, that has no dot, or that has an empty label (leading, trailing or doubled dot),
//!   which rules out `a@localhost`, `a@.b.io`, `a@b.io.` and `a@b..io`.
//!
//! Every other Unicode character is accepted in the local part, so internationalised addresses
//! (RFC 6531) work.
//!
//! # One mailbox, one account
//!
//! Users type the same address in many byte sequences: `Alice@X.io` and `alice@x.io`; `café`
//! with a precomposed `é` (NFC) or with `e` plus a combining accent (NFD); the domain
//! `bücher.de` or its DNS form `xn--bcher-kva.de`; a Greek name ending in `Σ`, which lowercases
//! to the final form `ς` while the same name typed in lowercase ends in `σ`. Each of these is
//! one mailbox and must be one account. [`normalize`] therefore returns two things:
//!
//! - [`Address::email`], what is stored, shown and mailed to: the local part in NFC and
//!   lowercased (`str::to_lowercase`, full Unicode, locale-independent), `@`, and the domain as
//!   its IDNA A-label (ASCII, lowercase), which every mail server can route;
//! - [`Address::key`], what identifies the mailbox: the SHA-256 of the local part under full
//!   Unicode case folding (`ß` and `ss`, `ς` and `σ` fold alike) between NFC passes, `@`, and the
//!   A-label domain. The database's unique index is on this key, so uniqueness is decided there
//!   and concurrent registrations of two spellings of one mailbox yield one account.
//!
//! The local part is lowercased as well as the domain, although RFC 5321 lets a server treat
//! `Alice@x.io` and `alice@x.io` as different mailboxes: no mainstream provider does, and users
//! expect them to be one account.

use sha2::{Digest, Sha256};
use std::fmt;
use unicode_normalization::UnicodeNormalization;

/// Most characters (Unicode scalar values) an address may have, as given and as stored.
pub const MAX_CHARS: usize = 254;

/// A valid address in its stored form, with the key that identifies its mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The stored and displayed form: NFC, lowercased local part; A-label domain.
    pub email: String,
    /// SHA-256 of the case-folded canonical form: equal for every spelling of one mailbox.
    pub key: [u8; 32],
}

/// Why an address was rejected.
///
/// `Display` gives a sentence meant for the end user (the API's `detail` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidEmail {
    /// The address is the empty string.
    Empty,
    /// More than [`MAX_CHARS`] characters, as given or once normalised.
    TooLong,
    /// Contains a whitespace character somewhere, including at either end.
    Whitespace,
    /// Contains a control character (for example a newline or NUL).
    ControlCharacter,
    /// Contains an invisible format character (Unicode category Cf).
    FormatCharacter,
    /// Has no `@`.
    MissingAt,
    /// Has more than one `@`.
    MultipleAt,
    /// Nothing before the `@`.
    EmptyLocalPart,
    /// The part after the `@` has no dot, so it cannot be an internet domain.
    DomainWithoutDot,
    /// The domain starts or ends with a dot, or has two dots in a row.
    EmptyDomainLabel,
    /// IDNA refuses the domain, or it is not letters, digits and hyphens.
    InvalidDomain,
}

impl fmt::Display for InvalidEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidEmail::Empty => f.write_str("Email address is required."),
            InvalidEmail::TooLong => {
                write!(
                    f,
                    "Email address must be at most {MAX_CHARS} characters long."
                )
            }
            InvalidEmail::Whitespace => f.write_str("Email address must not contain spaces."),
            InvalidEmail::ControlCharacter => {
                f.write_str("Email address must not contain control characters.")
            }
            InvalidEmail::FormatCharacter => f.write_str(
                "Email address must not contain invisible characters such as zero-width spaces.",
            ),
            InvalidEmail::MissingAt => f.write_str("Email address must contain an '@'."),
            InvalidEmail::MultipleAt => f.write_str("Email address must contain only one '@'."),
            InvalidEmail::EmptyLocalPart => {
                f.write_str("Email address must have a name before the '@'.")
            }
            InvalidEmail::DomainWithoutDot => f.write_str(
                "Email address must have a domain with a dot after the '@', such as example.com.",
            ),
            InvalidEmail::EmptyDomainLabel => f.write_str(
                "Email domain must not start or end with a dot or contain two dots in a row.",
            ),
            InvalidEmail::InvalidDomain => {
                f.write_str("Email domain is not a valid internet domain name.")
            }
        }
    }
}

impl std::error::Error for InvalidEmail {}

/// Validates `raw` and returns its stored form and mailbox key (see the module docs).
///
/// `raw` is checked exactly as received; it is never trimmed.
///
/// # Errors
///
/// The first rule `raw` breaks, checked in this order: empty, too long, whitespace, control
/// character, format character, `@` count, empty local part, domain without a dot, empty domain
/// label, a domain IDNA refuses, and last the length of the stored form (lowercasing and the
/// A-label can lengthen a string, e.g. 'İ' becomes 'i' + U+0307).
pub fn normalize(raw: &str) -> Result<Address, InvalidEmail> {
    if raw.is_empty() {
        return Err(InvalidEmail::Empty);
    }
    if raw.chars().count() > MAX_CHARS {
        return Err(InvalidEmail::TooLong);
    }
    if raw.chars().any(char::is_whitespace) {
        return Err(InvalidEmail::Whitespace);
    }
    if raw.chars().any(char::is_control) {
        return Err(InvalidEmail::ControlCharacter);
    }
    if raw.chars().any(is_format_character) {
        return Err(InvalidEmail::FormatCharacter);
    }

    let (local, domain) = raw.split_once('@').ok_or(InvalidEmail::MissingAt)?;
    if domain.contains('@') {
        return Err(InvalidEmail::MultipleAt);
    }
    if local.is_empty() {
        return Err(InvalidEmail::EmptyLocalPart);
    }
    // IDNA also separates labels with the ideographic and full-width stops.
    let dotted = domain.replace(['\u{3002}', '\u{FF0E}', '\u{FF61}'], ".");
    if !dotted.contains('.') {
        return Err(InvalidEmail::DomainWithoutDot);
    }
    if dotted.split('.').any(str::is_empty) {
        return Err(InvalidEmail::EmptyDomainLabel);
    }
    let domain = ascii_domain(&dotted)?;

    let local: String = local.nfc().collect();
    let email = format!("{}@{domain}", local.to_lowercase());
    if email.chars().count() > MAX_CHARS {
        return Err(InvalidEmail::TooLong);
    }
    let folded: String = caseless::default_case_fold_str(&local).nfc().collect();
    let key = Sha256::digest(format!("{folded}@{domain}").as_bytes()).into();
    Ok(Address { email, key })
}

/// Longest DNS label, in octets (RFC 1035 section 2.3.4).
const MAX_LABEL: usize = 63;

/// The domain as its IDNA A-label (UTS #46 processing: mapping, NFC, lowercase, Punycode), which
/// must then be a DNS host name: labels of letters, digits and hyphens, not starting or ending
/// with a hyphen, at most 63 octets each.
fn ascii_domain(domain: &str) -> Result<String, InvalidEmail> {
    let ascii = idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::STD3)
        .map_err(|_| InvalidEmail::InvalidDomain)?
        .into_owned();
    if ascii.split('.').any(str::is_empty) {
        return Err(InvalidEmail::EmptyDomainLabel);
    }
    let host_name = ascii
        .split('.')
        .all(|label| label.len() <= MAX_LABEL && !label.starts_with('-') && !label.ends_with('-'));
    if !host_name {
        return Err(InvalidEmail::InvalidDomain);
    }
    Ok(ascii)
}

/// Unicode general category Cf (format characters), from `DerivedGeneralCategory.txt` of
/// Unicode 15.1. Invisible, and used to make two different strings look alike.
fn is_format_character(c: char) -> bool {
    const CF: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let c = u32::from(c);
    CF.iter().any(|&(low, high)| (low..=high).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(raw: &str) -> Result<String, InvalidEmail> {
        normalize(raw).map(|a| a.email)
    }

    fn same_mailbox(a: &str, b: &str) -> bool {
        normalize(a).unwrap().key == normalize(b).unwrap().key
    }

    /// An otherwise valid address of exactly `chars` characters, padded in the local part.
    fn address_of_length(chars: usize) -> String {
        let domain = "@example.com";
        format!("{}{domain}", "a".repeat(chars - domain.len()))
    }

    #[test]
    fn valid_addresses_are_lowercased() {
        assert_eq!(
            stored("Alice@Example.COM"),
            Ok("alice@example.com".to_owned())
        );
        assert_eq!(stored("a@b.io"), Ok("a@b.io".to_owned()));
        assert_eq!(
            stored("first.last+tag@mail.example.co.uk"),
            Ok("first.last+tag@mail.example.co.uk".to_owned())
        );
    }

    #[test]
    fn case_variants_are_one_mailbox() {
        let variants = ["Bob@X.io", "bob@x.io", "BOB@X.IO", "bOb@x.Io"];
        for v in variants {
            assert_eq!(stored(v), Ok("bob@x.io".to_owned()));
            assert!(same_mailbox(v, "bob@x.io"), "{v}");
        }
        assert!(!same_mailbox("bob@x.io", "rob@x.io"));
        assert!(!same_mailbox("bob@x.io", "bob@y.io"));
    }

    #[test]
    fn unicode_local_parts_are_kept_and_domains_become_a_labels() {
        assert_eq!(
            stored("Ünïcödé@Bücher.de"),
            Ok("ünïcödé@xn--bcher-kva.de".to_owned())
        );
        assert_eq!(
            stored("用户@例子.广告"),
            Ok("用户@xn--fsqu00a.xn--4rr70v".to_owned())
        );
        assert_eq!(stored("🦀@rust.example"), Ok("🦀@rust.example".to_owned()));
    }

    #[test]
    fn nfc_and_nfd_are_one_mailbox_stored_in_nfc() {
        let nfc = "caf\u{e9}@example.com";
        let nfd = "cafe\u{301}@example.com";
        assert_eq!(stored(nfd), Ok(nfc.to_owned()));
        assert!(same_mailbox(nfc, nfd));
    }

    #[test]
    fn a_domain_and_its_a_label_are_one_mailbox() {
        assert!(same_mailbox("a@bücher.de", "a@xn--bcher-kva.de"));
        assert!(same_mailbox("a@BÜCHER.DE", "a@xn--bcher-kva.de"));
        assert_eq!(
            stored("a@XN--BCHER-KVA.de"),
            Ok("a@xn--bcher-kva.de".to_owned())
        );
    }

    #[test]
    fn full_case_folding_decides_the_mailbox() {
        // Lowercasing gives the final sigma at the end of a word; folding maps both to σ.
        assert_eq!(stored("ΣΟΦΙΑΣ@x.gr"), Ok("σοφιας@x.gr".to_owned()));
        assert!(same_mailbox("ΣΟΦΙΑΣ@x.gr", "σοφιασ@x.gr"));
        assert!(same_mailbox("ΣΟΦΙΑΣ@x.gr", "σοφιας@x.gr"));
        assert!(same_mailbox("strasse@x.de", "STRAßE@x.de"));
    }

    #[test]
    fn format_characters_are_rejected() {
        for raw in [
            "ad\u{200B}min@x.io",
            "admin@x\u{200D}.io",
            "\u{202E}moc.x@nimda",
            "a\u{FEFF}@x.io",
            "a\u{AD}b@x.io",
            "a\u{2066}b@x.io",
            "a\u{E0041}@x.io",
        ] {
            assert_eq!(
                normalize(raw),
                Err(InvalidEmail::FormatCharacter),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn domains_idna_refuses_are_rejected() {
        for raw in ["a@exa_mple.com", "a@exa$mple.com", "a@-x.io", "a@xn--zz.io"] {
            assert_eq!(normalize(raw), Err(InvalidEmail::InvalidDomain), "{raw:?}");
        }
    }

    #[test]
    fn length_boundary_is_254_chars() {
        let at_limit = address_of_length(MAX_CHARS);
        assert_eq!(at_limit.chars().count(), 254);
        assert_eq!(stored(&at_limit), Ok(at_limit.clone()));
        let over = address_of_length(MAX_CHARS + 1);
        assert_eq!(normalize(&over), Err(InvalidEmail::TooLong));
    }

    #[test]
    fn length_counts_chars_not_bytes() {
        let domain = "@example.com";
        let local = "é".repeat(MAX_CHARS - domain.len());
        let multibyte = format!("{local}{domain}");
        assert!(multibyte.len() > MAX_CHARS);
        assert_eq!(stored(&multibyte), Ok(multibyte.clone()));
        let over = format!("é{multibyte}");
        assert_eq!(normalize(&over), Err(InvalidEmail::TooLong));
    }

    #[test]
    fn length_is_checked_after_normalising_too() {
        // 'İ' (one char) lowercases to 'i' + U+0307 (two chars).
        let domain = "@example.com";
        let raw = format!("İ{}{domain}", "a".repeat(MAX_CHARS - domain.len() - 1));
        assert_eq!(raw.chars().count(), MAX_CHARS);
        assert_eq!(normalize(&raw), Err(InvalidEmail::TooLong));
        let shorter = format!("İ{}{domain}", "a".repeat(MAX_CHARS - domain.len() - 2));
        assert_eq!(stored(&shorter).unwrap().chars().count(), MAX_CHARS);
        // The A-label of a Unicode domain is longer than the domain itself.
        let domain = format!("@{}.de", "ü".repeat(40));
        let ascii_len = stored(&format!("a{domain}")).unwrap().chars().count() - 1;
        assert!(ascii_len > domain.chars().count());
        let raw = format!("{}{domain}", "a".repeat(MAX_CHARS - domain.chars().count()));
        assert_eq!(raw.chars().count(), MAX_CHARS);
        assert_eq!(normalize(&raw), Err(InvalidEmail::TooLong));
        // And a label of its A-label may pass DNS's 63 octets.
        assert_eq!(
            normalize(&format!("a@{}.de", "ü".repeat(60))),
            Err(InvalidEmail::InvalidDomain)
        );
    }

    #[test]
    fn empty_is_rejected() {
        assert_eq!(normalize(""), Err(InvalidEmail::Empty));
    }

    #[test]
    fn whitespace_anywhere_is_rejected_without_trimming() {
        for raw in [
            " a@b.io",
            "a@b.io ",
            "a @b.io",
            "a@b .io",
            "a@b.io\t",
            "a@b.io\n",
            "\u{a0}a@b.io",
            "a\u{2003}b@c.io",
            "a@b.io\u{3000}",
        ] {
            assert_eq!(normalize(raw), Err(InvalidEmail::Whitespace), "{raw:?}");
        }
    }

    #[test]
    fn control_characters_are_rejected() {
        for raw in [
            "a\u{0}@b.io",
            "a@b.io\u{7f}",
            "a\u{1b}[31m@b.io",
            "a@b\u{9f}.io",
        ] {
            assert_eq!(
                normalize(raw),
                Err(InvalidEmail::ControlCharacter),
                "{raw:?}"
            );
        }
        // NEL is both whitespace and a control character; whitespace is reported first.
        assert_eq!(normalize("a@b\u{85}.io"), Err(InvalidEmail::Whitespace));
    }

    #[test]
    fn exactly_one_at_is_required() {
        assert_eq!(normalize("ab.io"), Err(InvalidEmail::MissingAt));
        assert_eq!(normalize("a@b@c.io"), Err(InvalidEmail::MultipleAt));
        assert_eq!(normalize("a@@b.io"), Err(InvalidEmail::MultipleAt));
        assert_eq!(normalize("@a@b.io"), Err(InvalidEmail::MultipleAt));
    }

    #[test]
    fn local_part_must_not_be_empty() {
        assert_eq!(normalize("@b.io"), Err(InvalidEmail::EmptyLocalPart));
    }

    #[test]
    fn domain_needs_a_dot() {
        assert_eq!(normalize("a@"), Err(InvalidEmail::DomainWithoutDot));
        assert_eq!(
            normalize("a@localhost"),
            Err(InvalidEmail::DomainWithoutDot)
        );
        // U+3002 is an ideographic full stop that IDNA maps to a dot: a dot is still needed.
        assert_eq!(stored("a@b\u{3002}io"), Ok("a@b.io".to_owned()));
    }

    #[test]
    fn domain_labels_must_not_be_empty() {
        for raw in ["a@.io", "a@b.io.", "a@b..io", "a@.", "a@..", "a@.b.io"] {
            assert_eq!(
                normalize(raw),
                Err(InvalidEmail::EmptyDomainLabel),
                "{raw:?}"
            );
        }
        assert_eq!(stored("a@b.c.io"), Ok("a@b.c.io".to_owned()));
    }

    #[test]
    fn messages_are_sentences() {
        let all = [
            InvalidEmail::Empty,
            InvalidEmail::TooLong,
            InvalidEmail::Whitespace,
            InvalidEmail::ControlCharacter,
            InvalidEmail::FormatCharacter,
            InvalidEmail::MissingAt,
            InvalidEmail::MultipleAt,
            InvalidEmail::EmptyLocalPart,
            InvalidEmail::DomainWithoutDot,
            InvalidEmail::EmptyDomainLabel,
            InvalidEmail::InvalidDomain,
        ];
        for error in all {
            let message = error.to_string();
            assert!(message.ends_with('.'), "{message}");
            assert!(message.starts_with(char::is_uppercase), "{message}");
        }
        assert!(InvalidEmail::TooLong.to_string().contains("254"));
    }
}
