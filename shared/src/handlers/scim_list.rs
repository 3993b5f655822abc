//! `GET /scim/v2/Users`: filters served by keys, exact `totalResults`, and `startIndex`
//! pages that continue from bookmarks (docs/design.md, "SCIM").

use super::scim::projection;
use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::model::*;
use crate::scim::attributes::Projection;
use crate::scim::discovery::MAX_RESULTS;
use crate::scim::user::to_user;
use crate::scim::{self, filter, invalid};
use crate::store::{Store, COUNT_READ_CAP};
use serde_json::Value;
use std::sync::Arc;

/// The most users a page skips to reach its `startIndex`: from the start of the list, or
/// from the bookmark an earlier page of the same query left where it ended (DynamoDB has no
/// offset). Stepping `startIndex` page after page (as Okta imports) reaches every user
/// however many; a jump further than this from any bookmark is refused.
pub const MAX_START_INDEX: usize = 10_000;
/// Beyond any organisation's size: a `startIndex` above it is read as it.
const MAX_INDEX: usize = 1 << 40;

/// GET /scim/v2/Users: `filter` (see `scim::filter`), `startIndex` (1-based; a page skips
/// at most [`MAX_START_INDEX`] users from the nearest bookmark), `count` (0–[`MAX_RESULTS`], default the maximum), in a stable
/// order (by id; by update time with `meta.lastModified`). `totalResults` is exact: a
/// counter of the organisation, a key lookup, or (`meta.lastModified`) a count on the index.
pub async fn scim_list_users<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let org_id = &key.organization_id;
    let params = ListParams::parse(&req, "/Users")?;
    let f = &match &params.filter {
        Some(text) => filter::parse(text)?,
        None => filter::UserFilter::default(),
    };
    let same = |a: &str, b: &str| normalize_identifier(a) == normalize_identifier(b);
    let keep = |m: &Member| {
        !m.scim_deprovisioned
            && f.user_name.as_ref().is_none_or(|u| same(u, m.user_name()))
            && f.email.as_ref().is_none_or(|e| same(e, m.email.as_str()))
            && f.active.is_none_or(|a| a == m.is_active)
            && f.external_id
                .as_ref()
                .is_none_or(|e| m.external_id.as_ref() == Some(e))
            && f.modified_since.is_none_or(|t| m.updated_at >= t)
    };
    // A key lookup: at most one user.
    let found = if f.impossible {
        Some(None)
    } else if let Some(user_name) = &f.user_name {
        Some(store.member_by_user_name(org_id, user_name).await?)
    } else if let Some(email) = f.email() {
        match email {
            None => Some(None),
            Some(email) => Some(store.member_by_email(org_id, &email).await?),
        }
    } else if let Some(external_id) = &f.external_id {
        Some(store.member_by_external_id(org_id, external_id).await?)
    } else {
        None
    };
    let (total, users) = match found {
        Some(member) => {
            let users: Vec<Member> = member.filter(|m| keep(m)).into_iter().collect();
            let total = users.len();
            (
                total,
                users
                    .into_iter()
                    .skip(params.start - 1)
                    .take(params.count)
                    .collect(),
            )
        }
        None => {
            let mut q = ListQuery::new(MAX_RESULTS);
            q.status = match f.active {
                Some(true) => StatusFilter::Active,
                Some(false) => StatusFilter::Inactive,
                None => StatusFilter::All,
            };
            (q.updated_since, q.scim_only) = (f.modified_since, true);
            let total = match q.updated_since {
                Some(since) => match store.count_members(org_id, &q).await? {
                    Some(n) => n as usize,
                    None => {
                        return Err(invalid(
                            "tooMany",
                            format!(
                                "More than {COUNT_READ_CAP} users were changed since {since}: \
                                 counting them is too costly for one request. Ask for a later \
                                 meta.lastModified."
                            ),
                        ))
                    }
                },
                None => {
                    // The totals: the organisation's counts, its shards summed.
                    let c = store
                        .counted_organization(&key.organization_id)
                        .await?
                        .ok_or(ApiError::Internal)?
                        .counters;
                    let n = match f.active {
                        Some(true) => c.active_members,
                        Some(false) => c.scim_members - c.active_members,
                        None => c.scim_members,
                    };
                    n.max(0) as usize
                }
            };
            // Past the end: an empty page (RFC 7644 §3.4.2.4), nothing read.
            let users = if params.start > total {
                Vec::new()
            } else {
                let from = Bookmarks {
                    key: &key.id,
                    max_skip: MAX_START_INDEX,
                };
                page(store, org_id, q, params.start, params.count, from).await?
            };
            (total, users)
        }
    };
    let resources: Vec<Value> = users
        .iter()
        .map(|m| params.projection.apply(to_user(m, &req)))
        .collect();
    Ok(scim::json(
        200,
        &scim::list_response(total, params.start, resources),
    ))
}

/// Whose bookmarks a page reads and leaves (each key's imports its own: one cannot move
/// another's), and how far past the nearest one it may skip.
pub(super) struct Bookmarks<'a> {
    pub key: &'a ApiKeyId,
    pub max_skip: usize,
}

/// Users `start`.. `start + count - 1` of a list: read from the nearest bookmark at or before
/// `start` (else from the start), skipping at most `max_skip` users; a page with more after
/// it leaves a bookmark where it ends (best effort: a page is answered without it).
pub(super) async fn page(
    store: &impl Store,
    org: &OrgId,
    mut q: ListQuery,
    start: usize,
    count: usize,
    bookmarks: Bookmarks<'_>,
) -> Result<Vec<Member>, ApiError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let max_skip = bookmarks.max_skip;
    let fingerprint = crate::paging::fingerprint(&[
        "scim-users",
        bookmarks.key.as_str(),
        &format!("{:?}", q.status),
        &q.updated_since.map(|t| t.to_string()).unwrap_or_default(),
    ]);
    let mut from = 1;
    if start > 1 {
        if let Some((at, position)) = store.scim_bookmark(org, &fingerprint, start).await? {
            (from, q.after) = (at, Some(position));
        }
    }
    let skip = start - from;
    if skip > max_skip {
        return Err(invalid(
            "invalidValue",
            format!(
                "startIndex {start} is {skip} users past the nearest place this list can start \
                 from (at most {max_skip}): step startIndex page after page (each page lets the \
                 next one start where it ended), or narrow the list with a filter \
                 (meta.lastModified gt, active eq)."
            ),
        ));
    }
    let need = skip + count;
    let (mut users, mut positions) = (Vec::new(), Vec::new());
    let mut more = false;
    loop {
        q.limit = (need - users.len()).clamp(1, MAX_RESULTS);
        let page = store.list_members(org, &q).await?;
        users.extend(page.members);
        positions.extend(page.positions);
        match page.next {
            Some(next) if users.len() < need => q.after = Some(next),
            Some(_) => {
                more = true;
                break;
            }
            None => break,
        }
    }
    let end = need.min(users.len());
    if more || users.len() > need {
        if let Some(last) = positions.get(end - 1) {
            if let Err(e) = store
                .put_scim_bookmark(org, &fingerprint, start + count, last)
                .await
            {
                tracing::warn!(error = ?e, "a SCIM list page left no bookmark");
            }
        }
    }
    Ok(users.into_iter().skip(skip).take(count).collect())
}

/// A list's query: its filter as sent (each resource reads its own), the 1-based
/// `startIndex`, `count` and what to show of each resource.
pub(super) struct ListParams {
    pub filter: Option<String>,
    pub start: usize,
    pub count: usize,
    pub projection: Projection,
}

impl ListParams {
    /// `filter`, `startIndex`, `count`, `attributes`, `excludedAttributes`; `sortBy` and
    /// `sortOrder` are accepted and not applied (sort is announced as unsupported), and
    /// anything else is refused.
    pub fn parse(req: &ApiRequest, resource: &str) -> Result<Self, ApiError> {
        let mut params = ListParams {
            filter: None,
            start: 1,
            count: MAX_RESULTS,
            projection: projection(req)?,
        };
        let number = |name: &str, value: &str| {
            value.trim().parse::<i64>().map_err(|_| {
                invalid(
                    "invalidValue",
                    format!("{name} must be an integer, not {value:?}"),
                )
            })
        };
        for (name, value) in &req.query {
            match name.as_str() {
                "filter" => params.filter = Some(value.clone()),
                "startIndex" => {
                    // RFC 7644 §3.4.2.4: below 1 is 1. How far a page may skip is page()'s.
                    params.start = usize::try_from(number(name, value)?.max(1))
                        .unwrap_or(usize::MAX)
                        .min(MAX_INDEX);
                }
                // Negative is 0; above the maximum, the maximum (filter.maxResults).
                "count" => {
                    params.count = number(name, value)?.clamp(0, MAX_RESULTS as i64) as usize
                }
                "attributes" | "excludedAttributes" | "sortBy" | "sortOrder" => {}
                other => {
                    return Err(invalid(
                        "invalidValue",
                        format!(
                            "Unknown query parameter {other:?}; {resource} takes filter, \
                             startIndex, count, attributes, excludedAttributes."
                        ),
                    ))
                }
            }
        }
        Ok(params)
    }
}
