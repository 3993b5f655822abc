use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::input::{text, vocab};
use crate::model::*;
use crate::paging::{self, bad_parameter, decode_cursor, encode_cursor, fingerprint};
use crate::store::Store;
use crate::wire::member_view;
use std::sync::Arc;

const PARAMETERS: &[&str] = &[
    "limit",
    "cursor",
    "status",
    "role",
    "hrisRole",
    "department",
    "locationId",
    "email",
    "updatedSince",
];

/// GET /v1/members: a page of members, oldest first (or by `updatedAt` with
/// `updatedSince`), filtered; `nextCursor` continues it.
pub async fn list_members<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::ReadMembers).await?;
    let (mut q, cursor) = parse(&req)?;
    let print = fingerprint(&[
        &format!("{:?}", q.status),
        q.role.as_ref().map_or("", |r| r.as_str()),
        q.hris_role.map_or("", |h| h.map_or("none", |h| h.as_str())),
        q.department.map_or("", |d| d.as_str()),
        q.location_id.as_deref().unwrap_or(""),
        &q.email.as_ref().map(|e| e.normalized()).unwrap_or_default(),
        &q.updated_since.map(|t| t.to_string()).unwrap_or_default(),
    ]);
    if let Some(cursor) = cursor {
        q.after = Some(decode_cursor(cursor, &print)?);
    }
    let mut page = store.list_members(&key.organization_id, &q).await?;
    tracing::info!(
        items_read = page.items_read,
        calls = page.calls,
        returned = page.members.len(),
        "members listed"
    );
    // A page stops at its byte budget (members may carry ~70 KB each) and continues after
    // its last member.
    let (members, cut) = paging::fit(&page.members, |m| paging::text(&member_view(m)));
    if cut {
        page.keep(members.len());
    }
    let next = page.next.map(|p| encode_cursor(&p, &print));
    Ok(ApiResponse::raw_json(
        200,
        paging::page_body("members", &members, next.as_deref()),
    ))
}

fn parse(req: &ApiRequest) -> Result<(ListQuery, Option<&str>), ApiError> {
    let mut q = ListQuery::new(paging::DEFAULT_LIMIT);
    let mut cursor = None;
    for (name, value) in paging::query(req, PARAMETERS)? {
        match name {
            "limit" => q.limit = paging::limit(value)?,
            "cursor" => cursor = Some(value),
            "status" => {
                q.status = match value {
                    "active" => StatusFilter::Active,
                    "inactive" => StatusFilter::Inactive,
                    "all" => StatusFilter::All,
                    _ => {
                        return Err(bad_parameter(
                            "status must be one of active, inactive, all.",
                        ))
                    }
                }
            }
            "role" => q.role = Some(check(name, Role::parse(value))?),
            // `none`: the members without an HRIS role (who block switching HRIS on).
            "hrisRole" if value == "none" => q.hris_role = Some(None),
            "hrisRole" => {
                q.hris_role = Some(Some(check(
                    name,
                    vocab(HrisRole::parse, HrisRole::ALLOWED)(value),
                )?))
            }
            "department" => {
                q.department = Some(check(
                    name,
                    vocab(Department::parse, Department::ALLOWED)(value),
                )?)
            }
            "locationId" => q.location_id = Some(check(name, text(128)(value))?),
            "email" => q.email = Some(check(name, Email::parse(value))?),
            "updatedSince" => q.updated_since = Some(check(name, Timestamp::parse(value))?),
            _ => {}
        }
    }
    Ok((q, cursor))
}

/// A parameter's value, or a 400 that says what it must be.
fn check<T>(name: &str, parsed: Result<T, String>) -> Result<T, ApiError> {
    parsed.map_err(|m| bad_parameter(format!("{name} {m}.")))
}
