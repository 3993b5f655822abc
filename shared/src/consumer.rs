//! The stream consumer's work, the same on Lambda (`publish-events`) and locally
//! (`membersctl events consume`): the new outbox entries of a batch of stream records get
//! their places in the feed, then their events are published, in stream order.
//!
//! At least once: a batch that fails is given again from its first unfinished record (Lambda:
//! `ReportBatchItemFailures`; locally: the checkpoint is not moved). Placing is idempotent
//! (an entry keeps its place), so a retried record publishes the same event again, same
//! `id` and `sequence`.

use crate::error::ApiError;
use crate::events::{self, CloudEvent};
use crate::model::AuditEvent;
use crate::store::DynamoStore;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::future::Future;

/// One stream record, whichever API delivered it.
#[derive(Clone, Debug)]
pub struct StreamRecord {
    pub sequence_number: String,
    /// `INSERT`, `MODIFY` or `REMOVE`.
    pub event_name: String,
    pub new_image: HashMap<String, AttributeValue>,
}

/// Where events go after they have their places.
pub trait Publisher: Send + Sync {
    /// Publishes `events` in order; answers how many, from the front, are published (all
    /// of them, or up to the first failure).
    fn publish(&self, events: &[CloudEvent]) -> impl Future<Output = usize> + Send;
}

/// Handles one batch. `None`: all done. `Some(n)`: the sequence number of the first record
/// not done; it and every later record must be given again.
pub async fn handle(
    store: &DynamoStore,
    records: &[StreamRecord],
    publisher: &impl Publisher,
) -> Option<String> {
    // (record index, entry) of the outbox entries among the records.
    let mut entries: Vec<(usize, AuditEvent)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if r.event_name != "INSERT" {
            continue;
        }
        match outbox_entry(store, &r.new_image) {
            Ok(Some(e)) => entries.push((i, e)),
            Ok(None) => {}
            // A corrupt entry (logged with its key by the parse): the batch fails from the
            // first entry not done, which is the first outbox entry before it if any (a
            // failure reported at the corrupt one would mark those done, unplaced). Lambda
            // halves the batch until the corrupt record is alone, then gives up on it after
            // its retries and reports it to the on-failure queue.
            Err(_) => {
                let first = entries.first().map_or(i, |(j, _)| *j);
                return Some(records[first].sequence_number.clone());
            }
        }
    }
    if entries.is_empty() {
        return None;
    }
    let audit: Vec<AuditEvent> = entries.iter().map(|(_, e)| e.clone()).collect();
    let placed = match store.sequence(&audit).await {
        Ok(placed) => placed,
        Err(e) => {
            tracing::warn!(error = %e, "placing events failed; the batch will be retried");
            return Some(records[entries[0].0].sequence_number.clone());
        }
    };
    let published = publisher.publish(&placed).await;
    for event in &placed[..published.min(placed.len())] {
        tracing::info!(
            event_id = %event.id,
            event_type = %event.kind,
            subject = %event.subject,
            sequence = %event.sequence,
            "event published"
        );
    }
    match entries.get(published) {
        None => None,
        Some((i, _)) => {
            tracing::warn!(
                published,
                of = placed.len(),
                "publishing failed; retrying from the first event not published"
            );
            Some(records[*i].sequence_number.clone())
        }
    }
}

/// The outbox entry an image holds, or `None` for any other item.
fn outbox_entry(
    store: &DynamoStore,
    image: &HashMap<String, AttributeValue>,
) -> Result<Option<AuditEvent>, ApiError> {
    let entity = match image.get("entity") {
        Some(AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    };
    if !events::is_outbox_entry(entity) {
        return Ok(None);
    }
    store.read_outbox_entry(image.clone()).map(Some)
}

/// Publishes nowhere: for a local consumer that only places events (the feed).
pub struct NoPublisher;

impl Publisher for NoPublisher {
    async fn publish(&self, events: &[CloudEvent]) -> usize {
        events.len()
    }
}
