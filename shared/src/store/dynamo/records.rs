//! The stored record types: how each item of the table is laid out, built from the
//! model, and read back.

use super::{keys, Item};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The stamp of an item that holds counters (the organisation item, a counter shard): how
/// many writes moved its counters (`membersctl recount` compares it).
pub(super) const COUNTER_WRITES: &str = "counterWrites";

#[derive(Serialize, Deserialize)]
pub(super) struct MemberRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(rename = "emailNormalized")]
    email_normalized: String,
    #[serde(rename = "GSI1PK")]
    gsi1pk: String,
    #[serde(rename = "GSI1SK")]
    gsi1sk: String,
    /// GSI2–GSI4 (role, HRIS role, department) hold active members only (a sparse index): a
    /// deactivation takes the member out of them instead of moving it to an `inactive`
    /// partition, and lists of inactive members by these filters read GSI1 (list_plan.rs).
    /// GSI3 and GSI4 also leave out members without an HRIS role and of department `none`.
    #[serde(rename = "GSI2PK", default, skip_serializing_if = "Option::is_none")]
    gsi2pk: Option<String>,
    #[serde(rename = "GSI2SK", default, skip_serializing_if = "Option::is_none")]
    gsi2sk: Option<String>,
    #[serde(rename = "GSI3PK", default, skip_serializing_if = "Option::is_none")]
    gsi3pk: Option<String>,
    #[serde(rename = "GSI3SK", default, skip_serializing_if = "Option::is_none")]
    gsi3sk: Option<String>,
    #[serde(rename = "GSI4PK", default, skip_serializing_if = "Option::is_none")]
    gsi4pk: Option<String>,
    #[serde(rename = "GSI4SK", default, skip_serializing_if = "Option::is_none")]
    gsi4sk: Option<String>,
    #[serde(rename = "GSI5PK")]
    gsi5pk: String,
    #[serde(rename = "GSI5SK")]
    gsi5sk: String,
    #[serde(flatten)]
    pub(super) member: Member,
}

/// How member items, outbox entries and idempotency records are written. This version reads
/// both; earlier ones read only `Full`.
///
/// - `Compact` (the default): a member's item without its empty attributes (`null`s, empty
///   lists) and, while deactivated, without the keys of GSI2–GSI4 (sparse), nor those of
///   GSI3 without an HRIS role or GSI4 in department `none`; an outbox entry
///   without its member's `null`s (marked `nullsOut`, restored on read) and its `changes`
///   and `resource` deflated into `payload`; an idempotency record's body deflated into
///   `bodyDeflated` (deflated.rs). A member then fits the 1 KB a write unit buys, in the
///   table and in each index's copy, and a create's items fit 3 KB (docs/design.md, What a
///   write costs).
/// - `Full`: as earlier versions wrote them. An upgrade from such a version first deploys
///   with `ITEM_LAYOUT=full` (the template's `ItemLayout`), so that no function of the
///   earlier version meets a compact item, then switches to `compact`. Rolling back is safe
///   only while `full` is written: nothing rewrites compact items back (docs/operations.md, "Upgrading a deployment").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemLayout {
    Compact,
    Full,
}

impl ItemLayout {
    /// `ITEM_LAYOUT` (`compact` or `full`), read once; anything else is `compact`, logged.
    pub fn current() -> ItemLayout {
        static LAYOUT: std::sync::OnceLock<ItemLayout> = std::sync::OnceLock::new();
        *LAYOUT.get_or_init(|| match std::env::var("ITEM_LAYOUT").as_deref() {
            Ok("full") => ItemLayout::Full,
            Ok("compact") | Err(_) => ItemLayout::Compact,
            Ok(other) => {
                tracing::warn!(
                    value = other,
                    "ITEM_LAYOUT is compact or full; using compact"
                );
                ItemLayout::Compact
            }
        })
    }
}

impl MemberRecord {
    /// The member's item as written, in the layout of this deployment.
    pub(super) fn item(m: &Member) -> Result<Item, ApiError> {
        Self::item_in(m, ItemLayout::current())
    }

    pub(super) fn item_in(m: &Member, layout: ItemLayout) -> Result<Item, ApiError> {
        let mut item = to_item(&MemberRecord::new(m, layout))?;
        if layout == ItemLayout::Compact {
            item.retain(|_, v| match v {
                AttributeValue::Null(_) => false,
                AttributeValue::L(l) => !l.is_empty(),
                _ => true,
            });
        }
        Ok(item)
    }

    fn new(m: &Member, layout: ItemLayout) -> Self {
        let (pk, sk) = keys::member(&m.organization_id, &m.id);
        let [by_status, by_role, by_hris, by_department] = keys::member_indexes(m);
        let id = m.id.to_string();
        let full = layout == ItemLayout::Full;
        let indexed = m.is_active || full;
        // GSI3 and GSI4 leave out the members of the common value (no HRIS role,
        // department `none`): lists filtered by it read GSI1 (list_plan.rs).
        let by_hris_indexed = indexed && (m.hris_role.is_some() || full);
        let by_department_indexed = indexed && (m.department != Department::None || full);
        MemberRecord {
            pk,
            sk,
            entity: "member".into(),
            email_normalized: m.email.normalized(),
            gsi1pk: by_status.clone(),
            gsi1sk: id.clone(),
            gsi2pk: indexed.then_some(by_role),
            gsi2sk: indexed.then(|| id.clone()),
            gsi3pk: by_hris_indexed.then_some(by_hris),
            gsi3sk: by_hris_indexed.then(|| id.clone()),
            gsi4pk: by_department_indexed.then_some(by_department),
            gsi4sk: by_department_indexed.then(|| id.clone()),
            gsi5pk: by_status,
            gsi5sk: format!("{}#{id}", m.updated_at),
            member: m.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct OrgRecord {
    #[serde(rename = "PK")]
    pub(super) pk: String,
    #[serde(rename = "SK")]
    pub(super) sk: String,
    pub(super) entity: String,
    #[serde(flatten)]
    pub(super) org: Organization,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EmailGuardRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    pub(super) member_id: MemberId,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LocationRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    pub(super) location_id: String,
    member_id: MemberId,
    is_active: bool,
    pub(super) role: Vec<LocationRole>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ApiKeyRecord {
    #[serde(rename = "PK")]
    pub(super) pk: String,
    #[serde(rename = "SK")]
    pub(super) sk: String,
    pub(super) entity: String,
    #[serde(rename = "GSI1PK")]
    pub(super) gsi1pk: String,
    #[serde(rename = "GSI1SK")]
    pub(super) gsi1sk: String,
    #[serde(flatten)]
    pub(super) key: ApiKey,
}

/// The guard of one value of the identifier namespace, held by `m`.
pub(super) fn identifier_guard(m: &Member, normalized: &str) -> EmailGuardRecord {
    let (pk, sk) = keys::identifier(&m.organization_id, normalized);
    EmailGuardRecord {
        pk,
        sk,
        entity: "emailGuard".into(),
        member_id: m.id.clone(),
    }
}

/// The guard of a member's SCIM `externalId` (a member without one has none).
pub(super) fn external_id_guard(m: &Member) -> Option<EmailGuardRecord> {
    let (pk, sk) = keys::external_id(&m.organization_id, m.external_id.as_deref()?);
    Some(EmailGuardRecord {
        pk,
        sk,
        entity: "externalIdGuard".into(),
        member_id: m.id.clone(),
    })
}

pub(super) fn location_records(m: &Member) -> Vec<LocationRecord> {
    m.locations
        .iter()
        .map(|l| {
            let (pk, sk) = keys::location(&m.organization_id, &l.location_id, m.is_active, &m.id);
            LocationRecord {
                pk,
                sk,
                entity: "memberLocation".into(),
                location_id: l.location_id.clone(),
                member_id: m.id.clone(),
                is_active: m.is_active,
                role: l.role.clone(),
            }
        })
        .collect()
}

/// A member read straight from its item: the record's own attributes (keys, index keys,
/// `emailNormalized`) are skipped rather than buffered, as `#[serde(flatten)]` would.
pub(super) fn read_member(item: Item) -> Result<Member, ApiError> {
    from_item::<Member>(item)
}

pub(super) fn to_item<T: Serialize>(record: &T) -> Result<Item, ApiError> {
    serde_dynamo::to_item(record).map_err(|e| {
        tracing::error!(error = %e, "could not serialise a record");
        ApiError::Internal
    })
}

/// Never skips a corrupt item: it is an error, with its key in the log.
pub(super) fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, ApiError> {
    let key = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => "?".into(),
    };
    let (pk, sk) = (key("PK"), key("SK"));
    serde_dynamo::from_item(item).map_err(|e| {
        tracing::error!(pk = %redact_key(&pk), sk = %sk, error = %e, "corrupt item in the table");
        ApiError::Internal
    })
}

/// Keys of API-key and email-guard items carry a hash or an email: log only their kind.
fn redact_key(pk: &str) -> String {
    if pk.starts_with("APIKEY#") {
        "APIKEY#[redacted]".into()
    } else if let Some(at) = pk.find("#EMAIL#") {
        format!("{}#EMAIL#[redacted]", &pk[..at])
    } else {
        pk.to_owned()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::store::dynamo) fn member() -> Member {
        let now = Timestamp::now();
        let org = OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}"));
        Member {
            id: MemberId::parse("mem_1").unwrap_or_else(|e| panic!("{e}")),
            organization_id: org,
            user_id: UserId::generate(),
            first_name: Some("Ada".into()),
            last_name: None,
            name_override: None,
            email: Email::parse("Ada@Example.com").unwrap_or_else(|e| panic!("{e}")),
            headline: None,
            job_title: Some("Engineer".into()),
            role: Role::Builtin(BuiltinRole::Admin),
            hris_role: Some(HrisRole::HrisAdmin),
            department: Department::It,
            locations: vec![MemberLocation {
                location_id: "l1".into(),
                role: vec![LocationRole::Admin],
            }],
            collaboration_rules: vec![],
            is_primary: true,
            is_active: true,
            fleet_dm_label_id: Some(123),
            profile_picture_url: None,
            default_location_id: Some("l1".into()),
            password_hash: None,
            background_check_exempt: false,
            background_check_exempt_reason: None,
            background_check_requests: vec![],
            onboard_date: None,
            offboard_date: None,
            created_at: now,
            updated_at: now,
            version: 7,
            external_id: Some("00u1ab".into()),
            scim_deprovisioned: false,
            scim_user_name: Some("Ada_Lovelace".into()),
            scim_generation: 2,
            scim_department: Some("IT".into()),
            scim_emails: Some(vec![ScimEmail {
                value: "ada@example.com".into(),
                kind: Some("work".into()),
                primary: Some(true),
            }]),
            scim_groups: vec![GroupId::generate()],
        }
    }

    #[test]
    fn a_member_record_round_trips_through_an_item() {
        let m = member();
        let item =
            MemberRecord::item_in(&m, ItemLayout::Compact).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            item.get("PK"),
            Some(&AttributeValue::S("ORG#org_a#MEMBER#mem_1".into()))
        );
        assert_eq!(
            item.get("emailNormalized"),
            Some(&AttributeValue::S("ada@example.com".into()))
        );
        assert_eq!(
            item.get("GSI2PK"),
            Some(&AttributeValue::S("ORG#org_a#ROLE#admin#active".into()))
        );
        assert_eq!(item.get("version"), Some(&AttributeValue::N("7".into())));
        let back: MemberRecord = from_item(item).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(back.member, m);
    }

    /// An item's size as DynamoDB counts it (names and values; numbers ~1 byte per 2 digits).
    pub(in crate::store::dynamo) fn size(item: &Item) -> usize {
        fn value(v: &AttributeValue) -> usize {
            match v {
                AttributeValue::S(s) => s.len(),
                AttributeValue::N(n) => n.len().div_ceil(2) + 1,
                AttributeValue::B(b) => b.as_ref().len(),
                AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
                AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value(e)).sum::<usize>(),
                AttributeValue::M(m) => {
                    3 + m.iter().map(|(k, e)| 1 + k.len() + value(e)).sum::<usize>()
                }
                _ => 0,
            }
        }
        item.iter().map(|(k, v)| k.len() + value(v)).sum()
    }

    #[test]
    fn a_member_item_holds_no_empty_attribute_and_a_plain_member_fits_one_write_unit() {
        let mut m = member();
        m.locations.clear();
        m.external_id = None;
        m.fleet_dm_label_id = None;
        m.default_location_id = None;
        let item =
            MemberRecord::item_in(&m, ItemLayout::Compact).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(
            !item
                .values()
                .any(|v| matches!(v, AttributeValue::Null(_))
                    || v.as_l().is_ok_and(|l| l.is_empty())),
            "{item:?}"
        );
        // Every index (ALL) holds a copy: past 1 KB each write of it costs twice.
        assert!(size(&item) < 1024, "{} bytes: {item:?}", size(&item));
        let back: MemberRecord = from_item(item).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(back.member, m);
    }

    /// A member with every optional field unset.
    pub(in crate::store::dynamo) fn blank_member() -> Member {
        let mut m = member();
        (m.first_name, m.job_title, m.hris_role, m.fleet_dm_label_id) = (None, None, None, None);
        (m.default_location_id, m.external_id) = (None, None);
        (m.scim_user_name, m.scim_emails, m.scim_department) = (None, None, None);
        m
    }

    #[test]
    fn a_deactivated_member_leaves_the_sparse_indexes_unless_written_in_full() {
        let mut m = member();
        m.is_active = false;
        let has = |item: &Item, names: &[&str]| names.iter().all(|n| item.contains_key(*n));
        let sparse = ["GSI2PK", "GSI2SK", "GSI3PK", "GSI3SK", "GSI4PK", "GSI4SK"];
        let compact =
            MemberRecord::item_in(&m, ItemLayout::Compact).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(
            !sparse.iter().any(|n| compact.contains_key(*n)),
            "{compact:?}"
        );
        assert!(has(&compact, &["GSI1PK", "GSI1SK", "GSI5PK", "GSI5SK"]));
        // As older versions wrote it, which read `null`s and every index key.
        let full = MemberRecord::item_in(&m, ItemLayout::Full).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(has(&full, &sparse));
        assert_eq!(full.get("lastName"), Some(&AttributeValue::Null(true)));
        assert_eq!(
            full.get("GSI2PK"),
            Some(&AttributeValue::S("ORG#org_a#ROLE#admin#inactive".into()))
        );
        for item in [compact, full] {
            let back: MemberRecord = from_item(item).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(back.member, m);
        }
    }

    #[test]
    fn the_common_values_stay_out_of_the_hris_and_department_indexes() {
        let mut m = member();
        (m.hris_role, m.department) = (None, Department::None);
        let compact =
            MemberRecord::item_in(&m, ItemLayout::Compact).unwrap_or_else(|e| panic!("{e:?}"));
        for name in ["GSI3PK", "GSI3SK", "GSI4PK", "GSI4SK"] {
            assert!(!compact.contains_key(name), "{name}: {compact:?}");
        }
        assert!(compact.contains_key("GSI2PK") && compact.contains_key("GSI1PK"));
        let full = MemberRecord::item_in(&m, ItemLayout::Full).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            full.get("GSI3PK"),
            Some(&AttributeValue::S("ORG#org_a#HRIS#none#active".into()))
        );
        (m.hris_role, m.department) = (Some(HrisRole::HrisAdmin), Department::It);
        let compact =
            MemberRecord::item_in(&m, ItemLayout::Compact).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            compact.get("GSI3PK"),
            Some(&AttributeValue::S(
                "ORG#org_a#HRIS#hris_admin#active".into()
            ))
        );
        assert_eq!(
            compact.get("GSI4PK"),
            Some(&AttributeValue::S("ORG#org_a#DEPARTMENT#it#active".into()))
        );
    }

    #[test]
    fn counters_are_top_level_numbers_on_the_organisation_item() {
        let now = Timestamp::now();
        let org = Organization {
            id: OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}")),
            name: "A".into(),
            hris_enabled: false,
            background_check_required: true,
            counters: Counters {
                active_admins: 2,
                active_hris_admins: 1,
                active_dual_admins: 1,
                ..Counters::default()
            },
            primary_member_id: None,
            counter_shards: 0,
            version: 1,
            created_at: now,
            updated_at: now,
            scim_default_role: None,
            scim_default_hris_role: None,
            scim_group_roles: Vec::new(),
        };
        let item = to_item(&OrgRecord {
            pk: "ORG#org_a".into(),
            sk: "ORG".into(),
            entity: "organization".into(),
            org: org.clone(),
        })
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            item.get("activeAdmins"),
            Some(&AttributeValue::N("2".into()))
        );
        assert!(
            !item.contains_key("primaryMemberId"),
            "absent, so attribute_not_exists works"
        );
        let back: OrgRecord = from_item(item).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(back.org, org);
    }

    #[test]
    fn a_corrupt_item_is_an_error_not_a_skipped_row() {
        let mut item = MemberRecord::item_in(&member(), ItemLayout::Compact)
            .unwrap_or_else(|e| panic!("{e:?}"));
        item.insert("role".into(), AttributeValue::S("emperor".into()));
        assert!(matches!(
            from_item::<MemberRecord>(item),
            Err(ApiError::Internal)
        ));
    }

    #[test]
    fn secrets_in_keys_are_redacted_in_logs() {
        assert_eq!(redact_key("APIKEY#abcdef"), "APIKEY#[redacted]");
        assert_eq!(
            redact_key("ORG#org_a#EMAIL#a@b.co"),
            "ORG#org_a#EMAIL#[redacted]"
        );
        assert_eq!(
            redact_key("ORG#org_a#MEMBER#mem_1"),
            "ORG#org_a#MEMBER#mem_1"
        );
    }
}
