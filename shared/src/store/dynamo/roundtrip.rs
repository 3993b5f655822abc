//! The property "whatever the API accepts, it reads back": generated member bodies at the
//! edges of every writable field (calendar ends and UTC offsets, maximum lengths and counts,
//! any Unicode scalar the text rules let through, absent vs null) go through
//! parse → rules → stored record → DynamoDB item → record → wire, and every accepted value
//! comes back equal to what was sent in its stored form (text in NFC, trimmed). Timestamps
//! are also generated outside their range, and must then be refused (never stored, never a
//! panic). And any text at all is either refused or stored as a fixed point of the rules.

use super::records::{from_item, read_member, MemberRecord};
use crate::input::{parse_member_patch, MAX_LOCATIONS};
use crate::model::*;
use crate::rules::{allowed_collaboration_roles, new_member};
use crate::wire::member_json;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use unicode_normalization::UnicodeNormalization;

/// How many bodies `make test` sends through the round trip (`PROPTEST_CASES` overrides).
const CASES: u32 = 512;

/// Whether free text may hold `c` (docs/api.md "Text"): no control, format (but the zero-width
/// joiners), separator, private-use or blank character.
fn allowed_in_text(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    let refused = matches!(
        c.general_category(),
        G::Control | G::LineSeparator | G::ParagraphSeparator | G::PrivateUse | G::Surrogate
    ) || (c.general_category() == G::Format && !matches!(c, '\u{200C}' | '\u{200D}'))
        || matches!(c as u32, 0x2800 | 0x3164 | 0xFFA0 | 0x115F | 0x1160);
    !refused
}

/// Free text as `input::text(max)` takes it: 1 to `max` Unicode scalars, each one allowed
/// and unchanged by NFC on its own (so the stored NFC form is never longer), not blank.
/// Half the time exactly `max` long.
fn text(max: usize) -> BoxedStrategy<String> {
    // Others become a letter (a filter would reject too often at 2,000 chars).
    let scalar = any::<char>().prop_map(|c| {
        let stable = c.to_string().nfc().eq(std::iter::once(c));
        if allowed_in_text(c) && stable {
            c
        } else {
            'x'
        }
    });
    let len = prop_oneof![1..=max.min(8), Just(max)];
    len.prop_flat_map(move |n| proptest::collection::vec(scalar.clone(), n))
        .prop_map(|chars| chars.into_iter().collect::<String>())
        .prop_filter("not blank", |s| !s.trim().is_empty())
        .boxed()
}

/// Text already in its stored form (NFC, trimmed): for the members of sets, which must stay
/// distinct once stored.
fn stored_text(max: usize) -> BoxedStrategy<String> {
    text(max)
        .prop_map(|s| s.nfc().collect::<String>().trim().to_owned())
        .boxed()
}

/// An RFC 3339 instant anywhere in years 0000–9999 with any offset up to ±23:59 and 0–9
/// fraction digits: in range or not once moved to UTC.
fn instant() -> impl Strategy<Value = (String, bool)> {
    (
        prop_oneof![Just(0i32), Just(1), Just(9999), 0i32..=9999],
        1u8..=12,
        1u8..=28,
        (0u8..24, 0u8..60, 0u8..60),
        prop_oneof![Just(String::new()), "\\.[0-9]{1,9}"],
        prop_oneof![Just(0i32), -1439i32..=1439],
    )
        .prop_map(|(year, month, day, (h, m, s), fraction, offset)| {
            let zone = match offset {
                0 => "Z".to_owned(),
                o => format!(
                    "{}{:02}:{:02}",
                    if o < 0 { '-' } else { '+' },
                    o.abs() / 60,
                    o.abs() % 60
                ),
            };
            let text =
                format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{fraction}{zone}");
            // The UTC year, decided without the code under test: local minus offset.
            let minutes = i64::from(h) * 60 + i64::from(m) - i64::from(offset);
            let utc_year = match (month, day, minutes) {
                (1, 1, ..0) => year - 1,
                (12, 31, 1440..) => year + 1,
                _ => year,
            };
            (text, Timestamp::YEARS.contains(&utc_year))
        })
}

fn department() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        proptest::sample::select(Department::ALLOWED).prop_map(|d| json!(d)),
    ]
}

/// A role and collaboration rules it may hold, up to the maximum count.
fn role_and_rules() -> impl Strategy<Value = (Role, Vec<Value>)> {
    let role = prop_oneof![
        Just(Role::Builtin(BuiltinRole::Admin)),
        Just(Role::Builtin(BuiltinRole::Simple)),
        Just(Role::Builtin(BuiltinRole::Reviewer)),
        "[A-Za-z0-9]{1,64}".prop_map(|s| Role::Custom(
            CustomRoleId::parse(&format!("rol_{s}")).unwrap_or_else(|e| panic!("{e}"))
        )),
    ];
    role.prop_flat_map(|role| {
        let allowed = allowed_collaboration_roles(&role);
        let rule = (
            proptest::sample::select(allowed),
            proptest::collection::hash_set(stored_text(128), 0..4),
            proptest::collection::hash_set(stored_text(128), 0..4),
        )
            .prop_map(|(r, departments, locations)| {
                json!({"role": r.as_str(), "departments": departments, "locations": locations})
            });
        let count = prop_oneof![0usize..3, Just(crate::input::MAX_RULES)];
        (
            Just(role),
            count.prop_flat_map(move |n| proptest::collection::vec(rule.clone(), n)),
        )
    })
}

fn locations() -> impl Strategy<Value = Vec<Value>> {
    let roles =
        proptest::sample::subsequence(LocationRole::ALLOWED, 1..=LocationRole::ALLOWED.len());
    let count = prop_oneof![0usize..3, Just(MAX_LOCATIONS)];
    count.prop_flat_map(move |n| {
        proptest::collection::hash_map(stored_text(128), roles.clone(), n).prop_map(|m| {
            m.into_iter()
                .map(|(id, role)| json!({"locationId": id, "role": role}))
                .collect()
        })
    })
}

/// One optional field: absent, null (where the field takes null) or a value.
fn field(
    value: impl Strategy<Value = Value>,
    nullable: bool,
) -> impl Strategy<Value = Option<Value>> {
    let null = if nullable { Some(Value::Null) } else { None };
    prop_oneof![
        1 => Just(None),
        1 => Just(null),
        3 => value.prop_map(Some),
    ]
}

/// A create body: the required fields and any mix of the optional ones.
fn body() -> impl Strategy<Value = (Value, Vec<bool>)> {
    (
        (
            text(100),
            field(text(100).prop_map(Value::from), true),
            field(text(200).prop_map(Value::from), true),
            field(text(200).prop_map(Value::from), true),
            field(text(200).prop_map(Value::from), true),
            "[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@([a-z0-9]{1,63}\\.){1,3}[a-z]{2,63}"
                .prop_filter("at most 254 characters", |e| e.len() <= Email::MAX_LEN),
        ),
        (role_and_rules(), locations(), department()),
        (
            field(
                prop_oneof![Just(1u64), Just(i64::MAX as u64), 1..=i64::MAX as u64]
                    .prop_map(Value::from),
                true,
            ),
            any::<bool>(),
            text(100),
            text(2000),
        ),
        (instant(), instant(), instant(), any::<(bool, bool, bool)>()),
    )
        .prop_map(
            |(
                (first, last, name, headline, job_title, email),
                ((role, rules), locations, department),
                (label, exempt, reason, justification),
                (a, b, created, (with_dates, with_created, default_location)),
            )| {
                let mut o = Map::new();
                o.insert("firstName".into(), json!(first));
                o.insert("email".into(), json!(email));
                o.insert("role".into(), json!(role.as_str()));
                for (k, v) in [
                    ("lastName", last),
                    ("name", name),
                    ("headline", headline),
                    ("jobTitle", job_title),
                    ("fleetDmLabelId", label),
                ] {
                    if let Some(v) = v {
                        o.insert(k.into(), v);
                    }
                }
                if !rules.is_empty() {
                    o.insert("collaborationRules".into(), json!(rules));
                }
                if let Some(first) = locations.first() {
                    if default_location {
                        o.insert(
                            "settings".into(),
                            json!({"defaultLocationId": first["locationId"]}),
                        );
                    }
                    o.insert("locations".into(), json!(locations));
                }
                o.insert("department".into(), department);
                if exempt {
                    o.insert("backgroundCheckExempt".into(), json!(true));
                    o.insert("backgroundCheckExemptReason".into(), json!(reason));
                    o.insert(
                        "backgroundCheckExemptJustification".into(),
                        json!(justification),
                    );
                }
                let mut in_range = Vec::new();
                if with_dates {
                    // Rule 8 wants offboard ≥ onboard: order them by their instant.
                    let (mut on, mut off) = (a, b);
                    let key = |t: &(String, bool)| Timestamp::parse(&t.0).ok();
                    if key(&on) > key(&off) {
                        std::mem::swap(&mut on, &mut off);
                    }
                    o.insert("onboardDate".into(), json!(on.0));
                    o.insert("offboardDate".into(), json!(off.0));
                    in_range.extend([on.1, off.1]);
                }
                if with_created {
                    o.insert("createdAt".into(), json!(created.0));
                    in_range.push(created.1);
                }
                (Value::Object(o), in_range)
            },
        )
}

/// Every string of a body as it is stored: NFC, trimmed.
fn normalised(v: &Value) -> Value {
    match v {
        Value::String(s) => json!(s.nfc().collect::<String>().trim()),
        Value::Array(items) => Value::Array(items.iter().map(normalised).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalised(v))).collect())
        }
        other => other.clone(),
    }
}

/// What a field reads back as, for comparison with what was sent: instants as instants.
fn same(field: &str, sent: &Value, read: &Value) -> bool {
    match field {
        "onboardDate" | "offboardDate" | "createdAt" => {
            let t = |v: &Value| v.as_str().and_then(|s| Timestamp::parse(s).ok());
            t(sent).is_some() && t(sent) == t(read)
        }
        "department" if sent.is_null() => read == "none",
        // null clears the explicit name: the full name is derived again.
        "name" if sent.is_null() => read.is_string(),
        "collaborationRules" | "locations" => {
            // Sets in the body (departments, locations, roles) come back as sent, in order.
            sent == read
        }
        _ => sent == read,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(CASES),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn whatever_a_create_accepts_reads_back_through_an_item((body, in_range) in body()) {
        let org = Organization::new("Acme", false);
        let parsed = parse_member_patch(&body);
        let all_in_range = in_range.iter().all(|ok| *ok);
        prop_assert_eq!(parsed.is_ok(), all_in_range, "accepted iff every instant is in years 0001-9999: {:?}", parsed.as_ref().err());
        let Ok(patch) = parsed else { return Ok(()) };
        let draft = new_member(patch, &org, Timestamp::now());
        prop_assert!(draft.is_ok(), "rules refused a valid body: {:?}", draft.err());
        let Ok(draft) = draft else { return Ok(()) };
        let member = draft.member;

        let item = MemberRecord::item(&member);
        prop_assert!(item.is_ok());
        let Ok(item) = item else { return Ok(()) };
        let direct = read_member(item.clone());
        prop_assert!(direct.as_ref().is_ok_and(|m| *m == member), "the list path reads it back too");
        let back = from_item::<MemberRecord>(item).map(|r| r.member);
        prop_assert!(back.is_ok(), "the stored item does not read back");
        let Ok(back) = back else { return Ok(()) };
        prop_assert_eq!(&back, &member);

        let wire = member_json(&back);
        let sent = normalised(&body).as_object().cloned().unwrap_or_default();
        for (field, value) in &sent {
            match field.as_str() {
                "email" => prop_assert_eq!(&wire["email"], &json!(value.as_str().map(str::trim))),
                "backgroundCheckExemptJustification" => {} // audit event only (seed 000)
                "settings" => prop_assert_eq!(&wire["settings"]["defaultLocationId"], &value["defaultLocationId"]),
                _ => prop_assert!(same(field, value, &wire[field.as_str()]), "{field}: sent {value}, read {}", wire[field.as_str()]),
            }
        }
        // Read back once more from the wire form's text: what a client stores and compares.
        let text = wire.to_string();
        let reparsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        prop_assert_eq!(reparsed, wire);
    }

    #[test]
    fn any_text_is_refused_or_stored_in_a_form_that_reads_back_the_same(s in any::<String>()) {
        if let Ok(stored) = crate::text::free_text(&s, 2000) {
            prop_assert_eq!(&stored, &s.nfc().collect::<String>().trim().to_owned());
            prop_assert!(stored.chars().all(allowed_in_text), "{:?}", stored);
            prop_assert_eq!(crate::text::free_text(&stored, 2000), Ok(stored.clone()));
        }
    }
}
