use super::member_id;
use crate::auth::authenticate;
use crate::error::ApiError;
use crate::http::{etag_matches, record_ids, ApiRequest, ApiResponse};
use crate::model::Scope;
use crate::store::Store;
use crate::wire::{etag, member_json};
use std::sync::Arc;

/// GET /v1/members/{id}: the member with its `ETag`; 304 when `If-None-Match` matches.
pub async fn get_member<S: Store>(store: Arc<S>, req: ApiRequest) -> Result<ApiResponse, ApiError> {
    let key = authenticate(
        store.as_ref(),
        req.header("authorization"),
        Scope::ReadMembers,
    )
    .await?;
    let id = member_id(&req);
    record_ids(&key.organization_id, id.as_ref().ok());
    let id = id?;
    super::no_query(&req)?;
    let member = store
        .member(&key.organization_id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tag = etag(member.version);
    if req
        .header("if-none-match")
        .is_some_and(|h| etag_matches(h, &tag))
    {
        return Ok(ApiResponse::empty(304).with_header("ETag", tag));
    }
    Ok(ApiResponse::json(200, &member_json(&member)).with_header("ETag", tag))
}
