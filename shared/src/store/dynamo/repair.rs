//! What the event pipeline has not finished, found through the outbox index (GSI6, keys
//! only, sparse): audit items not placed in the feed yet, and placed chunks whose events
//! were not published yet. The stream consumer keeps the index small (an entry leaves it
//! when placed, a chunk when published); the repair (`shared::consumer::repair`) finishes
//! what it gave up on.

use super::errors::{build_error, sdk_error};
use super::feed::{Chunk, ChunkRecord};
use super::keys::{self, OUTBOX_INDEX};
use super::outbox::AuditRecord;
use super::records::from_item;
use super::{DynamoStore, Item};
use crate::error::ApiError;
use crate::events::{self, CloudEvent};
use crate::model::*;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use std::collections::HashMap;

/// What one read of the outbox index found, oldest first.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Outbox entries without a place.
    pub unplaced: Vec<AuditEvent>,
    /// Chunks placed, not (all) published.
    pub unpublished: Vec<Chunk>,
    /// The index holds more in the window than this read took.
    pub more: bool,
    /// Items of the index that cannot be read (damaged): logged with their keys, left
    /// where they are, and counted as failed, so that one never stops the rest.
    pub unreadable: usize,
}

/// The window of a repair: entries written at or after `since`, and before `before` (the
/// live consumer's work is left to it).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub since: Option<Timestamp>,
    pub before: Timestamp,
}

impl DynamoStore {
    /// Marks `chunks` published: their records leave the table (and the outbox index).
    pub async fn published(&self, chunks: &[Chunk]) -> Result<(), ApiError> {
        for group in chunks.chunks(25) {
            let mut writes = Vec::with_capacity(group.len());
            for chunk in group {
                let (pk, sk) = keys::feed_chunk(&chunk.org, chunk.first);
                let delete = DeleteRequest::builder()
                    .key("PK", AttributeValue::S(pk))
                    .key("SK", AttributeValue::S(sk))
                    .build()
                    .map_err(|e| build_error("DeleteRequest", e))?;
                writes.push(WriteRequest::builder().delete_request(delete).build());
            }
            self.batch_write(writes).await?;
        }
        Ok(())
    }

    /// Up to `limit` entries of the outbox index in `window`, of one organisation (a Query)
    /// or of all (a Scan of the index, which holds only unfinished work), each read again
    /// from the table (consistently: the index lags, and an entry it still shows may have
    /// been placed meanwhile, which then does not count).
    pub async fn outbox(
        &self,
        org: Option<&OrgId>,
        window: Window,
        limit: usize,
    ) -> Result<Outbox, ApiError> {
        let (index, pk, sk) = OUTBOX_INDEX;
        let since = keys::outbox_at(window.since.map_or(0, |t| t.unix_millis()));
        let before = keys::outbox_at(window.before.unix_millis());
        let mut found: Vec<(String, String)> = Vec::new();
        let mut start: Option<Item> = None;
        let mut more = false;
        loop {
            let page = limit.saturating_sub(found.len()).clamp(1, 1000) as i32;
            let (items, last) = match org {
                Some(org) => {
                    let out = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .index_name(index)
                        .key_condition_expression("#pk = :pk AND #sk BETWEEN :since AND :before")
                        .expression_attribute_names("#pk", pk)
                        .expression_attribute_names("#sk", sk)
                        .expression_attribute_values(
                            ":pk",
                            AttributeValue::S(keys::outbox_partition(org)),
                        )
                        .expression_attribute_values(":since", AttributeValue::S(since.clone()))
                        .expression_attribute_values(":before", AttributeValue::S(before.clone()))
                        .limit(page)
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|e| sdk_error("Query", e))?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
                None => {
                    let out = self
                        .client
                        .scan()
                        .table_name(&self.table)
                        .index_name(index)
                        .filter_expression("#sk BETWEEN :since AND :before")
                        .expression_attribute_names("#sk", sk)
                        .expression_attribute_values(":since", AttributeValue::S(since.clone()))
                        .expression_attribute_values(":before", AttributeValue::S(before.clone()))
                        .limit(page)
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|e| sdk_error("Scan", e))?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
            };
            for item in items {
                let text = |name: &str| match item.get(name) {
                    Some(AttributeValue::S(s)) => Some(s.clone()),
                    _ => None,
                };
                if let (Some(pk), Some(sk)) = (text("PK"), text("SK")) {
                    found.push((pk, sk));
                }
            }
            start = last;
            if start.is_none() {
                break;
            }
            if found.len() >= limit {
                more = true;
                break;
            }
        }
        let mut outbox = Outbox {
            more,
            ..Outbox::default()
        };
        let (items, _, _) = self.batch_get(&found).await?;
        let mut by_key: HashMap<(String, String), Item> = HashMap::new();
        for item in items {
            let text = |name: &str| match item.get(name) {
                Some(AttributeValue::S(s)) => s.clone(),
                _ => String::new(),
            };
            by_key.insert((text("PK"), text("SK")), item);
        }
        // In the index's order (oldest first within an organisation).
        for key in found {
            let Some(item) = by_key.remove(&key) else {
                continue; // Finished (a chunk published) since the index was read.
            };
            match item.get("entity") {
                Some(AttributeValue::S(e)) if e == "feedChunk" => {
                    match from_item::<ChunkRecord>(item) {
                        Ok(r) => outbox.unpublished.push(Chunk {
                            org: r.organization_id,
                            first: r.first,
                            through: r.through,
                        }),
                        Err(_) => {
                            tracing::error!(pk = %key.0, sk = %key.1, "a damaged chunk in the outbox; left for an operator");
                            outbox.unreadable += 1;
                        }
                    }
                }
                Some(AttributeValue::S(e)) if events::is_outbox_entry(Some(e)) => {
                    // Placed since the index was read: its chunk stands for it.
                    if item.contains_key("feedSequence") {
                        continue;
                    }
                    match from_item::<AuditRecord>(item).and_then(AuditRecord::into_event) {
                        Ok(entry) => outbox.unplaced.push(entry),
                        Err(_) => {
                            tracing::error!(pk = %key.0, sk = %key.1, "a damaged audit entry in the outbox; left for an operator");
                            outbox.unreadable += 1;
                        }
                    }
                }
                _ => {
                    tracing::error!(pk = %key.0, sk = %key.1, "an item in the outbox index that is neither an entry nor a chunk");
                }
            }
        }
        Ok(outbox)
    }

    /// The events of a chunk that are still live (a place past its retention is left out).
    pub async fn chunk_events(&self, chunk: &Chunk) -> Result<Vec<CloudEvent>, ApiError> {
        let n = (chunk.through + 1).saturating_sub(chunk.first) as usize;
        let (entries, _) = self.feed_page(&chunk.org, chunk.first - 1, n, &[]).await?;
        Ok(entries
            .into_iter()
            .filter(|e| e.seq <= chunk.through)
            .filter_map(|e| e.event.map(|a| events::from_audit(&a, e.seq)))
            .collect())
    }
}
