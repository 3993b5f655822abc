//! The values of a User body, each checked as SCIM names it: `userName`, `emails` and the
//! member's email among them, the enterprise department, `externalId`, booleans as Entra ID
//! sends them, and attributes looked up case-insensitively.

use super::{invalid, ENTERPRISE};
use crate::error::ApiError;
use crate::model::*;
use serde_json::{json, Map, Value};

/// The longest `externalId` kept (identity providers' ids are far shorter).
pub const MAX_EXTERNAL_ID: usize = 256;
/// The longest `userName` kept (Entra ID's userPrincipalName has at most 113 characters,
/// an Okta login 100).
pub const MAX_USER_NAME: usize = 256;

/// `userName`, as sent: any string that is not blank, at most [`MAX_USER_NAME`]
/// characters, without control characters (RFC 7643 §4.1.1 leaves its form to the provider).
pub(super) fn user_name_of(body: &Map<String, Value>) -> Result<String, ApiError> {
    match attr(body, "userName") {
        Some(Value::String(s))
            if !s.trim().is_empty()
                && s.chars().count() <= MAX_USER_NAME
                && !s.chars().any(char::is_control) =>
        {
            Ok(s.clone())
        }
        Some(Value::String(_)) => Err(invalid(
            "invalidValue",
            format!(
                "userName must be a string of 1 to {MAX_USER_NAME} characters, not blank, \
                 without control characters."
            ),
        )),
        Some(Value::Null) | None => Err(invalid(
            "invalidValue",
            "userName is required: the identity provider's identifier of the user.",
        )),
        Some(other) => Err(invalid(
            "invalidValue",
            format!("userName must be a string, not {other}"),
        )),
    }
}

/// The member's email: the work address of `emails`, else the primary one, else `userName`
/// when it is an address ([`chosen_email`]). A user with no address at all is refused.
pub(super) fn email_of(emails: &[ScimEmail], user_name: &str) -> Result<Email, ApiError> {
    if let Some(chosen) = chosen_email(emails) {
        return Email::parse(chosen.value.trim()).map_err(|e| {
            invalid(
                "invalidValue",
                format!("the work (or primary) value of emails must be an email address: {e}"),
            )
        });
    }
    Email::parse(user_name.trim()).map_err(|_| {
        invalid(
            "invalidValue",
            "The user has no email address: send emails with a work (or primary) value, or a \
             userName that is an address. In Microsoft Entra ID, map mail to \
             emails[type eq \"work\"].value.",
        )
    })
}

/// The most `emails` entries kept.
pub const MAX_EMAILS: usize = 10;

/// `emails` as sent: at most [`MAX_EMAILS`] entries, each with a `value` (a string of at
/// most 254 characters) and optionally a `type` and `primary`.
pub(super) fn emails_of(body: &Map<String, Value>) -> Result<Vec<ScimEmail>, ApiError> {
    let emails = match attr(body, "emails") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(emails)) if emails.len() <= MAX_EMAILS => emails,
        Some(_) => {
            return Err(invalid(
                "invalidValue",
                format!("emails must be an array of at most {MAX_EMAILS} entries"),
            ))
        }
    };
    let text = |v: Option<&Value>, max: usize| match v {
        Some(Value::String(s))
            if !s.trim().is_empty()
                && s.chars().count() <= max
                && !s.chars().any(char::is_control) =>
        {
            Ok(Some(s.clone()))
        }
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(invalid(
            "invalidValue",
            format!(
                "each entry of emails has a value (and a type) of at most {max} characters, \
                 not blank, without control characters"
            ),
        )),
    };
    let mut emails = emails
        .iter()
        .map(|e| {
            let Some(value) = text(attr_of(e, "value"), 254)? else {
                return Err(invalid(
                    "invalidValue",
                    "each entry of emails needs a value",
                ));
            };
            Ok(ScimEmail {
                value,
                kind: text(attr_of(e, "type"), 32)?,
                primary: attr_of(e, "primary")
                    .filter(|v| !v.is_null())
                    .map(|v| boolean(v, "emails.primary"))
                    .transpose()?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    // "primary" true at most once (RFC 7643 §2.4): an added primary address is the primary
    // one, the others are not (RFC 7644 §3.5.2).
    if let Some(last) = emails.iter().rposition(|e| e.primary == Some(true)) {
        for (i, e) in emails.iter_mut().enumerate() {
            if i != last && e.primary == Some(true) {
                e.primary = Some(false);
            }
        }
    }
    Ok(emails)
}

/// An extension object by its schema URN (keys compare case-insensitively).
pub(super) fn extension<'a>(
    body: &'a Map<String, Value>,
    urn: &str,
) -> Result<Option<&'a Value>, ApiError> {
    match attr(body, urn) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(invalid("invalidValue", format!("{urn} must be an object"))),
    }
}

pub(super) fn string_or_null(value: Option<Value>, what: &str) -> Result<Value, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Value::Null),
        Some(v @ Value::String(_)) => Ok(v),
        Some(other) => Err(invalid(
            "invalidValue",
            format!("{what} must be a string, not {other}"),
        )),
    }
}

/// SCIM's department, compared case-insensitively with the vocabulary: the department, and
/// its spelling as sent.
pub(super) fn department_value(value: Option<Value>) -> Result<(Value, Option<String>), ApiError> {
    match value {
        None | Some(Value::Null) => Ok((Value::Null, None)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok((Value::Null, None)),
        Some(Value::String(s)) => match Department::parse(&s.trim().to_lowercase()) {
            Some(d) => Ok((json!(d), Some(s))),
            None => Err(invalid(
                "invalidValue",
                format!(
                    "{ENTERPRISE}:department must be one of {} (any case).",
                    Department::ALLOWED.join(", ")
                ),
            )),
        },
        Some(other) => Err(invalid(
            "invalidValue",
            format!("{ENTERPRISE}:department must be a string, not {other}"),
        )),
    }
}

pub(super) fn external_id(value: Option<&Value>) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s))
            if s.chars().count() <= MAX_EXTERNAL_ID && !s.chars().any(char::is_control) =>
        {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(invalid(
            "invalidValue",
            format!(
                "externalId must be a string of at most {MAX_EXTERNAL_ID} characters without \
                 control characters."
            ),
        )),
    }
}

/// A boolean as JSON has it, or as Microsoft Entra ID sends it (`"True"`, `"False"`).
pub fn boolean(value: &Value, what: &str) -> Result<bool, ApiError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(invalid(
            "invalidValue",
            format!("{what} must be true or false, not {other}"),
        )),
    }
}

/// An attribute of a User body; SCIM attribute names are case-insensitive.
pub fn attr<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.get(name).or_else(|| {
        body.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

pub fn attr_of<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.as_object().and_then(|o| attr(o, name))
}
