//! A webhook's changes in the organisation's history, each also a `webhook.*` change event
//! (the outbox): created, updated, secret rotated, deleted, disabled by the service (no
//! acting key), and a delivery redelivered.
//! Written by the store in the same transaction as the change.

use super::{delivery_json, webhook_json, Delivery, Webhook};
use crate::audit::{Actor, REDACTED};
use crate::model::*;
use serde_json::{json, Map, Value};

/// The history entry of a webhook change: `before` none for a create, `after` none for a
/// delete. The secret never appears: a rotation shows as `secret: "[redacted]"` both ways.
pub fn event(
    action: &str,
    actor: &Actor,
    before: Option<&Webhook>,
    after: Option<&Webhook>,
) -> AuditEvent {
    let Some(webhook) = after.or(before) else {
        unreachable!("a webhook event has a webhook before or after");
    };
    let mut changes = diff(before.map(webhook_json), after.map(webhook_json));
    if let (Some(b), Some(a)) = (before, after) {
        if a.secret != b.secret {
            changes.insert(
                "secret".into(),
                json!({"before": REDACTED, "after": REDACTED}),
            );
        }
    }
    // A deleted webhook's event carries it as it was, one version on (receivers order a
    // resource's events by version).
    let version = after.map_or(webhook.version + 1, |a| a.version);
    entry(
        action,
        actor,
        webhook,
        changes,
        version,
        webhook_json(webhook),
    )
}

/// The history entry of a redelivery: the delivery as it now stands (pending again), and
/// the status it had (`was`). The webhook is unchanged, so the event carries its version.
pub fn redelivered(
    actor: &Actor,
    webhook: &Webhook,
    delivery: &Delivery,
    was: super::DeliveryStatus,
) -> AuditEvent {
    let mut changes = Map::new();
    changes.insert(
        "deliveryId".into(),
        json!({"before": delivery.id, "after": delivery.id}),
    );
    changes.insert(
        "status".into(),
        json!({"before": was, "after": delivery.status}),
    );
    entry(
        "webhook.redelivered",
        actor,
        webhook,
        changes,
        webhook.version,
        delivery_json(delivery),
    )
}

fn entry(
    action: &str,
    actor: &Actor,
    webhook: &Webhook,
    changes: Map<String, Value>,
    version: u64,
    resource: Value,
) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::generate(),
        organization_id: webhook.organization_id.clone(),
        member_id: None,
        role_id: None,
        webhook_id: Some(webhook.id.clone()),
        group_id: None,
        actor_key_id: actor.key_id.clone(),
        action: action.to_owned(),
        changes,
        justification: None,
        request_id: actor.request_id.clone(),
        member_version: version,
        occurred_at: Timestamp::now(),
        resource: Some(resource),
    }
}

/// `{field: {before, after}}` of two webhooks as the API shows them, without the
/// bookkeeping fields.
fn diff(before: Option<Value>, after: Option<Value>) -> Map<String, Value> {
    let fields = |v: &Option<Value>| v.as_ref().and_then(Value::as_object).cloned();
    let (old, new) = (
        fields(&before).unwrap_or_default(),
        fields(&after).unwrap_or_default(),
    );
    let mut out = Map::new();
    for name in old.keys().chain(new.keys()) {
        if matches!(name.as_str(), "version" | "updatedAt" | "createdAt") || out.contains_key(name)
        {
            continue;
        }
        let (b, a) = (
            old.get(name).cloned().unwrap_or(Value::Null),
            new.get(name).cloned().unwrap_or(Value::Null),
        );
        if b != a {
            out.insert(name.clone(), json!({"before": b, "after": a}));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::DeliveryStatus;

    fn webhook() -> Webhook {
        let now = Timestamp::now();
        Webhook {
            id: WebhookId::generate(),
            organization_id: OrgId::generate(),
            url: "https://example.com/hook".into(),
            event_types: vec!["member.created".into()],
            description: None,
            enabled: true,
            secret: "whsec_old".into(),
            previous_secret: None,
            previous_secret_expires_at: None,
            subscribed_by: Some(ApiKeyId::generate()),
            failing_since: None,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    #[test]
    fn a_change_lists_what_changed_and_never_a_secret() {
        let before = webhook();
        let mut after = before.clone();
        after.url = "https://example.com/other".into();
        after.secret = "whsec_new".into();
        after.previous_secret = Some(before.secret.clone());
        after.version = 2;
        let e = event(
            "webhook.updated",
            &Actor::default(),
            Some(&before),
            Some(&after),
        );
        assert_eq!(
            e.changes["url"],
            json!({"before": before.url, "after": after.url})
        );
        assert_eq!(
            e.changes["secret"],
            json!({"before": "[redacted]", "after": "[redacted]"})
        );
        assert!(!e.changes.contains_key("version") && !e.changes.contains_key("eventTypes"));
        assert_eq!(
            (e.member_version, e.webhook_id.as_ref()),
            (2, Some(&after.id))
        );
        let text = serde_json::to_string(&e).unwrap_or_default();
        assert!(!text.contains("whsec_"), "{text}");
    }

    #[test]
    fn a_create_and_a_delete_carry_the_webhook_and_order_by_version() {
        let w = webhook();
        let created = event("webhook.created", &Actor::default(), None, Some(&w));
        assert_eq!(
            created.changes["url"],
            json!({"before": null, "after": w.url})
        );
        assert_eq!(created.member_version, 1);
        let deleted = event("webhook.deleted", &Actor::default(), Some(&w), None);
        assert_eq!(
            deleted.changes["url"],
            json!({"before": w.url, "after": null})
        );
        assert_eq!(deleted.member_version, 2);
        assert_eq!(
            deleted.resource.as_ref().map(|r| &r["id"]),
            Some(&json!(w.id))
        );
        let d = Delivery {
            status: DeliveryStatus::Pending,
            ..Delivery::new(
                &w,
                &crate::webhooks::EventRef {
                    organization_id: w.organization_id.clone(),
                    id: AuditEventId::generate().to_string(),
                    kind: "member.created".into(),
                    sequence: 3,
                    only: None,
                },
                Timestamp::now(),
            )
        };
        let again = redelivered(&Actor::default(), &w, &d, DeliveryStatus::Parked);
        assert_eq!(again.action, "webhook.redelivered");
        assert_eq!(
            again.changes["status"],
            json!({"before": "parked", "after": "pending"})
        );
        assert_eq!(
            again.resource.as_ref().map(|r| &r["id"]),
            Some(&json!(d.id))
        );
    }
}
