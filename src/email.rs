//! Email address validation and normalisation: the one place that decides whether a string
//! may be an account's login name, and which string identifies that account.
//!
//! The checks are deliberately shallow. The only proof that an address works is mail reaching
//! it; a full RFC 5322 parser would accept quoted local parts and comments that no user types,
//! and still not tell us whether the mailbox exists. So this module rejects only what is
//! certainly a mistake or an attack on our own handling of the string:
//!
//! - more than [`MAX_CHARS`] characters (RFC 5321's 256-octet path limit minus the angle
//!   brackets), counted in Unicode scalar values both before and after lowercasing, so the
//!   stored form obeys the limit too and the length of what we compare is bounded;
//! - whitespace (`char::is_whitespace`) or control characters (`char::is_control`) anywhere.
//!   Nothing is trimmed: `" a@b.io"` is rejected rather than silently turned into another
//!   string, and control characters (newlines above all) cannot reach logs or mail headers;
//! - anything but exactly one `@`, with a non-empty local part before it;
//! - a domain without a dot, or with an empty label (leading, trailing or doubled dot), which
//!   rules out `a@localhost`, `a@.b.io`, `a@b.io.` and `a@b..io`.
//!
//! Every other Unicode character is accepted, so internationalised addresses (RFC 6531) work.
//!
//! # Why the whole address is lowercased
//!
//! [`normalize`] lowercases the local part as well as the domain, although RFC 5321 allows a
//! server to treat `Alice@x.io` and `alice@x.io` as different mailboxes. In practice no
//! mainstream provider does, and users expect them to be one account: someone who registered
//! as `Alice@x.io` must be able to log in as `alice@x.io`, and a second registration with
//! different case must get 409 Conflict instead of creating a look-alike account. Storing and
//! comparing only the lowercased form gives that with a plain unique index in the database.
//! Lowercasing uses `str::to_lowercase` (full Unicode, locale-independent), so every caller
//! gets the same key for the same input.

use std::fmt;

/// Most characters (Unicode scalar values) an address may have, before and after lowercasing.
pub const MAX_CHARS: usize = 254;

/// Why an address was rejected.
///
/// `Display` gives a sentence meant for the end user (the API's `detail` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidEmail {
    /// The address is the empty string.
    Empty,
    /// More than [`MAX_CHARS`] characters, before or after lowercasing.
    TooLong,
    /// Contains a whitespace character somewhere, including at either end.
    Whitespace,
    /// Contains a control character (for example a newline or NUL).
    ControlCharacter,
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
        }
    }
}

impl std::error::Error for InvalidEmail {}

/// Validates `raw` and returns the normalised (lowercased) address that identifies the account.
///
/// `raw` is checked exactly as received; it is never trimmed. The returned string is what
/// registration stores and what login and duplicate detection compare against.
///
/// # Errors
///
/// The first rule `raw` breaks, checked in this order: empty, too long, whitespace, control
/// character, `@` count, empty local part, domain without a dot, empty domain label, and last
/// the length of the lowercased form (lowercasing can lengthen a string, e.g. 'İ' becomes
/// 'i' + U+0307).
pub fn normalize(raw: &str) -> Result<String, InvalidEmail> {
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

    let (local, domain) = raw.split_once('@').ok_or(InvalidEmail::MissingAt)?;
    if domain.contains('@') {
        return Err(InvalidEmail::MultipleAt);
    }
    if local.is_empty() {
        return Err(InvalidEmail::EmptyLocalPart);
    }
    if !domain.contains('.') {
        return Err(InvalidEmail::DomainWithoutDot);
    }
    if domain.split('.').any(str::is_empty) {
        return Err(InvalidEmail::EmptyDomainLabel);
    }

    let normalized = raw.to_lowercase();
    if normalized.chars().count() > MAX_CHARS {
        return Err(InvalidEmail::TooLong);
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An otherwise valid address of exactly `chars` characters, padded in the local part.
    fn address_of_length(chars: usize) -> String {
        let domain = "@example.com";
        format!("{}{domain}", "a".repeat(chars - domain.len()))
    }

    #[test]
    fn valid_addresses_are_lowercased() {
        assert_eq!(
            normalize("Alice@Example.COM"),
            Ok("alice@example.com".to_owned())
        );
        assert_eq!(normalize("a@b.io"), Ok("a@b.io".to_owned()));
        assert_eq!(
            normalize("first.last+tag@mail.example.co.uk"),
            Ok("first.last+tag@mail.example.co.uk".to_owned())
        );
    }

    #[test]
    fn case_variants_normalise_to_the_same_key() {
        let variants = ["Bob@X.io", "bob@x.io", "BOB@X.IO", "bOb@x.Io"];
        let keys: Vec<_> = variants.iter().map(|v| normalize(v).unwrap()).collect();
        assert!(keys.iter().all(|k| k == "bob@x.io"), "{keys:?}");
    }

    #[test]
    fn unicode_is_accepted_and_lowercased() {
        assert_eq!(
            normalize("Ünïcödé@Bücher.de"),
            Ok("ünïcödé@bücher.de".to_owned())
        );
        assert_eq!(normalize("用户@例子.广告"), Ok("用户@例子.广告".to_owned()));
        assert_eq!(
            normalize("ΣΟΦΙΑ@παράδειγμα.gr"),
            Ok("σοφια@παράδειγμα.gr".to_owned())
        );
        assert_eq!(
            normalize("🦀@rust.example"),
            Ok("🦀@rust.example".to_owned())
        );
    }

    #[test]
    fn length_boundary_is_254_chars() {
        let at_limit = address_of_length(MAX_CHARS);
        assert_eq!(at_limit.chars().count(), 254);
        assert_eq!(normalize(&at_limit), Ok(at_limit.clone()));
        let over = address_of_length(MAX_CHARS + 1);
        assert_eq!(normalize(&over), Err(InvalidEmail::TooLong));
    }

    #[test]
    fn length_counts_chars_not_bytes() {
        let domain = "@example.com";
        let local = "é".repeat(MAX_CHARS - domain.len());
        let multibyte = format!("{local}{domain}");
        assert!(multibyte.len() > MAX_CHARS);
        assert_eq!(normalize(&multibyte), Ok(multibyte.clone()));
        let over = format!("é{multibyte}");
        assert_eq!(normalize(&over), Err(InvalidEmail::TooLong));
    }

    #[test]
    fn length_is_checked_after_lowercasing_too() {
        // 'İ' (one char) lowercases to 'i' + U+0307 (two chars).
        let domain = "@example.com";
        let raw = format!("İ{}{domain}", "a".repeat(MAX_CHARS - domain.len() - 1));
        assert_eq!(raw.chars().count(), MAX_CHARS);
        assert_eq!(raw.to_lowercase().chars().count(), MAX_CHARS + 1);
        assert_eq!(normalize(&raw), Err(InvalidEmail::TooLong));

        let shorter = format!("İ{}{domain}", "a".repeat(MAX_CHARS - domain.len() - 2));
        let normalized = normalize(&shorter).unwrap();
        assert_eq!(normalized.chars().count(), MAX_CHARS);
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
        assert_eq!(normalize("a@b.c.io"), Ok("a@b.c.io".to_owned()));
    }

    #[test]
    fn messages_are_sentences() {
        let all = [
            InvalidEmail::Empty,
            InvalidEmail::TooLong,
            InvalidEmail::Whitespace,
            InvalidEmail::ControlCharacter,
            InvalidEmail::MissingAt,
            InvalidEmail::MultipleAt,
            InvalidEmail::EmptyLocalPart,
            InvalidEmail::DomainWithoutDot,
            InvalidEmail::EmptyDomainLabel,
        ];
        for error in all {
            let message = error.to_string();
            assert!(message.ends_with('.'), "{message}");
            assert!(message.starts_with(char::is_uppercase), "{message}");
        }
        assert!(InvalidEmail::TooLong.to_string().contains("254"));
    }
}
