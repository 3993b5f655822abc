use super::update_member::{apply_update, dry_run};
use crate::error::{ApiError, FieldError};
use crate::http::{record_ids, ApiRequest, ApiResponse};
use crate::input::parse_member_patch;
use crate::model::{MemberId, Scope};
use crate::store::Store;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Seed 002's names and ours: snake_case on this endpoint's wire.
const FIELDS: &[(&str, &str)] = &[
    ("role", "role"),
    ("hris_role", "hrisRole"),
    ("collaboration_rules", "collaborationRules"),
];

/// PUT /v1/members: the HR product's call (seed 002). `id` in the body; `role` required,
/// `hris_role` (required while HRIS is on), `collaboration_rules` (replaces the member's).
/// Answers in that product's shape: `{id, name, headline, email, role, hris_role,
/// collaboration_rules}`. Same rules and conditions as PATCH underneath.
pub async fn put_members<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteMembers).await?;
    // `?dryRun=true` as on PATCH; any other parameter is refused, never ignored.
    let dry_run = dry_run(&req)?;
    let obj = super::object_body(&req)?;

    let mut errors = Vec::new();
    for k in obj
        .keys()
        .filter(|k| *k != "id" && !FIELDS.iter().any(|(snake, _)| snake == k))
    {
        errors.push(FieldError::new(
            k.clone(),
            "unknown_field",
            format!("{k} is not a field of this call"),
        ));
    }
    let id = match obj.get("id") {
        None => {
            errors.push(FieldError::new("id", "required", "id is required"));
            None
        }
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            errors.push(FieldError::new("id", "invalid_type", "id must be a string"));
            None
        }
    };
    if !obj.contains_key("role") {
        errors.push(FieldError::new("role", "required", "role is required"));
    }
    let mut ours = Map::new();
    for (snake, camel) in FIELDS {
        if let Some(v) = obj.get(*snake) {
            ours.insert((*camel).to_owned(), v.clone());
        }
    }
    let patch = parse_member_patch(&Value::Object(ours))
        .map_err(|e| e.into_iter().map(to_snake).collect::<Vec<_>>());
    let patch = match patch {
        Ok(p) if errors.is_empty() => p,
        Ok(_) => return Err(ApiError::Validation(errors)),
        Err(mut more) => {
            errors.append(&mut more);
            return Err(ApiError::Validation(errors));
        }
    };
    let id = id.and_then(|id| MemberId::parse(&id).ok());
    record_ids(&key.organization_id, id.as_ref());
    let id = id.ok_or(ApiError::NotFound)?;
    let outcome = apply_update(store, &key, &req, &id, patch, dry_run, true)
        .await
        .map_err(rename_fields)?;
    let m = &outcome.member;
    Ok(outcome.response(json!({
        "id": m.id,
        "name": m.full_name(),
        "headline": m.headline,
        "email": m.email,
        "role": m.role,
        "hris_role": m.hris_role,
        "collaboration_rules": m.collaboration_rules,
    })))
}

fn snake(field: &str) -> String {
    FIELDS.iter().fold(field.to_owned(), |f, (snake, camel)| {
        f.replacen(camel, snake, 1)
    })
}

fn to_snake(mut e: FieldError) -> FieldError {
    e.field = snake(&e.field);
    e.message = snake(&e.message);
    e
}

/// Rule errors name fields in this call's spelling too.
fn rename_fields(e: ApiError) -> ApiError {
    match e {
        ApiError::Validation(errors) => {
            ApiError::Validation(errors.into_iter().map(to_snake).collect())
        }
        ApiError::Rule {
            code,
            detail,
            field,
        } => ApiError::Rule {
            code,
            detail: snake(&detail),
            field: field.map(|f| {
                FIELDS
                    .iter()
                    .find(|(_, camel)| *camel == f)
                    .map_or(f, |(snake, _)| *snake)
            }),
        },
        other => other,
    }
}
