//! `/scim/v2`: SCIM 2.0 Users over the same members (see `crate::scim` for the wire
//! format). Every write is a member write: the same rules, the same conditional
//! transactions, the same audit history and change events as `/v1`.
//!
//! - A lost race without `If-Match` is run again on the member as it now is (at most
//!   [`ATTEMPTS`] times): a PATCH's operations and a PUT's values apply to the current
//!   version, never over a change they did not see. With `If-Match`, a stale version is 412.
//! - DELETE deactivates the member and takes it out of SCIM (404 there from then on; the
//!   member and its history stay in `/v1`). A later POST of the same `userName` brings the
//!   member back (same id) instead of a permanent 409.

use super::update_member::apply_to;
use crate::audit::{self, Actor};
use crate::error::ApiError;
use crate::http::{record_ids, ApiRequest, ApiResponse};
use crate::input::MemberPatch;
use crate::model::*;
use crate::rules;
use crate::scim::attributes::Projection;
use crate::scim::discovery::{self, MAX_RESULTS};
use crate::scim::user::{to_user, user_patch, Write};
use crate::scim::{self, filter, invalid, version_tag, LIST};
use crate::store::{CreateMember, Store, COUNT_READ_CAP};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Tries of a write that loses its version race to another writer (without If-Match).
pub const ATTEMPTS: usize = 3;
/// The largest `startIndex` served: a page at index N reads the N − 1 users before it
/// (DynamoDB has no offset), so past this a client narrows its filter instead.
pub const MAX_START_INDEX: usize = 10_000;

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
pub async fn scim_get_user<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let id = super::member_id(&req)?;
    let projection = projection(&req)?;
    let member = visible(store.member(&key.organization_id, &id).await?)?;
    let user = projection.apply(to_user(&member, &req));
    Ok(scim::json(200, &user).with_header("ETag", version_tag(member.version)))
}

/// POST /scim/v2/Users: 201 with `Location`. A `userName` held by a user deleted through
/// SCIM provisions that member again; held by anyone else it is 409 `uniqueness`.
pub async fn scim_create_user<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let body = object(&req)?;
    let org = organization(store, &key).await?;
    let patch = user_patch(&body, Write::Create, &org)?;
    let email = patch.email.clone();
    match create(store, &key, &req, patch, org).await {
        Ok(member) => Ok(created(&member, &req)),
        Err(err) if err.code() == "email_taken" => {
            let Some(email) = email else { return Err(err) };
            match store.member_by_email(&key.organization_id, &email).await? {
                Some(m) if m.scim_deprovisioned => {
                    // A create names no version: an If-Match sent along does not apply.
                    let mut req = req.clone();
                    req.headers.remove("if-match");
                    let member = update(store, &key, &req, &m.id, true, |before, org| {
                        // Read again on every try: a member another writer has brought back
                        // meanwhile is taken, not provisioned over.
                        if !before.scim_deprovisioned {
                            return Err(ApiError::Conflict {
                                code: "email_taken",
                                detail: String::new(),
                                field: Some("email"),
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
                    tracing::info!("member provisioned again through SCIM");
                    Ok(created(&member, &req))
                }
                _ => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}

/// PUT /scim/v2/Users/{id}: every writable attribute from the body (see `scim::user`).
pub async fn scim_replace_user<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let id = super::member_id(&req)?;
    let body = object(&req)?;
    let member = update(store, &key, &req, &id, false, |before, org| {
        user_patch(&body, Write::Replace(before), org)
    })
    .await?;
    Ok(user_response(200, &member, &req))
}

/// PATCH /scim/v2/Users/{id}: the operations applied to the user as it is, in order, then
/// written as one member write. 200 with the user.
pub async fn scim_patch_user<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let id = super::member_id(&req)?;
    let body = req.json_body()?;
    let member = update(store, &key, &req, &id, false, |before, org| {
        let mut doc = match to_user(before, &req) {
            Value::Object(doc) => doc,
            _ => return Err(ApiError::Internal),
        };
        scim::patch::apply(&mut doc, &body)?;
        user_patch(&doc, Write::Patch(before), org)
    })
    .await?;
    Ok(user_response(200, &member, &req))
}

/// DELETE /scim/v2/Users/{id}: deactivated (refused like any deactivation of the last admin,
/// the last HRIS admin or the primary member), its externalId released, and out of SCIM.
pub async fn scim_delete_user<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let id = super::member_id(&req)?;
    update(store, &key, &req, &id, false, |_, _| {
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
    let keep = |m: &Member| {
        !m.scim_deprovisioned
            && f.active.is_none_or(|a| a == m.is_active)
            && f.external_id
                .as_ref()
                .is_none_or(|e| m.external_id.as_ref() == Some(e))
            && f.modified_since.is_none_or(|t| m.updated_at >= t)
    };
    // A key lookup: at most one user.
    let found = if f.impossible {
        Some(None)
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
                page(store, org_id, q, params.start, params.count).await?,
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

/// Users `start`.. `start + count - 1` of a list, read page after page from the start.
async fn page(
    store: &impl Store,
    org: &OrgId,
    mut q: ListQuery,
    start: usize,
    count: usize,
) -> Result<Vec<Member>, ApiError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let need = start - 1 + count;
    let mut users = Vec::new();
    loop {
        q.limit = (need - users.len()).clamp(1, MAX_RESULTS);
        let page = store.list_members(org, &q).await?;
        users.extend(page.members);
        match page.next {
            Some(next) if users.len() < need => q.after = Some(next),
            _ => break,
        }
    }
    Ok(users.into_iter().skip(start - 1).take(count).collect())
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
                    // RFC 7644 §3.4.2.4: below 1 is 1.
                    let start = number(name, value)?.max(1) as u64;
                    if start > MAX_START_INDEX as u64 {
                        return Err(invalid(
                            "invalidValue",
                            format!(
                                "startIndex is at most {MAX_START_INDEX}: each page reads every \
                                 user before it. Narrow the list with a filter (meta.lastModified \
                                 gt, active eq) instead."
                            ),
                        ));
                    }
                    params.start = start as usize;
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
/// If-Match). `reprovision`: the member may be one deleted through SCIM.
async fn update(
    store: &impl Store,
    key: &ApiKey,
    req: &ApiRequest,
    id: &MemberId,
    reprovision: bool,
    make: impl Fn(&Member, &Organization) -> Result<MemberPatch, ApiError>,
) -> Result<Member, ApiError> {
    let if_match = req.header("if-match").is_some();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (member, org) = store.member_and_org(&key.organization_id, id).await?;
        let before = match member {
            Some(m) if reprovision => m,
            other => visible(other)?,
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
        match apply_to(store, key, req, before, org, patch, false, false).await {
            Err(ApiError::UpdateInProgress) if !if_match && attempt < ATTEMPTS => {
                tracing::info!(attempt, "SCIM write lost a race; running it again");
            }
            Err(err) if err.code() == "email_taken" => {
                return Err(match email {
                    Some(email) => taken_by(store, key, &email, err).await,
                    None => err,
                })
            }
            other => return other.map(|outcome| outcome.member),
        }
    }
}

/// A refused change of `userName`: when the address is held by a user deleted through SCIM
/// (invisible there), the answer says so and what to do, rather than a bare 409.
async fn taken_by(store: &impl Store, key: &ApiKey, email: &Email, err: ApiError) -> ApiError {
    match store.member_by_email(&key.organization_id, email).await {
        Ok(Some(holder)) if holder.scim_deprovisioned => ApiError::Conflict {
            code: "email_held_by_deprovisioned",
            detail: format!(
                "This userName belongs to member {}, deleted through SCIM. Provision it again \
                 (POST /Users with this userName), or change that member's email in the \
                 Members API (PATCH /v1/members/{}), then retry.",
                holder.id, holder.id
            ),
            field: Some("email"),
        },
        _ => err,
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

/// `attributes` and `excludedAttributes` of the query (GET only; any other parameter of a
/// single user's GET is refused).
fn projection(req: &ApiRequest) -> Result<Projection, ApiError> {
    let param = |name: &str| {
        req.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if req.path_id.is_some() {
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

/// A member SCIM shows: not deleted through SCIM.
fn visible(member: Option<Member>) -> Result<Member, ApiError> {
    member
        .filter(|m| !m.scim_deprovisioned)
        .ok_or(ApiError::NotFound)
}

fn object(req: &ApiRequest) -> Result<Map<String, Value>, ApiError> {
    match req.json_body()? {
        Value::Object(obj) => Ok(obj),
        _ => Err(invalid("invalidSyntax", "The body must be a User object.")),
    }
}

fn user_response(status: u16, m: &Member, req: &ApiRequest) -> ApiResponse {
    scim::json(status, &to_user(m, req)).with_header("ETag", version_tag(m.version))
}

fn created(m: &Member, req: &ApiRequest) -> ApiResponse {
    user_response(201, m, req)
        .with_header("Location", scim::location(req, &format!("Users/{}", m.id)))
}
