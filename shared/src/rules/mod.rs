//! The SPEC's rules that can be decided from one member and its organisation, as pure
//! functions. Rules that involve other members (last admin, unique email, single primary)
//! are enforced by the store's conditional transactions; see `store::dynamo`.

use crate::error::{ApiError, FieldError};
use crate::input::{MemberPatch, Secret};
use crate::model::*;

/// A member as a write would leave it, plus what only the audit event keeps.
#[derive(Debug, Clone)]
pub struct Draft {
    /// A new password is in it as [`PasswordHash::pending`]: see [`hash_password`].
    pub member: Member,
    /// Seed 000: the exemption's justification goes into the audit log only.
    pub justification: Option<String>,
    pub password_changed: bool,
    /// The new password, to hash once the change will be written.
    pub password: Option<Secret>,
}

/// Hashes the draft's new password into `member` (argon2id: tens of milliseconds and
/// megabytes, so only for a change that passed every check and will be written).
pub fn hash_password(member: &mut Member, password: Option<Secret>) -> Result<(), ApiError> {
    if let Some(secret) = password {
        member.password_hash = Some(PasswordHash::hash(secret.expose()).map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::Internal
        })?);
    }
    Ok(())
}

/// Builds a new member from a create body: the required fields, then the patch applied to a
/// blank member, then every rule checked.
pub fn new_member(
    patch: MemberPatch,
    org: &Organization,
    now: Timestamp,
) -> Result<Draft, ApiError> {
    let mut missing = Vec::new();
    if patch.email.is_none() {
        missing.push(FieldError::new("email", "required", "email is required"));
    }
    if patch.role.is_none() {
        missing.push(FieldError::new("role", "required", "role is required"));
    }
    let has_name = matches!(patch.name, Some(Some(_))) || matches!(patch.first_name, Some(Some(_)));
    if !has_name {
        missing.push(FieldError::new(
            "firstName",
            "required",
            "firstName (or name) is required",
        ));
    }
    let (Some(email), Some(role), true) =
        (patch.email.clone(), patch.role.clone(), missing.is_empty())
    else {
        return Err(ApiError::Validation(missing));
    };
    let blank = Member {
        id: MemberId::generate(),
        organization_id: org.id.clone(),
        user_id: patch.user_id.clone().unwrap_or_else(UserId::generate),
        first_name: None,
        last_name: None,
        name_override: None,
        email,
        headline: None,
        job_title: None,
        role,
        hris_role: None,
        department: Department::None,
        locations: Vec::new(),
        collaboration_rules: Vec::new(),
        is_primary: false,
        is_active: true,
        fleet_dm_label_id: None,
        profile_picture_url: None,
        default_location_id: None,
        password_hash: None,
        background_check_exempt: false,
        background_check_exempt_reason: None,
        background_check_requests: Vec::new(),
        onboard_date: None,
        offboard_date: None,
        created_at: now,
        updated_at: now,
        version: 1,
        external_id: None,
        scim_deprovisioned: false,
        scim_user_name: None,
        scim_generation: 0,
        scim_department: None,
        scim_emails: None,
        scim_groups: Vec::new(),
    };
    apply(patch, &blank, org, now)
}

/// Applies a patch to a member and checks the result. Pure: a new password is left pending.
pub fn apply(
    patch: MemberPatch,
    current: &Member,
    org: &Organization,
    now: Timestamp,
) -> Result<Draft, ApiError> {
    if let Some(given) = &patch.organization_id {
        if *given != org.id {
            return Err(ApiError::rule(
                "organization_mismatch",
                Some("organizationId"),
                "organizationId may only be the caller's own organisation",
            ));
        }
    }
    let mut m = current.clone();
    fn set<T>(slot: &mut T, value: Option<T>) {
        if let Some(v) = value {
            *slot = v;
        }
    }
    set(&mut m.user_id, patch.user_id);
    set(&mut m.first_name, patch.first_name);
    set(&mut m.last_name, patch.last_name);
    set(&mut m.name_override, patch.name);
    set(&mut m.email, patch.email);
    set(&mut m.headline, patch.headline);
    set(&mut m.job_title, patch.job_title);
    set(&mut m.role, patch.role);
    set(&mut m.hris_role, patch.hris_role);
    set(
        &mut m.department,
        patch.department.map(|d| d.unwrap_or(Department::None)),
    );
    set(&mut m.locations, patch.locations);
    set(&mut m.collaboration_rules, patch.collaboration_rules);
    set(&mut m.is_primary, patch.is_primary);
    set(&mut m.is_active, patch.is_active);
    set(&mut m.fleet_dm_label_id, patch.fleet_dm_label_id);
    set(&mut m.profile_picture_url, patch.profile_picture_url);
    set(&mut m.default_location_id, patch.default_location_id);
    set(&mut m.onboard_date, patch.onboard_date);
    set(&mut m.offboard_date, patch.offboard_date);
    set(&mut m.created_at, patch.created_at);
    set(&mut m.external_id, patch.external_id);
    set(&mut m.scim_deprovisioned, patch.scim_deprovisioned);
    // A member that is active again is back in SCIM, whichever API reactivated it, under a
    // new SCIM id: the one deleted answers 404 for ever (RFC 7644 §3.6).
    if m.is_active {
        m.scim_deprovisioned = false;
    }
    if current.scim_deprovisioned && !m.scim_deprovisioned {
        m.scim_generation = current.scim_generation.saturating_add(1);
    }
    if let Some(user_name) = patch.scim_user_name {
        m.scim_user_name = Some(user_name);
    }
    set(&mut m.scim_department, patch.scim_department);
    set(&mut m.scim_emails, patch.scim_emails);
    // A member SCIM wrote shows SCIM's emails as sent while the one that is its email (else
    // the userName) still is; once a /v1 write changed the email, the email alone.
    if m.scim_user_name.is_some() {
        let emails = m.scim_emails.as_deref().unwrap_or_default();
        let address = chosen_email(emails)
            .map(|e| e.value.trim())
            .unwrap_or(m.user_name());
        if normalize_identifier(address) != m.email.normalized() {
            m.scim_emails = Some(vec![ScimEmail {
                value: m.email.as_str().to_owned(),
                kind: Some("work".into()),
                primary: Some(true),
            }]);
        }
    }
    set(&mut m.scim_groups, patch.scim_groups);
    decide_role(&mut m, current, org)?;
    // The department's spelling is shown only while it still names the department.
    if m.scim_department
        .as_deref()
        .is_some_and(|d| Department::parse(&d.trim().to_lowercase()) != Some(m.department))
    {
        m.scim_department = None;
    }

    // Rule 7: an exemption needs a reason; leaving it clears reason and justification.
    set(
        &mut m.background_check_exempt,
        patch.background_check_exempt,
    );
    let mut justification = patch
        .background_check_exempt_justification
        .clone()
        .flatten();
    if m.background_check_exempt {
        set(
            &mut m.background_check_exempt_reason,
            patch.background_check_exempt_reason,
        );
        if m.background_check_exempt_reason.is_none() {
            return Err(ApiError::rule(
                "exemption_reason_required",
                Some("backgroundCheckExemptReason"),
                "backgroundCheckExempt: true needs a backgroundCheckExemptReason",
            ));
        }
    } else {
        let gave_reason = matches!(patch.background_check_exempt_reason, Some(Some(_)));
        if gave_reason || justification.is_some() {
            return Err(ApiError::rule(
                "exemption_not_set",
                Some("backgroundCheckExempt"),
                "a reason or justification needs backgroundCheckExempt: true",
            ));
        }
        m.background_check_exempt_reason = None;
        justification = None;
    }

    let password_changed = patch.password.is_some();
    let mut password = None;
    if let Some(given) = patch.password {
        m.password_hash = given.as_ref().map(|_| PasswordHash::pending());
        password = given;
    }
    m.updated_at = now;
    check(&m, org)?;
    Ok(Draft {
        member: m,
        justification,
        password_changed,
        password,
    })
}

/// While the organisation maps groups to roles, the mapping decides the role of a member
/// under the identity provider (`Organization::decided_role_after`), on every write of it: a
/// write that asks for another role than the member's and the mapping's is refused with 409
/// `role_managed_by_idp` (a body that re-sends the current role, as a PUT does, passes).
/// Collaboration rules the decided role may not hold are dropped with the change of role
/// (in the write's history), so that no group change is refused for them.
fn decide_role(m: &mut Member, current: &Member, org: &Organization) -> Result<(), ApiError> {
    let Some(decided) = org.decided_role_after(m, Some(current)) else {
        return Ok(());
    };
    if m.role != decided && m.role != current.role {
        return Err(ApiError::Conflict {
            code: "role_managed_by_idp",
            detail: format!(
                "This member's role is decided by the organisation's group → role mapping \
                 (scim.groupRoles): it is {} from its groups. Change its groups in the identity \
                 provider, or the mapping.",
                decided.as_str()
            ),
            field: Some("role"),
        });
    }
    if m.role != decided {
        let allowed = allowed_collaboration_roles(&decided);
        m.collaboration_rules.retain(|r| allowed.contains(&r.role));
    }
    m.role = decided;
    Ok(())
}

/// Rules 2 and 3 for a change of the organisation's counters by `delta`: refused when it
/// would leave no active admin or, while HRIS is on, no active HRIS admin or no active
/// admin + HRIS admin. The store enforces the same as conditions on the organisation item;
/// this decides which rule a refusal was (and refuses early when the read already shows it).
pub fn counter_violation(
    counters: Counters,
    delta: Counters,
    hris_enabled: bool,
) -> Option<ApiError> {
    let after = |now: i64, d: i64| d < 0 && now + d < 1;
    if after(counters.active_admins, delta.active_admins) {
        return Some(ApiError::rule(
            "last_admin",
            Some("role"),
            "this change would leave the organisation without an active admin",
        ));
    }
    if hris_enabled && after(counters.active_hris_admins, delta.active_hris_admins) {
        return Some(ApiError::rule(
            "last_hris_admin",
            Some("hrisRole"),
            "this change would leave the organisation without an active HRIS admin while HRIS is enabled",
        ));
    }
    if hris_enabled && after(counters.active_dual_admins, delta.active_dual_admins) {
        return Some(ApiError::rule(
            "last_admin_hris_admin",
            Some("role"),
            "this change would leave no active member who is both admin and hris_admin while HRIS is enabled",
        ));
    }
    None
}

/// Rule 6 for an update: the primary member stays primary until another takes over.
pub fn check_primary_kept(before: &Member, after: &Member) -> Result<(), ApiError> {
    if before.is_primary && !after.is_primary {
        return Err(ApiError::rule(
            "primary_required",
            Some("isPrimary"),
            "the primary member stays primary until another member is made primary",
        ));
    }
    Ok(())
}

/// Whether an update changes nothing that is stored (then nothing is written).
pub fn is_noop(before: &Member, draft: &Draft) -> bool {
    let mut after = draft.member.clone();
    after.updated_at = before.updated_at;
    after == *before && !draft.password_changed && draft.justification.is_none()
}

/// The collaboration-rule roles a member role may hold (SPEC vocabularies).
pub fn allowed_collaboration_roles(role: &Role) -> &'static [CollaborationRole] {
    use CollaborationRole as C;
    match role {
        Role::Builtin(BuiltinRole::Admin) => &[C::Admin],
        Role::Builtin(BuiltinRole::Reviewer) => &[C::Reviewer],
        Role::Builtin(BuiltinRole::NoAccess) => &[],
        // A custom role counts as a non-admin: the same as `simple`.
        Role::Builtin(BuiltinRole::Simple) | Role::Custom(_) => {
            &[C::RecruitingAdmin, C::HiringManager, C::Simple, C::Reviewer]
        }
    }
}

/// Every rule that one member and its organisation decide.
pub fn check(m: &Member, org: &Organization) -> Result<(), ApiError> {
    // Rule 4.
    if m.role == Role::Builtin(BuiltinRole::NoAccess) {
        if !org.hris_enabled {
            return Err(ApiError::rule(
                "no_access_requires_hris",
                Some("role"),
                "role no_access is not allowed while HRIS is deactivated",
            ));
        }
        if m.hris_role == Some(HrisRole::HrisNoAccess) {
            return Err(ApiError::rule(
                "no_access_combination",
                Some("hrisRole"),
                "role no_access together with hrisRole hris_no_access is not allowed",
            ));
        }
    }
    // Rule 3: every active member has an HRIS role while HRIS is on (seed 002).
    if org.hris_enabled && m.is_active && m.hris_role.is_none() {
        return Err(ApiError::rule(
            "hris_role_required",
            Some("hrisRole"),
            "hrisRole is required while the HRIS application is enabled",
        ));
    }
    let allowed = allowed_collaboration_roles(&m.role);
    if let Some((i, rule)) = m
        .collaboration_rules
        .iter()
        .enumerate()
        .find(|(_, r)| !allowed.contains(&r.role))
    {
        let allowed: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        return Err(ApiError::Validation(vec![FieldError::new(
            format!("collaborationRules[{i}].role"),
            "collaboration_rule_not_allowed",
            format!(
                "a member with role {} may hold {} collaboration rules, not {}",
                m.role.as_str(),
                if allowed.is_empty() {
                    "no".to_owned()
                } else {
                    allowed.join(", ")
                },
                rule.role
            ),
        )]));
    }
    if m.scim_groups.len() > MAX_GROUPS_PER_MEMBER {
        return Err(ApiError::rule(
            "too_many_groups",
            Some("scimGroups"),
            format!("a member belongs to at most {MAX_GROUPS_PER_MEMBER} SCIM groups"),
        ));
    }
    // Rule 8.
    if let (Some(on), Some(off)) = (m.onboard_date, m.offboard_date) {
        if off < on {
            return Err(ApiError::rule(
                "offboard_before_onboard",
                Some("offboardDate"),
                "offboardDate must not be before onboardDate",
            ));
        }
    }
    for (i, loc) in m.locations.iter().enumerate() {
        if m.locations[..i]
            .iter()
            .any(|l| l.location_id == loc.location_id)
        {
            return Err(ApiError::Validation(vec![FieldError::new(
                format!("locations[{i}].locationId"),
                "duplicate",
                format!("location {} appears more than once", loc.location_id),
            )]));
        }
    }
    if let Some(default) = &m.default_location_id {
        if !m.locations.iter().any(|l| &l.location_id == default) {
            return Err(ApiError::rule(
                "default_location_not_assigned",
                Some("settings.defaultLocationId"),
                "settings.defaultLocationId must be one of the member's own locations",
            ));
        }
    }
    // Rule 6 (the part one member decides): the primary member is an active one.
    if m.is_primary && !m.is_active {
        return Err(ApiError::rule(
            "primary_must_be_active",
            Some("isPrimary"),
            "the primary member cannot be deactivated",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
