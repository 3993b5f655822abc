//! A member as a SCIM User, and a User back to a member patch (docs/design.md, "SCIM").
//!
//! | SCIM | member |
//! |---|---|
//! | `id` | `id`, then `-<n>` once SCIM deleted it and provisioned it again ([`ScimId`]) |
//! | `userName` (any string, as sent) | `scimUserName` (read-only in `/v1`) |
//! | the work (else primary) value of `emails`, else `userName` when an address | `email` |
//! | `name.givenName`, `name.familyName` | `firstName`, `lastName` |
//! | `displayName` | `name` |
//! | `title` | `jobTitle` |
//! | `active` | `isActive` |
//! | `externalId` | `externalId` |
//! | enterprise `department` | `department` (case-insensitive; read back as sent) |
//! | our extension's `role`, `hrisRole`, `locations` | the same |
//!
//! A User body is turned into a `/v1` body and read by the same parser as `/v1`, so every
//! value SCIM accepts is one `/v1` accepts, checked the same way.

pub use super::id::ScimId;
pub use super::values::{attr, attr_of, boolean, MAX_EMAILS, MAX_EXTERNAL_ID, MAX_USER_NAME};
use super::values::{
    department_value, email_of, emails_of, extension, external_id, string_or_null, user_name_of,
};
use super::{invalid, location, version_tag, ENTERPRISE, MEMBER, USER};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::input::{parse_member_patch, MemberPatch};
use crate::model::*;
use serde_json::{json, Map, Value};

/// The member as a SCIM User, with `meta` (absolute `location`, weak `version`).
pub fn to_user(m: &Member, req: &ApiRequest) -> Value {
    let id = ScimId::of(m).to_string();
    let mut user = json!({
        "schemas": [USER, ENTERPRISE, MEMBER],
        "id": id,
        "userName": m.user_name(),
        "active": m.is_active,
        // As the identity provider sent them (none: left out); a member SCIM never wrote
        // shows its email as the work address.
        "emails": match (&m.scim_user_name, &m.scim_emails) {
            (None, _) => json!([{"value": m.email, "type": "work", "primary": true}]),
            (Some(_), Some(sent)) => json!(sent),
            (Some(_), None) => json!([]),
        },
        MEMBER: {
            "role": m.role,
            "locations": m.locations,
        },
        "meta": {
            "resourceType": "User",
            "created": m.created_at,
            "lastModified": m.updated_at,
            "location": location(req, &format!("Users/{id}")),
            "version": version_tag(m.version),
        },
    });
    // readOnly: a user's groups change through /Groups.
    if !m.scim_groups.is_empty() {
        let groups: Vec<Value> = m
            .scim_groups
            .iter()
            .map(|g| {
                json!({
                    "value": g,
                    "$ref": location(req, &format!("Groups/{g}")),
                    "type": "direct",
                })
            })
            .collect();
        user["groups"] = Value::Array(groups);
    }
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
    if user["emails"].as_array().is_some_and(Vec::is_empty) {
        if let Some(o) = user.as_object_mut() {
            o.remove("emails");
        }
    }
    // As the identity provider spelled it (rules::apply keeps it only while it names the
    // department), so that what it reads back is what it sent.
    let department = (m.department != Department::None).then(|| match &m.scim_department {
        Some(sent) => json!({"department": sent}),
        None => json!({"department": m.department}),
    });
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

/// A User body as a member patch.
///
/// - Create: `role` and, while HRIS is on, `hrisRole` default to the organisation's
///   `scim` settings; `active` defaults to true.
/// - Replace: every core attribute is set from the body, an omitted one cleared, except
///   what `/Schemas` announces as required (`displayName`, `active`: 400 `invalidValue`
///   when omitted); our extension's `role`, `hrisRole` and `locations` omitted are left as
///   they are (an identity provider that does not map them never demotes anyone by
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
    let user_name = user_name_of(body)?;
    let emails = emails_of(body)?;
    let email = email_of(&emails, &user_name)?;
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
    let (department, spelled) = department_value(department)?;
    v1.insert("department".into(), department);
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
    // What /Schemas announces as required: a replace (RFC 7644 §3.5.1) sends `active` and
    // a name (`displayName`, or `name.givenName` it is then made of, as on a create); a
    // PATCH cannot empty `displayName` (nor remove it: patch.rs).
    let named = ["firstName", "name"].iter().any(|k| v1[*k].is_string());
    match write {
        Write::Replace(_) if !named => {
            return Err(invalid(
                "invalidValue",
                "displayName (or name.givenName) is required: a replace (PUT) sends the whole \
                 user.",
            ))
        }
        Write::Replace(_) if attr(body, "active").is_none_or(Value::is_null) => {
            return Err(invalid(
                "invalidValue",
                "active is required: a replace (PUT) sends the whole user.",
            ))
        }
        Write::Patch(before) if !before.full_name().is_empty() && !named => {
            return Err(invalid(
                "mutability",
                "displayName is required and cannot be emptied.",
            ))
        }
        _ => {}
    }
    if let Write::Create = write {
        if !v1.contains_key("role") {
            v1.insert("role".into(), json!(org.scim_role()));
        }
        if org.hris_enabled && v1.get("hrisRole").is_none_or(Value::is_null) {
            v1.insert("hrisRole".into(), json!(org.scim_hris_role()));
        }
        if !named {
            return Err(invalid(
                "invalidValue",
                "name.givenName or displayName is required: the member needs a name.",
            ));
        }
    }
    let mut patch = parse_member_patch(&Value::Object(v1)).map_err(ApiError::Validation)?;
    patch.external_id = Some(external_id(attr(body, "externalId"))?);
    patch.scim_user_name = Some(user_name);
    patch.scim_department = Some(spelled);
    patch.scim_emails = Some((!emails.is_empty()).then_some(emails));
    Ok(patch)
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
        assert_eq!(m.department, Department::Qms);
        assert_eq!(user[ENTERPRISE]["department"], "QMS", "as sent");
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
        let one = crate::paging::answer_bytes(&to_user(&m, &req).to_string());
        let page = one * super::super::discovery::MAX_RESULTS;
        assert!(
            page < crate::paging::PAGE_BYTES,
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
                json!([{"value": "not an address", "type": "work"}])
            )),
            Some("invalidValue")
        );
        assert_eq!(
            code(with("userName", json!("x".repeat(MAX_USER_NAME + 1)))),
            Some("invalidValue")
        );
        assert_eq!(code(with("userName", json!("  "))), Some("invalidValue"));
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
        // What /Schemas announces as required, a PUT sends.
        for required in ["displayName", "active"] {
            let mut doc = body(to_user(&m, &ApiRequest::default()));
            doc.remove(required);
            let refused = user_patch(&doc, Write::Replace(&m), &org(false))
                .err()
                .map(|e| e.code());
            assert_eq!(refused, Some("invalidValue"), "a PUT without {required}");
        }
    }

    #[test]
    fn user_name_and_the_work_email_are_two_attributes() {
        // Entra ID's default mapping: userPrincipalName → userName, mail → the work email.
        let m = created(
            json!({"userName": "Ada.L@corp.example.onmicrosoft.com", "displayName": "A",
                   "emails": [{"value": "ada@example.com", "type": "work", "primary": true}]}),
            false,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(m.email.as_str(), "ada@example.com");
        assert_eq!(
            m.scim_user_name.as_deref(),
            Some("Ada.L@corp.example.onmicrosoft.com")
        );
        let user = to_user(&m, &ApiRequest::default());
        assert_eq!(user["userName"], "Ada.L@corp.example.onmicrosoft.com");
        assert_eq!(user["emails"][0]["value"], "ada@example.com");
        // A change of one leaves the other as it is.
        let patched = |doc: Value| {
            let p = user_patch(&body(doc), Write::Replace(&m), &org(false))
                .unwrap_or_else(|e| panic!("{e:?}"));
            (p.scim_user_name, p.email.map(|e| e.as_str().to_owned()))
        };
        let mut doc = user.clone();
        doc["userName"] = json!("Test_User_7f3a");
        assert_eq!(
            patched(doc),
            (
                Some("Test_User_7f3a".into()),
                Some("ada@example.com".into())
            )
        );
        let mut doc = user.clone();
        doc["emails"] = json!([{"value": "ada@new.example", "type": "work"}]);
        assert_eq!(
            patched(doc),
            (
                Some("Ada.L@corp.example.onmicrosoft.com".into()),
                Some("ada@new.example".into())
            )
        );
        // The email: work, else primary, else userName when an address; a home address
        // alone is not the member's.
        let email = |v: Value| {
            user_patch(&body(v), Write::Create, &org(false))
                .map(|p| p.email.map(|e| e.as_str().to_owned()))
                .map_err(|e| e.code())
        };
        let with = |user_name: &str, emails: Value| json!({"userName": user_name, "displayName": "A", "emails": emails});
        assert_eq!(
            email(with(
                "u1",
                json!([{"value": "p@example.com", "primary": true}, {"value": "h@example.com", "type": "home"}])
            )),
            Ok(Some("p@example.com".into()))
        );
        assert_eq!(
            email(with(
                "u@example.com",
                json!([{"value": "h@example.com", "type": "home"}])
            )),
            Ok(Some("u@example.com".into()))
        );
        assert_eq!(
            email(with(
                "u1",
                json!([{"value": "h@example.com", "type": "home"}])
            )),
            Err("invalidValue"),
            "no address at all"
        );
        assert_eq!(email(with("u1", json!(null))), Err("invalidValue"));
    }
}
