use super::*;
use crate::input::parse_member_patch;
use serde_json::{json, Value};

fn org(hris: bool) -> Organization {
    let mut org = Organization::new("Test", hris);
    org.id = OrgId::parse("org_test").unwrap_or_else(|e| panic!("{e}"));
    org
}

fn create(body: Value, hris: bool) -> Result<Draft, ApiError> {
    let patch = parse_member_patch(&body).map_err(ApiError::Validation)?;
    new_member(patch, &org(hris), Timestamp::now())
}

fn base() -> Value {
    json!({"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "role": "simple"})
}

fn with(extra: Value) -> Value {
    let mut b = base();
    if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(extra.clone());
    }
    b
}

#[test]
fn rules_table() {
    // (name, body, hris enabled, expected code or None for accepted)
    let cases: Vec<(&str, Value, bool, Option<&str>)> = vec![
        ("plain simple member", base(), false, None),
        (
            "missing email",
            json!({"firstName": "A", "role": "simple"}),
            false,
            Some("validation_failed"),
        ),
        (
            "missing role",
            json!({"firstName": "A", "email": "a@b.co"}),
            false,
            Some("validation_failed"),
        ),
        (
            "missing name",
            json!({"email": "a@b.co", "role": "simple"}),
            false,
            Some("validation_failed"),
        ),
        (
            "no_access while HRIS off",
            with(json!({"role": "no_access"})),
            false,
            Some("no_access_requires_hris"),
        ),
        (
            "no_access with hris_employee",
            with(json!({"role": "no_access", "hrisRole": "hris_employee"})),
            true,
            None,
        ),
        (
            "no_access + hris_no_access",
            with(json!({"role": "no_access", "hrisRole": "hris_no_access"})),
            true,
            Some("no_access_combination"),
        ),
        (
            "HRIS on needs hrisRole",
            base(),
            true,
            Some("hris_role_required"),
        ),
        (
            "HRIS on, inactive needs none",
            with(json!({"isActive": false})),
            true,
            None,
        ),
        (
            "admin holds admin rules",
            with(json!({"role": "admin", "collaborationRules": [{"role": "admin"}]})),
            false,
            None,
        ),
        (
            "admin holds no simple rule",
            with(json!({"role": "admin", "collaborationRules": [{"role": "simple"}]})),
            false,
            Some("validation_failed"),
        ),
        (
            "reviewer holds reviewer rules",
            with(json!({"role": "reviewer", "collaborationRules": [{"role": "reviewer"}]})),
            false,
            None,
        ),
        (
            "reviewer holds no hiring_manager",
            with(json!({"role": "reviewer", "collaborationRules": [{"role": "hiring_manager"}]})),
            false,
            Some("validation_failed"),
        ),
        (
            "simple holds the other four",
            with(
                json!({"collaborationRules": [{"role": "recruiting_admin"}, {"role": "hiring_manager"}, {"role": "simple"}, {"role": "reviewer", "departments": ["it"], "locations": ["l1"]}]}),
            ),
            false,
            None,
        ),
        (
            "simple holds no admin rule",
            with(json!({"collaborationRules": [{"role": "admin"}]})),
            false,
            Some("validation_failed"),
        ),
        (
            "exempt needs a reason",
            with(json!({"backgroundCheckExempt": true})),
            false,
            Some("exemption_reason_required"),
        ),
        (
            "exempt with reason",
            with(
                json!({"backgroundCheckExempt": true, "backgroundCheckExemptReason": "other", "backgroundCheckExemptJustification": "agency check"}),
            ),
            false,
            None,
        ),
        (
            "reason without exemption",
            with(json!({"backgroundCheckExemptReason": "other"})),
            false,
            Some("exemption_not_set"),
        ),
        (
            "offboard before onboard",
            with(
                json!({"onboardDate": "2026-02-01T00:00:00Z", "offboardDate": "2026-01-01T00:00:00Z"}),
            ),
            false,
            Some("offboard_before_onboard"),
        ),
        (
            "offboard after onboard",
            with(
                json!({"onboardDate": "2026-01-15T00:00:00.000Z", "offboardDate": "2026-04-30T00:00:00.000Z"}),
            ),
            false,
            None,
        ),
        (
            "default location not own",
            with(json!({"settings": {"defaultLocationId": "l9"}})),
            false,
            Some("default_location_not_assigned"),
        ),
        (
            "default location own",
            with(
                json!({"locations": [{"locationId": "l1", "role": ["viewer"]}], "settings": {"defaultLocationId": "l1"}}),
            ),
            false,
            None,
        ),
        (
            "duplicate location",
            with(
                json!({"locations": [{"locationId": "l1", "role": ["viewer"]}, {"locationId": "l1", "role": ["admin"]}]}),
            ),
            false,
            Some("validation_failed"),
        ),
        (
            "inactive primary",
            with(json!({"isPrimary": true, "isActive": false})),
            false,
            Some("primary_must_be_active"),
        ),
        (
            "foreign organisation",
            with(json!({"organizationId": "org_other"})),
            false,
            Some("organization_mismatch"),
        ),
        (
            "own organisation",
            with(json!({"organizationId": "org_test"})),
            false,
            None,
        ),
    ];
    for (name, body, hris, expected) in cases {
        let got = create(body, hris).err().map(|e| e.code());
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn counter_rules_name_the_rule_that_breaks() {
    let c = |a, h, d| Counters {
        active_admins: a,
        active_hris_admins: h,
        active_dual_admins: d,
        ..Counters::default()
    };
    let code = |counters, delta, hris| counter_violation(counters, delta, hris).map(|e| e.code());
    assert_eq!(code(c(1, 1, 1), c(-1, 0, 0), false), Some("last_admin"));
    assert_eq!(code(c(2, 1, 1), c(-1, 0, 0), false), None);
    assert_eq!(
        code(c(2, 1, 1), c(0, -1, -1), false),
        None,
        "HRIS off: HRIS counts may reach zero"
    );
    assert_eq!(
        code(c(2, 1, 1), c(0, -1, -1), true),
        Some("last_hris_admin")
    );
    assert_eq!(
        code(c(2, 2, 1), c(-1, 0, -1), true),
        Some("last_admin_hris_admin")
    );
    assert_eq!(
        code(c(1, 1, 1), c(1, 1, 1), true),
        None,
        "growth never breaks a rule"
    );
}

#[test]
fn a_new_member_is_filled_in_from_the_body() {
    let d = create(with(json!({"backgroundCheckExempt": true, "backgroundCheckExemptReason": "other", "backgroundCheckExemptJustification": "why", "settings": {"password": "s3cret-pass"}})), false)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(d.member.id.as_str().starts_with("mem_"));
    assert!(d.member.user_id.as_str().starts_with("usr_"));
    assert_eq!(d.member.full_name(), "Ada Lovelace");
    assert!(d.member.is_active && !d.member.is_primary);
    assert_eq!(d.member.department, Department::None);
    assert_eq!(d.justification.as_deref(), Some("why"));
    assert!(d.password_changed);
    // Checked, not hashed yet: argon2id runs only for a write (see hash_password).
    assert!(d
        .member
        .password_hash
        .as_ref()
        .is_some_and(|h| h.is_pending()));
    let mut member = d.member.clone();
    hash_password(&mut member, d.password).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(member
        .password_hash
        .as_ref()
        .is_some_and(|h| !h.is_pending() && h.verify("s3cret-pass")));
}

#[test]
fn leaving_the_exemption_clears_reason_and_justification() {
    let exempt = create(
        with(json!({"backgroundCheckExempt": true, "backgroundCheckExemptReason": "other"})),
        false,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let patch = parse_member_patch(&json!({"backgroundCheckExempt": false}))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let d = apply(patch, &exempt.member, &org(false), Timestamp::now())
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!d.member.background_check_exempt);
    assert_eq!(d.member.background_check_exempt_reason, None);
    assert_eq!(d.justification, None);
}
