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
use crate::scim::discovery;
use crate::scim::user::{to_user, user_patch, ScimId, Write};
use crate::scim::{self, invalid, version_tag};
use crate::store::{CreateMember, Store};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Tries of a write that loses its version race to another writer (without If-Match).
pub const ATTEMPTS: usize = 3;

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
        "/ResourceTypes" => discovery::list(discovery::resource_types(base)),
        "/ResourceTypes/User" => discovery::user_resource_type(base),
        "/ResourceTypes/Group" => discovery::group_resource_type(base),
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
    // Only the same userName brings a deleted member back: an email alone may have been
    // given to someone else since (a reused mailbox), who must not inherit that member.
    let org_id = &key.organization_id;
    let holder = match user_name.as_deref() {
        Some(user_name) => store.member_by_user_name(org_id, user_name).await?,
        None => None,
    };
    let Some(holder) = holder.filter(|h| h.scim_deprovisioned) else {
        return Err(
            match holder_of(store, org_id, user_name.as_deref(), email.as_ref()).await? {
                Some(other) if other.scim_deprovisioned => held_by_deprovisioned(&other),
                _ => err,
            },
        );
    };
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
    let deprovision = || MemberPatch {
        is_active: Some(false),
        scim_deprovisioned: Some(true),
        external_id: Some(None),
        // Out of SCIM, out of its groups (and the roles they gave).
        scim_groups: Some(Vec::new()),
        ..MemberPatch::default()
    };
    // A member in groups leaves them in a write of its own first: with its locations moving
    // too, one transaction could pass DynamoDB's 100 items. The whole is checked first.
    let (member, org) = store
        .member_and_org(&key.organization_id, &id.member)
        .await?;
    let member = visible(member, &id)?;
    let mut req = req.clone();
    if !member.scim_groups.is_empty() {
        let org = org.ok_or(ApiError::Internal)?;
        let draft = rules::apply(deprovision(), &member, &org, Timestamp::now())?;
        rules::check_primary_kept(&member, &draft.member)?;
        let delta = draft.member.counters().minus(member.counters());
        if let Some(violation) = rules::counter_violation(org.counters, delta, org.hris_enabled) {
            return Err(violation);
        }
        update(store, &key, &req, &id.member, Some(&id), |_, _| {
            Ok(MemberPatch {
                scim_groups: Some(Vec::new()),
                ..MemberPatch::default()
            })
        })
        .await?;
        // If-Match named the version before the first write: it was checked by it.
        req.headers.remove("if-match");
    }
    update(store, &key, &req, &id.member, Some(&id), |_, _| {
        Ok(deprovision())
    })
    .await?;
    Ok(ApiResponse::empty(204))
}

/// Runs a member write built from the member as it is now, again on a lost race (without
/// If-Match). `shown`: the SCIM id the request named (the member must be what it names);
/// `None` for a member deleted through SCIM that is provisioned again.
pub(super) async fn update(
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
        let mut patch = make(&before, &org)?;
        // While the group → role mapping decides the role, the identity provider's `role`
        // attribute is not what sets it: ignored, rather than refused on every sync.
        if org.decided_role(&before).is_some() {
            patch.role = None;
        }
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
                    match holder_of(
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
async fn holder_of(
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
             again (POST /Users with its userName), or change that member's email in the \
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

pub(super) async fn organization(
    store: &impl Store,
    key: &ApiKey,
) -> Result<Organization, ApiError> {
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
pub(super) fn projection(req: &ApiRequest) -> Result<Projection, ApiError> {
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
