use super::member_id;
use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::model::{ApiKey, AuditEvent, MemberId, Scope};
use crate::paging::{self, decode_cursor, encode_cursor, fingerprint};
use crate::store::Store;
use std::sync::Arc;

/// GET /v1/members/{id}/audit-events: the member's change history, newest first, each
/// event as stored (changes before → after, secrets redacted), `limit` and `cursor`.
pub async fn list_audit_events<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::ReadMembers).await?;
    let id = member_id(&req)?;
    let (limit, cursor) = paging::limit_and_cursor(&req, paging::DEFAULT_LIMIT)?;
    if store.member(&key.organization_id, &id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    history_page(store, &key, Some(&id), limit, cursor).await
}

/// GET /v1/organization/audit-events: the organisation's own history, newest first: its
/// settings changes (`organization.updated`), its custom roles created and deleted
/// (`role.created`, `role.deleted`) and its webhooks' changes (`webhook.*`), `limit` and
/// `cursor`. A key that reads members or webhooks may ask; it is shown the entries its
/// scopes read.
pub async fn list_organization_audit_events<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller_any(store, &req, &[Scope::ReadMembers, Scope::ReadWebhooks]).await?;
    let (limit, cursor) = paging::limit_and_cursor(&req, paging::DEFAULT_LIMIT)?;
    history_page(store, &key, None, limit, cursor).await
}

/// One page of a history (a member's, or with `None` the organisation's): the entries
/// `key` may read; a page that hides some is shorter, and its cursor goes on after them.
async fn history_page(
    store: &impl Store,
    key: &ApiKey,
    member: Option<&MemberId>,
    limit: usize,
    cursor: Option<&str>,
) -> Result<ApiResponse, ApiError> {
    let print = fingerprint(&[member.map_or("organization", |m| m.as_str())]);
    let before = cursor.map(|c| decode_cursor(c, &print)).transpose()?;
    let (events, next) = store
        .audit_events(&key.organization_id, member, limit, before.as_deref())
        .await?;
    let events: Vec<AuditEvent> = events
        .into_iter()
        .filter(|e| key.allows(crate::events::read_scope(&e.action)))
        .collect();
    // Events carry the changed fields before and after (collaboration rules up to 64 KiB
    // each way): a page stops at its byte budget and continues after its last event.
    // The resource snapshot an entry keeps for its change event is not part of a history.
    let (kept, cut) = paging::fit(&events, |e| {
        paging::text(&AuditEvent {
            resource: None,
            ..e.clone()
        })
    });
    let next = match cut {
        true => events
            .get(kept.len().wrapping_sub(1))
            .map(|e| e.id.to_string()),
        false => next,
    };
    let next = next.map(|p| encode_cursor(&p, &print));
    Ok(ApiResponse::raw_json(
        200,
        paging::page_body("events", &kept, next.as_deref()),
    ))
}
