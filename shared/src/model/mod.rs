//! Domain types. Every value here is valid once constructed: ids, emails and vocabularies
//! are built only through `parse` (`values`), so the rest of the crate never re-checks them.

mod group;
mod identity;
mod values;

pub use group::*;
pub use identity::*;
pub use values::*;

use serde::{Deserialize, Serialize};

/// One of the member's locations and their roles there (seed 001's exact shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberLocation {
    pub location_id: String,
    pub role: Vec<LocationRole>,
}

/// A collaboration rule (seed 002): the member's role for some departments and locations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollaborationRule {
    pub role: CollaborationRole,
    pub departments: Vec<String>,
    pub locations: Vec<String>,
}

/// A background check requested for a member (read-only on this API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundCheckRequest {
    pub id: String,
    pub status: String,
    pub requested_at: Timestamp,
}

/// The tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub hris_enabled: bool,
    pub background_check_required: bool,
    /// Invariant data, kept in step with the members by the same transactions.
    #[serde(flatten)]
    pub counters: Counters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_member_id: Option<MemberId>,
    /// How many counter shards hold the counts that guard no rule of a single write
    /// (`Counters::sharded`); 0 for an organisation of an older version, whose counts all
    /// live on the organisation item until `membersctl recount` moves them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub counter_shards: u32,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// What a member provisioned through SCIM gets when the identity provider sends no role
    /// (default `simple`); built-in roles only, so that it can never name a deleted role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_default_role: Option<BuiltinRole>,
    /// The HRIS role such a member gets while HRIS is on (default `hris_employee`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_default_hris_role: Option<HrisRole>,
    /// `scim.groupRoles`: an ordered group → role mapping. While it has entries, it
    /// decides the role of every member under the identity provider ([`decided_role`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scim_group_roles: Vec<GroupRole>,
}

impl Organization {
    /// The role a SCIM-provisioned member gets when none is sent.
    pub fn scim_role(&self) -> BuiltinRole {
        self.scim_default_role.unwrap_or(BuiltinRole::Simple)
    }

    /// The role the group → role mapping decides for `m`, if it decides one.
    pub fn decided_role(&self, m: &Member) -> Option<Role> {
        self.decided_role_after(m, None)
    }

    /// [`decided_role`](Self::decided_role) for a write that turned `before` into `m`.
    pub fn decided_role_after(&self, m: &Member, before: Option<&Member>) -> Option<Role> {
        decided_role(
            &self.scim_group_roles,
            Role::Builtin(self.scim_role()),
            m,
            before,
        )
    }

    /// The HRIS role a SCIM-provisioned member gets when none is sent.
    pub fn scim_hris_role(&self) -> HrisRole {
        self.scim_default_hris_role
            .unwrap_or(HrisRole::HrisEmployee)
    }

    /// A new organisation with no members counted yet.
    pub fn new(name: impl Into<String>, hris_enabled: bool) -> Self {
        let now = Timestamp::now();
        Organization {
            id: OrgId::generate(),
            name: name.into(),
            hris_enabled,
            background_check_required: false,
            counters: Counters::default(),
            primary_member_id: None,
            counter_shards: 0,
            version: 1,
            created_at: now,
            updated_at: now,
            scim_default_role: None,
            scim_default_hris_role: None,
            scim_group_roles: Vec::new(),
        }
    }
}

/// Counts of active members the rules depend on (SPEC rules 2, 3 and 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub active_admins: i64,
    pub active_hris_admins: i64,
    pub active_dual_admins: i64,
    /// Active members with role `no_access`: HRIS cannot be switched off while there are any.
    #[serde(default)]
    pub active_no_access: i64,
    /// Active `no_access` + `hris_no_access` members: HRIS cannot be switched on while there are any.
    #[serde(default)]
    pub active_no_access_hris_no_access: i64,
    /// Active members without an `hrisRole`: HRIS cannot be switched on while there are any
    /// (rule 3), so that no member is ever stranded without the role HRIS requires.
    #[serde(default)]
    pub active_without_hris_role: i64,
    /// Members SCIM shows, active or not (all but the deprovisioned): its `totalResults`.
    #[serde(default)]
    pub scim_members: i64,
    /// Active members (every active member is shown by SCIM).
    #[serde(default)]
    pub active_members: i64,
}

impl Counters {
    /// The attribute names of the counters on the organisation item, with their values.
    pub fn fields(self) -> [(&'static str, i64); 8] {
        [
            ("activeAdmins", self.active_admins),
            ("activeHrisAdmins", self.active_hris_admins),
            ("activeDualAdmins", self.active_dual_admins),
            ("activeNoAccess", self.active_no_access),
            (
                "activeNoAccessHrisNoAccess",
                self.active_no_access_hris_no_access,
            ),
            ("activeWithoutHrisRole", self.active_without_hris_role),
            ("scimMembers", self.scim_members),
            ("activeMembers", self.active_members),
        ]
    }

    /// What one member contributes to the counters.
    pub fn of(is_active: bool, role: &Role, hris_role: Option<HrisRole>) -> Counters {
        if !is_active {
            return Counters::default();
        }
        let admin = role.is_admin();
        let hris_admin = hris_role == Some(HrisRole::HrisAdmin);
        let no_access = *role == Role::Builtin(BuiltinRole::NoAccess);
        Counters {
            active_admins: admin as i64,
            active_hris_admins: hris_admin as i64,
            active_dual_admins: (admin && hris_admin) as i64,
            active_no_access: no_access as i64,
            active_no_access_hris_no_access: (no_access
                && hris_role == Some(HrisRole::HrisNoAccess))
                as i64,
            active_without_hris_role: hris_role.is_none() as i64,
            scim_members: 0,
            active_members: 1,
        }
    }

    /// What a member contributes, from the only facts counted (`Member::counters`; the
    /// recount reads just these attributes).
    pub fn of_member(
        is_active: bool,
        role: &Role,
        hris_role: Option<HrisRole>,
        scim_deprovisioned: bool,
    ) -> Counters {
        Counters {
            scim_members: !scim_deprovisioned as i64,
            ..Counters::of(is_active, role, hris_role)
        }
    }

    pub fn plus(self, other: Counters) -> Counters {
        Counters {
            active_admins: self.active_admins + other.active_admins,
            active_hris_admins: self.active_hris_admins + other.active_hris_admins,
            active_dual_admins: self.active_dual_admins + other.active_dual_admins,
            active_no_access: self.active_no_access + other.active_no_access,
            active_no_access_hris_no_access: self.active_no_access_hris_no_access
                + other.active_no_access_hris_no_access,
            active_without_hris_role: self.active_without_hris_role
                + other.active_without_hris_role,
            scim_members: self.scim_members + other.scim_members,
            active_members: self.active_members + other.active_members,
        }
    }

    pub fn minus(self, other: Counters) -> Counters {
        self.plus(Counters {
            active_admins: -other.active_admins,
            active_hris_admins: -other.active_hris_admins,
            active_dual_admins: -other.active_dual_admins,
            active_no_access: -other.active_no_access,
            active_no_access_hris_no_access: -other.active_no_access_hris_no_access,
            active_without_hris_role: -other.active_without_hris_role,
            scim_members: -other.scim_members,
            active_members: -other.active_members,
        })
    }

    pub fn is_zero(self) -> bool {
        self == Counters::default()
    }

    /// The counts a single write's rule guards (rules 2 and 3: at least one admin, HRIS
    /// admin, dual admin remains): they live on the organisation item.
    pub fn guarded(self) -> Counters {
        Counters {
            active_admins: self.active_admins,
            active_hris_admins: self.active_hris_admins,
            active_dual_admins: self.active_dual_admins,
            ..Counters::default()
        }
    }

    /// The others: only the HRIS switch and the totals read them, so they live in counter
    /// shards, where writers of different members do not meet.
    pub fn sharded(self) -> Counters {
        self.minus(self.guarded())
    }

    /// The counter named `name` (an attribute of `fields`) at `value`, the others at 0.
    pub fn one(name: &str, value: i64) -> Counters {
        let mut c = Counters::default();
        let slot = match name {
            "activeAdmins" => &mut c.active_admins,
            "activeHrisAdmins" => &mut c.active_hris_admins,
            "activeDualAdmins" => &mut c.active_dual_admins,
            "activeNoAccess" => &mut c.active_no_access,
            "activeNoAccessHrisNoAccess" => &mut c.active_no_access_hris_no_access,
            "activeWithoutHrisRole" => &mut c.active_without_hris_role,
            "scimMembers" => &mut c.scim_members,
            "activeMembers" => &mut c.active_members,
            _ => return c,
        };
        *slot = value;
        c
    }

    /// Whether `name` (an attribute of `fields`) is one of the guarded counts.
    pub fn is_guarded(name: &str) -> bool {
        matches!(
            name,
            "activeAdmins" | "activeHrisAdmins" | "activeDualAdmins"
        )
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A member of an organisation, as stored (the password only as its hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: MemberId,
    pub organization_id: OrgId,
    pub user_id: UserId,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The full name when set explicitly; otherwise derived from first and last name.
    pub name_override: Option<String>,
    pub email: Email,
    pub headline: Option<String>,
    pub job_title: Option<String>,
    pub role: Role,
    pub hris_role: Option<HrisRole>,
    pub department: Department,
    #[serde(default)]
    pub locations: Vec<MemberLocation>,
    #[serde(default)]
    pub collaboration_rules: Vec<CollaborationRule>,
    pub is_primary: bool,
    pub is_active: bool,
    pub fleet_dm_label_id: Option<u64>,
    pub profile_picture_url: Option<String>,
    pub default_location_id: Option<String>,
    pub password_hash: Option<PasswordHash>,
    pub background_check_exempt: bool,
    pub background_check_exempt_reason: Option<String>,
    #[serde(default)]
    pub background_check_requests: Vec<BackgroundCheckRequest>,
    pub onboard_date: Option<Timestamp>,
    pub offboard_date: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
    /// The identity provider's id for this member (SCIM `externalId`), unique per
    /// organisation (a guard item) and case-sensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Deleted through SCIM (`DELETE /scim/v2/Users/{id}`): deactivated, hidden from SCIM
    /// (404 there) until the identity provider provisions its `userName` again. Cleared
    /// whenever the member becomes active again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scim_deprovisioned: bool,
    /// The identity provider's `userName` (SCIM), as it sent it: its identifier, not
    /// necessarily an address. Unique per organisation case-insensitively, in one namespace
    /// with the members' emails (see [`Member::identifiers`]). None until SCIM sets one:
    /// SCIM then shows the email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_user_name: Option<String>,
    /// How many times the member came back into SCIM after a SCIM deletion: part of its SCIM
    /// id (`scim::user::ScimId`), so that a deleted SCIM id is never served again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub scim_generation: u32,
    /// The enterprise `department` as the identity provider spelled it (`IT`, where the
    /// vocabulary has `it`): shown to SCIM while it still names `department`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_department: Option<String>,
    /// SCIM's `emails` as the identity provider sent them: shown to SCIM while the one
    /// [`chosen_email`] picks is still the member's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_emails: Option<Vec<ScimEmail>>,
    /// The SCIM groups the member belongs to, in the order it joined them; each has its
    /// membership item, written in the same transaction (at most
    /// [`MAX_GROUPS_PER_MEMBER`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scim_groups: Vec<GroupId>,
}

impl Member {
    /// `name` if set, else first and last name joined, else empty.
    pub fn full_name(&self) -> String {
        if let Some(name) = &self.name_override {
            return name.clone();
        }
        [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The SCIM `userName`: the one the identity provider set, else the email.
    pub fn user_name(&self) -> &str {
        self.scim_user_name
            .as_deref()
            .unwrap_or(self.email.as_str())
    }

    /// What the member holds in the organisation's identifier namespace, normalised: its
    /// email, and its SCIM userName when that is another value. No member's userName is
    /// another's email, so a lookup by either finds one member.
    pub fn identifiers(&self) -> Vec<(String, Identifier)> {
        let mut ids = vec![(self.email.normalized(), Identifier::Email)];
        if let Some(user_name) = &self.scim_user_name {
            let user_name = normalize_identifier(user_name);
            if user_name != ids[0].0 {
                ids.push((user_name, Identifier::UserName));
            }
        }
        ids
    }

    pub fn counters(&self) -> Counters {
        Counters::of_member(
            self.is_active,
            &self.role,
            self.hris_role,
            self.scim_deprovisioned,
        )
    }
}

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub organization_id: OrgId,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// Whether the key may do what `scope` covers: `w_members` implies `r_members` (every
    /// write answers with the member, so a writer reads anyway); `w_webhooks` implies
    /// `r_webhooks`. Webhook scopes are apart: a members key cannot add a webhook.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
            || (scope == Scope::ReadMembers && self.scopes.contains(&Scope::WriteMembers))
            || (scope == Scope::ReadWebhooks && self.scopes.contains(&Scope::WriteWebhooks))
    }
}

/// One entry of a member's change history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub organization_id: OrgId,
    /// The member changed; `None` for a change of the organisation itself.
    #[serde(default)]
    pub member_id: Option<MemberId>,
    /// The custom role created or deleted (`role.created`, `role.deleted`).
    #[serde(default)]
    pub role_id: Option<CustomRoleId>,
    /// The webhook created, changed, rotated, deleted or redelivered (`webhook.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<WebhookId>,
    /// The SCIM group created, changed or deleted (`group.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    pub actor_key_id: Option<ApiKeyId>,
    pub action: String,
    /// `{field: {before, after}}`, secrets already redacted.
    #[serde(default)]
    pub changes: serde_json::Map<String, serde_json::Value>,
    pub justification: Option<String>,
    pub request_id: Option<String>,
    /// The version of the member (or organisation) the change produced; 0 for role events
    /// (roles have no version).
    pub member_version: u64,
    pub occurred_at: Timestamp,
    /// The resource after the change in its API shape (secrets never in it), for the
    /// change event this entry also is (the outbox: `events`). Not part of the history's
    /// answers; absent in entries written before events existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<serde_json::Value>,
}

/// A custom role of an organisation (seed 000: a member's role may be a custom role id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomRole {
    pub id: CustomRoleId,
    pub organization_id: OrgId,
    pub name: String,
    pub description: Option<String>,
    /// Active members holding the role, kept by the same transactions that give or take it.
    #[serde(default)]
    pub active_holders: i64,
    /// Members holding the role, active or deactivated: the role can be deleted only at 0.
    #[serde(default)]
    pub holders: i64,
    /// How many holder shards count its holders (each member's own, as the organisation's
    /// counter shards); 0 for a role of an older version, counted on its item.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub holder_shards: u32,
    pub created_at: Timestamp,
}

/// Which members a list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    Active,
    Inactive,
    All,
}

/// GET /v1/members: filters (all optional, combined with AND), page size and position.
#[derive(Clone, Debug, PartialEq)]
pub struct ListQuery {
    pub status: StatusFilter,
    pub role: Option<Role>,
    /// `Some(None)`: members without an HRIS role (`hrisRole=none`).
    pub hris_role: Option<Option<HrisRole>>,
    pub department: Option<Department>,
    pub location_id: Option<String>,
    pub email: Option<Email>,
    pub updated_since: Option<Timestamp>,
    /// Only the members SCIM shows (not deprovisioned).
    pub scim_only: bool,
    pub limit: usize,
    /// The sort key of the last position already returned (from the cursor).
    pub after: Option<String>,
}

impl ListQuery {
    /// Active members, no other filter, from the start.
    pub fn new(limit: usize) -> Self {
        ListQuery {
            status: StatusFilter::Active,
            role: None,
            hris_role: None,
            department: None,
            location_id: None,
            email: None,
            updated_since: None,
            scim_only: false,
            limit,
            after: None,
        }
    }

    /// Whether a member passes every filter.
    pub fn matches(&self, m: &Member) -> bool {
        let status = match self.status {
            StatusFilter::Active => m.is_active,
            StatusFilter::Inactive => !m.is_active,
            StatusFilter::All => true,
        };
        status
            && self.role.as_ref().is_none_or(|r| *r == m.role)
            && self.hris_role.is_none_or(|h| h == m.hris_role)
            && self.department.is_none_or(|d| d == m.department)
            && self
                .location_id
                .as_ref()
                .is_none_or(|l| m.locations.iter().any(|ml| &ml.location_id == l))
            && self
                .email
                .as_ref()
                .is_none_or(|e| e.normalized() == m.email.normalized())
            && self.updated_since.is_none_or(|t| m.updated_at >= t)
            && !(self.scim_only && m.scim_deprovisioned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_implies_reading_but_not_the_other_way() {
        let key = |scopes: Vec<Scope>| ApiKey {
            id: ApiKeyId::generate(),
            organization_id: OrgId::generate(),
            name: "k".into(),
            scopes,
            created_at: Timestamp::now(),
            revoked_at: None,
        };
        let writer = key(vec![Scope::WriteMembers]);
        assert!(writer.allows(Scope::ReadMembers) && writer.allows(Scope::WriteMembers));
        let reader = key(vec![Scope::ReadMembers]);
        assert!(reader.allows(Scope::ReadMembers) && !reader.allows(Scope::WriteMembers));
        assert!(!key(vec![]).allows(Scope::ReadMembers));
    }

    #[test]
    fn counters_count_only_active_members() {
        let admin = Role::Builtin(BuiltinRole::Admin);
        let c = Counters::of(true, &admin, Some(HrisRole::HrisAdmin));
        assert_eq!(
            (c.active_admins, c.active_hris_admins, c.active_dual_admins),
            (1, 1, 1)
        );
        assert_eq!(
            (c.active_no_access, c.active_no_access_hris_no_access),
            (0, 0)
        );
        let blocked = Counters::of(
            true,
            &Role::Builtin(BuiltinRole::NoAccess),
            Some(HrisRole::HrisNoAccess),
        );
        assert_eq!(
            (
                blocked.active_no_access,
                blocked.active_no_access_hris_no_access
            ),
            (1, 1)
        );
        assert!(blocked.minus(blocked).is_zero());
        assert!(Counters::of(false, &admin, Some(HrisRole::HrisAdmin)).is_zero());
        let custom = Role::Custom(CustomRoleId::parse("rol_x").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            Counters::of(true, &custom, None),
            Counters {
                active_without_hris_role: 1,
                active_members: 1,
                ..Counters::default()
            }
        );
        assert!(Counters::of(false, &custom, None).is_zero());
    }

    #[test]
    fn scim_counts_every_member_it_shows_active_or_not() {
        let body =
            serde_json::json!({"firstName": "A", "email": "a@example.com", "role": "simple"});
        let patch = crate::input::parse_member_patch(&body).unwrap_or_else(|e| panic!("{e:?}"));
        let org = Organization::new("A", false);
        let mut m = crate::rules::new_member(patch, &org, Timestamp::now())
            .unwrap_or_else(|e| panic!("{e:?}"))
            .member;
        let c = |m: &Member| (m.counters().scim_members, m.counters().active_members);
        assert_eq!(c(&m), (1, 1));
        m.is_active = false;
        assert_eq!(c(&m), (1, 0), "deactivated: still shown");
        m.scim_deprovisioned = true;
        assert_eq!(c(&m), (0, 0), "deleted through SCIM: not shown");
    }
}
