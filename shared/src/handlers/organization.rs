use super::memberships;
use crate::audit::Actor;
use crate::error::ApiError;
use crate::http::{etag_matches, ApiRequest, ApiResponse};
use crate::input::{text, vocab, Reader};
use crate::model::*;
use crate::store::dynamo::hris_switch_refusal;
use crate::store::{Store, UpdateOrganization};
use crate::wire::{etag, organization_json};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// GET /v1/organization: the caller's organisation, with its `ETag`.
pub async fn get_organization<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::ReadMembers).await?;
    super::no_query(&req)?;
    let org = organization(store, &key.organization_id).await?;
    let tag = etag(org.version);
    if req
        .header("if-none-match")
        .is_some_and(|h| etag_matches(h, &tag))
    {
        return Ok(ApiResponse::empty(304).with_header("ETag", tag));
    }
    Ok(ApiResponse::json(200, &organization_json(&org)).with_header("ETag", tag))
}

/// PATCH /v1/organization: `name`, `hrisEnabled`, `backgroundCheckRequired`, `scim`
/// (`defaultRole`: a built-in role, `defaultHrisRole`: what SCIM-provisioned members get
/// when the identity provider sends none). Switching
/// HRIS on needs an active admin + hris_admin, and no active member without an HRIS role
/// or with no_access + hris_no_access; switching it off needs no active no_access member (rules 3 and 4). A refusal
/// names the members that block it. Conditional on the organisation's version.
pub async fn update_organization<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteMembers).await?;
    super::no_query(&req)?;
    let obj = super::object_body(&req)?;
    let mut r = Reader::new(&obj, "");
    r.check_keys(
        &["name", "hrisEnabled", "backgroundCheckRequired", "scim"],
        &[
            "id",
            "counts",
            "primaryMemberId",
            "createdAt",
            "updatedAt",
            "version",
        ],
    );
    let name = r.not_null("name", text(200));
    let hris = r.boolean("hrisEnabled");
    let background = r.boolean("backgroundCheckRequired");
    // What a member provisioned through SCIM gets when the identity provider sends no role.
    let (mut scim_role, mut scim_hris_role, mut group_roles) = (None, None, None);
    if let Some(scim) = r.object("scim") {
        let mut s = Reader::new(scim, "scim.");
        s.check_keys(&["defaultRole", "defaultHrisRole", "groupRoles"], &[]);
        group_roles = s.array("groupRoles", MAX_GROUP_ROLES, group_role);
        if let Some(twice) = group_roles.as_ref().and_then(|roles| {
            let ids: Vec<&GroupId> = roles.iter().map(|e: &GroupRole| &e.group_id).collect();
            ids.iter()
                .enumerate()
                .find(|(i, g)| ids[..*i].contains(g))
                .map(|(i, _)| i)
        }) {
            s.push(
                &format!("groupRoles[{twice}].groupId"),
                "duplicate",
                "each group appears once: the first match decides",
            );
        }
        // no_access needs HRIS, which may be switched off later: never a default that
        // could make every SCIM create fail.
        const DEFAULT_ROLES: &[&str] = &["admin", "simple", "reviewer"];
        scim_role = s.not_null(
            "defaultRole",
            vocab(
                |r| BuiltinRole::parse(r).filter(|r| *r != BuiltinRole::NoAccess),
                DEFAULT_ROLES,
            ),
        );
        scim_hris_role = s.not_null("defaultHrisRole", vocab(HrisRole::parse, HrisRole::ALLOWED));
        r.errors.extend(s.errors);
    }
    if !r.errors.is_empty() {
        return Err(ApiError::Validation(r.errors));
    }
    let before = organization(store, &key.organization_id).await?;
    let if_match = req.header("if-match");
    if if_match.is_some_and(|h| !etag_matches(h, &etag(before.version))) {
        return Err(ApiError::PreconditionFailed);
    }
    let mut after = before.clone();
    after.name = name.unwrap_or(after.name);
    after.hris_enabled = hris.unwrap_or(after.hris_enabled);
    after.background_check_required = background.unwrap_or(after.background_check_required);
    after.scim_default_role = scim_role.or(after.scim_default_role);
    after.scim_default_hris_role = scim_hris_role.or(after.scim_default_hris_role);
    // A mapping, or the default role it falls back to, sent: every member under the
    // identity provider gets the role it decides, checked whole before anything is written.
    let remap =
        group_roles.is_some() || (scim_role.is_some() && !before.scim_group_roles.is_empty());
    if let Some(roles) = group_roles {
        check_group_roles(store, &before.id, &roles).await?;
        after.scim_group_roles = roles;
    }
    let under_idp = match remap {
        true => memberships::under_idp(store, &before.id).await?,
        false => Vec::new(),
    };
    memberships::check_roles(&under_idp, &after)?;
    let decided = after.clone();
    if after == before {
        if remap {
            memberships::decide_roles(store, &key, &req, under_idp, &decided).await?;
        }
        return Ok(ApiResponse::json(200, &organization_json(&before))
            .with_header("ETag", etag(before.version)));
    }
    after.version += 1;
    after.updated_at = Timestamp::now();
    if after.hris_enabled != before.hris_enabled {
        if let Some(refusal) = hris_switch_refusal(&before.counters, after.hris_enabled) {
            return Err(name_blockers(store, &before.id, after.hris_enabled, refusal).await);
        }
    }
    let actor = Actor::of(&key, &req);
    let write = UpdateOrganization {
        audit: event(&actor, &before, &after),
        before,
        after,
        if_match: if_match.is_some(),
    };
    if let Err(refusal) = store.update_organization(&write).await {
        return Err(name_blockers(store, &write.after.id, write.after.hris_enabled, refusal).await);
    }
    tracing::info!(version = write.after.version, "organisation updated");
    if remap {
        memberships::decide_roles(store, &key, &req, under_idp, &decided).await?;
    }
    Ok(ApiResponse::json(200, &organization_json(&write.after))
        .with_header("ETag", etag(write.after.version)))
}

/// One entry of `scim.groupRoles`: `{groupId, role}`, the role a built-in one other than
/// `no_access` (which HRIS may forbid later) or a custom role's id.
fn group_role(r: &mut Reader<'_>, field: &str, v: &Value) -> Option<GroupRole> {
    let obj = v.as_object().filter(|o| o.len() == 2);
    let group_id = obj
        .and_then(|o| o.get("groupId"))
        .and_then(Value::as_str)
        .and_then(|g| GroupId::parse(g).ok());
    let role = obj
        .and_then(|o| o.get("role"))
        .and_then(Value::as_str)
        .and_then(|r| Role::parse(r).ok())
        .filter(|r| *r != Role::Builtin(BuiltinRole::NoAccess));
    match (group_id, role) {
        (Some(group_id), Some(role)) => Some(GroupRole { group_id, role }),
        _ => {
            r.push(
                field,
                "invalid_group_role",
                "each entry is {\"groupId\": \"grp_…\", \"role\": \"admin\" | \"simple\" | \"reviewer\" | a custom role's id}",
            );
            None
        }
    }
}

/// The most entries `scim.groupRoles` holds.
pub const MAX_GROUP_ROLES: usize = 100;

/// Every group and custom role a mapping names exists (422 `unknown_group` /
/// `unknown_role` otherwise).
async fn check_group_roles(
    store: &impl Store,
    org: &OrgId,
    roles: &[GroupRole],
) -> Result<(), ApiError> {
    for (i, entry) in roles.iter().enumerate() {
        if store.group(org, &entry.group_id).await?.is_none() {
            return Err(ApiError::rule(
                "unknown_group",
                Some("scim.groupRoles"),
                format!(
                    "scim.groupRoles[{i}]: no SCIM group has the id {}",
                    entry.group_id
                ),
            ));
        }
        if let Role::Custom(id) = &entry.role {
            if store.custom_role(org, id).await?.is_none() {
                return Err(ApiError::rule(
                    "unknown_role",
                    Some("scim.groupRoles"),
                    format!("scim.groupRoles[{i}]: no custom role has the id {id}"),
                ));
            }
        }
    }
    Ok(())
}

/// A deleted group leaves the organisation's `scim.groupRoles` (run again on a lost race).
pub(crate) async fn forget_group(
    store: &impl Store,
    key: &ApiKey,
    req: &ApiRequest,
    group: &GroupId,
) -> Result<(), ApiError> {
    for _ in 0..super::scim::ATTEMPTS {
        let before = organization(store, &key.organization_id).await?;
        if !before.scim_group_roles.iter().any(|e| e.group_id == *group) {
            return Ok(());
        }
        let mut after = before.clone();
        after.scim_group_roles.retain(|e| e.group_id != *group);
        after.version += 1;
        after.updated_at = Timestamp::now();
        let write = UpdateOrganization {
            audit: event(&Actor::of(key, req), &before, &after),
            before,
            after,
            if_match: false,
        };
        match store.update_organization(&write).await {
            Err(ApiError::PreconditionFailed) => continue,
            other => return other,
        }
    }
    Err(ApiError::Conflict {
        code: "organization_changed",
        detail: "The organisation kept changing while this group left its scim.groupRoles; \
                 delete the group again."
            .into(),
        field: None,
    })
}

/// The organisation with every count: both answers show them, and the HRIS switch's
/// rules read them.
async fn organization(store: &impl Store, id: &OrgId) -> Result<Organization, ApiError> {
    store.counted_organization(id).await?.ok_or_else(|| {
        tracing::error!("the API key's organisation does not exist");
        ApiError::Internal
    })
}

/// How many pages of each list `name_blockers` reads at most.
const NAMING_PAGES: usize = 5;

/// For `hris_blocked_by_members`, the answer lists (up to 100 of) the members in the way:
/// switching on, those without an HRIS role and the no_access + hris_no_access ones;
/// switching off, the no_access ones.
async fn name_blockers(store: &impl Store, org: &OrgId, on: bool, refusal: ApiError) -> ApiError {
    if refusal.code() != "hris_blocked_by_members" {
        return refusal;
    }
    let no_access = ListQuery {
        role: Some(Role::Builtin(BuiltinRole::NoAccess)),
        hris_role: on.then_some(Some(HrisRole::HrisNoAccess)),
        ..ListQuery::new(100)
    };
    let without_hris_role = ListQuery {
        hris_role: Some(None),
        ..ListQuery::new(100)
    };
    let queries = if on {
        vec![without_hris_role, no_access]
    } else {
        vec![no_access]
    };
    let mut ids: Vec<String> = Vec::new();
    for mut q in queries {
        // Members without an HRIS role are read from the status index with a filter
        // (store/dynamo/list_plan.rs): a page may come back short, even empty, with more
        // to read. A few pages name them in any organisation but the largest; the refusal
        // stands either way.
        for _ in 0..NAMING_PAGES {
            match store.list_members(org, &q).await {
                Ok(page) => {
                    ids.extend(page.members.iter().map(|m| m.id.to_string()));
                    match page.next {
                        Some(next) if ids.len() < 100 => q.after = Some(next),
                        _ => break,
                    }
                }
                Err(_) => return refusal,
            }
        }
    }
    ids.truncate(100);
    let ApiError::Rule {
        code,
        detail,
        field,
    } = refusal
    else {
        return refusal;
    };
    ApiError::Rule {
        code,
        detail: format!("{detail}: {}", ids.join(", ")),
        field,
    }
}

fn event(actor: &Actor, before: &Organization, after: &Organization) -> AuditEvent {
    let (old, new) = (organization_json(before), organization_json(after));
    let mut changes = Map::new();
    for field in ["name", "hrisEnabled", "backgroundCheckRequired", "scim"] {
        if old[field] != new[field] {
            changes.insert(
                field.into(),
                json!({"before": old[field], "after": new[field]}),
            );
        }
    }
    AuditEvent {
        id: AuditEventId::generate(),
        organization_id: after.id.clone(),
        member_id: None,
        role_id: None,
        webhook_id: None,
        group_id: None,
        actor_key_id: actor.key_id.clone(),
        action: "organization.updated".into(),
        changes,
        justification: None,
        request_id: actor.request_id.clone(),
        member_version: after.version,
        occurred_at: after.updated_at,
        resource: Some(new),
    }
}
