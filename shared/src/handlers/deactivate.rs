use super::member_id;
use super::update_member::apply_update;
use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::input::MemberPatch;
use crate::model::Scope;
use crate::store::Store;
use crate::wire::member_json;
use std::sync::Arc;

/// DELETE /v1/members/{id}: deactivate (soft delete). Idempotent: an inactive member is
/// answered as it is. Refused for the last admin, the last HRIS admin (while HRIS is on) and
/// the primary member, with the same codes as PATCH. The member keeps its email address.
pub async fn deactivate_member<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    set_active(store.as_ref(), req, false).await
}

/// POST /v1/members/{id}/reactivate: the member counts again (counters, and the rules of a
/// member: an HRIS role while HRIS is on, a custom role that still exists). Idempotent.
/// Takes no body (or `{}`).
pub async fn reactivate_member<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    if !req.body.iter().all(u8::is_ascii_whitespace) {
        let body = req.json_body()?;
        if body.as_object().is_none_or(|o| !o.is_empty()) {
            return Err(ApiError::field(
                "",
                "unexpected_body",
                "reactivate takes no body",
            ));
        }
    }
    set_active(store.as_ref(), req, true).await
}

async fn set_active(
    store: &impl Store,
    req: ApiRequest,
    active: bool,
) -> Result<ApiResponse, ApiError> {
    let key = super::caller(store, &req, Scope::WriteMembers).await?;
    let id = member_id(&req)?;
    super::no_query(&req)?;
    let patch = MemberPatch {
        is_active: Some(active),
        ..MemberPatch::default()
    };
    let outcome = apply_update(store, &key, &req, &id, patch, false, false).await?;
    Ok(outcome.response(member_json(&outcome.member)))
}
