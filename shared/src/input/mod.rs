//! Wire → domain: a JSON body becomes a typed [`MemberPatch`], every field checked and every
//! problem reported at once (serde alone would stop at the first one).
//!
//! One parser serves create and update: a create is a patch applied to a blank member.
//! `Option<Option<T>>` keeps "absent" (`None`) apart from "null" (`Some(None)`).

use crate::error::FieldError;
use crate::model::*;
use serde_json::{Map, Value};
use std::fmt;

/// A plain-text password on its way to being hashed. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Every writable member field; see the module docs for the meaning of the options.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MemberPatch {
    pub organization_id: Option<OrgId>,
    pub user_id: Option<UserId>,
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub email: Option<Email>,
    pub headline: Option<Option<String>>,
    pub job_title: Option<Option<String>>,
    pub role: Option<Role>,
    pub hris_role: Option<Option<HrisRole>>,
    pub department: Option<Option<Department>>,
    pub locations: Option<Vec<MemberLocation>>,
    pub collaboration_rules: Option<Vec<CollaborationRule>>,
    pub is_primary: Option<bool>,
    pub is_active: Option<bool>,
    pub fleet_dm_label_id: Option<Option<u64>>,
    pub password: Option<Option<Secret>>,
    pub profile_picture_url: Option<Option<String>>,
    pub default_location_id: Option<Option<String>>,
    pub background_check_exempt: Option<bool>,
    pub background_check_exempt_reason: Option<Option<String>>,
    pub background_check_exempt_justification: Option<Option<String>>,
    pub onboard_date: Option<Option<Timestamp>>,
    pub offboard_date: Option<Option<Timestamp>>,
    pub created_at: Option<Timestamp>,
    /// SCIM only (`/v1` bodies cannot set these): the identity provider's id, and whether
    /// the member is deprovisioned from SCIM.
    pub external_id: Option<Option<String>>,
    pub scim_deprovisioned: Option<bool>,
    /// The SCIM `userName` as sent, and the enterprise department's spelling.
    pub scim_user_name: Option<String>,
    pub scim_department: Option<Option<String>>,
    pub scim_emails: Option<Option<Vec<ScimEmail>>>,
    /// SCIM Groups only: the member's groups after a membership change.
    pub scim_groups: Option<Vec<GroupId>>,
}

const WRITABLE: &[&str] = &[
    "organizationId",
    "userId",
    "firstName",
    "lastName",
    "name",
    "email",
    "headline",
    "jobTitle",
    "role",
    "hrisRole",
    "department",
    "locations",
    "collaborationRules",
    "isPrimary",
    "isActive",
    "deactivated",
    "fleetDmLabelId",
    "settings",
    "backgroundCheckExempt",
    "backgroundCheckExemptReason",
    "backgroundCheckExemptJustification",
    "onboardDate",
    "offboardDate",
    "createdAt",
];
const READ_ONLY: &[&str] = &[
    "id",
    "externalId",
    "scimDeprovisioned",
    "scimUserName",
    "scimGroups",
    "version",
    "updatedAt",
    "backgroundCheckRequests",
    "user",
];
const SETTINGS_WRITABLE: &[&str] = &["password", "profilePictureUrl", "defaultLocationId"];

/// A transaction holds at most 100 items and each location is an item (docs/design.md).
pub const MAX_LOCATIONS: usize = 40;
pub const MAX_RULES: usize = 50;

/// Parses a member body (create or PATCH). Shape errors only; cross-field rules are
/// checked on the resulting member by [`crate::rules`].
pub fn parse_member_patch(body: &Value) -> Result<MemberPatch, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new(
            "",
            "invalid_type",
            "the body must be a JSON object",
        )]);
    };
    let mut r = Reader::new(obj, "");
    r.check_keys(WRITABLE, READ_ONLY);
    let mut p = MemberPatch {
        organization_id: r.not_null("organizationId", OrgId::parse),
        user_id: r.not_null("userId", UserId::parse),
        first_name: r.nullable("firstName", text(100)),
        last_name: r.nullable("lastName", text(100)),
        name: r.nullable("name", text(200)),
        email: r.not_null("email", Email::parse),
        headline: r.nullable("headline", text(200)),
        job_title: r.nullable("jobTitle", text(200)),
        role: r.not_null("role", Role::parse),
        hris_role: r.nullable("hrisRole", vocab(HrisRole::parse, HrisRole::ALLOWED)),
        department: r.nullable("department", vocab(Department::parse, Department::ALLOWED)),
        locations: r.array("locations", MAX_LOCATIONS, location),
        collaboration_rules: r.array("collaborationRules", MAX_RULES, collaboration_rule),
        is_primary: r.boolean("isPrimary"),
        is_active: None,
        fleet_dm_label_id: r.nullable_positive_int("fleetDmLabelId"),
        background_check_exempt: r.boolean("backgroundCheckExempt"),
        background_check_exempt_reason: r.nullable("backgroundCheckExemptReason", text(100)),
        background_check_exempt_justification: r
            .nullable("backgroundCheckExemptJustification", text(2000)),
        onboard_date: r.nullable("onboardDate", Timestamp::parse),
        offboard_date: r.nullable("offboardDate", Timestamp::parse),
        created_at: r.not_null("createdAt", Timestamp::parse),
        ..MemberPatch::default()
    };
    // isActive and deactivated are one state seen two ways (seed 000).
    let is_active = r.boolean("isActive");
    let deactivated = r.boolean("deactivated");
    p.is_active = match (is_active, deactivated) {
        (Some(a), Some(d)) if a == d => {
            r.push(
                "deactivated",
                "conflicting_fields",
                "isActive and deactivated contradict each other",
            );
            None
        }
        (Some(a), _) => Some(a),
        (None, Some(d)) => Some(!d),
        (None, None) => None,
    };
    if let Some(settings) = r.object("settings") {
        let mut s = Reader::new(settings, "settings.");
        s.check_keys(SETTINGS_WRITABLE, &[]);
        p.password = s.nullable("password", password);
        p.profile_picture_url = s.nullable("profilePictureUrl", http_url);
        p.default_location_id = s.nullable("defaultLocationId", text(128));
        r.errors.append(&mut s.errors);
    }
    if r.errors.is_empty() {
        Ok(p)
    } else {
        Err(r.errors)
    }
}

/// Reads fields of one JSON object, collecting every problem.
pub struct Reader<'a> {
    obj: &'a Map<String, Value>,
    prefix: String,
    pub errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    pub fn new(obj: &'a Map<String, Value>, prefix: &str) -> Self {
        Reader {
            obj,
            prefix: prefix.to_owned(),
            errors: Vec::new(),
        }
    }

    pub fn push(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError::new(
            format!("{}{}", self.prefix, field),
            code,
            message,
        ));
    }

    /// Refuses read-only and unknown keys, naming each.
    pub fn check_keys(&mut self, writable: &[&str], read_only: &[&str]) {
        let mut keys: Vec<&String> = self.obj.keys().collect();
        keys.sort();
        for key in keys {
            if read_only.contains(&key.as_str()) {
                self.push(key, "read_only_field", format!("{key} is read-only"));
            } else if !writable.contains(&key.as_str()) {
                self.push(
                    key,
                    "unknown_field",
                    format!("{key} is not a field of this resource"),
                );
            }
        }
    }

    /// A string field that may not be null.
    pub fn not_null<T>(
        &mut self,
        field: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.nullable(field, parse) {
            Some(Some(v)) => Some(v),
            Some(None) => {
                self.push(field, "null_not_allowed", format!("{field} cannot be null"));
                None
            }
            None => None,
        }
    }

    /// A string field; `null` clears it.
    pub fn nullable<T>(
        &mut self,
        field: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        match self.obj.get(field)? {
            Value::Null => Some(None),
            Value::String(s) => match parse(s) {
                Ok(v) => Some(Some(v)),
                Err(message) => {
                    let code = if message.starts_with("must be one of") {
                        "invalid_value"
                    } else if message.starts_with("must be at most") {
                        "too_long"
                    } else {
                        "invalid_format"
                    };
                    self.push(field, code, format!("{field} {message}"));
                    None
                }
            },
            other => {
                self.push(
                    field,
                    "invalid_type",
                    format!("{field} must be a string, not {}", kind(other)),
                );
                None
            }
        }
    }

    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        match self.obj.get(field)? {
            Value::Bool(b) => Some(*b),
            Value::Null => {
                self.push(field, "null_not_allowed", format!("{field} cannot be null"));
                None
            }
            other => {
                self.push(
                    field,
                    "invalid_type",
                    format!("{field} must be a boolean, not {}", kind(other)),
                );
                None
            }
        }
    }

    /// A whole number in `min..=max` (not null).
    pub fn integer(&mut self, field: &str, min: i64, max: i64) -> Option<i64> {
        match self.obj.get(field)? {
            Value::Number(n) => match n.as_i64() {
                Some(v) if (min..=max).contains(&v) => Some(v),
                _ => {
                    self.push(
                        field,
                        "out_of_range",
                        format!("{field} must be a whole number from {min} to {max}"),
                    );
                    None
                }
            },
            Value::Null => {
                self.push(field, "null_not_allowed", format!("{field} cannot be null"));
                None
            }
            other => {
                self.push(
                    field,
                    "invalid_type",
                    format!("{field} must be an integer, not {}", kind(other)),
                );
                None
            }
        }
    }

    pub fn nullable_positive_int(&mut self, field: &str) -> Option<Option<u64>> {
        match self.obj.get(field)? {
            Value::Null => Some(None),
            Value::Number(n) => match n.as_u64() {
                Some(v) if v >= 1 && v <= i64::MAX as u64 => Some(Some(v)),
                _ => {
                    self.push(
                        field,
                        "out_of_range",
                        format!("{field} must be a positive integer"),
                    );
                    None
                }
            },
            other => {
                self.push(
                    field,
                    "invalid_type",
                    format!("{field} must be an integer, not {}", kind(other)),
                );
                None
            }
        }
    }

    /// A nested object (not nullable).
    pub fn object(&mut self, field: &str) -> Option<&'a Map<String, Value>> {
        match self.obj.get(field)? {
            Value::Object(o) => Some(o),
            other => {
                self.push(
                    field,
                    "invalid_type",
                    format!("{field} must be an object, not {}", kind(other)),
                );
                None
            }
        }
    }

    /// An array (not nullable; `[]` clears it) of at most `max` items, each read by `item`.
    pub fn array<T>(
        &mut self,
        field: &str,
        max: usize,
        item: impl Fn(&mut Reader<'_>, &str, &Value) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = match self.obj.get(field)? {
            Value::Array(items) => items,
            Value::Null => {
                self.push(
                    field,
                    "null_not_allowed",
                    format!("{field} cannot be null; send [] to clear it"),
                );
                return None;
            }
            other => {
                self.push(
                    field,
                    "invalid_type",
                    format!("{field} must be an array, not {}", kind(other)),
                );
                return None;
            }
        };
        if items.len() > max {
            self.push(
                field,
                "too_many_items",
                format!("{field} may hold at most {max} items"),
            );
            return None;
        }
        let before = self.errors.len();
        let out: Vec<T> = items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| item(self, &format!("{field}[{i}]"), v))
            .collect();
        (self.errors.len() == before).then_some(out)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Free text: stored in NFC and trimmed, not blank, at most `max` characters, no control,
/// bidi, separator or invisible character (see [`crate::text`]).
pub fn text(max: usize) -> impl Fn(&str) -> Result<String, String> {
    move |s: &str| crate::text::free_text(s, max)
}

/// A closed vocabulary; the error lists the allowed values.
pub fn vocab<T>(
    parse: fn(&str) -> Option<T>,
    allowed: &'static [&'static str],
) -> impl Fn(&str) -> Result<T, String> {
    move |s: &str| parse(s).ok_or_else(|| format!("must be one of {}", allowed.join(", ")))
}

fn password(s: &str) -> Result<Secret, String> {
    let n = s.chars().count();
    if !(8..=256).contains(&n) {
        return Err("must be 8 to 256 characters long".into());
    }
    Ok(Secret(s.to_owned()))
}

fn http_url(s: &str) -> Result<String, String> {
    if s.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    match url::Url::parse(s) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => {
            Ok(s.to_owned())
        }
        _ => Err("must be an absolute http(s) URL".into()),
    }
}

/// Reads `[string]` items of one array with a parser, refusing duplicates.
fn string_list<T: PartialEq>(
    r: &mut Reader<'_>,
    field: &str,
    value: Option<&Value>,
    max: usize,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    let Some(Value::Array(items)) = value else {
        r.errors.push(FieldError::new(
            field,
            "invalid_type",
            format!("{field} must be an array of strings"),
        ));
        return None;
    };
    if items.len() > max {
        r.errors.push(FieldError::new(
            field,
            "too_many_items",
            format!("{field} may hold at most {max} items"),
        ));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = format!("{field}[{i}]");
        match item.as_str().map(&parse) {
            Some(Ok(v)) if out.contains(&v) => {
                r.errors
                    .push(FieldError::new(name, "duplicate", "appears more than once"));
            }
            Some(Ok(v)) => out.push(v),
            Some(Err(message)) => {
                let code = if message.starts_with("must be one of") {
                    "invalid_value"
                } else {
                    "invalid_format"
                };
                r.errors.push(FieldError::new(
                    name.clone(),
                    code,
                    format!("{name} {message}"),
                ));
            }
            None => r.errors.push(FieldError::new(
                name.clone(),
                "invalid_type",
                format!("{name} must be a string"),
            )),
        }
    }
    (out.len() == items.len()).then_some(out)
}

fn item_object<'v>(
    r: &mut Reader<'_>,
    field: &str,
    v: &'v Value,
) -> Option<&'v Map<String, Value>> {
    match v {
        Value::Object(o) => Some(o),
        other => {
            r.errors.push(FieldError::new(
                field,
                "invalid_type",
                format!("{field} must be an object, not {}", kind(other)),
            ));
            None
        }
    }
}

fn location(r: &mut Reader<'_>, field: &str, v: &Value) -> Option<MemberLocation> {
    let obj = item_object(r, field, v)?;
    let mut inner = Reader::new(obj, &format!("{field}."));
    inner.check_keys(&["locationId", "role"], &[]);
    let location_id = inner.not_null("locationId", text(128));
    if location_id.is_none() && !obj.contains_key("locationId") {
        inner.push("locationId", "required", "locationId is required");
    }
    r.errors.append(&mut inner.errors);
    let roles = string_list(
        r,
        &format!("{field}.role"),
        obj.get("role"),
        LocationRole::ALL.len(),
        vocab(LocationRole::parse, LocationRole::ALLOWED),
    )?;
    if roles.is_empty() {
        r.errors.push(FieldError::new(
            format!("{field}.role"),
            "required",
            "give at least one role at the location",
        ));
        return None;
    }
    Some(MemberLocation {
        location_id: location_id?,
        role: roles,
    })
}

fn collaboration_rule(r: &mut Reader<'_>, field: &str, v: &Value) -> Option<CollaborationRule> {
    let obj = item_object(r, field, v)?;
    let mut inner = Reader::new(obj, &format!("{field}."));
    inner.check_keys(&["role", "departments", "locations"], &[]);
    let role = inner.not_null(
        "role",
        vocab(CollaborationRole::parse, CollaborationRole::ALLOWED),
    );
    if role.is_none() && !obj.contains_key("role") {
        inner.push("role", "required", "role is required");
    }
    r.errors.append(&mut inner.errors);
    let empty = Value::Array(vec![]);
    let departments = string_list(
        r,
        &format!("{field}.departments"),
        Some(obj.get("departments").unwrap_or(&empty)),
        100,
        text(128),
    );
    let locations = string_list(
        r,
        &format!("{field}.locations"),
        Some(obj.get("locations").unwrap_or(&empty)),
        100,
        text(128),
    );
    Some(CollaborationRule {
        role: role?,
        departments: departments?,
        locations: locations?,
    })
}

#[cfg(test)]
mod tests;
