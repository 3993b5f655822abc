//! The audit entry, which is also the change event's outbox entry: written in the same
//! transaction as the change, read by the history, the feed and the stream consumer.

use super::keys;
use super::records::ItemLayout;
use crate::model::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    /// Read through [`AuditRecord::into_event`], which restores what the write left out.
    #[serde(flatten)]
    event: AuditEvent,
}

pub(super) fn audit_record(e: &AuditEvent) -> AuditRecord {
    audit_record_in(e, ItemLayout::current())
}

fn audit_record_in(e: &AuditEvent, layout: ItemLayout) -> AuditRecord {
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
    AuditRecord {
        pk,
        sk,
        entity: "auditEvent".into(),
        nulls_out,
        event,
    }
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
];
const MEMBER_SETTINGS_NULLABLE: &[&str] = &["profilePictureUrl", "defaultLocationId"];

fn is_member_event(e: &AuditEvent) -> bool {
    e.member_id.is_some() && e.action.starts_with("member.")
}

impl AuditRecord {
    /// The event as it was before [`audit_record`] left its member's `null`s out.
    pub(super) fn into_event(self) -> AuditEvent {
        let mut event = self.event;
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
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dynamo::records::tests::{blank_member, member};
    use crate::store::dynamo::records::{from_item, to_item};
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

    #[test]
    fn an_outbox_entry_leaves_its_members_nulls_out_and_reads_back_whole() {
        for m in [member(), blank_member()] {
            let e = crate::audit::event(
                "member.updated",
                &crate::audit::Actor::default(),
                None,
                &m,
                false,
                None,
            );
            let item = to_item(&audit_record_in(&e, ItemLayout::Compact))
                .unwrap_or_else(|e| panic!("{e:?}"));
            let Some(AttributeValue::M(resource)) = item.get("resource") else {
                panic!("no resource: {item:?}")
            };
            assert!(!resource
                .values()
                .any(|v| matches!(v, AttributeValue::Null(_))));
            let back: AuditRecord = from_item(item).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(back.into_event(), e);
            // In full, as older versions wrote and read it: every null kept, no marker.
            let item =
                to_item(&audit_record_in(&e, ItemLayout::Full)).unwrap_or_else(|e| panic!("{e:?}"));
            assert!(!item.contains_key("nullsOut"));
            let back: AuditRecord = from_item(item).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(back.event, e);
        }
    }
}
