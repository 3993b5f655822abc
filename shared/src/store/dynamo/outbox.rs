//! The audit entry, which is also the change event's outbox entry: written in the same
//! transaction as the change, read by the history, the feed and the stream consumer.

use super::deflated::{deflate, inflate};
use super::keys;
use super::records::{to_item, ItemLayout};
use super::Item;
use crate::error::ApiError;
use crate::model::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Serialize, Deserialize)]
pub(super) struct AuditRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    /// Its member resource's `null`s were left out ([`ItemLayout::Compact`]).
    #[serde(
        rename = "nullsOut",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    nulls_out: bool,
    /// The event's `changes` and `resource`, deflated ([`ItemLayout::Compact`]; the
    /// attributes themselves are then empty).
    #[serde(
        rename = "payload",
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_bytes"
    )]
    payload: Option<Vec<u8>>,
    /// In the outbox index until the entry has its place in the feed (the placing removes
    /// them): the repair finds an entry the stream consumer gave up on.
    #[serde(rename = "GSI6PK", default, skip_serializing_if = "Option::is_none")]
    outbox_pk: Option<String>,
    #[serde(rename = "GSI6SK", default, skip_serializing_if = "Option::is_none")]
    outbox_sk: Option<String>,
    /// Read through [`AuditRecord::into_event`], which restores what the write left out.
    #[serde(flatten)]
    event: AuditEvent,
}

/// What an outbox entry's `payload` holds.
#[derive(Serialize, Deserialize)]
struct Payload {
    changes: Map<String, Value>,
    resource: Option<Value>,
}

/// The outbox entry of `e` as written in this deployment's layout.
pub(super) fn audit_item(e: &AuditEvent) -> Result<Item, ApiError> {
    audit_item_in(e, ItemLayout::current())
}

fn audit_item_in(e: &AuditEvent, layout: ItemLayout) -> Result<Item, ApiError> {
    let record = audit_record_in(e, layout)?;
    let deflated = record.payload.is_some();
    let mut item = to_item(&record)?;
    if deflated {
        // Not even an empty map: DynamoDB Local's stream writes an empty `M` as `{}`, which
        // the SDK cannot parse (the consumer would stall on the record).
        item.remove("changes");
    }
    Ok(item)
}

fn audit_record_in(e: &AuditEvent, layout: ItemLayout) -> Result<AuditRecord, ApiError> {
    let (pk, sk) = keys::audit(&e.organization_id, e.member_id.as_ref(), &e.id);
    let mut event = e.clone();
    let mut nulls_out = false;
    if let (ItemLayout::Compact, true, Some(Value::Object(resource))) =
        (layout, is_member_event(e), event.resource.as_mut())
    {
        resource.retain(|_, v| !v.is_null());
        if let Some(Value::Object(settings)) = resource.get_mut("settings") {
            settings.retain(|_, v| !v.is_null());
        }
        nulls_out = true;
    }
    let payload = match layout {
        ItemLayout::Compact => Some(deflate(&Payload {
            changes: std::mem::take(&mut event.changes),
            resource: event.resource.take(),
        })?),
        ItemLayout::Full => None,
    };
    Ok(AuditRecord {
        pk,
        sk,
        entity: "auditEvent".into(),
        nulls_out,
        payload,
        outbox_pk: Some(keys::outbox_partition(&e.organization_id)),
        outbox_sk: Some(keys::outbox_at(e.occurred_at.unix_millis())),
        event,
    })
}

/// The member's fields that its API shape (wire.rs, `member_view`) shows as `null` when
/// unset: an outbox entry leaves them out (most of a new member's are), its reader puts them
/// back, so an event carries the member exactly as GET shows it.
const MEMBER_NULLABLE: &[&str] = &[
    "firstName",
    "lastName",
    "headline",
    "jobTitle",
    "hrisRole",
    "fleetDmLabelId",
    "backgroundCheckExemptReason",
    "onboardDate",
    "offboardDate",
    "externalId",
    "scimUserName",
];
const MEMBER_SETTINGS_NULLABLE: &[&str] = &["profilePictureUrl", "defaultLocationId"];

fn is_member_event(e: &AuditEvent) -> bool {
    e.member_id.is_some() && e.action.starts_with("member.")
}

impl AuditRecord {
    /// The event as it was before [`audit_record`] deflated it and left its member's
    /// `null`s out.
    pub(super) fn into_event(self) -> Result<AuditEvent, ApiError> {
        let mut event = self.event;
        if let Some(bytes) = &self.payload {
            let payload: Payload = inflate(bytes)?;
            (event.changes, event.resource) = (payload.changes, payload.resource);
        }
        if let (true, Some(Value::Object(resource))) = (self.nulls_out, event.resource.as_mut()) {
            for name in MEMBER_NULLABLE {
                resource.entry(*name).or_insert(Value::Null);
            }
            if let Some(Value::Object(settings)) = resource.get_mut("settings") {
                for name in MEMBER_SETTINGS_NULLABLE {
                    settings.entry(*name).or_insert(Value::Null);
                }
            }
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dynamo::records::from_item;
    use crate::store::dynamo::records::tests::{blank_member, member};
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn the_nullable_lists_are_exactly_the_nulls_of_the_members_api_shape() {
        let shown = crate::wire::member_json(&blank_member());
        let nulls = |v: &Value| -> Vec<String> {
            let mut names: Vec<String> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| k.clone())
                .collect();
            names.sort();
            names
        };
        let sorted = |l: &[&str]| {
            let mut l: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            l.sort();
            l
        };
        assert_eq!(nulls(&shown), sorted(MEMBER_NULLABLE));
        assert_eq!(nulls(&shown["settings"]), sorted(MEMBER_SETTINGS_NULLABLE));
    }

    /// The entry as stored, and read back as the Lambda stream event's JSON carries it
    /// (`B` in base64, serde_dynamo's shape in aws_lambda_events).
    fn stored(e: &AuditEvent, layout: ItemLayout) -> (Item, AuditEvent) {
        let item = audit_item_in(e, layout).unwrap_or_else(|e| panic!("{e:?}"));
        let wire = serde_json::to_string(&serde_dynamo::Item::from(item.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let image: serde_dynamo::Item =
            serde_json::from_str(&wire).unwrap_or_else(|e| panic!("{e}"));
        let back = from_item::<AuditRecord>(image.into())
            .and_then(AuditRecord::into_event)
            .unwrap_or_else(|e| panic!("{e:?}"));
        (item, back)
    }

    #[test]
    fn an_outbox_entry_keeps_its_changes_deflated_and_reads_back_whole() {
        for m in [member(), blank_member()] {
            let e = crate::audit::event(
                "member.created",
                &crate::audit::Actor::default(),
                None,
                &m,
                false,
                None,
            );
            let (item, back) = stored(&e, ItemLayout::Compact);
            assert_eq!(back, e);
            assert!(matches!(item.get("payload"), Some(AttributeValue::B(_))));
            assert!(!item.contains_key("resource"), "{item:?}");
            assert!(!item.contains_key("changes"), "{item:?}");
            // A create's entry holds the member twice (every field a change, and the
            // resource); deflated, even this member's fits under 1 KB (1,748 B in full).
            let size = crate::store::dynamo::records::tests::size(&item);
            assert!(size < 1024, "{size} bytes: {item:?}");
            // In full, as older versions wrote and read it: every null kept, nothing
            // deflated, no marker.
            let (item, back) = stored(&e, ItemLayout::Full);
            assert!(!item.contains_key("nullsOut") && !item.contains_key("payload"));
            let Some(AttributeValue::M(resource)) = item.get("resource") else {
                panic!("no resource: {item:?}")
            };
            assert!(resource
                .values()
                .any(|v| matches!(v, AttributeValue::Null(_))));
            assert_eq!(back, e);
        }
    }
}
