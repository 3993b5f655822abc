//! What identifies a member to an identity provider: the identifier namespace (emails and
//! SCIM userNames, compared case-insensitively) and SCIM's `emails` as sent.

use serde::{Deserialize, Serialize};

/// Which attribute put a value in the identifier namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identifier {
    Email,
    UserName,
}

/// The form identifiers (emails, SCIM userNames) are compared in: case-insensitive.
pub fn normalize_identifier(value: &str) -> String {
    value.to_lowercase()
}

/// One entry of SCIM's `emails`, as sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimEmail {
    pub value: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// The entry of SCIM's `emails` that is the member's email: the (last) `work` one, else the
/// (last) primary one, else a lone entry without a type. A `home` or `other` address alone
/// is not the member's.
pub fn chosen_email(emails: &[ScimEmail]) -> Option<&ScimEmail> {
    // The last one: a PATCH `add` appends the new address after the old one.
    emails
        .iter()
        .rev()
        .find(|e| {
            e.kind
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case("work"))
        })
        .or_else(|| emails.iter().rev().find(|e| e.primary == Some(true)))
        .or(match emails {
            [only] if only.kind.is_none() => Some(only),
            _ => None,
        })
}
