use super::*;
use serde_json::json;

fn errors(body: Value) -> Vec<(String, &'static str)> {
    match parse_member_patch(&body) {
        Ok(_) => vec![],
        Err(errors) => errors.into_iter().map(|e| (e.field, e.code)).collect(),
    }
}

#[test]
fn absent_null_and_value_are_three_different_things() {
    let p = parse_member_patch(&json!({"headline": null, "jobTitle": "Engineer"}))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.first_name, None);
    assert_eq!(p.headline, Some(None));
    assert_eq!(p.job_title, Some(Some("Engineer".to_owned())));
}

#[test]
fn every_bad_field_is_reported_with_its_name_and_code() {
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("not an object", json!([1]), "", "invalid_type"),
        (
            "unknown field",
            json!({"nickname": "x"}),
            "nickname",
            "unknown_field",
        ),
        (
            "read-only id",
            json!({"id": "mem_x"}),
            "id",
            "read_only_field",
        ),
        (
            "read-only version",
            json!({"version": 3}),
            "version",
            "read_only_field",
        ),
        (
            "read-only requests",
            json!({"backgroundCheckRequests": []}),
            "backgroundCheckRequests",
            "read_only_field",
        ),
        (
            "bad role",
            json!({"role": "owner"}),
            "role",
            "invalid_value",
        ),
        (
            "bad hris role",
            json!({"hrisRole": "boss"}),
            "hrisRole",
            "invalid_value",
        ),
        (
            "bad department",
            json!({"department": "sales"}),
            "department",
            "invalid_value",
        ),
        (
            "role is not nullable",
            json!({"role": null}),
            "role",
            "null_not_allowed",
        ),
        (
            "email syntax",
            json!({"email": "nope"}),
            "email",
            "invalid_format",
        ),
        ("email type", json!({"email": 7}), "email", "invalid_type"),
        (
            "blank name",
            json!({"firstName": "  "}),
            "firstName",
            "invalid_format",
        ),
        (
            "long name",
            json!({"firstName": "x".repeat(101)}),
            "firstName",
            "too_long",
        ),
        (
            "control chars",
            json!({"lastName": "a\u{0007}b"}),
            "lastName",
            "invalid_format",
        ),
        (
            "fleet label zero",
            json!({"fleetDmLabelId": 0}),
            "fleetDmLabelId",
            "out_of_range",
        ),
        (
            "fleet label text",
            json!({"fleetDmLabelId": "1"}),
            "fleetDmLabelId",
            "invalid_type",
        ),
        (
            "date",
            json!({"onboardDate": "2026-13-01"}),
            "onboardDate",
            "invalid_format",
        ),
        (
            "location role",
            json!({"locations": [{"locationId": "l1", "role": ["owner"]}]}),
            "locations[0].role[0]",
            "invalid_value",
        ),
        (
            "location without id",
            json!({"locations": [{"role": ["admin"]}]}),
            "locations[0].locationId",
            "required",
        ),
        (
            "location no roles",
            json!({"locations": [{"locationId": "l1", "role": []}]}),
            "locations[0].role",
            "required",
        ),
        (
            "location dup role",
            json!({"locations": [{"locationId": "l1", "role": ["admin", "admin"]}]}),
            "locations[0].role[1]",
            "duplicate",
        ),
        (
            "rule role",
            json!({"collaborationRules": [{"role": "boss"}]}),
            "collaborationRules[0].role",
            "invalid_value",
        ),
        (
            "rule unknown key",
            json!({"collaborationRules": [{"role": "simple", "x": 1}]}),
            "collaborationRules[0].x",
            "unknown_field",
        ),
        (
            "settings unknown",
            json!({"settings": {"theme": "dark"}}),
            "settings.theme",
            "unknown_field",
        ),
        (
            "short password",
            json!({"settings": {"password": "short"}}),
            "settings.password",
            "invalid_format",
        ),
        (
            "picture url",
            json!({"settings": {"profilePictureUrl": "ftp://x"}}),
            "settings.profilePictureUrl",
            "invalid_format",
        ),
        (
            "locations null",
            json!({"locations": null}),
            "locations",
            "null_not_allowed",
        ),
        (
            "too many locations",
            json!({"locations": vec![json!({"locationId": "l", "role": ["admin"]}); MAX_LOCATIONS + 1]}),
            "locations",
            "too_many_items",
        ),
        (
            "contradiction",
            json!({"isActive": true, "deactivated": true}),
            "deactivated",
            "conflicting_fields",
        ),
        (
            "foreign org id shape",
            json!({"organizationId": "mem_1"}),
            "organizationId",
            "invalid_format",
        ),
    ];
    for (name, body, field, code) in cases {
        let got = errors(body);
        assert!(
            got.iter().any(|(f, c)| f == field && *c == code),
            "{name}: expected {field}/{code}, got {got:?}"
        );
    }
}

#[test]
fn invalid_enum_errors_list_the_allowed_values() {
    let Err(errs) = parse_member_patch(&json!({"department": "sales"})) else {
        panic!("accepted")
    };
    assert!(
        errs[0]
            .message
            .contains("none, admin, gov, hr, it, itsm, qms"),
        "{}",
        errs[0].message
    );
}

#[test]
fn deactivated_is_the_opposite_view_of_is_active() {
    let p = parse_member_patch(&json!({"deactivated": true})).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.is_active, Some(false));
    let p = parse_member_patch(&json!({"isActive": false, "deactivated": true}))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.is_active, Some(false));
}

#[test]
fn the_password_never_shows_in_debug_output() {
    let p = parse_member_patch(&json!({"settings": {"password": "hunter2hunter2"}}))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!format!("{p:?}").contains("hunter2"));
}
