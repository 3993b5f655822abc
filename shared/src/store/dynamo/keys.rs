//! Key builders: the only place that knows how keys are spelled, and the names of the
//! global secondary indexes.

use crate::model::*;

pub fn org(org: &OrgId) -> (String, String) {
    (format!("ORG#{org}"), "ORG".into())
}
/// One of an organisation's counter shards, beside its item in its partition.
pub fn counter_shard(org: &OrgId, index: u32) -> (String, String) {
    (format!("ORG#{org}"), format!("COUNTS#{index:02}"))
}
/// One of a custom role's holder shards: all roles' in one partition of the organisation,
/// sorted by role, so that a page of roles reads its counts with one Query.
pub fn role_holders(org: &OrgId, role: &CustomRoleId, index: u32) -> (String, String) {
    (role_holders_partition(org), format!("{role}#{index:02}"))
}
pub fn role_holders_partition(org: &OrgId) -> String {
    format!("ORG#{org}#ROLEHOLDERS")
}
pub fn member(org: &OrgId, id: &MemberId) -> (String, String) {
    (format!("ORG#{org}#MEMBER#{id}"), "MEMBER".into())
}
pub fn email(org: &OrgId, email: &Email) -> (String, String) {
    identifier(org, &email.normalized())
}
/// The guard of a value in the organisation's identifier namespace (emails and SCIM
/// userNames, normalised: `Member::identifiers`). Its key says EMAIL: it was the emails'
/// guard before userNames joined them, and stored guards keep their keys.
pub fn identifier(org: &OrgId, normalized: &str) -> (String, String) {
    (format!("ORG#{org}#EMAIL#{normalized}"), "EMAIL".into())
}
/// A SCIM list's bookmark (`bookmarks.rs`): one partition per organisation, sorted by the
/// query's fingerprint, then the index (zero-padded).
pub fn scim_bookmark(org: &OrgId, fingerprint: &str, index: usize) -> (String, String) {
    (
        format!("ORG#{org}#SCIMBOOKMARKS"),
        format!("{fingerprint}#{index:020}"),
    )
}
/// The guard that keeps a SCIM `externalId` unique per organisation: keyed by its SHA-256
/// (an identity provider's id may hold any character, at any length up to its limit).
pub fn external_id(org: &OrgId, external_id: &str) -> (String, String) {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(external_id.as_bytes()));
    (format!("ORG#{org}#EXTERNALID#{hash}"), "EXTERNALID".into())
}
/// A SCIM group: all of an organisation's in one partition, by id (a consistent Query
/// lists them; each is an item of its own, so no write shares one).
pub fn group(org: &OrgId, id: &GroupId) -> (String, String) {
    (groups_of(org), id.to_string())
}
pub fn groups_of(org: &OrgId) -> String {
    format!("ORG#{org}#GROUPS")
}
/// The guard of a group's `displayName` (lower-cased: unique case-insensitively).
pub fn group_name(org: &OrgId, lower: &str) -> (String, String) {
    (format!("ORG#{org}#GROUPNAME#{lower}"), "GROUPNAME".into())
}
/// A member's membership of a group: one partition per group, sorted by member.
pub fn membership(org: &OrgId, group: &GroupId, member: &MemberId) -> (String, String) {
    (memberships_partition(org, group), member.to_string())
}
pub fn memberships_partition(org: &OrgId, group: &GroupId) -> String {
    format!("ORG#{org}#GROUP#{group}#MEMBERS")
}
pub fn role(org: &OrgId, id: &CustomRoleId) -> (String, String) {
    (format!("ORG#{org}#ROLE#{id}"), "ROLE".into())
}
/// A member's place in a location's list, by status like the member indexes.
pub fn location(org: &OrgId, location_id: &str, active: bool, id: &MemberId) -> (String, String) {
    (location_partition(org, location_id, active), id.to_string())
}
pub fn location_partition(org: &OrgId, location_id: &str, active: bool) -> String {
    format!("ORG#{org}#LOCATION#{location_id}#{}", status(active))
}
/// A member's history, or (`None`) the organisation's own.
pub fn audit(org: &OrgId, member: Option<&MemberId>, id: &AuditEventId) -> (String, String) {
    (audit_partition(org, member), id.to_string())
}
pub fn audit_partition(org: &OrgId, member: Option<&MemberId>) -> String {
    match member {
        Some(member) => format!("ORG#{org}#MEMBER#{member}#AUDIT"),
        None => format!("ORG#{org}#AUDIT"),
    }
}
/// The organisation's event feed: one item per place, and the counter.
pub fn feed_partition(org: &OrgId) -> String {
    format!("ORG#{org}#EVENTS")
}
/// The feed's counter: its sort key sorts before every place (`#` < `0`).
pub fn feed_sequence(org: &OrgId) -> (String, String) {
    (feed_partition(org), "#SEQUENCE".into())
}
pub fn api_key(hash: &str) -> (String, String) {
    (format!("APIKEY#{hash}"), "APIKEY".into())
}
pub fn idempotency(org: &OrgId, key: &str) -> (String, String) {
    (format!("ORG#{org}#IDEMPOTENCY#{key}"), "IDEMPOTENCY".into())
}
pub fn status(active: bool) -> &'static str {
    if active {
        "active"
    } else {
        "inactive"
    }
}
/// GSI partitions of a member: by status, role, HRIS role, department (each with status).
pub fn member_indexes(m: &Member) -> [String; 4] {
    let (org, active) = (&m.organization_id, m.is_active);
    [
        members_partition(org, active),
        role_partition(org, &m.role, active),
        hris_partition(org, m.hris_role, active),
        department_partition(org, m.department, active),
    ]
}
/// GSI1 and GSI5: an organisation's members by status.
pub fn members_partition(org: &OrgId, active: bool) -> String {
    format!("ORG#{org}#MEMBERS#{}", status(active))
}
/// GSI2.
pub fn role_partition(org: &OrgId, role: &Role, active: bool) -> String {
    format!("ORG#{org}#ROLE#{}#{}", role.as_str(), status(active))
}
/// GSI3 (`none` for members without an HRIS role).
pub fn hris_partition(org: &OrgId, hris: Option<HrisRole>, active: bool) -> String {
    format!(
        "ORG#{org}#HRIS#{}#{}",
        hris.map_or("none", |r| r.as_str()),
        status(active)
    )
}
/// GSI4.
pub fn department_partition(org: &OrgId, department: Department, active: bool) -> String {
    format!("ORG#{org}#DEPARTMENT#{department}#{}", status(active))
}
/// GSI1: an organisation's custom roles.
pub fn roles_of(org: &OrgId) -> String {
    format!("ORG#{org}#ROLES")
}
pub fn api_keys_of(org: &OrgId) -> String {
    format!("ORG#{org}#APIKEYS")
}

/// The global secondary indexes, their partition and sort key attribute names.
pub const INDEXES: &[(&str, &str, &str)] = &[
    ("GSI1", "GSI1PK", "GSI1SK"),
    ("GSI2", "GSI2PK", "GSI2SK"),
    ("GSI3", "GSI3PK", "GSI3SK"),
    ("GSI4", "GSI4PK", "GSI4SK"),
    ("GSI5", "GSI5PK", "GSI5SK"),
];

/// The outbox index (keys only, sparse): work the event pipeline has not finished. An audit
/// item is in it from its write until it has its place in the feed; a placed chunk of the
/// feed (`#PUBLISH#<first place>`) from its placing until its events are published. The
/// repair (`membersctl events repair`, the `repair-events` function) reads it.
pub const OUTBOX_INDEX: (&str, &str, &str) = ("GSI6", "GSI6PK", "GSI6SK");
pub fn outbox_partition(org: &OrgId) -> String {
    format!("OUTBOX#{org}")
}
/// The outbox index's sort key: milliseconds since 1970 (20 digits), so that "older than"
/// is a key condition.
pub fn outbox_at(millis: i64) -> String {
    format!("{:020}", millis.max(0))
}
/// A placed chunk's record in its organisation's feed partition (never a place: places are
/// digits, `#` sorts before them).
pub fn feed_chunk(org: &OrgId, first: u64) -> (String, String) {
    (feed_partition(org), format!("#PUBLISH#{first:020}"))
}
