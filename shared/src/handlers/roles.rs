use super::{no_query, object_body};
use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::input::{self, Reader};
use crate::model::*;
use crate::paging;
use crate::store::Store;
use crate::text;
use crate::wire::{builtin_role_json, custom_role_json};
use serde_json::{json, Map, Value};
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

/// POST /v1/roles: a custom role (`name`, optional `description`). The name is stored in
/// NFC, trimmed, its spaces folded; it may hold no invisible, format or bidi character (422
/// `validation_failed`), and may not look like a built-in role's name or another role's
/// (same confusable skeleton: 409 `role_name_taken`). 201 with `Location`; the creation is
/// an event of the organisation's history.
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
        &["id", "builtIn", "activeHolders", "holders", "createdAt"],
    );
    let name = r.not_null("name", |s| text::role_name(s, 100));
    let description = r.nullable("description", input::text(500)).flatten();
    if name.is_none() && !obj.contains_key("name") {
        r.push("name", "required", "name is required");
    }
    let (Some(name), true) = (name, r.errors.is_empty()) else {
        return Err(ApiError::Validation(r.errors));
    };
    let skeleton = text::role_name_skeleton(&name);
    if let Some(builtin) = BuiltinRole::ALL
        .iter()
        .find(|b| text::role_name_skeleton(b.as_str()) == skeleton)
    {
        return Err(ApiError::Conflict {
            code: "role_name_taken",
            detail: format!(
                "The name looks like the built-in role {}; choose another.",
                builtin.as_str()
            ),
            field: Some("name"),
        });
    }
    let role = CustomRole {
        id: CustomRoleId::generate(),
        organization_id: key.organization_id.clone(),
        name,
        description,
        active_holders: 0,
        holders: 0,
        holder_shards: 0,
        created_at: Timestamp::now(),
    };
    let audit = role_event("role.created", &key, &req, None, Some(&role));
    store.create_role(&role, &audit).await?;
    tracing::info!(role_id = %role.id, "custom role created");
    Ok(ApiResponse::json(201, &custom_role_json(&role))
        .with_header("Location", format!("/v1/roles/{}", role.id)))
}

/// DELETE /v1/roles/{id}: 204. A built-in role cannot be deleted (422 `builtin_role`); a
/// custom role a member holds, active or deactivated, is refused with 409 `role_in_use`,
/// race-proof; a role another request deleted first is a 404. The deletion is an event of
/// the organisation's history.
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
    // A role the group → role mapping gives would make every later join of that group fail.
    let org = store.organization(&key.organization_id).await?;
    if org.is_some_and(|o| {
        o.scim_group_roles
            .iter()
            .any(|e| e.role == Role::Custom(role.id.clone()))
    }) {
        return Err(ApiError::Conflict {
            code: "role_in_use",
            detail: "The organisation's scim.groupRoles gives this role to a SCIM group; take it \
                     out of the mapping first (PATCH /v1/organization)."
                .into(),
            field: None,
        });
    }
    let audit = role_event("role.deleted", &key, &req, Some(&role), None);
    store.delete_role(&role, &audit).await?;
    tracing::info!(role_id = %role.id, "custom role deleted");
    Ok(ApiResponse::empty(204))
}

/// An event of the organisation's history for a role created (`before` none) or deleted.
fn role_event(
    action: &str,
    key: &ApiKey,
    req: &ApiRequest,
    before: Option<&CustomRole>,
    after: Option<&CustomRole>,
) -> AuditEvent {
    let role = after
        .or(before)
        .map(|r| (r.id.clone(), r.organization_id.clone()));
    let (role_id, organization_id) = role.unzip();
    let field = |f: fn(&CustomRole) -> Value| json!({"before": before.map_or(Value::Null, f), "after": after.map_or(Value::Null, f)});
    let mut changes = Map::new();
    changes.insert("id".into(), field(|r| json!(r.id)));
    changes.insert("name".into(), field(|r| json!(r.name)));
    changes.insert("description".into(), field(|r| json!(r.description)));
    AuditEvent {
        id: AuditEventId::generate(),
        organization_id: organization_id.unwrap_or_else(|| key.organization_id.clone()),
        member_id: None,
        role_id,
        webhook_id: None,
        group_id: None,
        actor_key_id: Some(key.id.clone()),
        action: action.to_owned(),
        changes,
        justification: None,
        request_id: req.request_id.clone(),
        member_version: 0,
        occurred_at: after.map_or_else(Timestamp::now, |r| r.created_at),
        // A deleted role's event carries the role as it was.
        resource: after.or(before).map(custom_role_json),
    }
}
