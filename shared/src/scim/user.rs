//! A member as a SCIM User, and a User back to a member patch (docs/design.md, "SCIM").
//!
//! | SCIM | member |
//! |---|---|
//! | `userName`, the work (or primary) value of `emails` | `email` |
//! | `name.givenName`, `name.familyName` | `firstName`, `lastName` |
//! | `displayName` | `name` |
//! | `title` | `jobTitle` |
//! | `active` | `isActive` |
//! | `externalId` | `externalId` |
//! | enterprise `department` | `department` (case-insensitive) |
//! | our extension's `role`, `hrisRole`, `locations` | the same |
//!
//! A User body is turned into a `/v1` body and read by the same parser as `/v1`, so every
//! value SCIM accepts is one `/v1` accepts, checked the same way.

use super::{invalid, location, version_tag, ENTERPRISE, MEMBER, USER};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::input::{parse_member_patch, MemberPatch};
use crate::model::*;
use serde_json::{json, Map, Value};

/// The longest `externalId` kept (identity providers' ids are far shorter).
pub const MAX_EXTERNAL_ID: usize = 256;

/// The member as a SCIM User, with `meta` (absolute `location`, weak `version`).
pub fn to_user(m: &Member, req: &ApiRequest) -> Value {
    let mut user = json!({
        "schemas": [USER, ENTERPRISE, MEMBER],
        "id": m.id,
        "userName": m.email,
        "active": m.is_active,
        "emails": [{"value": m.email, "type": "work", "primary": true}],
        MEMBER: {
            "role": m.role,
            "locations": m.locations,
        },
        "meta": {
            "resourceType": "User",
            "created": m.created_at,
            "lastModified": m.updated_at,
            "location": location(req, &format!("Users/{}", m.id)),
            "version": version_tag(m.version),
        },
    });
    let set = |user: &mut Value, at: &[&str], value: Option<Value>| {
        if let Some(value) = value {
            let mut slot = &mut *user;
            for key in at {
                slot = &mut slot[*key];
            }
            *slot = value;
        }
    };
    // What is not set is left out (an empty `name` or extension object, too): RFC 7643
    // §2.5, and what a client that removed it expects to read back.
    let mut name = Map::new();
    for (key, value) in [("givenName", &m.first_name), ("familyName", &m.last_name)] {
        if let Some(value) = value {
            name.insert(key.into(), json!(value));
        }
    }
    set(
        &mut user,
        &["name"],
        (!name.is_empty()).then_some(Value::Object(name)),
    );
    set(
        &mut user,
        &["externalId"],
        m.external_id.clone().map(Value::from),
    );
    // The member's full name: its own, or given and family names.
    let full = m.full_name();
    set(
        &mut user,
        &["displayName"],
        (!full.is_empty()).then(|| json!(full)),
    );
    set(&mut user, &["title"], m.job_title.clone().map(Value::from));
    let department =
        (m.department != Department::None).then(|| json!({"department": m.department}));
    set(&mut user, &[ENTERPRISE], department);
    set(
        &mut user,
        &[MEMBER, "hrisRole"],
        m.hris_role.map(|h| json!(h)),
    );
    user
}

/// What a body is for: a new member, the whole of an existing one (PUT), or PATCH's
/// document once its operations are applied (it started as the whole user, so what is
/// missing from it was removed).
#[derive(Clone, Copy)]
pub enum Write<'a> {
    Create,
    Replace(&'a Member),
    Patch(&'a Member),
}

impl<'a> Write<'a> {
    fn current(self) -> Option<&'a Member> {
        match self {
            Write::Create => None,
            Write::Replace(m) | Write::Patch(m) => Some(m),
        }
    }
}

/// A User body as a member patch.
///
/// - Create: `role` and, while HRIS is on, `hrisRole` default to the organisation's
///   `scim` settings; `active` defaults to true.
/// - Replace: every core attribute is set from the body, an omitted one cleared; `active`
///   omitted leaves it as it is, and so do our extension's `role`, `hrisRole` and
///   `locations` (an identity provider that does not map them never demotes anyone by
///   omission).
/// - Patch: as Replace, except that what an operation removed is removed: `hrisRole` and
///   `locations` are cleared; `role` and `active` cannot be (400 `mutability`).
///
/// Attributes SCIM defines that this API does not keep (`phoneNumbers`, `addresses`, …)
/// are ignored, as are the read-only `id`, `meta` and `schemas`.
pub fn user_patch(
    body: &Map<String, Value>,
    write: Write<'_>,
    org: &Organization,
) -> Result<MemberPatch, ApiError> {
    let email = email_of(body, write)?;
    let name = attr(body, "name").filter(|v| !v.is_null());
    if let Some(name) = name.filter(|n| !n.is_object()) {
        return Err(invalid(
            "invalidValue",
            format!("name must be an object with givenName and familyName, not {name}"),
        ));
    }
    let sub = |key: &str| name.and_then(|n| attr_of(n, key)).cloned();
    let enterprise = extension(body, ENTERPRISE)?;
    let ours = extension(body, MEMBER)?;
    let mut v1 = Map::new();
    v1.insert("email".into(), json!(email));
    v1.insert(
        "firstName".into(),
        string_or_null(sub("givenName"), "name.givenName")?,
    );
    v1.insert(
        "lastName".into(),
        string_or_null(sub("familyName"), "name.familyName")?,
    );
    // A displayName that is just the given and family names is what the member shows
    // without a name of its own: kept as none, so that a User read and sent back is no change.
    let derived: Vec<&str> = ["firstName", "lastName"]
        .iter()
        .filter_map(|k| v1[*k].as_str())
        .collect();
    let display = match string_or_null(attr(body, "displayName").cloned(), "displayName")? {
        Value::String(s) if s == derived.join(" ") => Value::Null,
        other => other,
    };
    v1.insert("name".into(), display);
    v1.insert(
        "jobTitle".into(),
        string_or_null(attr(body, "title").cloned(), "title")?,
    );
    let department = enterprise.and_then(|e| attr_of(e, "department")).cloned();
    v1.insert("department".into(), department_value(department)?);
    if let Some(active) = attr(body, "active").filter(|v| !v.is_null()) {
        v1.insert("isActive".into(), json!(boolean(active, "active")?));
    }
    for key in ["role", "hrisRole", "locations"] {
        if let Some(value) = ours.and_then(|o| attr_of(o, key)) {
            v1.insert(key.into(), value.clone());
        }
    }
    if let Write::Patch(_) = write {
        // Removed by an operation: cleared where a member can be without it.
        for (key, cleared) in [("hrisRole", Value::Null), ("locations", json!([]))] {
            v1.entry(key).or_insert(cleared);
        }
        for (key, attribute) in [
            ("role", format!("{MEMBER}:role")),
            ("isActive", "active".into()),
        ] {
            if !v1.contains_key(key) {
                return Err(invalid(
                    "mutability",
                    format!("{attribute} is required and cannot be removed"),
                ));
            }
        }
    }
    if let Write::Create = write {
        if !v1.contains_key("role") {
            v1.insert("role".into(), json!(org.scim_role()));
        }
        if org.hris_enabled && v1.get("hrisRole").is_none_or(Value::is_null) {
            v1.insert("hrisRole".into(), json!(org.scim_hris_role()));
        }
        let named = ["firstName", "name"].iter().any(|k| v1[*k].is_string());
        if !named {
            return Err(invalid(
                "invalidValue",
                "name.givenName or displayName is required: the member needs a name.",
            ));
        }
    }
    let mut patch = parse_member_patch(&Value::Object(v1)).map_err(ApiError::Validation)?;
    patch.external_id = Some(external_id(attr(body, "externalId"))?);
    Ok(patch)
}

/// `userName`, reconciled with the work (or primary) address of `emails`: both are the
/// member's one email. When they differ, the one that differs from the member's current
/// address is the change asked for; two different new addresses are refused.
fn email_of(body: &Map<String, Value>, write: Write<'_>) -> Result<Email, ApiError> {
    let user_name = match attr(body, "userName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(Value::String(_)) | Some(Value::Null) | None => {
            return Err(invalid(
                "invalidValue",
                "userName is required: it is the member's email address.",
            ))
        }
        Some(other) => {
            return Err(invalid(
                "invalidValue",
                format!("userName must be a string (an email address), not {other}"),
            ))
        }
    };
    let parse = |s: &str, what: &str| {
        Email::parse(s).map_err(|e| {
            invalid(
                "invalidValue",
                format!("{what} must be the member's email address: {e}"),
            )
        })
    };
    let user_name = parse(&user_name, "userName")?;
    let Some(work) = work_email(body)? else {
        return Ok(user_name);
    };
    let work = parse(&work, "emails[type eq \"work\"].value")?;
    if work.normalized() == user_name.normalized() {
        return Ok(user_name);
    }
    match write.current() {
        Some(current) if user_name.normalized() == current.email.normalized() => Ok(work),
        Some(current) if work.normalized() == current.email.normalized() => Ok(user_name),
        _ => Err(invalid(
            "invalidValue",
            "userName and the work email (emails[type eq \"work\"].value) are one address \
             here, the member's email: send the same value in both. In Microsoft Entra ID, map \
             the same source attribute (e.g. mail) to both, or remove the emails mapping.",
        )),
    }
}

/// The value of the (last) `work` entry of `emails`, else of the (last) `primary` one, else
/// of the only one.
fn work_email(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let emails = match attr(body, "emails") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(emails)) => emails,
        Some(_) => return Err(invalid("invalidValue", "emails must be an array")),
    };
    let value = |e: &Value| {
        attr_of(e, "value")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let is = |e: &Value, key: &str, want: &Value| {
        attr_of(e, key).is_some_and(|v| match (v, want) {
            (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
            (v, Value::Bool(b)) => boolean(v, "primary").is_ok_and(|x| x == *b),
            _ => false,
        })
    };
    // The last one: a PATCH `add` appends the new address after the old one.
    let chosen = emails
        .iter()
        .rev()
        .find(|e| is(e, "type", &json!("work")))
        .or_else(|| emails.iter().rev().find(|e| is(e, "primary", &json!(true))))
        .or(if emails.len() == 1 {
            emails.first()
        } else {
            None
        });
    Ok(chosen.and_then(value))
}

/// An extension object by its schema URN (keys compare case-insensitively).
fn extension<'a>(body: &'a Map<String, Value>, urn: &str) -> Result<Option<&'a Value>, ApiError> {
    match attr(body, urn) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(invalid("invalidValue", format!("{urn} must be an object"))),
    }
}

fn string_or_null(value: Option<Value>, what: &str) -> Result<Value, ApiError> {
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

/// SCIM's department, compared case-insensitively with the vocabulary.
fn department_value(value: Option<Value>) -> Result<Value, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Value::Null),
        Some(Value::String(s)) => match Department::parse(&s.trim().to_lowercase()) {
            Some(d) => Ok(json!(d)),
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

fn external_id(value: Option<&Value>) -> Result<Option<String>, ApiError> {
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

fn attr_of<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.as_object().and_then(|o| attr(o, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(hris: bool) -> Organization {
        Organization::new("A", hris)
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn created(v: Value, hris: bool) -> Result<Member, ApiError> {
        let o = org(hris);
        let patch = user_patch(&body(v), Write::Create, &o)?;
        crate::rules::new_member(patch, &o, Timestamp::now()).map(|d| d.member)
    }

    #[test]
    fn whatever_is_accepted_reads_back() {
        let sent = json!({
            "schemas": [USER, ENTERPRISE],
            "userName": "Ada@Example.com",
            "externalId": "00u1ab",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "displayName": "Ada Lovelace",
            "title": "Engineer",
            "active": "True",
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
            ENTERPRISE: {"department": "QMS"},
            MEMBER: {"role": "reviewer", "hrisRole": "hris_employee",
                     "locations": [{"locationId": "l1", "role": ["viewer"]}]},
        });
        let m = created(sent, true).unwrap_or_else(|e| panic!("{e:?}"));
        let user = to_user(&m, &ApiRequest::default());
        assert_eq!(user["userName"], "Ada@Example.com");
        assert_eq!(user["externalId"], "00u1ab");
        assert_eq!(
            user["name"],
            json!({"givenName": "Ada", "familyName": "Lovelace"})
        );
        assert_eq!(user["displayName"], "Ada Lovelace");
        assert_eq!(user["title"], "Engineer");
        assert_eq!(user["active"], true);
        assert_eq!(user[ENTERPRISE]["department"], "qms");
        assert_eq!(user[MEMBER]["role"], "reviewer");
        assert_eq!(user[MEMBER]["locations"][0]["locationId"], "l1");
        assert_eq!(user["meta"]["version"], "W/\"1\"");
        // The User read back, sent again as a PUT, changes nothing.
        let again = user_patch(&body(user), Write::Replace(&m), &org(true))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let draft = crate::rules::apply(again, &m, &org(true), m.updated_at)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(crate::rules::is_noop(&m, &draft));
    }

    #[test]
    fn a_full_page_of_the_largest_users_fits_in_a_lambda_answer() {
        // Every text at its longest, in the character that costs most in the answer (`"`:
        // escaped in the JSON, then again in Lambda's envelope), 40 locations.
        let q = |n: usize| "\"".repeat(n);
        let locations: Vec<Value> = (0..crate::input::MAX_LOCATIONS)
            .map(|i| json!({"locationId": format!("{i:03}{}", q(125)), "role": ["admin", "editor", "viewer"]}))
            .collect();
        let v1 = json!({
            "email": format!("{}@{}.example.com", "a".repeat(64), "b".repeat(63)),
            "firstName": q(100), "lastName": q(100), "name": q(200), "jobTitle": q(200),
            "role": "reviewer", "hrisRole": "hris_employee", "department": "qms",
            "locations": locations,
        });
        let patch = parse_member_patch(&v1).unwrap_or_else(|e| panic!("{e:?}"));
        let mut m = crate::rules::new_member(patch, &org(false), Timestamp::now())
            .unwrap_or_else(|e| panic!("{e:?}"))
            .member;
        m.external_id = Some(q(MAX_EXTERNAL_ID));
        let mut req = ApiRequest {
            path: format!("/{}/scim/v2/Users", "s".repeat(100)),
            ..ApiRequest::default()
        };
        req.headers.insert("host".into(), "h".repeat(253));
        let one = crate::handlers::paging::answer_bytes(&to_user(&m, &req).to_string());
        let page = one * super::super::discovery::MAX_RESULTS;
        assert!(
            page < crate::handlers::paging::PAGE_BYTES,
            "{one} bytes a user, {page} a page: over the page budget"
        );
    }

    #[test]
    fn absent_roles_take_the_organisation_defaults() {
        let m = created(
            json!({"userName": "a@example.com", "name": {"givenName": "A"}}),
            true,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(m.role, Role::Builtin(BuiltinRole::Simple));
        assert_eq!(m.hris_role, Some(HrisRole::HrisEmployee));
        let m = created(
            json!({"userName": "a@example.com", "displayName": "A"}),
            false,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(m.hris_role, None);
    }

    #[test]
    fn bad_values_are_invalid_value_naming_the_attribute() {
        let code = |v: Value| created(v, false).err().map(|e| e.code());
        let base = json!({"userName": "a@example.com", "name": {"givenName": "A"}});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        assert_eq!(code(base.clone()), None);
        assert_eq!(
            code(with("userName", json!("not an email"))),
            Some("invalidValue")
        );
        assert_eq!(code(with("userName", json!(null))), Some("invalidValue"));
        assert_eq!(code(with("active", json!("yes"))), Some("invalidValue"));
        assert_eq!(
            code(with(ENTERPRISE, json!({"department": "sales"}))),
            Some("invalidValue")
        );
        assert_eq!(
            code(with("externalId", json!("x".repeat(257)))),
            Some("invalidValue")
        );
        assert_eq!(
            code(with(
                "emails",
                json!([{"value": "b@example.com", "type": "work"}])
            )),
            Some("invalidValue")
        );
        assert_eq!(
            code(with(MEMBER, json!({"role": "owner"}))),
            Some("validation_failed")
        );
        assert_eq!(
            code(json!({"userName": "a@example.com"})),
            Some("invalidValue"),
            "a member needs a name"
        );
    }

    #[test]
    fn what_a_patch_removed_is_cleared_or_refused() {
        let m = created(
            json!({"userName": "a@example.com", "displayName": "A", MEMBER: {"hrisRole": "hris_admin",
                   "locations": [{"locationId": "l1", "role": ["viewer"]}]}}),
            false,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let mut doc = body(to_user(&m, &ApiRequest::default()));
        if let Some(Value::Object(ours)) = doc.get_mut(MEMBER) {
            ours.remove("hrisRole");
            ours.remove("locations");
        }
        let p = user_patch(&doc, Write::Patch(&m), &org(false)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((p.hris_role, p.locations), (Some(None), Some(vec![])));
        // The same body as a PUT leaves them alone.
        let p =
            user_patch(&doc, Write::Replace(&m), &org(false)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((p.hris_role, p.locations), (None, None));
        doc.remove(MEMBER);
        let refused = user_patch(&doc, Write::Patch(&m), &org(false))
            .err()
            .map(|e| e.code());
        assert_eq!(refused, Some("mutability"), "a member keeps a role");
    }

    #[test]
    fn a_changed_work_email_or_user_name_wins_over_the_unchanged_one() {
        let m = created(
            json!({"userName": "a@example.com", "name": {"givenName": "A"}}),
            false,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let email = |v: Value| {
            user_patch(&body(v), Write::Replace(&m), &org(false))
                .map(|p| p.email.map(|e| e.normalized()))
                .map_err(|e| e.code())
        };
        let emails = |s: &str| json!([{"value": s, "type": "work"}]);
        assert_eq!(
            email(
                json!({"userName": "a@example.com", "emails": emails("b@example.com"), "displayName": "A"})
            ),
            Ok(Some("b@example.com".into()))
        );
        assert_eq!(
            email(
                json!({"userName": "c@example.com", "emails": emails("a@example.com"), "displayName": "A"})
            ),
            Ok(Some("c@example.com".into()))
        );
        assert_eq!(
            email(
                json!({"userName": "c@example.com", "emails": emails("d@example.com"), "displayName": "A"})
            ),
            Err("invalidValue")
        );
    }
}
