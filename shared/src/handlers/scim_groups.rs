//! `/scim/v2/Groups`: groups an identity provider pushes, whose memberships can decide the
//! members' roles (`scim.groupRoles`). A group's item holds its name; each membership is
//! written with its member (`memberships`), so a change of members is member writes, under
//! every rule, with `member.updated` events; the group's own change is a `group.*` event.
//!
//! - The group item is written first (its name is unique: 409 `uniqueness` before any
//!   membership moves), once every membership change was checked whole. A change of its
//!   name or externalId is a `group.updated` event; a change of its members alone moves
//!   its version and is told by each member's `member.updated` (its `scimGroups`).
//! - A lost race on the group item without `If-Match` is run again on the group as it now
//!   is; with `If-Match`, a stale version is 412.

use super::memberships::{self, Move};
use super::scim::{organization, projection, ATTEMPTS};
use super::scim_list::ListParams;
use crate::audit::Actor;
use crate::error::ApiError;
use crate::http::{etag_matches, ApiRequest, ApiResponse};
use crate::model::*;
use crate::paging::{answer_bytes, PAGE_BYTES};
use crate::scim::attributes::Projection;
use crate::scim::group::{group_body, group_patch, to_group, GroupBody, GroupPatch};
use crate::scim::id::ScimId;
use crate::scim::{self, invalid, version_tag};
use crate::store::Store;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// POST /scim/v2/Groups: 201 with `Location`; its `members` join it (each a user SCIM
/// shows, else 400 naming it and nothing is written).
pub async fn scim_create_group<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let shown = projection(&req)?;
    let body = group_body(&req.json_body()?)?;
    let org_id = &key.organization_id;
    let wanted = unique(body.members.unwrap_or_default());
    too_many(&wanted, 0)?;
    let named: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let named = memberships::resolve(store, org_id, &named).await?;
    let now = Timestamp::now();
    let group = Group {
        id: GroupId::generate(),
        organization_id: org_id.clone(),
        display_name: body.display_name,
        external_id: body.external_id,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let mut moves: Vec<Move> = named
        .into_iter()
        .map(|(_, member)| Move::new(member, true))
        .collect();
    let org = organization(store, &key).await?;
    memberships::check_whole(&mut moves, &group.id, &org)?;
    let actor = Actor::of(&key, &req);
    let audit = group_event("group.created", &actor, &req, None, &group, wanted.len());
    store.create_group(&group, &audit).await?;
    tracing::info!(group_id = %group.id, "group created through SCIM");
    // The group exists now: whatever a race refused of its members, the answer is the
    // group as it is (the identity provider compares and sends the rest again).
    let members = match memberships::apply(store, &key, &req, &group.id, moves).await {
        Ok(()) => wanted,
        Err(e) => {
            tracing::warn!(code = e.code(), "a new group's members were not all added");
            member_ids(store, &group).await?
        }
    };
    let location = scim::location(&req, &format!("Groups/{}", group.id));
    Ok(group_response(201, &group, &members, &req, &shown).with_header("Location", location))
}

/// GET /scim/v2/Groups/{id}, with its members. `If-None-Match` naming its version: 304.
pub async fn scim_get_group<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let shown = projection(&req)?;
    let id = group_id(&req)?;
    let group = store
        .group(&key.organization_id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tag = version_tag(group.version);
    if req
        .header("if-none-match")
        .is_some_and(|h| etag_matches(h, &tag))
    {
        return Ok(ApiResponse::empty(304).with_header("ETag", tag));
    }
    let members = if shown.shows("members") {
        member_ids(store, &group).await?
    } else {
        Vec::new()
    };
    Ok(group_response(200, &group, &members, &req, &shown))
}

/// GET /scim/v2/Groups: `filter` (`displayName eq "…"`, case-insensitive as the name is
/// unique; `externalId eq "…"`), `startIndex`, `count`, `attributes`,
/// `excludedAttributes` (`members`: no membership is read). Oldest group first. A page
/// whose members would pass 4 MB ends early (`itemsPerPage` says how many it holds).
pub async fn scim_list_groups<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let org_id = &key.organization_id;
    let params = ListParams::parse(&req, "/Groups")?;
    let groups = match params.filter.as_deref().map(group_filter).transpose()? {
        Some(GroupFilter::DisplayName(name)) => store
            .group_by_name(org_id, &name)
            .await?
            .into_iter()
            .collect(),
        Some(GroupFilter::ExternalId(external_id)) => {
            let mut all = store.groups(org_id).await?;
            all.retain(|g| g.external_id.as_deref() == Some(external_id.as_str()));
            all
        }
        None => store.groups(org_id).await?,
    };
    let total = groups.len();
    let with_members = params.projection.shows("members");
    let mut resources = Vec::new();
    let mut used = 0;
    for group in groups.iter().skip(params.start - 1).take(params.count) {
        let members = if with_members {
            member_ids(store, group).await?
        } else {
            Vec::new()
        };
        let doc = params
            .projection
            .apply(to_group(group, Some(&members), &req));
        used += answer_bytes(&doc.to_string());
        if used > PAGE_BYTES && !resources.is_empty() {
            break;
        }
        resources.push(doc);
    }
    Ok(scim::json(
        200,
        &scim::list_response(total, params.start, resources),
    ))
}

/// PUT /scim/v2/Groups/{id}: `displayName` and `externalId` replaced; `members`, when the
/// body has it, replaced (absent: unchanged, so that a rename never empties a group).
pub async fn scim_replace_group<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let shown = projection(&req)?;
    let json = req.json_body()?;
    // Read in the change, after the group: another organisation's group is a 404 whatever
    // the body.
    let (group, members) = change(store, &key, &req, |current| {
        let GroupBody {
            display_name,
            external_id,
            members,
        } = &group_body(&json)?;
        Ok(Edit {
            display_name: Some(display_name.clone()),
            external_id: Some(external_id.clone()),
            wanted: members.clone().map_or_else(|| current.to_vec(), unique),
            added: members.clone().unwrap_or_default(),
            replaces: members.is_some(),
        })
    })
    .await?;
    Ok(group_response(200, &group, &members, &req, &shown))
}

/// PATCH /scim/v2/Groups/{id}: the operations in order (`scim::group`); 200 with the group
/// (its members as they now are).
pub async fn scim_patch_group<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let shown = projection(&req)?;
    let id = group_id(&req)?;
    let json = req.json_body()?;
    let (group, members) = change(store, &key, &req, |current| {
        let patch: GroupPatch = group_patch(&json, &id)?;
        Ok(Edit {
            display_name: patch.display_name.clone(),
            external_id: patch.external_id.clone(),
            wanted: patch.members_after(current),
            added: patch.added().into_iter().map(str::to_owned).collect(),
            replaces: patch.replaces(),
        })
    })
    .await?;
    Ok(group_response(200, &group, &members, &req, &shown))
}

/// DELETE /scim/v2/Groups/{id}: every member leaves it (checked whole: a deletion that
/// would leave no admin is refused), then the group goes, and out of `scim.groupRoles`.
/// 204; 404 for ever after.
pub async fn scim_delete_group<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::Scim).await?;
    let actor = Actor::of(&key, &req);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (group, _) = change(store, &key, &req, |_| {
            Ok(Edit {
                display_name: None,
                external_id: None,
                wanted: Vec::new(),
                added: Vec::new(),
                replaces: true,
            })
        })
        .await?;
        // Out of the mapping before it goes: a retry after a failure here finds the group
        // still there and runs all of it again.
        super::organization::forget_group(store, &key, &req, &group.id).await?;
        let audit = group_event("group.deleted", &actor, &req, Some(&group), &group, 0);
        match store.delete_group(&group, &audit).await {
            // Changed since it was emptied: empty it again.
            Err(ApiError::PreconditionFailed) if req.header("if-match").is_none() => {
                if attempt >= ATTEMPTS {
                    return Err(crate::store::write_conflict());
                }
                continue;
            }
            other => other?,
        }
        // A member that joined while the group was emptied leaves it now.
        leave_all(store, &key, &req, &group).await?;
        tracing::info!(group_id = %group.id, "group deleted through SCIM");
        return Ok(ApiResponse::empty(204));
    }
}

/// What a write makes of the group, given its members now (SCIM ids).
struct Edit {
    display_name: Option<String>,
    /// `Some(None)`: removed.
    external_id: Option<Option<String>>,
    /// Its members after the write.
    wanted: Vec<String>,
    /// The ids the request adds: each must name a user.
    added: Vec<String>,
    /// The request sets the members whole (PUT, replace, remove all): it must see the
    /// group's version it read, or it could undo a concurrent change it never saw.
    replaces: bool,
}

/// A change of a group: read, built by `edit`, every membership move checked whole, the
/// group's item written (conditioned on the version read; again on a lost race without
/// If-Match), then the moves. Answers the group and its members.
async fn change(
    store: &impl Store,
    key: &ApiKey,
    req: &ApiRequest,
    edit: impl Fn(&[String]) -> Result<Edit, ApiError>,
) -> Result<(Group, Vec<String>), ApiError> {
    let org_id = &key.organization_id;
    let id = group_id(req)?;
    let if_match = req.header("if-match");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = store.group(org_id, &id).await?.ok_or(ApiError::NotFound)?;
        let current = member_ids(store, &before).await?;
        // The body's own faults first (400), then its version (412).
        let e = edit(&current)?;
        if if_match.is_some_and(|h| !etag_matches(h, &version_tag(before.version))) {
            return Err(ApiError::PreconditionFailed);
        }
        too_many(&e.wanted, current.len())?;
        let added: Vec<&str> = e.added.iter().map(String::as_str).collect();
        let named = memberships::resolve(store, org_id, &added).await?;
        let mut moves =
            memberships::moves_between(store, org_id, &current, &e.wanted, named).await?;
        let org = organization(store, key).await?;
        memberships::check_whole(&mut moves, &id, &org)?;
        let mut after = before.clone();
        after.display_name = e.display_name.unwrap_or(after.display_name);
        after.external_id = e.external_id.unwrap_or(after.external_id);
        if after == before && moves.is_empty() {
            return Ok((before, current));
        }
        after.updated_at = Timestamp::now();
        let actor = Actor::of(key, req);
        let count = e.wanted.len();
        let renamed =
            after.display_name != before.display_name || after.external_id != before.external_id;
        let versioned = renamed || e.replaces || if_match.is_some();
        if versioned {
            after.version += 1;
            let audit = group_event("group.updated", &actor, req, Some(&before), &after, count);
            match store.update_group(&before, &after, &audit).await {
                Err(ApiError::PreconditionFailed) if if_match.is_none() && attempt < ATTEMPTS => {
                    tracing::info!(attempt, "group write lost a race; running it again");
                    continue;
                }
                Err(ApiError::PreconditionFailed) if if_match.is_none() => {
                    return Err(crate::store::write_conflict())
                }
                other => other?,
            }
        }
        let moved: Vec<MemberId> = moves.iter().map(|m| m.member.id.clone()).collect();
        memberships::apply(store, key, req, &id, moves).await?;
        if !versioned {
            // Its members alone, after they moved: concurrent changes of different members
            // commute, and each member's write carries its change (`scimGroups`) and its
            // `member.updated`.
            store.touch_group(&after).await?;
        }
        // A new mapping written while these members moved may have been read by neither
        // this request nor the mapping's own pass: the members are decided again.
        let org_now = organization(store, key).await?;
        if org_now.scim_group_roles != org.scim_group_roles
            || org_now.scim_role() != org.scim_role()
        {
            let members = store.members_by_ids(org_id, &moved).await?;
            memberships::decide_roles(store, key, req, members, &org_now).await?;
        }
        let Some(now) = store.group(org_id, &id).await? else {
            // Deleted while its members were written: whoever joined leaves again.
            leave_all(store, key, req, &after).await?;
            return Err(ApiError::NotFound);
        };
        let members = member_ids(store, &now).await?;
        return Ok((now, members));
    }
}

/// Every member still in a group leaves it (a deleted group's stragglers).
async fn leave_all(
    store: &impl Store,
    key: &ApiKey,
    req: &ApiRequest,
    group: &Group,
) -> Result<(), ApiError> {
    let left = member_ids(store, group).await?;
    if left.is_empty() {
        return Ok(());
    }
    let org = &key.organization_id;
    let moves = memberships::moves_between(store, org, &left, &[], Vec::new()).await?;
    memberships::apply(store, key, req, &group.id, moves).await
}

/// Refuses a group that would hold more than [`MAX_GROUP_MEMBERS`] (one that holds more
/// already may keep them, and shrink).
fn too_many(wanted: &[String], now: usize) -> Result<(), ApiError> {
    if wanted.len() > MAX_GROUP_MEMBERS && wanted.len() > now {
        return Err(invalid(
            "invalidValue",
            format!(
                "A group holds at most {MAX_GROUP_MEMBERS} members; this change would make it \
                 {}. Nothing of this request was applied.",
                wanted.len()
            ),
        ));
    }
    Ok(())
}

/// Ids in order, each once.
fn unique(ids: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// The SCIM ids of a group's members, by member id.
async fn member_ids(store: &impl Store, group: &Group) -> Result<Vec<String>, ApiError> {
    Ok(store
        .group_members(&group.organization_id, &group.id)
        .await?
        .into_iter()
        .map(|m| {
            ScimId {
                member: m.member_id,
                generation: m.scim_generation,
            }
            .to_string()
        })
        .collect())
}

/// The `{id}` of the path: what names no group is 404.
fn group_id(req: &ApiRequest) -> Result<GroupId, ApiError> {
    req.path_id
        .as_deref()
        .and_then(|id| GroupId::parse(id).ok())
        .ok_or(ApiError::NotFound)
}

fn group_response(
    status: u16,
    g: &Group,
    members: &[String],
    req: &ApiRequest,
    shown: &Projection,
) -> ApiResponse {
    scim::json(status, &shown.apply(to_group(g, Some(members), req)))
        .with_header("ETag", version_tag(g.version))
}

/// The filters a group list serves, each by a key or a short scan of the groups.
enum GroupFilter {
    DisplayName(String),
    ExternalId(String),
}

/// `displayName eq "…"` or `externalId eq "…"` (attribute and operator in any case).
fn group_filter(text: &str) -> Result<GroupFilter, ApiError> {
    let unsupported = || {
        invalid(
            "invalidFilter",
            format!(
                "Unsupported filter {text:?}: /Groups serves displayName eq \"…\" and \
                 externalId eq \"…\"."
            ),
        )
    };
    let mut words = text.trim().splitn(3, char::is_whitespace);
    let (attribute, op, literal) = (
        words.next().ok_or_else(unsupported)?,
        words.next().ok_or_else(unsupported)?,
        words.next().ok_or_else(unsupported)?.trim(),
    );
    if !op.eq_ignore_ascii_case("eq") {
        return Err(unsupported());
    }
    let value: String = serde_json::from_str(literal).map_err(|_| unsupported())?;
    let attribute = attribute
        .rsplit_once(':')
        .filter(|(urn, _)| urn.eq_ignore_ascii_case(scim::GROUP))
        .map_or(attribute, |(_, a)| a);
    match attribute.to_ascii_lowercase().as_str() {
        "displayname" => Ok(GroupFilter::DisplayName(value)),
        "externalid" => Ok(GroupFilter::ExternalId(value)),
        _ => Err(unsupported()),
    }
}

/// A group's entry in the organisation's history and feed: its name and externalId before
/// and after, and how many members it has after.
fn group_event(
    action: &str,
    actor: &Actor,
    req: &ApiRequest,
    before: Option<&Group>,
    after: &Group,
    members: usize,
) -> AuditEvent {
    let deleted = action == "group.deleted";
    let field = |f: fn(&Group) -> Value| {
        json!({
            "before": before.map_or(Value::Null, f),
            "after": if deleted { Value::Null } else { f(after) },
        })
    };
    let mut changes = Map::new();
    changes.insert("displayName".into(), field(|g| json!(g.display_name)));
    changes.insert("externalId".into(), field(|g| json!(g.external_id)));
    if !deleted {
        changes.insert(
            "memberCount".into(),
            json!({"before": Value::Null, "after": members}),
        );
    }
    AuditEvent {
        id: AuditEventId::generate(),
        organization_id: after.organization_id.clone(),
        member_id: None,
        role_id: None,
        webhook_id: None,
        group_id: Some(after.id.clone()),
        actor_key_id: actor.key_id.clone(),
        action: action.to_owned(),
        changes,
        justification: None,
        request_id: req.request_id.clone(),
        member_version: if deleted {
            after.version + 1
        } else {
            after.version
        },
        occurred_at: Timestamp::now(),
        resource: Some(json!({
            "id": after.id,
            "displayName": after.display_name,
            "externalId": after.external_id,
            "memberCount": if deleted { 0 } else { members },
            "version": after.version,
            "createdAt": after.created_at,
            "updatedAt": after.updated_at,
        })),
    }
}
