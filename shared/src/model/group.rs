//! SCIM Groups: a group of members that an identity provider pushes, and the organisation's
//! ordered mapping from groups to roles (`scim.groupRoles`).

use super::{GroupId, Member, MemberId, OrgId, Role, Timestamp};
use serde::{Deserialize, Serialize};

/// The most groups one member belongs to: its group ids live on the member item, and a
/// write that takes it out of all of them (a SCIM deletion) deletes that many membership
/// items beside the member's other items, within a transaction's 100.
pub const MAX_GROUPS_PER_MEMBER: usize = 50;

/// The most members one request moves into or out of groups (or whose role a new mapping
/// changes): each is a member write, and the request must answer within API Gateway's 30 s.
pub const MAX_MOVES: usize = 2_000;

/// The most members a group holds, so that a group's answer (every member listed) stays
/// well inside a Lambda answer's 6 MB.
pub const MAX_GROUP_MEMBERS: usize = 10_000;

/// A group as the identity provider pushed it. Its members are not on it: each membership
/// is an item of its own, written with the member (`store::dynamo::member_items`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: GroupId,
    pub organization_id: OrgId,
    /// Unique per organisation, case-insensitively (a guard item).
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Moves with every change of the group: its name, its externalId or its members.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A member of a group: its id, and its SCIM generation when it joined (a member leaves
/// every group when deleted through SCIM, the only way its SCIM id changes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    pub member_id: MemberId,
    #[serde(default)]
    pub scim_generation: u32,
}

/// One entry of `scim.groupRoles`: members of `group_id` get `role`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRole {
    pub group_id: GroupId,
    pub role: Role,
}

/// The role an ordered group → role mapping decides for a member: the role of the first
/// entry whose group the member belongs to, else `default`. `None` when the mapping is
/// empty or the member is not under the identity provider: never provisioned through SCIM
/// and in no group, now nor (`before`, for a write) before it; then the member's role is its
/// own. A member a write takes out of its last group is still decided by that write (it
/// gets `default`), so leaving a group always takes its role away.
pub fn decided_role(
    mapping: &[GroupRole],
    default: Role,
    m: &Member,
    before: Option<&Member>,
) -> Option<Role> {
    let under_idp = m.scim_user_name.is_some()
        || !m.scim_groups.is_empty()
        || before.is_some_and(|b| !b.scim_groups.is_empty());
    if mapping.is_empty() || !under_idp {
        return None;
    }
    Some(
        mapping
            .iter()
            .find(|e| m.scim_groups.contains(&e.group_id))
            .map_or(default, |e| e.role.clone()),
    )
}
