//! SCIM Groups (RFC 7643 §4.2) on the wire: a group as a SCIM document, and a POST, PUT or
//! PATCH body as what it asks for. The membership changes it asks for are applied by
//! the Groups handlers as member writes.
//!
//! PATCH takes the shapes both identity providers send:
//! - Okta: `add` with path `members` and up to 1,000 `{value}` entries; `remove` with path
//!   `members[value eq "…"]`; `replace` without a path whose value re-sends `{id,
//!   displayName}` with every membership change.
//! - Entra ID: capitalised ops; `Add` of `{"$ref": null, "value"}` entries; `Remove` with
//!   path `members` and a value array; `Replace` of `displayName`.

use super::values::attr;
use super::{invalid, key_of, location, version_tag, GROUP};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::model::*;
use serde_json::{json, Map, Value};

/// The longest `displayName` or `externalId` a group takes, in characters.
pub const MAX_NAME: usize = 256;
/// At most this many member entries in one request (Okta sends up to 1,000 a PATCH).
pub const MAX_MEMBERS_PER_REQUEST: usize = 1_000;

/// A group as SCIM shows it; `members` (SCIM ids of Users) only when given.
pub fn to_group(g: &Group, members: Option<&[String]>, req: &ApiRequest) -> Value {
    let mut doc = Map::new();
    doc.insert("schemas".into(), json!([GROUP]));
    doc.insert("id".into(), json!(g.id));
    if let Some(external_id) = &g.external_id {
        doc.insert("externalId".into(), json!(external_id));
    }
    doc.insert("displayName".into(), json!(g.display_name));
    if let Some(members) = members {
        let members: Vec<Value> = members
            .iter()
            .map(|id| {
                json!({
                    "value": id,
                    "$ref": location(req, &format!("Users/{id}")),
                    "type": "User",
                })
            })
            .collect();
        doc.insert("members".into(), Value::Array(members));
    }
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": "Group",
            "created": g.created_at,
            "lastModified": g.updated_at,
            "location": location(req, &format!("Groups/{}", g.id)),
            "version": version_tag(g.version),
        }),
    );
    Value::Object(doc)
}

/// A POST or PUT body: every writable attribute of a group.
#[derive(Debug, PartialEq)]
pub struct GroupBody {
    pub display_name: String,
    pub external_id: Option<String>,
    /// The SCIM ids of its members, as sent (`None`: the body has no `members`).
    pub members: Option<Vec<String>>,
}

/// Reads a POST or PUT body. `id` and `meta` are ignored (read-only, as RFC 7644 §3.5.1
/// has it); anything else unknown is refused.
pub fn group_body(body: &Value) -> Result<GroupBody, ApiError> {
    let Some(body) = body.as_object() else {
        return Err(invalid("invalidSyntax", "The body must be a Group object."));
    };
    for key in body.keys() {
        let known = [
            "schemas",
            "id",
            "meta",
            "displayName",
            "externalId",
            "members",
        ];
        if !known.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            return Err(invalid(
                "invalidSyntax",
                format!(
                    "{key:?} is not an attribute of a Group: displayName, externalId, members."
                ),
            ));
        }
    }
    let schemas_ok = attr(body, "schemas")
        .is_none_or(|s| s.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
    if !schemas_ok {
        return Err(invalid(
            "invalidSyntax",
            format!("schemas must be an array of schema URNs ({GROUP})."),
        ));
    }
    let display_name = match attr(body, "displayName") {
        Some(v) => name(v, "displayName")?,
        None => {
            return Err(invalid(
                "invalidValue",
                "displayName is required: the group's name, unique in the organisation.",
            ))
        }
    };
    let external_id = match attr(body, "externalId") {
        None | Some(Value::Null) => None,
        Some(v) => Some(name(v, "externalId")?),
    };
    let members = match attr(body, "members") {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(v) => Some(member_values(v)?),
    };
    if members
        .as_ref()
        .is_some_and(|m| m.len() > MAX_MEMBERS_PER_REQUEST)
    {
        return Err(invalid(
            "tooMany",
            format!("A request names at most {MAX_MEMBERS_PER_REQUEST} members; add the rest with PATCH."),
        ));
    }
    Ok(GroupBody {
        display_name,
        external_id,
        members,
    })
}

/// What a PATCH asks, in the order of its operations.
#[derive(Debug, Default, PartialEq)]
pub struct GroupPatch {
    pub display_name: Option<String>,
    /// `Some(None)`: removed.
    pub external_id: Option<Option<String>>,
    pub members: Vec<MemberChange>,
}

/// One change of the members, applied in order to the group's members as they are.
#[derive(Debug, PartialEq)]
pub enum MemberChange {
    Add(Vec<String>),
    Remove(Vec<String>),
    RemoveAll,
    Replace(Vec<String>),
}

impl GroupPatch {
    /// The SCIM ids the changes add (each once, in order): each must name a user. An id
    /// removed that names none is absent from the group, so its removal changes nothing.
    pub fn added(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for change in &self.members {
            if let MemberChange::Add(ids) | MemberChange::Replace(ids) = change {
                for id in ids {
                    if !out.contains(&id.as_str()) {
                        out.push(id);
                    }
                }
            }
        }
        out
    }

    /// Whether the changes set the members whole (a replace, a removal of all).
    pub fn replaces(&self) -> bool {
        self.members
            .iter()
            .any(|c| matches!(c, MemberChange::Replace(_) | MemberChange::RemoveAll))
    }

    /// The members after the changes, from `current` (SCIM ids), in order: those kept,
    /// then those added.
    pub fn members_after(&self, current: &[String]) -> Vec<String> {
        let mut members: Vec<String> = current.to_vec();
        for change in &self.members {
            match change {
                MemberChange::Add(ids) => {
                    for id in ids {
                        if !members.contains(id) {
                            members.push(id.clone());
                        }
                    }
                }
                MemberChange::Remove(ids) => members.retain(|m| !ids.contains(m)),
                MemberChange::RemoveAll => members.clear(),
                MemberChange::Replace(ids) => {
                    members.clear();
                    for id in ids {
                        if !members.contains(id) {
                            members.push(id.clone());
                        }
                    }
                }
            }
        }
        members
    }
}

/// Reads a PatchOp body addressed to a group (`id`: the group's, which a value may re-send).
pub fn group_patch(body: &Value, id: &GroupId) -> Result<GroupPatch, ApiError> {
    let operations = super::patch::operations(body)?;
    if operations.is_empty() {
        return Err(invalid(
            "invalidValue",
            "A PATCH takes at least one operation.",
        ));
    }
    let mut patch = GroupPatch::default();
    for operation in operations {
        operation_into(&mut patch, operation, id)?;
    }
    let entries: usize = patch
        .members
        .iter()
        .map(|c| match c {
            MemberChange::Add(v) | MemberChange::Remove(v) | MemberChange::Replace(v) => v.len(),
            MemberChange::RemoveAll => 0,
        })
        .sum();
    if entries > MAX_MEMBERS_PER_REQUEST {
        return Err(invalid(
            "tooMany",
            format!(
                "A PATCH names at most {MAX_MEMBERS_PER_REQUEST} members; send the rest in \
                 another PATCH."
            ),
        ));
    }
    Ok(patch)
}

fn operation_into(patch: &mut GroupPatch, operation: &Value, id: &GroupId) -> Result<(), ApiError> {
    let Some(op) = operation.as_object() else {
        return Err(invalid(
            "invalidSyntax",
            "Each operation must be an object.",
        ));
    };
    let kind = attr(op, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let path = attr(op, "path").and_then(Value::as_str).map(str::trim);
    let value = attr(op, "value");
    let path = path.map(|p| {
        let p = p
            .get(..GROUP.len())
            .filter(|head| head.eq_ignore_ascii_case(GROUP))
            .map_or(p, |_| p[GROUP.len()..].trim_start_matches(':'));
        p.to_owned()
    });
    match (kind.as_str(), path.as_deref()) {
        ("add" | "replace", None) => {
            let Some(Value::Object(value)) = value else {
                return Err(invalid(
                    "invalidValue",
                    format!("{kind} without a path takes an object of attributes"),
                ));
            };
            for (key, v) in value {
                match key.to_ascii_lowercase().as_str() {
                    "displayname" => patch.display_name = Some(name(v, "displayName")?),
                    "externalid" => patch.external_id = Some(optional_name(v)?),
                    "members" => {
                        let ids = member_values(v)?;
                        patch.members.push(match kind.as_str() {
                            "add" => MemberChange::Add(ids),
                            _ => MemberChange::Replace(ids),
                        });
                    }
                    // Okta re-sends the group's id with each change: harmless if it is this one.
                    "id" if v.as_str() == Some(id.as_str()) => {}
                    "schemas" | "meta" => {}
                    other => {
                        return Err(invalid(
                            "invalidPath",
                            format!("{other:?} is not a writable attribute of a Group"),
                        ))
                    }
                }
            }
            Ok(())
        }
        (_, Some(path)) if path.eq_ignore_ascii_case("displayName") => match kind.as_str() {
            "add" | "replace" => {
                patch.display_name = Some(name(value.unwrap_or(&Value::Null), "displayName")?);
                Ok(())
            }
            "remove" => Err(invalid(
                "mutability",
                "displayName is required: it can be replaced, not removed.",
            )),
            _ => Err(unknown_op(&kind)),
        },
        (_, Some(path)) if path.eq_ignore_ascii_case("externalId") => {
            patch.external_id = Some(match kind.as_str() {
                "add" | "replace" => optional_name(value.unwrap_or(&Value::Null))?,
                "remove" => None,
                _ => return Err(unknown_op(&kind)),
            });
            Ok(())
        }
        (_, Some(path)) if path.eq_ignore_ascii_case("members") => {
            let ids = match value {
                None | Some(Value::Null) => None,
                Some(v) => Some(member_values(v)?),
            };
            patch.members.push(match (kind.as_str(), ids) {
                ("add", Some(ids)) => MemberChange::Add(ids),
                ("replace", Some(ids)) => MemberChange::Replace(ids),
                ("replace", None) => MemberChange::RemoveAll,
                ("remove", Some(ids)) => MemberChange::Remove(ids),
                ("remove", None) => MemberChange::RemoveAll,
                ("add", None) => {
                    return Err(invalid("invalidValue", "add to members takes a value"))
                }
                _ => return Err(unknown_op(&kind)),
            });
            Ok(())
        }
        ("remove", Some(path)) => match member_filter(path) {
            Some(id) => {
                patch.members.push(MemberChange::Remove(vec![id]));
                Ok(())
            }
            None => Err(invalid(
                "invalidPath",
                format!("{path:?}: a group's path is displayName, externalId, members or members[value eq \"…\"]"),
            )),
        },
        ("add" | "replace", Some(path)) => Err(invalid(
            "invalidPath",
            format!("{path:?}: a group's path is displayName, externalId, members or members[value eq \"…\"]"),
        )),
        _ => Err(unknown_op(&kind)),
    }
}

fn unknown_op(kind: &str) -> ApiError {
    invalid(
        "invalidSyntax",
        format!("op {kind:?}: an operation is add, replace or remove"),
    )
}

/// `members[value eq "…"]`: the id it names.
fn member_filter(path: &str) -> Option<String> {
    let (attribute, rest) = path.split_once('[')?;
    if !attribute.trim().eq_ignore_ascii_case("members") {
        return None;
    }
    let inner = rest.strip_suffix(']')?.trim();
    let mut words = inner.splitn(3, char::is_whitespace);
    let (sub, op, literal) = (words.next()?, words.next()?, words.next()?.trim());
    if !sub.eq_ignore_ascii_case("value") || !op.eq_ignore_ascii_case("eq") {
        return None;
    }
    let id: String = serde_json::from_str(literal).ok()?;
    Some(id)
}

/// A name: a string of 1 to [`MAX_NAME`] characters, no control characters, trimmed.
fn name(v: &Value, what: &str) -> Result<String, ApiError> {
    let Some(s) = v.as_str().map(str::trim) else {
        return Err(invalid("invalidValue", format!("{what} must be a string")));
    };
    if s.is_empty() || s.chars().count() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(invalid(
            "invalidValue",
            format!("{what} must be 1 to {MAX_NAME} characters, without control characters"),
        ));
    }
    Ok(s.to_owned())
}

fn optional_name(v: &Value) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        v => name(v, "externalId").map(Some),
    }
}

/// `members` as sent: an array of `{"value": "<User id>"}` (other keys, `$ref` and
/// `display`, are ignored), or one such object.
fn member_values(v: &Value) -> Result<Vec<String>, ApiError> {
    let entries: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        _ => {
            return Err(invalid(
                "invalidValue",
                "members must be an array of {\"value\": \"<User id>\"}",
            ))
        }
    };
    entries
        .into_iter()
        .map(|e| {
            e.as_object()
                .and_then(|o| key_of(o, "value").and_then(|k| o.get(&k)))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    invalid(
                        "invalidValue",
                        "each member must be an object with the User's id in value",
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::PATCH_OP;

    fn patch(ops: Value) -> Result<GroupPatch, ApiError> {
        let id = GroupId::parse("grp_1").unwrap_or_else(|e| panic!("{e}"));
        group_patch(&json!({"schemas": [PATCH_OP], "Operations": ops}), &id)
    }

    fn ok(ops: Value) -> GroupPatch {
        patch(ops).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn okta_shapes() {
        let p = ok(
            json!([{"op": "add", "path": "members", "value": [{"value": "mem_a"}, {"value": "mem_b", "display": "B"}]}]),
        );
        assert_eq!(p.members, vec![MemberChange::Add(ids(&["mem_a", "mem_b"]))]);
        let p = ok(json!([{"op": "remove", "path": "members[value eq \"mem_a\"]"}]));
        assert_eq!(p.members, vec![MemberChange::Remove(ids(&["mem_a"]))]);
        let p = ok(json!([{"op": "replace", "value": {"id": "grp_1", "displayName": "Eng"}}]));
        assert_eq!(p.display_name.as_deref(), Some("Eng"));
        assert!(p.members.is_empty());
        assert!(patch(json!([{"op": "replace", "value": {"id": "grp_2"}}])).is_err());
    }

    #[test]
    fn entra_shapes() {
        let p = ok(
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "mem_a"}]}]),
        );
        assert_eq!(p.members, vec![MemberChange::Add(ids(&["mem_a"]))]);
        let p = ok(json!([{"op": "Remove", "path": "members", "value": [{"value": "mem_a"}]}]));
        assert_eq!(p.members, vec![MemberChange::Remove(ids(&["mem_a"]))]);
        let p = ok(json!([{"op": "Replace", "path": "displayName", "value": "New"}]));
        assert_eq!(p.display_name.as_deref(), Some("New"));
    }

    #[test]
    fn changes_apply_in_order_and_repeat_harmlessly() {
        let p = ok(json!([
            {"op": "add", "path": "members", "value": [{"value": "b"}, {"value": "a"}, {"value": "b"}]},
            {"op": "remove", "path": "members[value eq \"c\"]"},
        ]));
        assert_eq!(p.members_after(&ids(&["a", "c"])), ids(&["a", "b"]));
        assert_eq!(p.added(), vec!["b", "a"]);
        let p = ok(
            json!([{"op": "remove", "path": "members"}, {"op": "add", "path": "members", "value": [{"value": "x"}]}]),
        );
        assert_eq!(p.members_after(&ids(&["a"])), ids(&["x"]));
    }

    #[test]
    fn what_is_refused() {
        let code = |ops: Value| match patch(ops) {
            Err(ApiError::Scim { scim_type, .. }) => scim_type,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(json!([{"op": "remove", "path": "displayName"}])),
            "mutability"
        );
        assert_eq!(
            code(json!([{"op": "add", "path": "members[value eq \"a\"]", "value": []}])),
            "invalidPath"
        );
        assert_eq!(
            code(json!([{"op": "move", "path": "members"}])),
            "invalidSyntax"
        );
        assert_eq!(
            code(json!([{"op": "add", "path": "members", "value": [{"display": "x"}]}])),
            "invalidValue"
        );
        let many: Vec<Value> = (0..1001)
            .map(|i| json!({"value": format!("m{i}")}))
            .collect();
        assert_eq!(
            code(json!([{"op": "add", "path": "members", "value": many}])),
            "tooMany"
        );
        assert_eq!(code(json!([])), "invalidValue");
    }

    #[test]
    fn a_body_needs_a_display_name() {
        let body = group_body(
            &json!({"schemas": [GROUP], "displayName": " Eng ", "members": [{"value": "m"}]}),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(body.display_name, "Eng");
        assert_eq!(body.members, Some(ids(&["m"])));
        assert!(group_body(&json!({"schemas": [GROUP]})).is_err());
        assert!(group_body(&json!({"displayName": "x", "owner": 1})).is_err());
    }
}
