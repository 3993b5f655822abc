//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5): which attributes of a User
//! an answer shows. `id` and `schemas` are always shown (`returned: always`).

use super::{invalid, key_of, split_schema};
use crate::error::ApiError;
use serde_json::{Map, Value};

/// What a request asked to see.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Projection {
    /// Only these (`attributes`), when given.
    only: Option<Vec<Name>>,
    /// Not these (`excludedAttributes`).
    except: Vec<Name>,
}

/// An attribute named in a list: its schema's key in the User (`None`: the core schema),
/// the attribute (`None`: the whole extension) and a sub-attribute.
#[derive(Clone, Debug, PartialEq)]
struct Name {
    schema: Option<&'static str>,
    attribute: Option<String>,
    sub: Option<String>,
}

impl Projection {
    /// From the query's `attributes` and `excludedAttributes` (comma-separated paths).
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Result<Self, ApiError> {
        let names = |list: &str| -> Result<Vec<Name>, ApiError> {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(name)
                .collect()
        };
        Ok(Projection {
            only: attributes.map(names).transpose()?,
            except: excluded.map(names).transpose()?.unwrap_or_default(),
        })
    }

    /// Whether an answer shows a core attribute (or part of it): so that what it leaves
    /// out is not read at all (a group's members).
    pub fn shows(&self, attribute: &str) -> bool {
        let names = |n: &Name| {
            n.schema.is_none()
                && n.attribute
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(attribute))
        };
        let asked = self.only.as_ref().is_none_or(|only| only.iter().any(names));
        asked && !self.except.iter().any(|n| names(n) && n.sub.is_none())
    }

    /// The User as asked.
    pub fn apply(&self, user: Value) -> Value {
        let Value::Object(mut user) = user else {
            return user;
        };
        if let Some(only) = &self.only {
            let mut kept = Map::new();
            for always in ["schemas", "id"] {
                if let Some(v) = user.get(always) {
                    kept.insert(always.into(), v.clone());
                }
            }
            for n in only {
                copy(&user, &mut kept, n);
            }
            user = kept;
        }
        for n in &self.except {
            if n.schema.is_none() && matches!(n.attribute.as_deref(), Some("id" | "schemas")) {
                continue;
            }
            drop_name(&mut user, n);
        }
        Value::Object(user)
    }
}

fn name(path: &str) -> Result<Name, ApiError> {
    let bad = || {
        invalid(
            "invalidPath",
            format!("{path:?} is not an attribute of this resource"),
        )
    };
    let (schema, rest) = split_schema(path);
    if rest.is_empty() {
        return match schema {
            Some(_) => Ok(Name {
                schema,
                attribute: None,
                sub: None,
            }),
            None => Err(bad()),
        };
    }
    let (attribute, sub) = match rest.split_once('.') {
        Some((a, s)) => (a, Some(s.to_owned())),
        None => (rest, None),
    };
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid(attribute) || sub.as_deref().is_some_and(|s| !valid(s)) {
        return Err(bad());
    }
    Ok(Name {
        schema,
        attribute: Some(attribute.to_owned()),
        sub,
    })
}

/// The object a name's attribute lives in (the User, or its extension's object), and the
/// key it has in `user` when it is an extension.
fn home<'a>(
    user: &'a Map<String, Value>,
    n: &Name,
) -> Option<(&'a Map<String, Value>, Option<String>)> {
    match n.schema {
        None => Some((user, None)),
        Some(urn) => {
            let key = key_of(user, urn)?;
            Some((user.get(&key)?.as_object()?, Some(key)))
        }
    }
}

fn copy(user: &Map<String, Value>, kept: &mut Map<String, Value>, n: &Name) {
    let Some((from, ext_key)) = home(user, n) else {
        return;
    };
    let Some(attribute) = &n.attribute else {
        if let Some(key) = ext_key {
            kept.insert(key, Value::Object(from.clone()));
        }
        return;
    };
    let Some(key) = key_of(from, attribute) else {
        return;
    };
    let value = match (&n.sub, &from[&key]) {
        (None, v) => v.clone(),
        (Some(sub), Value::Object(o)) => match key_of(o, sub) {
            Some(sk) => {
                let mut only = match kept.get(&key) {
                    Some(Value::Object(existing)) if ext_key.is_none() => existing.clone(),
                    _ => Map::new(),
                };
                only.insert(sk.clone(), o[&sk].clone());
                Value::Object(only)
            }
            None => return,
        },
        (Some(sub), Value::Array(items)) => Value::Array(
            items
                .iter()
                .filter_map(|i| {
                    let o = i.as_object()?;
                    let sk = key_of(o, sub)?;
                    Some(Value::Object(Map::from_iter([(
                        sk.clone(),
                        o[&sk].clone(),
                    )])))
                })
                .collect(),
        ),
        _ => return,
    };
    // A second sub-attribute of the same multi-valued attribute joins the first, element
    // by element (`emails.value,emails.type`).
    let value = match (kept.get(&key), value, ext_key.is_none()) {
        (Some(Value::Array(have)), Value::Array(more), true) => Value::Array(
            have.iter()
                .zip(more)
                .map(|(a, b)| match (a, b) {
                    (Value::Object(a), Value::Object(b)) => {
                        let mut joined = a.clone();
                        joined.extend(b);
                        Value::Object(joined)
                    }
                    (a, _) => a.clone(),
                })
                .collect(),
        ),
        (_, value, _) => value,
    };
    match ext_key {
        None => {
            kept.insert(key, value);
        }
        Some(ext) => {
            let slot = kept.entry(ext).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(o) = slot {
                o.insert(key, value);
            }
        }
    }
}

fn drop_name(user: &mut Map<String, Value>, n: &Name) {
    let container = match n.schema {
        None => Some(&mut *user),
        Some(urn) => {
            let Some(key) = key_of(user, urn) else { return };
            if n.attribute.is_none() {
                user.remove(&key);
                return;
            }
            user.get_mut(&key).and_then(Value::as_object_mut)
        }
    };
    let (Some(container), Some(attribute)) = (container, &n.attribute) else {
        return;
    };
    let Some(key) = key_of(container, attribute) else {
        return;
    };
    match &n.sub {
        None => {
            container.remove(&key);
        }
        Some(sub) => match container.get_mut(&key) {
            Some(Value::Object(o)) => {
                if let Some(sk) = key_of(o, sub) {
                    o.remove(&sk);
                }
            }
            Some(Value::Array(items)) => {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    if let Some(sk) = key_of(item, sub) {
                        item.remove(&sk);
                    }
                }
            }
            _ => {}
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::{ENTERPRISE, USER};
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": [USER, ENTERPRISE],
            "id": "mem_1",
            "externalId": "x",
            "userName": "a@example.com",
            "name": {"givenName": "A", "familyName": "B"},
            "emails": [{"value": "a@example.com", "type": "work"}],
            ENTERPRISE: {"department": "qms"},
            "meta": {"resourceType": "User"},
        })
    }

    fn project(only: Option<&str>, except: Option<&str>) -> Value {
        Projection::parse(only, except)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .apply(user())
    }

    #[test]
    fn attributes_keep_only_what_is_asked_and_what_is_always_returned() {
        assert_eq!(
            project(Some("externalId"), None),
            json!({"schemas": [USER, ENTERPRISE], "id": "mem_1", "externalId": "x"})
        );
        assert_eq!(
            project(Some("name.familyName,emails.value"), None),
            json!({"schemas": [USER, ENTERPRISE], "id": "mem_1",
                   "name": {"familyName": "B"}, "emails": [{"value": "a@example.com"}]})
        );
        assert_eq!(
            project(Some("emails.value,emails.type"), None)["emails"],
            json!([{"value": "a@example.com", "type": "work"}])
        );
        let dept = format!("{ENTERPRISE}:department");
        assert_eq!(
            project(Some(&dept), None)[ENTERPRISE],
            json!({"department": "qms"})
        );
        assert_eq!(project(Some("USERNAME"), None)["userName"], "a@example.com");
    }

    #[test]
    fn excluded_attributes_go_but_id_stays() {
        let u = project(None, Some("name,id,meta"));
        assert!(u.get("name").is_none() && u.get("meta").is_none());
        assert_eq!(u["id"], "mem_1");
        let u = project(None, Some(ENTERPRISE));
        assert!(u.get(ENTERPRISE).is_none());
        assert!(Projection::parse(Some("name..x"), None).is_err());
    }
}
