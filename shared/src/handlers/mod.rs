//! One async function per endpoint, generic over the [`Store`](crate::store::Store) port.
//! Each `functions/<name>/main.rs` wires one of them to the Lambda runtime.

mod audit_events;
mod create_member;
mod deactivate;
mod events;
mod fallback;
mod get_member;
mod list_members;
mod memberships;
mod organization;
mod put_members;
mod roles;
mod scim;
mod scim_groups;
mod scim_list;
mod update_member;
mod webhooks;

pub use audit_events::{list_audit_events, list_organization_audit_events};
pub use create_member::create_member;
pub use deactivate::{deactivate_member, reactivate_member};
pub use events::list_events;
pub use fallback::fallback;
pub use get_member::get_member;
pub use list_members::list_members;
pub use organization::{get_organization, update_organization};
pub use put_members::put_members;
pub use roles::{create_role, delete_role, list_roles};
pub use scim::{
    scim_create_user, scim_delete_user, scim_discovery, scim_get_user, scim_patch_user,
    scim_replace_user,
};
pub use scim_groups::{
    scim_create_group, scim_delete_group, scim_get_group, scim_list_groups, scim_patch_group,
    scim_replace_group,
};
pub use scim_list::scim_list_users;
pub use update_member::update_member;
pub use webhooks::{
    create_webhook, delete_webhook, get_webhook, list_webhook_deliveries, list_webhooks, redeliver,
    rotate_webhook_secret, update_webhook,
};

use crate::audit::{self, Actor};
use crate::auth::authenticate_any;
use crate::error::ApiError;
use crate::http::{record_ids, ApiRequest};
use crate::model::{ApiKey, MemberId, Organization, Scope, Timestamp};
use crate::store::{Demotion, Store};

/// The caller's live API key with `scope`; its organisation and the path's member id go on
/// the request's log span.
pub(crate) async fn caller(
    store: &impl Store,
    req: &ApiRequest,
    scope: Scope,
) -> Result<ApiKey, ApiError> {
    caller_any(store, req, &[scope]).await
}

/// As [`caller`], for endpoints that any of `scopes` may call; the handler then shows
/// the key only what its own scopes read.
pub(crate) async fn caller_any(
    store: &impl Store,
    req: &ApiRequest,
    scopes: &[Scope],
) -> Result<ApiKey, ApiError> {
    let key = authenticate_any(store, req.header("authorization"), scopes).await?;
    let member = req
        .path_id
        .as_deref()
        .and_then(|id| MemberId::parse(id).ok());
    record_ids(&key.organization_id, member.as_ref());
    Ok(key)
}

/// When a member takes over as primary, the current primary's demotion: read consistently,
/// written conditioned on the version read, its event built from what will be written.
pub(crate) async fn demotion(
    store: &impl Store,
    org: &Organization,
    new_primary: &MemberId,
    actor: &Actor,
    now: Timestamp,
) -> Result<Option<Demotion>, ApiError> {
    let Some(previous) = org.primary_member_id.as_ref().filter(|p| *p != new_primary) else {
        return Ok(None);
    };
    let before = store.member(&org.id, previous).await?.ok_or_else(|| {
        tracing::error!(previous = %previous, "the organisation's primary member is missing");
        ApiError::Internal
    })?;
    let mut after = before.clone();
    after.is_primary = false;
    after.version += 1;
    after.updated_at = now;
    let audit = audit::event(
        "member.primary_moved",
        actor,
        Some(&before),
        &after,
        false,
        None,
    );
    Ok(Some(Demotion {
        before,
        after,
        audit,
    }))
}

/// Refuses any query parameter, for endpoints that take none.
pub(crate) fn no_query(req: &ApiRequest) -> Result<(), ApiError> {
    if req.query.is_empty() {
        return Ok(());
    }
    Err(ApiError::BadRequest {
        code: "unknown_query_parameter",
        detail: "This endpoint takes no query parameters.".into(),
    })
}

/// The body as a JSON object (400/413/415 from `json_body`, 422 for any other JSON).
pub(crate) fn object_body(
    req: &ApiRequest,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match req.json_body()? {
        serde_json::Value::Object(obj) => Ok(obj),
        _ => Err(ApiError::field(
            "",
            "invalid_type",
            "the body must be a JSON object",
        )),
    }
}

/// The `{id}` of the path. A malformed id names no member: 404, as for any unknown one.
pub(crate) fn member_id(req: &ApiRequest) -> Result<MemberId, ApiError> {
    req.path_id
        .as_deref()
        .and_then(|id| MemberId::parse(id).ok())
        .ok_or(ApiError::NotFound)
}

#[cfg(test)]
mod tests;
