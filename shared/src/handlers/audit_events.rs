use super::member_id;
use super::paging::{self, decode_cursor, encode_cursor, fingerprint};
use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::model::Scope;
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
    let print = fingerprint(&[id.as_str()]);
    let before = cursor.map(|c| decode_cursor(c, &print)).transpose()?;
    if store.member(&key.organization_id, &id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let (events, next) = store
        .audit_events(&key.organization_id, Some(&id), limit, before.as_deref())
        .await?;
    // Events carry the changed fields before and after (collaboration rules up to 64 KiB
    // each way): a page stops at its byte budget and continues after its last event.
    let (kept, cut) = paging::fit(&events, paging::text);
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
