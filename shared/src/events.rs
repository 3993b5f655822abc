//! Change events: CloudEvents 1.0 built from the outbox.
//!
//! Every write puts an audit entry in the same transaction as its change (the outbox). The
//! table's stream carries each new entry to the consumer (`publish-events` on AWS,
//! `membersctl events consume` locally), which gives it the next place in its
//! organisation's feed ([`crate::store::dynamo::DynamoStore::sequence`]) and publishes it.
//! The feed (`GET /v1/events`) and the pushes all carry the same event, with the same `id`
//! and `sequence`. docs/design.md says why the feed never skips.

use crate::model::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The event types, as `type` and as EventBridge's `detail-type`.
pub const TYPES: [&str; 17] = [
    "member.created",
    "member.updated",
    "member.deactivated",
    "member.reactivated",
    "member.primary_moved",
    "role.created",
    "role.deleted",
    "organization.updated",
    "webhook.created",
    "webhook.updated",
    "webhook.secret_rotated",
    "webhook.deleted",
    "webhook.redelivered",
    "webhook.disabled",
    "group.created",
    "group.updated",
    "group.deleted",
];

/// The scope a key needs to see an event of type `kind`, wherever it would see it (the
/// feed, a history, a webhook it subscribes): the scope that reads the event's data
/// directly. A member, a custom role and the organisation's settings are read with
/// `r_members`; a webhook and its deliveries with `r_webhooks`; a SCIM group with `scim`.
/// An unknown type needs `r_members`, the stricter default, so a type added later leaks
/// nothing by omission.
pub fn read_scope(kind: &str) -> Scope {
    if kind.starts_with("webhook.") {
        Scope::ReadWebhooks
    } else if kind.starts_with("group.") {
        Scope::Scim
    } else {
        Scope::ReadMembers
    }
}

/// The first scope among `types` that `key` lacks (what a 403 names), if any.
pub fn missing_read_scope<'a>(
    key: &ApiKey,
    types: impl IntoIterator<Item = &'a String>,
) -> Option<Scope> {
    types
        .into_iter()
        .map(|t| read_scope(t))
        .find(|s| !key.allows(*s))
}

/// EventBridge `source` of every event, and the prefix of the CloudEvents `source`.
pub const SOURCE: &str = "members-api";

/// How long the feed keeps an event (TTL), counted from its sequencing.
pub const RETENTION_SECONDS: i64 = 30 * 24 * 3600;

/// One change event (CloudEvents 1.0, JSON format).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    /// The audit entry's id: the same in the feed, on EventBridge and in every webhook
    /// delivery (`webhook-id`), so receivers deduplicate on it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `members-api/organizations/<orgId>`.
    pub source: String,
    /// The resource changed: a member, custom role, webhook or organisation id.
    pub subject: String,
    pub time: Timestamp,
    pub datacontenttype: String,
    /// The event's place in its organisation's feed (CloudEvents `sequence` extension):
    /// 20 decimal digits, so string order is numeric order; dense (no gaps).
    pub sequence: String,
    pub data: EventData,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    pub organization_id: OrgId,
    /// The resource after the change, in its API shape (a deleted role: as it was). Null
    /// only for entries written before events existed.
    pub object: Value,
    /// The fields changed, `{field: {before, after}}`, secrets redacted.
    pub changes: Map<String, Value>,
    /// The resource's version after the change: receivers order one resource's events by
    /// it. A custom role has no version of its own: 1 when created, 2 when deleted.
    pub version: u64,
    /// The API key that made the change (`None`: the operator's CLI).
    pub actor_key_id: Option<ApiKeyId>,
    pub request_id: Option<String>,
}

/// A feed position as the `sequence` attribute spells it.
pub fn sequence_text(seq: u64) -> String {
    format!("{seq:020}")
}

/// The event an outbox entry stands for, at its place `seq` in the feed.
pub fn from_audit(e: &AuditEvent, seq: u64) -> CloudEvent {
    let subject = [
        e.member_id.as_ref().map(ToString::to_string),
        e.role_id.as_ref().map(ToString::to_string),
        e.webhook_id.as_ref().map(ToString::to_string),
        e.group_id.as_ref().map(ToString::to_string),
    ]
    .into_iter()
    .flatten()
    .next()
    .unwrap_or_else(|| e.organization_id.to_string());
    let version = match e.action.as_str() {
        "role.created" => 1,
        "role.deleted" => 2,
        _ => e.member_version,
    };
    CloudEvent {
        specversion: "1.0".into(),
        id: e.id.to_string(),
        kind: e.action.clone(),
        source: format!("{SOURCE}/organizations/{}", e.organization_id),
        subject,
        time: e.occurred_at,
        datacontenttype: "application/json".into(),
        sequence: sequence_text(seq),
        data: EventData {
            organization_id: e.organization_id.clone(),
            object: e.resource.clone().unwrap_or(Value::Null),
            changes: e.changes.clone(),
            version,
            actor_key_id: e.actor_key_id.clone(),
            request_id: e.request_id.clone(),
        },
    }
}

/// EventBridge refuses an entry over 256 KB. A bigger event (a member with the largest
/// collaboration rules, changed both ways, comes near) is published without its `data`
/// payload but with `dataref`, the feed query that returns it whole (the CloudEvents
/// claim-check extension); the feed and webhooks always carry it whole.
pub const PUSH_MAX_BYTES: usize = 256 * 1024;

/// The event as published where an entry is limited to [`PUSH_MAX_BYTES`]: as is when it
/// fits (with room for the envelope), else with `data` replaced by `dataref`.
pub fn fitted_for_push(event: &CloudEvent, envelope_bytes: usize) -> Value {
    let whole = serde_json::to_value(event).unwrap_or(Value::Null);
    let size = whole.to_string().len() + envelope_bytes;
    if size <= PUSH_MAX_BYTES {
        return whole;
    }
    let mut thin = whole;
    if let Some(obj) = thin.as_object_mut() {
        obj.remove("data");
        let after = event.sequence.parse::<u64>().unwrap_or(1).saturating_sub(1);
        let org = event
            .source
            .rsplit_once("/organizations/")
            .map_or("", |(_, org)| org);
        obj.insert(
            "dataref".into(),
            Value::String(format!(
                "/v1/events?after={}&limit=1",
                feed_cursor(org, None, after)
            )),
        );
    }
    thin
}

/// What an EventBridge entry costs beyond its detail: source, detail-type, time (AWS's own
/// count, the detail-type added per entry).
const BUS_ENTRY_OVERHEAD: usize = 14 + 64 + SOURCE.len();

/// An event's EventBridge entry: its `detail` (the event, or without `data` when too big)
/// and the entry's size as AWS counts it (at most [`PUSH_MAX_BYTES`]).
pub fn bus_detail(event: &CloudEvent) -> (String, usize) {
    let overhead = BUS_ENTRY_OVERHEAD + event.kind.len();
    let detail = fitted_for_push(event, overhead).to_string();
    let size = detail.len() + overhead;
    (detail, size)
}

/// The feed cursor that continues after `seq` (what `GET /v1/events` answers as
/// `nextCursor`): opaque to clients; it holds the position, bound to the organisation and,
/// when known, to the feed's epoch ([`feed_cursor_kind`]).
pub fn feed_cursor(org: &str, epoch: Option<&str>, seq: u64) -> String {
    crate::paging::encode_cursor(&seq.to_string(), &feed_cursor_kind(org, epoch))
}

/// The fingerprint of an organisation's feed cursors (they belong to no filter: `types`
/// may change between calls): `events:<org>:<epoch>`, or `events:<org>` where the epoch is
/// not known (a pushed event's `dataref`). A cursor of this API's earlier versions is
/// [`FEED_CURSOR_KIND`] alone.
pub fn feed_cursor_kind(org: &str, epoch: Option<&str>) -> String {
    match epoch {
        Some(epoch) => format!("{FEED_CURSOR_KIND}:{org}:{epoch}"),
        None => format!("{FEED_CURSOR_KIND}:{org}"),
    }
}

pub const FEED_CURSOR_KIND: &str = "events";

/// Whether a stream image is an outbox entry (what the stream filter of template.yaml
/// passes): an audit entry. The consumer checks it again.
pub fn is_outbox_entry(entity: Option<&str>) -> bool {
    entity == Some("auditEvent")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(action: &str, rules: usize) -> AuditEvent {
        AuditEvent {
            id: AuditEventId::generate(),
            organization_id: OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}")),
            member_id: MemberId::parse("mem_b").ok(),
            role_id: None,
            webhook_id: None,
            group_id: None,
            actor_key_id: None,
            action: action.into(),
            changes: Map::from_iter([(
                "collaborationRules".into(),
                json!({"before": "x".repeat(rules), "after": "y".repeat(rules)}),
            )]),
            justification: None,
            request_id: None,
            member_version: 7,
            occurred_at: Timestamp::now(),
            resource: Some(json!({"id": "mem_b", "collaborationRules": "y".repeat(rules)})),
        }
    }

    #[test]
    fn an_event_has_every_cloudevents_attribute_and_its_place() {
        let e = from_audit(&entry("member.updated", 10), 42);
        let v = serde_json::to_value(&e).unwrap_or_default();
        for attribute in [
            "specversion",
            "id",
            "type",
            "source",
            "subject",
            "time",
            "datacontenttype",
            "sequence",
            "data",
        ] {
            assert!(v.get(attribute).is_some(), "{attribute}");
        }
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["subject"], "mem_b");
        assert_eq!(v["sequence"], "00000000000000000042");
        assert_eq!(v["data"]["version"], 7);
        assert!(sequence_text(9) < sequence_text(10));
        assert!(sequence_text(u64::MAX).len() == 20);
    }

    #[test]
    fn every_type_needs_the_scope_that_reads_its_data() {
        for kind in TYPES {
            let expected = match kind.split('.').next() {
                Some("webhook") => Scope::ReadWebhooks,
                Some("group") => Scope::Scim,
                _ => Scope::ReadMembers,
            };
            assert_eq!(read_scope(kind), expected, "{kind}");
        }
        assert_eq!(read_scope("anything.new"), Scope::ReadMembers);
        let key = |scopes: Vec<Scope>| ApiKey {
            id: ApiKeyId::generate(),
            organization_id: OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}")),
            name: "k".into(),
            scopes,
            created_at: Timestamp::now(),
            revoked_at: None,
        };
        let types: Vec<String> = vec!["webhook.created".into(), "member.updated".into()];
        let hooks_only = key(vec![Scope::WriteWebhooks]);
        assert_eq!(
            missing_read_scope(&hooks_only, &types),
            Some(Scope::ReadMembers)
        );
        assert_eq!(missing_read_scope(&hooks_only, &types[..1]), None);
        let both = key(vec![Scope::WriteWebhooks, Scope::ReadMembers]);
        assert_eq!(missing_read_scope(&both, &types), None);
        let members_only = key(vec![Scope::WriteMembers]);
        assert_eq!(
            missing_read_scope(&members_only, &types),
            Some(Scope::ReadWebhooks)
        );
    }

    #[test]
    fn an_event_too_big_to_push_is_pushed_with_a_reference_instead_of_data() {
        let small = from_audit(&entry("member.updated", 10), 5);
        assert_eq!(
            fitted_for_push(&small, 100),
            serde_json::to_value(&small).unwrap_or_default()
        );
        // Collaboration rules of 64 KiB each way, all quotes (escaped, they double): over
        // 256 KB, as the largest accepted member can be.
        let mut big = entry("member.updated", 0);
        let rules = "\"".repeat(64 * 1024);
        big.changes = Map::from_iter([(
            "collaborationRules".into(),
            json!({"before": rules, "after": rules}),
        )]);
        big.resource = Some(json!({ "collaborationRules": rules }));
        let big = from_audit(&big, 5);
        let pushed = fitted_for_push(&big, 100);
        assert!(pushed.get("data").is_none());
        assert!(pushed.to_string().len() < PUSH_MAX_BYTES);
        assert_eq!(pushed["id"], big.id);
        let dataref = pushed["dataref"].as_str().unwrap_or_default();
        let cursor = dataref
            .trim_start_matches("/v1/events?after=")
            .trim_end_matches("&limit=1");
        let org = big.source.rsplit('/').next().unwrap_or_default();
        assert_eq!(
            crate::paging::decode_cursor(cursor, &feed_cursor_kind(org, None)).ok(),
            Some("4".into()),
            "bound to the organisation"
        );
    }

    /// The webhook queue's `MaximumMessageSize` in template.yaml.
    fn queue_limit() -> usize {
        let template = include_str!("../../template.yaml");
        let queue = &template[template.find("  WebhookQueue:").unwrap_or(0)..];
        queue
            .lines()
            .take_while(|l| !l.starts_with("  WebhookDeadLetters:"))
            .find_map(|l| l.trim().strip_prefix("MaximumMessageSize:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(256 * 1024)
    }

    /// A `member.updated` event whose `data` holds `pad` more bytes.
    fn padded(pad: usize) -> CloudEvent {
        let v = json!({
            "specversion": "1.0", "id": "evt_01jzzzzzzzzzzzzzzzzzzzzzzz", "type": "member.updated",
            "source": "members-api/organizations/org_01jzzzzzzzzzzzzzzzzzzzzzzz",
            "subject": "mem_01jzzzzzzzzzzzzzzzzzzzzzzz", "time": "2026-12-04T10:00:00.000Z",
            "datacontenttype": "application/json", "sequence": "00000000000000000007",
            "data": {"organizationId": "org_01jzzzzzzzzzzzzzzzzzzzzzzz", "version": 3,
                     "object": {"collaborationRules": "r".repeat(pad)}, "changes": {}}
        });
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The largest event EventBridge takes, as its rule puts it on the webhook queue (the
    /// whole EventBridge envelope, with the longest values AWS gives its fields), fits the
    /// queue's message; 256 KiB would not.
    #[test]
    fn the_largest_event_fits_the_webhook_queue() {
        let base = bus_detail(&padded(0)).1;
        let largest = padded(PUSH_MAX_BYTES - base);
        let (body, size) = bus_detail(&largest);
        assert_eq!(size, PUSH_MAX_BYTES, "at the limit, data kept");
        assert!(body.contains("\"data\""));
        let detail: Value = serde_json::from_str(&body).unwrap_or_default();
        let envelope = json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": largest.kind, "source": SOURCE,
            "account": "123456789012", "time": "2026-12-04T10:00:00Z",
            "region": "ap-southeast-7-long-region", "resources": [], "detail": detail,
        });
        let message = envelope.to_string().len();
        assert!(
            message > 256 * 1024,
            "the envelope adds to the event: {message}"
        );
        assert!(
            message <= queue_limit(),
            "{message} bytes > the webhook queue's MaximumMessageSize {}",
            queue_limit()
        );
        // One byte more and the event goes without data (its dataref instead).
        let (over, size) = bus_detail(&padded(PUSH_MAX_BYTES - base + 1));
        assert!(size < PUSH_MAX_BYTES && !over.contains("\"data\""));
    }
}
