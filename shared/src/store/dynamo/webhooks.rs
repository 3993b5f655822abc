//! Webhooks and their deliveries.
//!
//! - webhook: `ORG#<org>#WEBHOOKS` / `<whk>`, and the organisation's count of them
//!   (`#COUNT`, conditioned below [`MAX_WEBHOOKS`] in the creating transaction);
//! - delivery: `ORG#<org>#WEBHOOK#<whk>#DELIVERIES` / `<dlv>` (ULID: newest last), TTL 30 d;
//! - the local delivery queue (`membersctl events consume` only): `LOCAL#WEBHOOKQUEUE` /
//!   `<due, ms>#<ulid>`.

use super::errors::{build_error, sdk_error};
use super::outbox::audit_item;
use super::records::{from_item, to_item};
use super::tx::{Guarded, TxFailure};
use super::{DynamoStore, Item};
use crate::error::ApiError;
use crate::model::*;
use crate::webhooks::{Delivery, EventRef, Webhook, MAX_WEBHOOKS};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

fn webhooks_partition(org: &OrgId) -> String {
    format!("ORG#{org}#WEBHOOKS")
}
fn webhook_key(org: &OrgId, id: &WebhookId) -> (String, String) {
    (webhooks_partition(org), id.to_string())
}
fn count_key(org: &OrgId) -> (String, String) {
    (webhooks_partition(org), "#COUNT".into())
}
fn deliveries_partition(org: &OrgId, webhook: &WebhookId) -> String {
    format!("ORG#{org}#WEBHOOK#{webhook}#DELIVERIES")
}
const LOCAL_QUEUE: &str = "LOCAL#WEBHOOKQUEUE";

#[derive(Serialize, Deserialize)]
struct WebhookRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(flatten)]
    webhook: Webhook,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(flatten)]
    delivery: Delivery,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct QueueRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    #[serde(rename = "ref")]
    event: String,
}

fn key_map((pk, sk): (String, String)) -> Item {
    HashMap::from([
        ("PK".to_owned(), AttributeValue::S(pk)),
        ("SK".to_owned(), AttributeValue::S(sk)),
    ])
}

impl DynamoStore {
    /// A new webhook and its history entry (`webhook.created`); 422 `webhook_limit` when the
    /// organisation has [`MAX_WEBHOOKS`].
    pub async fn create_webhook(&self, w: &Webhook, audit: &AuditEvent) -> Result<(), ApiError> {
        let (pk, sk) = count_key(&w.organization_id);
        let count = Update::builder()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .update_expression("ADD webhooks :one")
            .condition_expression("attribute_not_exists(webhooks) OR webhooks < :max")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":max", AttributeValue::N(MAX_WEBHOOKS.to_string()))
            .build()
            .map_err(|e| build_error("Update", e))?;
        let items = vec![
            (
                Guarded::WebhookCount,
                TransactWriteItem::builder().update(count).build(),
            ),
            (Guarded::Webhook, super::tx::put(&self.table, &record(w))?),
            (
                Guarded::Audit,
                super::tx::put_item(&self.table, audit_item(audit)?)?,
            ),
        ];
        match self.transact(items, conflict).await {
            Ok(()) => Ok(()),
            Err(TxFailure::Refused(r)) if r.iter().any(|(g, _)| *g == Guarded::WebhookCount) => {
                Err(ApiError::rule(
                    "webhook_limit",
                    None,
                    format!(
                        "An organisation has at most {MAX_WEBHOOKS} webhooks; delete one first."
                    ),
                ))
            }
            Err(TxFailure::Refused(_)) => Err(ApiError::Internal),
            Err(TxFailure::Error(e)) => Err(e),
        }
    }

    /// The organisation's webhooks, oldest first (at most [`MAX_WEBHOOKS`]: one Query).
    pub async fn webhooks(&self, org: &OrgId) -> Result<Vec<Webhook>, ApiError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :whk)")
            .expression_attribute_values(":pk", AttributeValue::S(webhooks_partition(org)))
            .expression_attribute_values(":whk", AttributeValue::S(WebhookId::PREFIX.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(|i| from_item::<WebhookRecord>(i).map(|r| r.webhook))
            .collect()
    }

    pub async fn webhook(&self, org: &OrgId, id: &WebhookId) -> Result<Option<Webhook>, ApiError> {
        Ok(self
            .get::<WebhookRecord>(webhook_key(org, id))
            .await?
            .map(|r| r.webhook))
    }

    /// Writes a changed webhook and its history entry on the condition that it is still at
    /// `expected` version: 412 `precondition_failed` when another request changed it first,
    /// 404 when deleted.
    pub async fn update_webhook(
        &self,
        w: &Webhook,
        expected: u64,
        audit: &AuditEvent,
    ) -> Result<(), ApiError> {
        match self
            .put_audited(&record(w), "version", expected, audit)
            .await?
        {
            true => Ok(()),
            false => Err(ApiError::PreconditionFailed),
        }
    }

    /// The deliverer's note of an endpoint's health: failing since `since` (the first failure
    /// after a success; kept if one is already noted), or `None` after a success. Not a
    /// change of the webhook's settings: its version stays.
    pub async fn note_failing(
        &self,
        w: &Webhook,
        since: Option<Timestamp>,
    ) -> Result<(), ApiError> {
        let (pk, sk) = webhook_key(&w.organization_id, &w.id);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk));
        let update = match since {
            // A webhook written whole holds `failingSince` as NULL while it succeeds.
            Some(at) => update
                .update_expression("SET failingSince = :at")
                .condition_expression(
                    "attribute_exists(PK) AND (attribute_not_exists(failingSince) OR attribute_type(failingSince, :null))",
                )
                .expression_attribute_values(":at", AttributeValue::S(at.to_string()))
                .expression_attribute_values(":null", AttributeValue::S("NULL".into())),
            None => update
                .update_expression("REMOVE failingSince")
                .condition_expression("attribute_exists(PK)"),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            // Deleted meanwhile, or a failing spell already noted: nothing to note.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    /// Deletes a webhook as read (at its version), counts it out and writes its history
    /// entry; `false` when it was changed or deleted since it was read. Its deliveries
    /// expire with their TTL.
    pub async fn delete_webhook(&self, w: &Webhook, audit: &AuditEvent) -> Result<bool, ApiError> {
        let org = &w.organization_id;
        let (pk, sk) = webhook_key(org, &w.id);
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .condition_expression("attribute_exists(PK) AND version = :expected")
            .expression_attribute_values(":expected", AttributeValue::N(w.version.to_string()))
            .build()
            .map_err(|e| build_error("Delete", e))?;
        let (pk, sk) = count_key(org);
        let count = Update::builder()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .update_expression("ADD webhooks :minus")
            .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
            .build()
            .map_err(|e| build_error("Update", e))?;
        let items = vec![
            (
                Guarded::Webhook,
                TransactWriteItem::builder().delete(delete).build(),
            ),
            (
                Guarded::WebhookCount,
                TransactWriteItem::builder().update(count).build(),
            ),
        ];
        self.audited(items, audit).await
    }

    /// Writes a new delivery unless it exists (the stream or the queue gave its event
    /// twice); answers whether it wrote it.
    pub async fn put_delivery_if_absent(&self, d: &Delivery) -> Result<bool, ApiError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&delivery_record(d))?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    /// Saves a delivery after an attempt (or a redelivery) as its next revision, on the
    /// condition that nothing saved it since it was read at revision `expected`; answers
    /// whether it saved.
    pub async fn save_delivery(&self, d: &mut Delivery, expected: u64) -> Result<bool, ApiError> {
        d.revision = expected + 1;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&delivery_record(d))?))
            .condition_expression("attribute_exists(PK) AND revision = :n")
            .expression_attribute_values(":n", AttributeValue::N(expected.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    /// A redelivery: the delivery saved as its next revision (as [`Self::save_delivery`])
    /// together with its history entry (`webhook.redelivered`), in one transaction; answers
    /// whether it saved.
    pub async fn redeliver(
        &self,
        d: &mut Delivery,
        expected: u64,
        audit: &AuditEvent,
    ) -> Result<bool, ApiError> {
        d.revision = expected + 1;
        self.put_audited(&delivery_record(d), "revision", expected, audit)
            .await
    }

    /// Writes `record` over its item on the condition that its `attribute` is still
    /// `expected`, with the history entry of the change, in one transaction; answers
    /// whether it wrote (`false`: changed or deleted since it was read).
    async fn put_audited<T: Serialize>(
        &self,
        record: &T,
        attribute: &str,
        expected: u64,
        audit: &AuditEvent,
    ) -> Result<bool, ApiError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(record)?))
            .condition_expression(format!("attribute_exists(PK) AND {attribute} = :expected"))
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
            .build()
            .map_err(|e| build_error("Put", e))?;
        let items = vec![(
            Guarded::Webhook,
            TransactWriteItem::builder().put(put).build(),
        )];
        self.audited(items, audit).await
    }

    /// Runs `items` with the history entry of their change, in one transaction; answers
    /// whether it ran (`false`: a condition failed).
    async fn audited(
        &self,
        mut items: Vec<(Guarded, TransactWriteItem)>,
        audit: &AuditEvent,
    ) -> Result<bool, ApiError> {
        items.push((
            Guarded::Audit,
            super::tx::put_item(&self.table, audit_item(audit)?)?,
        ));
        match self.transact(items, conflict).await {
            Ok(()) => Ok(true),
            Err(TxFailure::Refused(_)) => Ok(false),
            Err(TxFailure::Error(e)) => Err(e),
        }
    }

    pub async fn delivery(
        &self,
        org: &OrgId,
        webhook: &WebhookId,
        id: &DeliveryId,
    ) -> Result<Option<Delivery>, ApiError> {
        let key = (deliveries_partition(org, webhook), id.to_string());
        Ok(self.get::<DeliveryRecord>(key).await?.map(|r| r.delivery))
    }

    /// A webhook's deliveries, newest first: at most `limit` before the delivery id
    /// `before`, and the id to continue from.
    pub async fn deliveries(
        &self,
        org: &OrgId,
        webhook: &WebhookId,
        limit: usize,
        before: Option<&str>,
    ) -> Result<(Vec<Delivery>, Option<String>), ApiError> {
        let mut out: Vec<Delivery> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(
                    ":pk",
                    AttributeValue::S(deliveries_partition(org, webhook)),
                )
                .scan_index_forward(false)
                .consistent_read(true)
                .limit((limit + 1 - out.len()) as i32)
                .set_exclusive_start_key(start.take());
            q = match before {
                Some(b) => q
                    .key_condition_expression("PK = :pk AND SK < :before")
                    .expression_attribute_values(":before", AttributeValue::S(b.to_owned())),
                None => q.key_condition_expression("PK = :pk"),
            };
            let page = q.send().await.map_err(|e| sdk_error("Query", e))?;
            start = page.last_evaluated_key().cloned();
            for item in page.items.unwrap_or_default() {
                out.push(from_item::<DeliveryRecord>(item)?.delivery);
            }
            if start.is_none() || out.len() > limit {
                return Ok(crate::store::cut_page(out, limit, |d| d.id.to_string()));
            }
        }
    }

    /// Local delivery queue: `event` due at `due` (membersctl and, locally, redeliveries).
    pub async fn queue_local(&self, event: &EventRef, delay: Duration) -> Result<(), ApiError> {
        let due = Timestamp::now().unix_millis() + delay.as_millis() as i64;
        let record = queue_record(event, due)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&record)?))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }

    /// Local delivery queue: many events due now, 25 a BatchWriteItem (the consumer queues
    /// a whole batch of the stream at once).
    pub async fn queue_local_now(&self, events: &[EventRef]) -> Result<(), ApiError> {
        let due = Timestamp::now().unix_millis();
        for chunk in events.chunks(25) {
            let mut writes = Vec::with_capacity(chunk.len());
            for event in chunk {
                let record = queue_record(event, due)?;
                let put = aws_sdk_dynamodb::types::PutRequest::builder()
                    .set_item(Some(to_item(&record)?))
                    .build()
                    .map_err(|e| build_error("PutRequest", e))?;
                writes.push(
                    aws_sdk_dynamodb::types::WriteRequest::builder()
                        .put_request(put)
                        .build(),
                );
            }
            self.batch_write(writes).await?;
        }
        Ok(())
    }

    /// Up to `limit` queued events due now, oldest first, each with its queue key, from
    /// after the key `after` (the last of a page read before).
    pub async fn due_local(
        &self,
        limit: i32,
        after: Option<&str>,
    ) -> Result<Vec<(String, EventRef)>, ApiError> {
        let now = Timestamp::now().unix_millis();
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK <= :now")
            .expression_attribute_values(":pk", AttributeValue::S(LOCAL_QUEUE.into()))
            .expression_attribute_values(":now", AttributeValue::S(format!("{now:020}#~")))
            .set_exclusive_start_key(after.map(|sk| key_map((LOCAL_QUEUE.into(), sk.to_owned()))))
            .consistent_read(true)
            .limit(limit)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(|i| {
                let r: QueueRecord = from_item(i)?;
                let event = serde_json::from_str(&r.event).map_err(|_| ApiError::Internal)?;
                Ok((r.sk, event))
            })
            .collect()
    }

    pub async fn unqueue_local(&self, sk: &str) -> Result<(), ApiError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_map((LOCAL_QUEUE.into(), sk.to_owned()))))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }
}

/// A queue item: due time, then the event's place, so events due together go in feed order.
fn queue_record(event: &EventRef, due: i64) -> Result<QueueRecord, ApiError> {
    Ok(QueueRecord {
        pk: LOCAL_QUEUE.into(),
        sk: format!(
            "{due:020}#{:020}#{}",
            event.sequence,
            ulid::Ulid::generate()
        ),
        event: serde_json::to_string(event).map_err(|_| ApiError::Internal)?,
    })
}

fn record(w: &Webhook) -> WebhookRecord {
    let (pk, sk) = webhook_key(&w.organization_id, &w.id);
    WebhookRecord {
        pk,
        sk,
        entity: "webhook".into(),
        webhook: w.clone(),
    }
}

fn delivery_record(d: &Delivery) -> DeliveryRecord {
    DeliveryRecord {
        pk: deliveries_partition(&d.organization_id, &d.webhook_id),
        sk: d.id.to_string(),
        entity: "webhookDelivery".into(),
        delivery: d.clone(),
        expires_at: d.expires_at(),
    }
}

fn conflict() -> ApiError {
    ApiError::Unavailable {
        retry_after_seconds: 1,
    }
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> bool {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    e.code() == Some("ConditionalCheckFailedException")
}
