//! The in-memory store's groups: a group's name unique case-insensitively, its members
//! read from the members' `scimGroups` (as DynamoDB's membership items mirror them).

use super::State;
use crate::error::ApiError;
use crate::model::*;

/// The group of `org` named `name` (any case), other than `except`.
pub(super) fn named<'a>(
    s: &'a State,
    org: &OrgId,
    name: &str,
    except: Option<&GroupId>,
) -> Option<&'a Group> {
    let name = name.to_lowercase();
    s.groups.values().find(|g| {
        g.organization_id == *org && Some(&g.id) != except && g.display_name.to_lowercase() == name
    })
}

/// The organisation's groups, oldest first.
pub(super) fn of(s: &State, org: &OrgId) -> Vec<Group> {
    let mut groups: Vec<Group> = s
        .groups
        .values()
        .filter(|g| g.organization_id == *org)
        .cloned()
        .collect();
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    groups
}

/// A group's members, by member id.
pub(super) fn members(s: &State, org: &OrgId, id: &GroupId) -> Vec<Membership> {
    let mut out: Vec<Membership> = s
        .members
        .values()
        .filter(|m| m.organization_id == *org && m.scim_groups.contains(id))
        .map(|m| Membership {
            member_id: m.id.clone(),
            scim_generation: m.scim_generation,
        })
        .collect();
    out.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    out
}

pub(super) fn create(s: &mut State, group: &Group, audit: &AuditEvent) -> Result<(), ApiError> {
    if named(s, &group.organization_id, &group.display_name, None).is_some() {
        return Err(name_taken());
    }
    let key = (group.organization_id.clone(), group.id.clone());
    s.groups.insert(key, group.clone());
    s.audit.push(audit.clone());
    Ok(())
}

pub(super) fn update(
    s: &mut State,
    before: &Group,
    after: &Group,
    audit: &AuditEvent,
) -> Result<(), ApiError> {
    let key = (after.organization_id.clone(), after.id.clone());
    let current = s.groups.get(&key).ok_or(ApiError::NotFound)?;
    if current.version != before.version {
        return Err(ApiError::PreconditionFailed);
    }
    if named(
        s,
        &after.organization_id,
        &after.display_name,
        Some(&after.id),
    )
    .is_some()
    {
        return Err(name_taken());
    }
    s.groups.insert(key, after.clone());
    s.audit.push(audit.clone());
    Ok(())
}

fn name_taken() -> ApiError {
    ApiError::Conflict {
        code: "group_name_taken",
        detail: String::new(),
        field: Some("displayName"),
    }
}
