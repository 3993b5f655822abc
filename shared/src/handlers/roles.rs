use super::{no_query, object_body, paging};
use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::input::{text, Reader};
use crate::model::*;
use crate::store::Store;
use crate::wire::{builtin_role_json, custom_role_json};
use serde_json::json;
use std::sync::Arc;

/// GET /v1/roles: the built-in roles (first page), then the organisation's custom roles in
/// creation order, `limit` (default and most 100) a page: an organisation may create any
/// number of roles, and an answer must stay under Lambda's 6 MB.
pub async fn list_roles<S: Store>(store: Arc<S>, req: ApiRequest) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::ReadMembers).await?;
    let (limit, cursor) = paging::limit_and_cursor(&req, paging::MAX_LIMIT)?;
    let print = paging::fingerprint(&["roles"]);
    let after = cursor
        .map(|c| paging::decode_cursor(c, &print))
        .transpose()?;
    let mut roles: Vec<_> = match after {
        None => BuiltinRole::ALL
            .iter()
            .map(|r| builtin_role_json(*r))
            .collect(),
        Some(_) => Vec::new(),
    };
    let (custom, next) = store
        .custom_roles(&key.organization_id, limit, after.as_deref())
        .await?;
    roles.extend(custom.iter().map(custom_role_json));
    let next = next.map(|p| paging::encode_cursor(&p, &print));
    Ok(ApiResponse::json(
        200,
        &json!({"roles": roles, "nextCursor": next}),
    ))
}

/// POST /v1/roles: a custom role (`name` unique per organisation, case-insensitively;
/// optional `description`). 201 with `Location`.
pub async fn create_role<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteMembers).await?;
    no_query(&req)?;
    let obj = object_body(&req)?;
    let mut r = Reader::new(&obj, "");
    r.check_keys(
        &["name", "description"],
        &["id", "builtIn", "activeHolders", "createdAt"],
    );
    let name = r.not_null("name", text(100));
    let description = r.nullable("description", text(500)).flatten();
    if name.is_none() && !obj.contains_key("name") {
        r.push("name", "required", "name is required");
    }
    if name
        .as_deref()
        .is_some_and(|n| BuiltinRole::parse(&n.to_lowercase()).is_some())
    {
        r.push(
            "name",
            "reserved_name",
            "name may not be the name of a built-in role",
        );
    }
    let (Some(name), true) = (name, r.errors.is_empty()) else {
        return Err(ApiError::Validation(r.errors));
    };
    let role = CustomRole {
        id: CustomRoleId::generate(),
        organization_id: key.organization_id.clone(),
        name,
        description,
        active_holders: 0,
        created_at: Timestamp::now(),
    };
    store.create_role(&role).await?;
    tracing::info!(role_id = %role.id, "custom role created");
    Ok(ApiResponse::json(201, &custom_role_json(&role))
        .with_header("Location", format!("/v1/roles/{}", role.id)))
}

/// DELETE /v1/roles/{id}: 204. A built-in role cannot be deleted (422 `builtin_role`); a
/// custom role an active member holds is refused with 409 `role_in_use`, race-proof.
pub async fn delete_role<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteMembers).await?;
    no_query(&req)?;
    let raw = req.path_id.as_deref().unwrap_or("");
    if BuiltinRole::parse(raw).is_some() {
        return Err(ApiError::rule(
            "builtin_role",
            None,
            "built-in roles cannot be deleted",
        ));
    }
    let id = CustomRoleId::parse(raw).map_err(|_| ApiError::NotFound)?;
    let role = store
        .custom_role(&key.organization_id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    store.delete_role(&role).await?;
    tracing::info!(role_id = %role.id, "custom role deleted");
    Ok(ApiResponse::empty(204))
}
