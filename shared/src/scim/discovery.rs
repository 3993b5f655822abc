//! The discovery documents (RFC 7644 §4, RFC 7643 §5–7): exactly what is served. Users
//! and Groups, PATCH yes, bulk no, filter yes (the filters of [`super::filter`]),
//! changePassword no, sort no, ETags yes, bearer tokens.

use super::{ENTERPRISE, GROUP, MEMBER, USER};
use crate::model::{BuiltinRole, Department, HrisRole, LocationRole};
use serde_json::{json, Value};

/// The largest `count` a list answers with (`filter.maxResults`).
pub const MAX_RESULTS: usize = 100;

const SPC: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC],
        "documentationUri": "https://github.com/members-api/members-api#scim-provisioning",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "An API key with the scope scim (membersctl keys issue --scope scim), \
                            sent as Authorization: Bearer <key>.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

pub fn user_resource_type(base: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A member of the organisation",
        "schema": USER,
        "schemaExtensions": [
            {"schema": ENTERPRISE, "required": false},
            // Every user has it (a member always has a role); a create without it takes
            // the organisation's defaults, a replace without it leaves its values alone.
            {"schema": MEMBER, "required": true},
        ],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
    })
}

pub fn group_resource_type(base: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "A group of members; through scim.groupRoles, a role",
        "schema": GROUP,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
    })
}

/// Every resource type served.
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![user_resource_type(base), group_resource_type(base)]
}

/// Every schema served, by id.
pub fn schemas(base: &str) -> Vec<Value> {
    let with_meta = |mut schema: Value| {
        let id = schema["id"].as_str().unwrap_or_default().to_owned();
        schema["schemas"] = json!([SCHEMA]);
        schema["meta"] =
            json!({"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")});
        schema
    };
    vec![
        with_meta(user_schema()),
        with_meta(group_schema()),
        with_meta(enterprise_schema()),
        with_meta(member_schema()),
    ]
}

/// One attribute definition, with RFC 7643 §7's defaults spelled out.
fn attribute(name: &str, kind: &str, description: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "description": description,
        "required": false,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    })
}

fn with(mut attribute: Value, changes: Value) -> Value {
    if let (Some(a), Some(c)) = (attribute.as_object_mut(), changes.as_object()) {
        a.extend(c.clone());
    }
    attribute
}

fn user_schema() -> Value {
    json!({
        "id": USER,
        "name": "User",
        "description": "A member of the organisation (only the attributes listed are kept)",
        "attributes": [
            with(attribute("userName", "string", "The identity provider's identifier of the user, \
                 kept as sent: any string of 1 to 256 characters without control characters, \
                 unique in the organisation case-insensitively, across userNames and the \
                 members' email addresses"),
                 json!({"required": true, "uniqueness": "server"})),
            with(attribute("name", "complex", "The member's name"), json!({"subAttributes": [
                attribute("givenName", "string", "First name (at most 100 characters)"),
                attribute("familyName", "string", "Last name (at most 100 characters)"),
            ]})),
            with(attribute("displayName", "string", "The member's full name (at most 200 \
                 characters). Required: a create may send name.givenName instead (displayName \
                 is then the given and family names); a replace must send it; a PATCH cannot \
                 remove it (mutability)"),
                 json!({"required": true})),
            attribute("title", "string", "Job title (at most 200 characters)"),
            with(attribute("active", "boolean", "false: deactivated, still readable. Required: \
                 absent on a create it is true; a replace must send it; a PATCH cannot remove \
                 it (mutability)"),
                 json!({"required": true})),
            with(attribute("emails", "complex", "The member's email: the work address, else the \
                 primary one, else a lone entry without a type, else userName when it is an \
                 address (a user without any address is refused). Up to 10 entries, kept and \
                 read back as sent while that address is the member's email"),
                 json!({"multiValued": true, "subAttributes": [
                    attribute("value", "string", "The email address"),
                    with(attribute("type", "string", "work, home or other: only work (or the \
                         primary address) is the member's"),
                         json!({"canonicalValues": ["work", "home", "other"]})),
                    attribute("primary", "boolean", "Whether this is the primary address"),
                 ]})),
            with(attribute("groups", "complex", "The groups the user belongs to: change them \
                 through /Groups"),
                 json!({"multiValued": true, "mutability": "readOnly", "subAttributes": [
                    with(attribute("value", "string", "The group's id"),
                         json!({"mutability": "readOnly", "caseExact": true})),
                    with(attribute("$ref", "reference", "The group's URI"),
                         json!({"mutability": "readOnly", "referenceTypes": ["Group"]})),
                    with(attribute("type", "string", "direct: groups do not nest"),
                         json!({"mutability": "readOnly", "canonicalValues": ["direct"]})),
                 ]})),
        ],
    })
}

fn group_schema() -> Value {
    json!({
        "id": GROUP,
        "name": "Group",
        "description": "A group of members (groups do not nest)",
        "attributes": [
            with(attribute("displayName", "string", "The group's name: 1 to 256 characters, \
                 unique in the organisation case-insensitively"),
                 json!({"required": true, "uniqueness": "server"})),
            with(attribute("members", "complex", "The group's users, by id (at most 10,000; \
                 at most 1,000 named in one request)"),
                 json!({"multiValued": true, "subAttributes": [
                    with(attribute("value", "string", "The user's id"),
                         json!({"mutability": "immutable", "caseExact": true})),
                    with(attribute("$ref", "reference", "The user's URI"),
                         json!({"mutability": "immutable", "referenceTypes": ["User"]})),
                    with(attribute("type", "string", "User: groups hold users only"),
                         json!({"mutability": "immutable", "canonicalValues": ["User"]})),
                 ]})),
        ],
    })
}

fn enterprise_schema() -> Value {
    json!({
        "id": ENTERPRISE,
        "name": "EnterpriseUser",
        "description": "Enterprise user (only department is kept)",
        "attributes": [
            with(attribute("department", "string", "One of the organisation's departments (any case)"),
                 json!({"canonicalValues": departments()})),
        ],
    })
}

fn member_schema() -> Value {
    json!({
        "id": MEMBER,
        "name": "Member",
        "description": "What the Members API adds: role, HRIS role, locations. Absent on a \
                        create: the organisation's scim.defaultRole and, while HRIS is on, \
                        scim.defaultHrisRole; absent on a replace: unchanged",
        "attributes": [
            with(attribute("role", "string", "A built-in role (admin, simple, reviewer, no_access: \
                 only while HRIS is on) or a custom role id (rol_…)"),
                 json!({"required": true, "caseExact": true,
                        "canonicalValues": [BuiltinRole::Simple, BuiltinRole::Reviewer, BuiltinRole::Admin]})),
            with(attribute("hrisRole", "string", "The HRIS role (required while HRIS is on)"),
                 json!({"caseExact": true, "canonicalValues": HrisRole::ALLOWED})),
            with(attribute("locations", "complex", "The member's locations and roles there"),
                 json!({"multiValued": true, "subAttributes": [
                    with(attribute("locationId", "string", "The location"), json!({"caseExact": true})),
                    with(attribute("role", "string", "Roles at the location"),
                         json!({"multiValued": true, "caseExact": true, "canonicalValues": LocationRole::ALLOWED})),
                 ]})),
        ],
    })
}

/// The departments a User may name (`none` is the absence of one: no department).
fn departments() -> Vec<&'static str> {
    Department::ALLOWED
        .iter()
        .copied()
        .filter(|d| *d != Department::None.as_str())
        .collect()
}

/// A list of discovery resources, as RFC 7644 §4 answers them.
pub fn list(resources: Vec<Value>) -> Value {
    super::list_response(resources.len(), 1, resources)
}
