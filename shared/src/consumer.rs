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
use crate::model::OrgId;
use crate::store::dynamo::{Chunk, Placing, Window};
use crate::store::DynamoStore;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{HashMap, HashSet};
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
    let placing = match store.sequence(&audit).await {
        Ok(placing) => placing,
        Err(e) => {
            tracing::warn!(error = %e, "placing events failed; the batch will be retried");
            return Some(records[entries[0].0].sequence_number.clone());
        }
    };
    let published = publish(store, &placing, publisher).await;
    let now = crate::model::Timestamp::now().unix_millis();
    let oldest = audit.iter().map(|e| e.occurred_at.unix_millis()).min();
    let waited = oldest.map_or(0, |t| (now - t).max(0) as u64);
    crate::metrics::placed(published, std::time::Duration::from_millis(waited));
    match entries.get(published) {
        None => None,
        Some((i, _)) => {
            tracing::warn!(
                published,
                of = placing.events.len(),
                "publishing failed; retrying from the first event not published"
            );
            Some(records[*i].sequence_number.clone())
        }
    }
}

/// Publishes the events placed, in order, then marks published each chunk placed whose
/// events all were; answers how many events, from the front, are published. A chunk not
/// marked (a failure here) stays in the outbox index: the repair publishes it again, which
/// receivers see as a repeat of the same event `id`.
async fn publish(store: &DynamoStore, placing: &Placing, publisher: &impl Publisher) -> usize {
    let events = &placing.events;
    let published = publisher.publish(events).await.min(events.len());
    for event in &events[..published] {
        tracing::info!(
            event_id = %event.id,
            event_type = %event.kind,
            subject = %event.subject,
            sequence = %event.sequence,
            "event published"
        );
    }
    let done: HashSet<(&str, &str)> = events[..published]
        .iter()
        .map(|e| (e.data.organization_id.as_str(), e.sequence.as_str()))
        .collect();
    let finished: Vec<Chunk> = placing
        .chunks
        .iter()
        .filter(|c| {
            (c.first..=c.through)
                .all(|p| done.contains(&(c.org.as_str(), events::sequence_text(p).as_str())))
        })
        .cloned()
        .collect();
    if let Err(e) = store.published(&finished).await {
        tracing::warn!(error = %e, chunks = finished.len(), "cannot mark chunks published; the repair will publish them again");
    }
    published
}

/// What [`repair`] did.
#[derive(Debug, Default, PartialEq)]
pub struct Repaired {
    /// Outbox entries that had no place, placed and published.
    pub placed: usize,
    /// Events placed before but never published, published.
    pub published: usize,
    /// Chunks or entries that failed again (left for the next repair).
    pub failed: usize,
}

/// Finishes what the stream consumer gave up on (an outage longer than its retries): each
/// outbox entry in `window` without a place gets one and is published; each placed chunk
/// never published is published. Exactly once per event after dedup by `id`: placing is
/// idempotent, and a receiver (the webhook deliveries, a feed reader) tells a repeat by its
/// `id`. Runs until the window is empty or a round finishes nothing.
pub async fn repair(
    store: &DynamoStore,
    org: Option<&OrgId>,
    window: Window,
    publisher: &impl Publisher,
) -> Result<Repaired, ApiError> {
    let mut done = Repaired::default();
    // Damaged items are read again by each round: counted once.
    let mut unreadable = 0;
    let mut first_round = true;
    loop {
        let outbox = store.outbox(org, window, 500).await?;
        unreadable = unreadable.max(outbox.unreadable);
        if std::mem::take(&mut first_round) {
            // How long the oldest entry the stream consumer gave up on has waited (zero:
            // none): the metric an alarm watches.
            let now = crate::model::Timestamp::now().unix_millis();
            let oldest = outbox
                .unplaced
                .iter()
                .map(|e| e.occurred_at.unix_millis())
                .min();
            let age = oldest.map_or(0, |t| (now - t).max(0) as u64);
            crate::metrics::oldest_unplaced(std::time::Duration::from_millis(age));
        }
        let before = (done.placed, done.published);
        if !outbox.unplaced.is_empty() {
            let mut entries = outbox.unplaced;
            // Each organisation's entries in the order they were written.
            entries.sort_by(|a, b| {
                (
                    &a.organization_id,
                    a.occurred_at.unix_millis(),
                    a.id.as_str(),
                )
                    .cmp(&(
                        &b.organization_id,
                        b.occurred_at.unix_millis(),
                        b.id.as_str(),
                    ))
            });
            // One organisation at a time: one that fails leaves the others placed.
            for group in entries.chunk_by(|a, b| a.organization_id == b.organization_id) {
                match store.sequence(group).await {
                    Ok(placing) => {
                        let n = publish(store, &placing, publisher).await;
                        done.placed += n;
                        done.failed += group.len() - n;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, org = %group[0].organization_id, entries = group.len(), "repair: placing failed");
                        done.failed += group.len();
                    }
                }
            }
        }
        for chunk in &outbox.unpublished {
            let events = match store.chunk_events(chunk).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, org = %chunk.org, first = chunk.first, "repair: cannot read a chunk");
                    done.failed += 1;
                    continue;
                }
            };
            let n = publisher.publish(&events).await.min(events.len());
            done.published += n;
            if n < events.len() {
                done.failed += 1;
                continue;
            }
            if let Err(e) = store.published(std::slice::from_ref(chunk)).await {
                tracing::warn!(error = %e, "repair: cannot mark a chunk published");
                done.failed += 1;
            }
        }
        if !outbox.more || (done.placed, done.published) == before {
            done.failed += unreadable;
            return Ok(done);
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
