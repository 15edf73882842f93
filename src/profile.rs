//! Profiles: what an account says about its person, kept with the account
//! and shown in the `user` object: a display `name`, a `locale` (a BCP 47
//! language tag) and `metadata`, a JSON object the application owns.
//!
//! The same rules hold wherever a profile is written (registration,
//! `PATCH /auth/me`, the admin API, `import-users`): a member of the wrong
//! JSON type is the caller's mistake in the request's shape (400
//! `invalid_field`), and a value that breaks a rule is 422
//! `invalid_profile`, naming the member. Nothing here is a secret, but the
//! limits keep rows small and the text safe to show: no control characters
//! in a name, a tag of letters, digits and hyphens only.

use serde_json::{Map, Value};
use std::fmt;

/// Longest `name`, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest `locale`, in characters (BCP 47's practical bound).
pub const MAX_LOCALE_CHARS: usize = 35;
/// Largest `metadata`, serialized, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;

/// A change to a profile: `None` leaves a member as it is; `Some(None)`
/// (JSON `null`) clears a name or locale.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChange {
    /// The new display name.
    pub name: Option<Option<String>>,
    /// The new language tag.
    pub locale: Option<Option<String>>,
    /// The new metadata (`null` clears it to `{}`).
    pub metadata: Option<Map<String, Value>>,
}

impl ProfileChange {
    /// True if the change sets nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.locale.is_none() && self.metadata.is_none()
    }
}

/// Why a profile member was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileError {
    /// The member has the wrong JSON type: (member, what it must be).
    WrongType(&'static str, &'static str),
    /// The value breaks a rule; says which, naming the member.
    Invalid(String),
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::WrongType(member, expected) => {
                write!(f, "\"{member}\" must be {expected}")
            }
            ProfileError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Reads the profile members of a JSON object (others are left alone).
pub fn change_from(body: &Map<String, Value>) -> Result<ProfileChange, ProfileError> {
    let name = match body.get("name") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(name)) => Some(Some(check_name(name)?)),
        Some(_) => return Err(ProfileError::WrongType("name", "a string or null")),
    };
    let locale = match body.get("locale") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(tag)) => Some(Some(check_locale(tag)?)),
        Some(_) => return Err(ProfileError::WrongType("locale", "a string or null")),
    };
    let metadata = match body.get("metadata") {
        None => None,
        Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(map)) => Some(check_metadata(map)?),
        Some(_) => return Err(ProfileError::WrongType("metadata", "an object or null")),
    };
    Ok(ProfileChange {
        name,
        locale,
        metadata,
    })
}

fn check_name(name: &str) -> Result<String, ProfileError> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ProfileError::Invalid(format!(
            "\"name\" is at most {MAX_NAME_CHARS} characters."
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ProfileError::Invalid(
            "\"name\" must not contain control characters.".into(),
        ));
    }
    Ok(name.to_string())
}

/// A BCP 47 language tag as RFC 5646 section 2.1 shapes it, its primary
/// language an ISO 639 code of 2 or 3 letters (the 5 to 8 letter ones the
/// RFC reserves are not in use), then subtags of 1 to 8 letters or digits,
/// joined by hyphens (`fr`, `fr-FR`, `zh-Hant-TW`, `de-CH-1996`). Checked
/// for shape, not against the registry.
fn check_locale(tag: &str) -> Result<String, ProfileError> {
    let invalid = || {
        ProfileError::Invalid(format!(
            "\"locale\" must be a BCP 47 language tag such as fr-FR, at most {MAX_LOCALE_CHARS} characters."
        ))
    };
    if tag.len() > MAX_LOCALE_CHARS {
        return Err(invalid());
    }
    let mut subtags = tag.split('-');
    let primary = subtags.next().unwrap_or("");
    if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(invalid());
    }
    for subtag in subtags {
        if !(1..=8).contains(&subtag.len()) || !subtag.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid());
        }
    }
    Ok(tag.to_string())
}

fn check_metadata(map: &Map<String, Value>) -> Result<Map<String, Value>, ProfileError> {
    let size = Value::Object(map.clone()).to_string().len();
    if size > MAX_METADATA_BYTES {
        return Err(ProfileError::Invalid(format!(
            "\"metadata\" is at most {MAX_METADATA_BYTES} bytes serialized, not {size}."
        )));
    }
    Ok(map.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(body: Value) -> Result<ProfileChange, ProfileError> {
        change_from(body.as_object().unwrap())
    }

    #[test]
    fn members_are_read_cleared_or_left_alone() {
        let c = change(json!({"name": "Ada Lovelace", "locale": "en-GB", "metadata": {"a": 1}}))
            .unwrap();
        assert_eq!(c.name, Some(Some("Ada Lovelace".into())));
        assert_eq!(c.locale, Some(Some("en-GB".into())));
        assert_eq!(
            c.metadata,
            Some(json!({"a": 1}).as_object().unwrap().clone())
        );
        let cleared = change(json!({"name": null, "locale": null, "metadata": null})).unwrap();
        assert_eq!((cleared.name, cleared.locale), (Some(None), Some(None)));
        assert_eq!(cleared.metadata, Some(Map::new()));
        assert!(change(json!({"email": "x"})).unwrap().is_empty());
    }

    #[test]
    fn wrong_types_and_broken_rules_are_told_apart() {
        assert_eq!(
            change(json!({"name": 5})),
            Err(ProfileError::WrongType("name", "a string or null"))
        );
        assert_eq!(
            change(json!({"metadata": [1]})),
            Err(ProfileError::WrongType("metadata", "an object or null"))
        );
        for body in [
            json!({"name": "x".repeat(201)}),
            json!({"name": "a\u{7}b"}),
            json!({"locale": "f"}),
            json!({"locale": "french"}),
            json!({"locale": "fr_FR"}),
            json!({"locale": "fr--FR"}),
            json!({"locale": "fr-FRANCEFRANCE"}),
            json!({"locale": format!("en-{}", "a1-".repeat(12))}),
            json!({"metadata": {"x": "y".repeat(4100)}}),
        ] {
            assert!(
                matches!(change(body.clone()), Err(ProfileError::Invalid(_))),
                "{body}"
            );
        }
        assert!(change(json!({"name": "é".repeat(200)})).is_ok());
        for tag in ["fr", "fr-FR", "zh-Hant-TW", "de-CH-1996", "es-419"] {
            assert!(change(json!({"locale": tag})).is_ok(), "{tag}");
        }
    }
}
