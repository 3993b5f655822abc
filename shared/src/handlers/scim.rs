//! `/scim/v2`: SCIM 2.0 Users over the same members (see `crate::scim` for the wire
//! format). Every write is a member write: the same rules, the same conditional
//! transactions, the same audit history and change events as `/v1`.
//!
//! - A lost race without `If-Match` is run again on the member as it now is (at most
//!   [`ATTEMPTS`] times): a PATCH's operations and a PUT's values apply to the current
//!   version, never over a change they did not see. With `If-Match`, a stale version is 412.
//! - DELETE deactivates the member and takes it out of SCIM: its SCIM id answers 404 for
//!   ever (the member and its history stay in `/v1`). A later POST of the same `userName`
//!   (or email) brings the member back under a new SCIM id ([`ScimId`]) instead of a
//!   permanent 409.
//! - `attributes` and `excludedAttributes` apply to every answer that holds a user.

use super::update_member::apply_to;
use crate::audit::{self, Actor};
use crate::error::ApiError;
use crate::http::{etag_matches, record_ids, ApiRequest, ApiResponse};
use crate::input::MemberPatch;
use crate::model::*;
use crate::rules;
use crate::scim::attributes::Projection;
use crate::scim::discovery::{self, MAX_RESULTS};
use crate::scim::user::{to_user, user_patch, ScimId, Write};
use crate::scim::{self, filter, invalid, version_tag, LIST};
use crate::store::{CreateMember, Store, COUNT_READ_CAP};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Tries of a write that loses its version race to another writer (without If-Match).
pub const ATTEMPTS: usize = 3;
/// The most users a page skips to reach its `startIndex`: from the start of the list, or
/// from the bookmark an earlier page of the same query left where it ended (DynamoDB has no
/// offset). Stepping `startIndex` page after page (as Okta imports) reaches every user
/// however many; a jump further than this from any bookmark is refused.
pub const MAX_START_INDEX: usize = 10_000;
/// Beyond any organisation's size: a `startIndex` above it is read as it.
const MAX_INDEX: usize = 1 << 40;

/// GET /scim/v2/ServiceProviderConfig, /ResourceTypes[/User], /Schemas[/{id}].
pub async fn scim_discovery<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    super::caller(store.as_ref(), &req, Scope::Scim).await?;
    let base = scim::location(&req, "");
    let base = base.trim_end_matches('/');
    let path = req.path.trim_end_matches('/');
    // A schema id is a URN: clients may send its colons percent-encoded.
    let tail = path.rsplit_once(scim::BASE).map_or("", |(_, t)| t);
    let tail = percent_encoding::percent_decode_str(tail).decode_utf8_lossy();
    let body = match tail.as_ref() {
        "/ServiceProviderConfig" => discovery::service_provider_config(base),
        "/ResourceTypes" => discovery::list(vec![discovery::user_resource_type(base)]),
        "/ResourceTypes/User" => discovery::user_resource_type(base),
        "/Schemas" => discovery::list(discovery::schemas(base)),
        t => match t.strip_prefix("/Schemas/") {
            Some(id) => discovery::schemas(base)
                .into_iter()
                .find(|s| s["id"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(id)))
                .ok_or(ApiError::NotFound)?,
            None => return Err(ApiError::NotFound),
        },
    };
    Ok(scim::json(200, &body))
}

/// GET /scim/v2/Users/{id}: a deactivated user reads `active: false`; a deleted one is 404.
/// With `If-None-Match` naming its version: 304 (RFC 7644 §3.14).
pub async fn scim_get_user<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let id = scim_id(&req)?;
    let projection = projection(&req)?;
    let member = visible(store.member(&key.organization_id, &id.member).await?, &id)?;
    let tag = version_tag(member.version);
    if req
        .header("if-none-match")
        .is_some_and(|h| etag_matches(h, &tag))
    {
        return Ok(ApiResponse::empty(304).with_header("ETag", tag));
    }
    Ok(user_response(200, &member, &req, &projection))
}

/// POST /scim/v2/Users: 201 with `Location`. A `userName` (or email) held by a user deleted
/// through SCIM provisions that member again, under a new SCIM id; held by anyone else it is
/// 409 `uniqueness`.
pub async fn scim_create_user<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let projection = projection(&req)?;
    let body = object(&req)?;
    let org = organization(store, &key).await?;
    let patch = user_patch(&body, Write::Create, &org)?;
    let (user_name, email) = (patch.scim_user_name.clone(), patch.email.clone());
    let err = match create(store, &key, &req, patch, org).await {
        Ok(member) => return Ok(created(&member, &req, &projection)),
        Err(err) if is_taken(&err) => err,
        Err(err) => return Err(err),
    };
    let org_id = &key.organization_id;
    let Some(holder) = holder(store, org_id, user_name.as_deref(), email.as_ref()).await? else {
        return Err(err);
    };
    if !holder.scim_deprovisioned {
        return Err(err);
    }
    // A create names no version: an If-Match sent along does not apply.
    let mut req = req.clone();
    req.headers.remove("if-match");
    let member = update(store, &key, &req, &holder.id, None, |before, org| {
        // Read again on every try: a member another writer has brought back meanwhile is
        // taken, not provisioned over.
        if !before.scim_deprovisioned {
            return Err(ApiError::Conflict {
                code: "user_name_taken",
                detail: String::new(),
                field: Some("scimUserName"),
            });
        }
        let mut patch = user_patch(&body, Write::Create, org)?;
        patch.is_active = patch.is_active.or(Some(true));
        patch.locations = patch.locations.or(Some(Vec::new()));
        patch.scim_deprovisioned = Some(false);
        // A new provisioning: whatever password the member had is gone.
        patch.password = Some(None);
        Ok(patch)
    })
    .await?;
    tracing::info!("member provisioned again through SCIM, under a new SCIM id");
    Ok(created(&member, &req, &projection))
}

/// PUT /scim/v2/Users/{id}: every writable attribute from the body (see `scim::user`).
pub async fn scim_replace_user<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let id = scim_id(&req)?;
    let projection = projection(&req)?;
    let body = object(&req)?;
    let member = update(store, &key, &req, &id.member, Some(&id), |before, org| {
        user_patch(&body, Write::Replace(before), org)
    })
    .await?;
    Ok(user_response(200, &member, &req, &projection))
}

/// PATCH /scim/v2/Users/{id}: the operations applied to the user as it is, in order, then
/// written as one member write. 200 with the user.
pub async fn scim_patch_user<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let id = scim_id(&req)?;
    let projection = projection(&req)?;
    let body = req.json_body()?;
    let member = update(store, &key, &req, &id.member, Some(&id), |before, org| {
        let mut doc = match to_user(before, &req) {
            Value::Object(doc) => doc,
            _ => return Err(ApiError::Internal),
        };
        scim::patch::apply(&mut doc, &body)?;
        user_patch(&doc, Write::Patch(before), org)
    })
    .await?;
    Ok(user_response(200, &member, &req, &projection))
}

/// DELETE /scim/v2/Users/{id}: deactivated (refused like any deactivation of the last admin,
/// the last HRIS admin or the primary member), its externalId released, and out of SCIM:
/// this id answers 404 from now on, whatever happens to the member.
pub async fn scim_delete_user<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let id = scim_id(&req)?;
    update(store, &key, &req, &id.member, Some(&id), |_, _| {
        Ok(MemberPatch {
            is_active: Some(false),
            scim_deprovisioned: Some(true),
            external_id: Some(None),
            ..MemberPatch::default()
        })
    })
    .await?;
    Ok(ApiResponse::empty(204))
}

/// GET /scim/v2/Users: `filter` (see `scim::filter`), `startIndex` (1-based, at most
/// [`MAX_START_INDEX`]), `count` (0–[`MAX_RESULTS`], default the maximum), in a stable
/// order (by id; by update time with `meta.lastModified`). `totalResults` is exact: a
/// counter of the organisation, a key lookup, or (`meta.lastModified`) a count on the index.
pub async fn scim_list_users<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let org_id = &key.organization_id;
    let params = ListParams::parse(&req)?;
    let f = &params.filter;
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
            (
                total,
                page(
                    store,
                    org_id,
                    q,
                    params.start,
                    params.count,
                    MAX_START_INDEX,
                )
                .await?,
            )
        }
    };
    let resources: Vec<Value> = users
        .iter()
        .map(|m| params.projection.apply(to_user(m, &req)))
        .collect();
    Ok(scim::json(
        200,
        &json!({
            "schemas": [LIST],
            "totalResults": total,
            "startIndex": params.start,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    ))
}

/// Users `start`.. `start + count - 1` of a list: read from the nearest bookmark at or before
/// `start` (else from the start), skipping at most `max_skip` users; a page with more after
/// it leaves a bookmark where it ends.
pub(super) async fn page(
    store: &impl Store,
    org: &OrgId,
    mut q: ListQuery,
    start: usize,
    count: usize,
    max_skip: usize,
) -> Result<Vec<Member>, ApiError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let fingerprint = crate::paging::fingerprint(&[
        "scim-users",
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
            store
                .put_scim_bookmark(org, &fingerprint, start + count, last)
                .await?;
        }
    }
    Ok(users.into_iter().skip(skip).take(count).collect())
}

struct ListParams {
    filter: filter::UserFilter,
    start: usize,
    count: usize,
    projection: Projection,
}

impl ListParams {
    /// `filter`, `startIndex`, `count`, `attributes`, `excludedAttributes`; `sortBy` and
    /// `sortOrder` are accepted and not applied (sort is announced as unsupported), and
    /// anything else is refused.
    fn parse(req: &ApiRequest) -> Result<Self, ApiError> {
        let mut params = ListParams {
            filter: filter::UserFilter::default(),
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
                "filter" => params.filter = filter::parse(value)?,
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
                            "Unknown query parameter {other:?}; /Users takes filter, startIndex, \
                             count, attributes, excludedAttributes."
                        ),
                    ))
                }
            }
        }
        Ok(params)
    }
}

/// Runs a member write built from the member as it is now, again on a lost race (without
/// If-Match). `shown`: the SCIM id the request named (the member must be what it names);
/// `None` for a member deleted through SCIM that is provisioned again.
async fn update(
    store: &impl Store,
    key: &ApiKey,
    req: &ApiRequest,
    id: &MemberId,
    shown: Option<&ScimId>,
    make: impl Fn(&Member, &Organization) -> Result<MemberPatch, ApiError>,
) -> Result<Member, ApiError> {
    let if_match = req.header("if-match").is_some();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (member, org) = store.member_and_org(&key.organization_id, id).await?;
        let before = match (member, shown) {
            (Some(m), None) => m,
            (member, Some(shown)) => visible(member, shown)?,
            (None, None) => return Err(ApiError::NotFound),
        };
        let org = org.ok_or_else(|| {
            tracing::error!("the API key's organisation does not exist");
            ApiError::Internal
        })?;
        let patch = make(&before, &org)?;
        let email = patch
            .email
            .clone()
            .filter(|e| e.normalized() != before.email.normalized());
        let user_name = patch
            .scim_user_name
            .clone()
            .filter(|u| normalize_identifier(u) != normalize_identifier(before.user_name()));
        match apply_to(store, key, req, before, org, patch, false, false).await {
            Err(ApiError::UpdateInProgress) if !if_match && attempt < ATTEMPTS => {
                tracing::info!(attempt, "SCIM write lost a race; running it again");
            }
            Err(err) if is_taken(&err) => {
                return Err(
                    match holder(
                        store,
                        &key.organization_id,
                        user_name.as_deref(),
                        email.as_ref(),
                    )
                    .await
                    {
                        Ok(Some(holder)) if holder.scim_deprovisioned => {
                            held_by_deprovisioned(&holder)
                        }
                        _ => err,
                    },
                )
            }
            other => return other.map(|outcome| outcome.member),
        }
    }
}

/// A refusal because another member holds the userName or the email.
fn is_taken(err: &ApiError) -> bool {
    matches!(err.code(), "email_taken" | "user_name_taken")
}

/// The member that holds a userName, else the one that holds an email address.
async fn holder(
    store: &impl Store,
    org: &OrgId,
    user_name: Option<&str>,
    email: Option<&Email>,
) -> Result<Option<Member>, ApiError> {
    if let Some(user_name) = user_name {
        if let Some(m) = store.member_by_user_name(org, user_name).await? {
            return Ok(Some(m));
        }
    }
    match email {
        Some(email) => store.member_by_email(org, email).await,
        None => Ok(None),
    }
}

/// A refused change of `userName` or email held by a user deleted through SCIM (invisible
/// there): the answer says so and what to do, rather than a bare 409.
fn held_by_deprovisioned(holder: &Member) -> ApiError {
    ApiError::Conflict {
        code: "email_held_by_deprovisioned",
        detail: format!(
            "This userName or email belongs to member {}, deleted through SCIM. Provision it \
             again (POST /Users with this userName), or change that member's email in the \
             Members API (PATCH /v1/members/{}), then retry.",
            holder.id, holder.id
        ),
        field: Some("email"),
    }
}

/// A new member from a SCIM create (never primary, no password): the same create
/// transaction as POST /v1/members.
async fn create(
    store: &impl Store,
    key: &ApiKey,
    req: &ApiRequest,
    patch: MemberPatch,
    org: Organization,
) -> Result<Member, ApiError> {
    let now = Timestamp::now();
    let draft = rules::new_member(patch, &org, now)?;
    record_ids(&org.id, Some(&draft.member.id));
    let actor = Actor::of(key, req);
    let write = CreateMember {
        audit: audit::event(
            "member.created",
            &actor,
            None,
            &draft.member,
            false,
            draft.justification,
        ),
        member: draft.member,
        org,
        previous_primary: None,
        idempotency: None,
    };
    store.create_member(&write).await?;
    tracing::info!("member created through SCIM");
    Ok(write.member)
}

async fn organization(store: &impl Store, key: &ApiKey) -> Result<Organization, ApiError> {
    store
        .organization(&key.organization_id)
        .await?
        .ok_or_else(|| {
            tracing::error!("the API key's organisation does not exist");
            ApiError::Internal
        })
}

/// `attributes` and `excludedAttributes` of the query, for every answer that holds users
/// (RFC 7644 §3.9); any other parameter of a request about one user is refused.
fn projection(req: &ApiRequest) -> Result<Projection, ApiError> {
    let param = |name: &str| {
        req.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // Only a list takes more (ListParams).
    if req.path_id.is_some() || req.method != "GET" {
        if let Some((other, _)) = req
            .query
            .iter()
            .find(|(k, _)| k != "attributes" && k != "excludedAttributes")
        {
            return Err(invalid(
                "invalidValue",
                format!("Unknown query parameter {other:?}; a user takes attributes, excludedAttributes."),
            ));
        }
    }
    Projection::parse(param("attributes"), param("excludedAttributes"))
}

/// The member a SCIM id names: not deleted through SCIM, and under that id now.
fn visible(member: Option<Member>, id: &ScimId) -> Result<Member, ApiError> {
    member.filter(|m| id.names(m)).ok_or(ApiError::NotFound)
}

/// The `{id}` of the path as a SCIM id: what names no user is 404, as any unknown id.
fn scim_id(req: &ApiRequest) -> Result<ScimId, ApiError> {
    req.path_id
        .as_deref()
        .and_then(ScimId::parse)
        .ok_or(ApiError::NotFound)
}

fn object(req: &ApiRequest) -> Result<Map<String, Value>, ApiError> {
    match req.json_body()? {
        Value::Object(obj) => Ok(obj),
        _ => Err(invalid("invalidSyntax", "The body must be a User object.")),
    }
}

fn user_response(status: u16, m: &Member, req: &ApiRequest, shown: &Projection) -> ApiResponse {
    scim::json(status, &shown.apply(to_user(m, req))).with_header("ETag", version_tag(m.version))
}

fn created(m: &Member, req: &ApiRequest, shown: &Projection) -> ApiResponse {
    user_response(201, m, req, shown).with_header(
        "Location",
        scim::location(req, &format!("Users/{}", ScimId::of(m))),
    )
}
