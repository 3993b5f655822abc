//! openapi.yaml as a contract: every response the integration tests receive is checked
//! against it (status documented for the operation, media type, body schema).

use crate::{workspace_root, ROUTES};
use serde_json::Value;
use std::sync::Mutex;

/// One response as a client saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

static RECORDED: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());

pub fn record(r: Recorded) {
    if let Ok(mut all) = RECORDED.lock() {
        all.push(r);
    }
}

pub fn recorded() -> Vec<Recorded> {
    RECORDED.lock().map(|r| r.clone()).unwrap_or_default()
}

pub fn openapi() -> Result<Value, String> {
    let text = std::fs::read_to_string(workspace_root().join("openapi.yaml"))
        .map_err(|e| format!("openapi.yaml: {e}"))?;
    serde_norway::from_str(&text).map_err(|e| format!("openapi.yaml does not parse: {e}"))
}

/// The route template a concrete path belongs to.
pub fn route_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    ROUTES.iter().map(|(_, t)| *t).find(|t| {
        let template: Vec<&str> = t.split('/').collect();
        template.len() == segments.len()
            && template
                .iter()
                .zip(&segments)
                .all(|(t, s)| t.starts_with('{') || t == s)
    })
}

/// Follows a local `$ref` (`#/components/...`) once, if the value is one.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or(&Value::Null),
        None => v,
    }
}

/// Checks every recorded response; returns how many were checked.
pub fn check_all(recorded: &[Recorded]) -> Result<usize, String> {
    let doc = openapi()?;
    let mut failures = Vec::new();
    let mut validators: std::collections::HashMap<String, jsonschema::Validator> =
        Default::default();
    for r in recorded {
        // What no route serves is the fallback's: an unknown path is the document's
        // `NotFound` response, an undeclared method on a known path its `MethodNotAllowed`.
        // SCIM's search by POST is not offered: the fallback's 501 (any `…/.search`).
        let search = r.method == "POST" && r.path.ends_with("/.search") && r.status == 501;
        let (route, response) = match route_of(&r.path) {
            _ if search => (
                "(SCIM search)",
                &doc["components"]["responses"]["NotImplemented"],
            ),
            None if r.status == 404 => (
                "(any other path)",
                &doc["components"]["responses"]["NotFound"],
            ),
            None => {
                failures.push(format!(
                    "{} {}: no such route, yet {}",
                    r.method, r.path, r.status
                ));
                continue;
            }
            Some(route) => {
                let operation = &doc["paths"][route][r.method.to_lowercase()];
                if operation.is_null() && r.status == 405 {
                    (route, &doc["components"]["responses"]["MethodNotAllowed"])
                } else if operation.is_null() {
                    failures.push(format!(
                        "{} {route}: not in openapi.yaml, yet {}",
                        r.method, r.status
                    ));
                    continue;
                } else {
                    (
                        route,
                        deref(&doc, &operation["responses"][r.status.to_string()]),
                    )
                }
            }
        };
        if response.is_null() {
            failures.push(format!(
                "{} {route}: status {} is not documented ({})",
                r.method, r.status, r.body
            ));
            continue;
        }
        // The answer to a HEAD has the headers of the answer to a GET, never a body.
        if r.method == "HEAD" {
            if !r.body.is_empty() {
                failures.push(format!("HEAD {route} {}: a body", r.status));
            }
            continue;
        }
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            if !r.body.is_empty() {
                failures.push(format!(
                    "{} {route} {}: documented without a body, got one",
                    r.method, r.status
                ));
            }
            continue;
        };
        let media = r
            .content_type
            .as_deref()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let Some(schema) = content.get(&media).map(|c| &c["schema"]) else {
            failures.push(format!(
                "{} {route} {}: media type {media:?} is not documented",
                r.method, r.status
            ));
            continue;
        };
        let key = format!("{} {route} {} {media}", r.method, r.status);
        if !validators.contains_key(&key) {
            // The schema with the document's components beside it, so `#/components/...` resolves.
            let mut root = serde_json::json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [schema]});
            root["components"] = doc["components"].clone();
            let validator = jsonschema::validator_for(&root)
                .map_err(|e| format!("{key}: the schema does not compile: {e}"))?;
            validators.insert(key.clone(), validator);
        }
        let body: Value = match serde_json::from_str(&r.body) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{key}: the body is not JSON ({e}): {}", r.body));
                continue;
            }
        };
        if let Some(validator) = validators.get(&key) {
            let errors: Vec<String> = validator
                .iter_errors(&body)
                .take(3)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            if !errors.is_empty() {
                failures.push(format!("{key}: {}", errors.join("; ")));
            }
        }
    }
    if failures.is_empty() {
        Ok(recorded.len())
    } else {
        failures.sort();
        failures.dedup();
        Err(format!(
            "{} responses do not match openapi.yaml:\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_exactly_the_routes() {
        let doc = openapi().unwrap_or_else(|e| panic!("{e}"));
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        let mut known: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        known.sort();
        assert_eq!(documented, known);
    }

    #[test]
    fn every_schema_compiles_and_examples_match() {
        let doc = openapi().unwrap_or_else(|e| panic!("{e}"));
        for (name, _) in doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let mut root = serde_json::json!({"$ref": format!("#/components/schemas/{name}")});
            root["components"] = doc["components"].clone();
            assert!(jsonschema::validator_for(&root).is_ok(), "{name}");
        }
        assert_eq!(
            route_of("/v1/members/mem_1/reactivate"),
            Some("/v1/members/{id}/reactivate")
        );
        assert_eq!(route_of("/v1/members"), Some("/v1/members"));
        assert_eq!(route_of("/v2/members"), None);
    }
}
