//! Domain → wire: the member as clients see it (camelCase, every seed's fields, never the
//! password or its hash).

use crate::model::*;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView<'a> {
    pub id: &'a MemberId,
    pub organization_id: &'a OrgId,
    pub user_id: &'a UserId,
    pub first_name: &'a Option<String>,
    pub last_name: &'a Option<String>,
    pub name: String,
    pub email: &'a Email,
    pub headline: &'a Option<String>,
    pub job_title: &'a Option<String>,
    pub role: &'a Role,
    pub hris_role: &'a Option<HrisRole>,
    pub department: Department,
    pub locations: &'a [MemberLocation],
    pub collaboration_rules: &'a [CollaborationRule],
    pub is_primary: bool,
    pub is_active: bool,
    pub deactivated: bool,
    pub fleet_dm_label_id: Option<u64>,
    pub settings: SettingsView<'a>,
    pub background_check_exempt: bool,
    pub background_check_exempt_reason: &'a Option<String>,
    pub background_check_requests: &'a [BackgroundCheckRequest],
    pub onboard_date: Option<Timestamp>,
    pub offboard_date: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
    /// Seed 000's shape.
    pub user: UserView<'a>,
    /// The identity provider's id (SCIM `externalId`); read-only here.
    pub external_id: &'a Option<String>,
    /// Deleted through SCIM: hidden from `/scim/v2` until provisioned again.
    pub scim_deprovisioned: bool,
    /// The identity provider's `userName` (SCIM); read-only here. Null until SCIM sets one.
    pub scim_user_name: &'a Option<String>,
    /// The SCIM groups the member belongs to (`/scim/v2/Groups`); read-only here.
    pub scim_groups: &'a [GroupId],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView<'a> {
    pub profile_picture_url: &'a Option<String>,
    pub default_location_id: &'a Option<String>,
    /// Whether a password is set; the password itself is write-only.
    pub has_password: bool,
}

#[derive(Serialize)]
pub struct UserView<'a> {
    pub id: &'a UserId,
    pub name: String,
    pub email: &'a Email,
}

pub fn member_view(m: &Member) -> MemberView<'_> {
    MemberView {
        id: &m.id,
        organization_id: &m.organization_id,
        user_id: &m.user_id,
        first_name: &m.first_name,
        last_name: &m.last_name,
        name: m.full_name(),
        email: &m.email,
        headline: &m.headline,
        job_title: &m.job_title,
        role: &m.role,
        hris_role: &m.hris_role,
        department: m.department,
        locations: &m.locations,
        collaboration_rules: &m.collaboration_rules,
        is_primary: m.is_primary,
        is_active: m.is_active,
        deactivated: !m.is_active,
        fleet_dm_label_id: m.fleet_dm_label_id,
        settings: SettingsView {
            profile_picture_url: &m.profile_picture_url,
            default_location_id: &m.default_location_id,
            has_password: m.password_hash.is_some(),
        },
        background_check_exempt: m.background_check_exempt,
        background_check_exempt_reason: &m.background_check_exempt_reason,
        background_check_requests: &m.background_check_requests,
        onboard_date: m.onboard_date,
        offboard_date: m.offboard_date,
        created_at: m.created_at,
        updated_at: m.updated_at,
        version: m.version,
        user: UserView {
            id: &m.user_id,
            name: m.full_name(),
            email: &m.email,
        },
        external_id: &m.external_id,
        scim_deprovisioned: m.scim_deprovisioned,
        scim_user_name: &m.scim_user_name,
        scim_groups: &m.scim_groups,
    }
}

/// The member as a JSON value.
pub fn member_json(m: &Member) -> serde_json::Value {
    serde_json::to_value(member_view(m)).unwrap_or(serde_json::Value::Null)
}

/// A strong ETag for a member version.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// The organisation's settings and the counts its rules rest on.
pub fn organization_json(o: &Organization) -> serde_json::Value {
    let c = o.counters;
    serde_json::json!({
        "id": o.id,
        "name": o.name,
        "hrisEnabled": o.hris_enabled,
        "backgroundCheckRequired": o.background_check_required,
        "primaryMemberId": o.primary_member_id,
        "scim": {
            "defaultRole": o.scim_role(),
            "defaultHrisRole": o.scim_hris_role(),
            "groupRoles": o.scim_group_roles,
        },
        "counts": {
            "activeAdmins": c.active_admins,
            "activeHrisAdmins": c.active_hris_admins,
            "activeAdminHrisAdmins": c.active_dual_admins,
            "activeNoAccess": c.active_no_access,
            "activeNoAccessHrisNoAccess": c.active_no_access_hris_no_access,
            "activeWithoutHrisRole": c.active_without_hris_role,
        },
        "createdAt": o.created_at,
        "updatedAt": o.updated_at,
        "version": o.version,
    })
}

/// What each built-in role is for.
pub fn builtin_role_description(role: BuiltinRole) -> &'static str {
    match role {
        BuiltinRole::Admin => "Full access, including members and organisation settings",
        BuiltinRole::Simple => "Standard access to the work assigned by collaboration rules",
        BuiltinRole::Reviewer => "Reviews the work assigned by collaboration rules",
        BuiltinRole::NoAccess => "No access to the application; HRIS only (needs HRIS enabled)",
    }
}

pub fn builtin_role_json(role: BuiltinRole) -> serde_json::Value {
    serde_json::json!({
        "id": role.as_str(),
        "name": role.as_str(),
        "description": builtin_role_description(role),
        "builtIn": true,
    })
}

pub fn custom_role_json(role: &CustomRole) -> serde_json::Value {
    serde_json::json!({
        "id": role.id,
        "name": role.name,
        "description": role.description,
        "builtIn": false,
        "activeHolders": role.active_holders,
        "holders": role.holders,
        "createdAt": role.created_at,
    })
}
