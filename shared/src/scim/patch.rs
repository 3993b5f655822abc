//! PATCH (RFC 7644 §3.5.2) applied to the User document: the member as a User, changed by
//! each operation in turn, then read back as a whole (`user::user_patch`), so that a PATCH
//! and a PUT of the same result are the same write.
//!
//! Operations: `add`, `replace`, `remove` (any case: Entra sends `Replace`), with a `path`
//! (`title`, `name.givenName`, `emails[type eq "work"].value`, an extension's
//! `urn:…:User:department`, an extension itself) or without one (a value object, Okta's
//! `{"op": "replace", "value": {"active": false}}`).

use super::user::attr;
use super::{invalid, key_of, split_schema, PATCH_OP};
use crate::error::ApiError;
use serde_json::{Map, Value};

/// Attributes a client cannot change (`mutability`), and the one it cannot remove.
const READ_ONLY: &[&str] = &["id", "meta", "schemas", "groups"];
const REQUIRED: &[&str] = &["userName", "displayName"];
/// At most this many operations in one PATCH.
pub const MAX_OPERATIONS: usize = 100;

/// Where an operation points.
#[derive(Debug, PartialEq)]
struct Path {
    /// The extension's URN, or `None` for the core schema.
    schema: Option<&'static str>,
    /// Empty when the path is an extension itself.
    attribute: String,
    /// `[type eq "work"]`: (sub-attribute, expected value).
    filter: Option<(String, Value)>,
    /// `.value` after a filter, or `.givenName` after `name`.
    sub: Option<String>,
}

/// The operations of a PatchOp body (RFC 7644 §3.5.2): an object whose `schemas` lists the
/// PatchOp URN and whose `Operations` is an array of at most [`MAX_OPERATIONS`]. Users and
/// Groups read their envelope here.
pub fn operations(body: &Value) -> Result<&Vec<Value>, ApiError> {
    let Some(body) = body.as_object() else {
        return Err(invalid(
            "invalidSyntax",
            "The body must be a PatchOp object.",
        ));
    };
    let schemas_ok = attr(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP)))
        });
    if !schemas_ok {
        return Err(invalid(
            "invalidSyntax",
            format!("schemas must list {PATCH_OP}."),
        ));
    }
    let Some(Value::Array(operations)) = attr(body, "Operations") else {
        return Err(invalid(
            "invalidSyntax",
            "Operations must be an array of operations.",
        ));
    };
    if operations.len() > MAX_OPERATIONS {
        return Err(invalid(
            "tooMany",
            format!("At most {MAX_OPERATIONS} operations per PATCH."),
        ));
    }
    Ok(operations)
}

/// Applies every operation of a PatchOp body to `doc`, in order.
pub fn apply(doc: &mut Map<String, Value>, body: &Value) -> Result<(), ApiError> {
    let operations = operations(body)?;
    for (i, operation) in operations.iter().enumerate() {
        apply_one(doc, operation).map_err(|e| match e {
            ApiError::Scim { scim_type, detail } => ApiError::Scim {
                scim_type,
                detail: format!("Operations[{i}]: {detail}"),
            },
            other => other,
        })?;
    }
    Ok(())
}

fn apply_one(doc: &mut Map<String, Value>, operation: &Value) -> Result<(), ApiError> {
    let Some(operation) = operation.as_object() else {
        return Err(invalid("invalidSyntax", "an operation must be an object"));
    };
    let op = attr(operation, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let path = match attr(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        // An extension this service does not serve: ignored, as POST and PUT ignore it (a
        // valid operation only).
        Some(Value::String(p))
            if unserved_extension(p.trim())
                && matches!(op.as_str(), "add" | "replace" | "remove") =>
        {
            return Ok(())
        }
        Some(Value::String(p)) => Some(parse_path(p.trim())?),
        Some(_) => return Err(invalid("invalidPath", "path must be a string")),
    };
    let value = attr(operation, "value");
    match (op.as_str(), path, value) {
        ("remove", None, _) => Err(invalid("noTarget", "remove needs a path")),
        ("remove", Some(path), _) => remove(doc, &path),
        ("add" | "replace", None, Some(Value::Object(values))) => {
            for (key, value) in values {
                if unserved_extension(key) {
                    continue;
                }
                match parse_path(key) {
                    Ok(path) => set(doc, &path, value.clone(), op == "add")?,
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        ("add" | "replace", None, _) => Err(invalid(
            "invalidSyntax",
            "without a path, value must be an object of attributes",
        )),
        ("add" | "replace", Some(_), None) => {
            Err(invalid("invalidSyntax", format!("{op} needs a value")))
        }
        ("add" | "replace", Some(path), Some(value)) => set(doc, &path, value.clone(), op == "add"),
        _ => Err(invalid(
            "invalidSyntax",
            "op must be add, replace or remove",
        )),
    }
}

/// A path (or a key of a value object) under a schema URN that is not one this service
/// serves (the core User, the enterprise extension, ours): e.g. an identity provider's own
/// extension.
/// A URN in our namespace or the core schema's that is not one we serve is a mistake
/// (`…:member:1.0:User`), not another provider's extension: 400 `invalidPath` as before.
fn unserved_extension(path: &str) -> bool {
    let (schema, rest) = split_schema(path);
    let lower = rest.to_ascii_lowercase();
    schema.is_none()
        && lower.starts_with("urn:")
        && !lower.starts_with("urn:members-api:")
        && !lower.starts_with("urn:ietf:params:scim:schemas:core:")
}

fn parse_path(path: &str) -> Result<Path, ApiError> {
    let bad = || {
        invalid(
            "invalidPath",
            format!("{path:?} is not a supported attribute path"),
        )
    };
    // A schema URN first: the core schema, or one of the extensions.
    let (schema, rest) = split_schema(path);
    if rest.is_empty() {
        if schema.is_none() {
            return Err(bad());
        }
        return Ok(Path {
            schema,
            attribute: String::new(),
            filter: None,
            sub: None,
        });
    }
    let (head, filter, tail) = match (rest.find('['), rest.rfind(']')) {
        (Some(open), Some(close)) if open < close => (
            &rest[..open],
            Some(&rest[open + 1..close]),
            &rest[close + 1..],
        ),
        (None, None) => match rest.find('.') {
            Some(dot) => (&rest[..dot], None, &rest[dot..]),
            None => (rest, None, ""),
        },
        _ => return Err(bad()),
    };
    let sub = match tail {
        "" => None,
        t => Some(
            t.strip_prefix('.')
                .filter(|s| is_name(s))
                .ok_or_else(bad)?
                .to_owned(),
        ),
    };
    if !is_name(head) {
        return Err(bad());
    }
    let filter = filter
        .map(|f| value_filter(f).ok_or_else(bad))
        .transpose()?;
    Ok(Path {
        schema,
        attribute: head.to_owned(),
        filter,
        sub,
    })
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '-')
}

/// `type eq "work"`, `primary eq true`, `value eq "…"`: one equality on a sub-attribute.
fn value_filter(f: &str) -> Option<(String, Value)> {
    let mut parts = f.trim().splitn(3, char::is_whitespace);
    let (name, op, value) = (parts.next()?, parts.next()?, parts.next()?.trim());
    if !op.eq_ignore_ascii_case("eq") || !is_name(name) {
        return None;
    }
    let value = serde_json::from_str::<Value>(value).ok().or_else(|| {
        match value.to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        }
    })?;
    Some((name.to_owned(), value))
}

/// The object an attribute lives in: the document, or its extension's object.
fn container<'a>(
    doc: &'a mut Map<String, Value>,
    schema: Option<&str>,
) -> Result<&'a mut Map<String, Value>, ApiError> {
    let Some(urn) = schema else {
        return Ok(doc);
    };
    let key = key_of(doc, urn).unwrap_or_else(|| urn.to_owned());
    let slot = doc.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .ok_or_else(|| invalid("invalidValue", format!("{urn} must be an object")))
}

fn check_writable(path: &Path) -> Result<(), ApiError> {
    if path.schema.is_none()
        && READ_ONLY
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&path.attribute))
    {
        return Err(invalid(
            "mutability",
            format!("{} is read-only", path.attribute),
        ));
    }
    Ok(())
}

fn matches(element: &Value, (name, want): &(String, Value)) -> bool {
    let Some(got) = element.as_object().and_then(|o| attr(o, name)) else {
        return false;
    };
    match (got, want) {
        (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Value::String(a), Value::Bool(b)) => a.eq_ignore_ascii_case(&b.to_string()),
        (a, b) => a == b,
    }
}

fn set(doc: &mut Map<String, Value>, path: &Path, value: Value, add: bool) -> Result<(), ApiError> {
    check_writable(path)?;
    if path.attribute.is_empty() {
        // An extension itself: its attributes, each set.
        let Value::Object(values) = value else {
            return Err(invalid(
                "invalidValue",
                "an extension's value must be an object",
            ));
        };
        let target = container(doc, path.schema)?;
        for (k, v) in values {
            let key = key_of(target, &k).unwrap_or(k);
            target.insert(key, v);
        }
        return Ok(());
    }
    let target = container(doc, path.schema)?;
    let key = key_of(target, &path.attribute).unwrap_or_else(|| path.attribute.clone());
    match (&path.filter, &path.sub) {
        (None, None) => {
            let slot = target.entry(key).or_insert(Value::Null);
            match (slot, value) {
                // Add to a multi-valued attribute appends; a complex one merges.
                (Value::Array(existing), Value::Array(more)) if add => existing.extend(more),
                (Value::Object(existing), Value::Object(more)) => {
                    for (k, v) in more {
                        let key = key_of(existing, &k).unwrap_or(k);
                        existing.insert(key, v);
                    }
                }
                (slot, value) => *slot = value,
            }
        }
        (None, Some(sub)) => {
            let slot = target
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Some(object) = slot.as_object_mut() {
                let sub_key = key_of(object, sub).unwrap_or_else(|| sub.clone());
                object.insert(sub_key, value);
            }
        }
        (Some(filter), sub) => {
            let slot = target
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(elements) = slot else {
                return Err(invalid(
                    "invalidPath",
                    format!("{} is not multi-valued", path.attribute),
                ));
            };
            let mut found = false;
            for element in elements.iter_mut().filter(|e| matches(e, filter)) {
                found = true;
                match (sub, element.as_object_mut(), &value) {
                    (Some(sub), Some(object), _) => {
                        let sub_key = key_of(object, sub).unwrap_or_else(|| sub.clone());
                        object.insert(sub_key, value.clone());
                    }
                    (None, Some(object), Value::Object(more)) => {
                        for (k, v) in more {
                            let key = key_of(object, k).unwrap_or_else(|| k.clone());
                            object.insert(key, v.clone());
                        }
                    }
                    _ => *element = value.clone(),
                }
            }
            if !found {
                // No element matches: one is made (Entra adds `emails[type eq "work"].value`
                // to a user that has no work address yet).
                let mut element = Map::new();
                element.insert(filter.0.clone(), filter.1.clone());
                match (sub, value) {
                    (Some(sub), value) => {
                        element.insert(sub.clone(), value);
                    }
                    (None, Value::Object(more)) => element.extend(more),
                    (None, _) => {
                        return Err(invalid("invalidValue", "the value must be an object"))
                    }
                }
                elements.push(Value::Object(element));
            }
        }
    }
    Ok(())
}

fn remove(doc: &mut Map<String, Value>, path: &Path) -> Result<(), ApiError> {
    check_writable(path)?;
    if path.schema.is_none()
        && path.sub.is_none()
        && path.filter.is_none()
        && REQUIRED
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&path.attribute))
    {
        return Err(invalid(
            "mutability",
            format!("{} is required and cannot be removed", path.attribute),
        ));
    }
    let target = container(doc, path.schema)?;
    if path.attribute.is_empty() {
        target.clear();
        return Ok(());
    }
    let Some(key) = key_of(target, &path.attribute) else {
        return Ok(());
    };
    match (&path.filter, &path.sub) {
        (None, None) => {
            target.remove(&key);
        }
        (None, Some(sub)) => {
            if let Some(object) = target.get_mut(&key).and_then(Value::as_object_mut) {
                if let Some(sub_key) = key_of(object, sub) {
                    object.remove(&sub_key);
                }
            }
        }
        (Some(filter), sub) => {
            let Some(elements) = target.get_mut(&key).and_then(Value::as_array_mut) else {
                return Err(invalid(
                    "noTarget",
                    format!("no {} matches the filter", path.attribute),
                ));
            };
            let before = elements.len();
            match sub {
                None => elements.retain(|e| !matches(e, filter)),
                Some(sub) => {
                    for element in elements.iter_mut().filter(|e| matches(e, filter)) {
                        if let Some(object) = element.as_object_mut() {
                            if let Some(sub_key) = key_of(object, sub) {
                                object.remove(&sub_key);
                            }
                        }
                    }
                }
            }
            if sub.is_none() && elements.len() == before {
                return Err(invalid(
                    "noTarget",
                    format!("no {} matches the filter", path.attribute),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::{ENTERPRISE, MEMBER};
    use serde_json::json;

    fn doc() -> Map<String, Value> {
        json!({
            "userName": "a@example.com",
            "name": {"givenName": "A", "familyName": "B"},
            "displayName": "A B",
            "active": true,
            "emails": [{"value": "a@example.com", "type": "work", "primary": true}],
            ENTERPRISE: {"department": "qms"},
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    fn patched(ops: Value) -> Result<Map<String, Value>, String> {
        let mut d = doc();
        apply(&mut d, &json!({"schemas": [PATCH_OP], "Operations": ops}))
            .map_err(|e| e.code().to_owned())?;
        Ok(d)
    }

    #[test]
    fn okta_and_entra_shapes_apply() {
        let d = patched(json!([{"op": "replace", "value": {"active": false}}])).unwrap_or_default();
        assert_eq!(d["active"], false);
        let d = patched(json!([{"op": "Replace", "path": "active", "value": "False"}]))
            .unwrap_or_default();
        assert_eq!(d["active"], "False");
        let d = patched(json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "c@example.com"},
            {"op": "Add", "path": "name.familyName", "value": "C"},
            {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": "HR"},
            {"op": "Add", "path": "title", "value": "Boss"},
        ]))
        .unwrap_or_default();
        assert_eq!(d["emails"][0]["value"], "c@example.com");
        assert_eq!(d["name"], json!({"givenName": "A", "familyName": "C"}));
        assert_eq!(d[ENTERPRISE]["department"], "HR");
        assert_eq!(d["title"], "Boss");
        let d = patched(json!([{"op": "add", "value": {
            format!("{ENTERPRISE}:department"): "it",
            "name.givenName": "Z",
            MEMBER: {"role": "reviewer"},
        }}]))
        .unwrap_or_default();
        assert_eq!(d[ENTERPRISE]["department"], "it");
        assert_eq!(d["name"]["givenName"], "Z");
        assert_eq!(d[MEMBER]["role"], "reviewer");
        let d = patched(
            json!([{"op": "remove", "path": "name.familyName"}, {"op": "remove", "path": "title"}]),
        )
        .unwrap_or_default();
        assert_eq!(d["name"], json!({"givenName": "A"}));
    }

    #[test]
    fn an_extension_not_served_is_ignored_and_the_other_operations_apply() {
        let other = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User";
        let d = patched(json!([
            {"op": "Add", "path": format!("{other}:costCenter"), "value": "4130"},
            {"op": "Replace", "path": "title", "value": "Boss"},
            {"op": "Remove", "path": format!("{other}:badge")},
            {"op": "add", "value": {format!("{other}:building"): "B2", "displayName": "Z"}},
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (&d["title"], &d["displayName"]),
            (&json!("Boss"), &json!("Z"))
        );
        assert!(!d.keys().any(|k| k.starts_with(other)), "{d:?}");
        // Not an invalid operation, nor a slip in a URN of ours or the core schema's.
        let code = |ops: Value| patched(ops).err();
        for (op, path) in [
            ("bogus", format!("{other}:x")),
            ("replace", format!("{}:role", MEMBER.replace("2.0", "1.0"))),
            (
                "replace",
                "urn:ietf:params:scim:schemas:core:2.1:User:title".into(),
            ),
        ] {
            assert!(
                code(json!([{"op": op, "path": path, "value": "x"}])).is_some(),
                "{op} {path}"
            );
        }
    }

    #[test]
    fn refusals_carry_the_rfc_scim_type() {
        let code = |ops: Value| patched(ops).err();
        for required in ["userName", "displayName"] {
            assert_eq!(
                code(json!([{"op": "remove", "path": required}])).as_deref(),
                Some("mutability"),
                "{required} is announced as required"
            );
        }
        assert_eq!(
            code(json!([{"op": "replace", "path": "id", "value": "x"}])).as_deref(),
            Some("mutability")
        );
        assert_eq!(code(json!([{"op": "remove"}])).as_deref(), Some("noTarget"));
        assert_eq!(
            code(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}])).as_deref(),
            Some("noTarget")
        );
        assert_eq!(
            code(json!([{"op": "replace", "path": "emails[type eq", "value": 1}])).as_deref(),
            Some("invalidPath")
        );
        assert_eq!(
            code(json!([{"op": "move", "path": "title", "value": 1}])).as_deref(),
            Some("invalidSyntax")
        );
        assert_eq!(
            code(json!([{"op": "replace", "value": "x"}])).as_deref(),
            Some("invalidSyntax")
        );
        assert_eq!(
            code(json!({"op": "replace"})).as_deref(),
            Some("invalidSyntax")
        );
        let mut d = doc();
        let no_schema = apply(&mut d, &json!({"Operations": []}))
            .err()
            .map(|e| e.code());
        assert_eq!(no_schema, Some("invalidSyntax"));
        let many: Vec<Value> = (0..101)
            .map(|_| json!({"op": "add", "path": "title", "value": "x"}))
            .collect();
        assert_eq!(code(json!(many)).as_deref(), Some("tooMany"));
    }
}
