//! The event feed of an organisation: each outbox entry (audit item) given a place.
//!
//! Partition `ORG#<org>#EVENTS`: the counter item (`SK = #SEQUENCE`, `last`) and one small
//! item per event (`SK` = its place as 20 digits) that points at its audit item. Places are
//! handed out by one transaction that moves the counter from the value read to `last + n`
//! and writes places `last+1 ..= last+n`, so the places visible at any moment are exactly
//! `1..=last`: dense, and a later event never gets a smaller one (docs/design.md, "The
//! event feed"). The audit item is marked with its place (`feedSequence`) in the same
//! transaction, so an entry delivered twice by the stream gets one place.

use super::errors::{build_error, sdk_error};
use super::outbox::AuditRecord;
use super::records::from_item;
use super::tx::{Guarded, TxFailure};
use super::{keys, DynamoStore, Item};
use crate::error::ApiError;
use crate::events::{self, CloudEvent};
use crate::model::*;
use crate::store::{FeedEntry, FeedHead, PlaceState};
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Entries placed by one transaction: the counter, two items each and the chunk's record,
/// DynamoDB's 100.
const PLACES_PER_TRANSACTION: usize = 49;
/// The most rounds one organisation's entries may take (each round re-reads the counter
/// another consumer moved, or places a chunk).
const MAX_ROUNDS: usize = 64;
/// The most feed items one read scans (the `types` filter can make matches sparse).
pub const FEED_SCAN_CAP: usize = 1000;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SequenceRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    last: u64,
    /// The expiry given to place `last`: later places never expire earlier, whatever the
    /// clocks of the consumers that place them (a later place expiring first would make a
    /// reader at the retention's edge see a gap that is no loss).
    #[serde(default)]
    last_expires_at: i64,
    /// Made with the counter (a ULID; a counter of an earlier version gets one at its next
    /// move): a re-created feed has another, so a cursor of the earlier one is told apart
    /// (410 `feed_reset`). A restored table brings its counter back, epoch and all.
    #[serde(default)]
    epoch: Option<String>,
}

/// The transaction size DynamoDB allows is 4 MB of items; a chunk stays under this, counted
/// as the entries' JSON (an upper bound of their item size, which the marked audit items
/// count with).
const CHUNK_BYTES: usize = 3 * 1024 * 1024;

/// What [`DynamoStore::sequence`] did: the events of the entries, in the order given, and
/// the chunks it placed.
pub struct Placing {
    pub events: Vec<CloudEvent>,
    pub chunks: Vec<Chunk>,
}

/// Places `first..=through` of an organisation's feed, placed by one transaction: a record
/// of it (`#PUBLISH#<first>`, in the outbox index) stays until its events are published.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub org: OrgId,
    pub first: u64,
    pub through: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ChunkRecord {
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub entity: String,
    pub organization_id: OrgId,
    pub first: u64,
    pub through: u64,
    #[serde(rename = "GSI6PK")]
    pub outbox_pk: String,
    #[serde(rename = "GSI6SK")]
    pub outbox_sk: String,
    /// Gone with its places.
    pub expires_at: i64,
}

impl ChunkRecord {
    /// The chunk's record, in the outbox at the time of its oldest entry (`oldest`): a
    /// repair's window (`--since`, `--older-than`) finds it where it finds its entries.
    pub(super) fn of(chunk: &Chunk, expires_at: i64, oldest: Timestamp) -> Self {
        let (pk, sk) = keys::feed_chunk(&chunk.org, chunk.first);
        ChunkRecord {
            pk,
            sk,
            entity: "feedChunk".into(),
            organization_id: chunk.org.clone(),
            first: chunk.first,
            through: chunk.through,
            outbox_pk: keys::outbox_partition(&chunk.org),
            outbox_sk: keys::outbox_at(oldest.unix_millis()),
            expires_at,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(rename = "type")]
    kind: String,
    audit_pk: String,
    audit_sk: String,
    /// TTL: 30 days after the event got its place.
    expires_at: i64,
}

impl DynamoStore {
    /// Gives each outbox entry its place in its organisation's feed (an entry that already
    /// has one keeps it) and returns the events, in the order given, with the chunks this
    /// call placed (each to be marked published, [`DynamoStore::published`], once its
    /// events are). Entries of one organisation get increasing places in that order.
    pub async fn sequence(&self, entries: &[AuditEvent]) -> Result<Placing, ApiError> {
        let mut placed: Vec<Option<CloudEvent>> = vec![None; entries.len()];
        let mut chunks = Vec::new();
        let mut orgs: Vec<&OrgId> = entries.iter().map(|e| &e.organization_id).collect();
        orgs.dedup();
        orgs.sort();
        orgs.dedup();
        // Organisations are independent: placed concurrently, a few at a time.
        for group in orgs.chunks(16) {
            let runs = group.iter().map(|org| {
                let pending: Vec<usize> = (0..entries.len())
                    .filter(|&i| &entries[i].organization_id == *org)
                    .collect();
                self.sequence_org(org, entries, pending)
            });
            for run in futures_util::future::join_all(runs).await {
                let (events, new) = run?;
                for (i, event) in events {
                    placed[i] = Some(event);
                }
                chunks.extend(new);
            }
        }
        let events = placed
            .into_iter()
            .map(|p| p.ok_or(ApiError::Internal))
            .collect::<Result<_, _>>()?;
        Ok(Placing { events, chunks })
    }

    async fn sequence_org(
        &self,
        org: &OrgId,
        entries: &[AuditEvent],
        mut pending: Vec<usize>,
    ) -> Result<(Vec<(usize, CloudEvent)>, Vec<Chunk>), ApiError> {
        let mut placed: Vec<(usize, CloudEvent)> = Vec::with_capacity(pending.len());
        let mut chunks = Vec::new();
        let counter = keys::feed_sequence(org);
        for _ in 0..MAX_ROUNDS {
            if pending.is_empty() {
                return Ok((placed, chunks));
            }
            let read = self.get::<SequenceRecord>(counter.clone()).await?;
            let last = read.as_ref().map(|r| r.last);
            let expires_at = (Timestamp::now().unix_seconds() + events::RETENTION_SECONDS)
                .max(read.map_or(0, |r| r.last_expires_at));
            let chunk = chunk(entries, &pending);
            let first = last.unwrap_or(0) + 1;
            let mut items = vec![(
                Guarded::FeedSequence,
                self.move_counter(org, last, chunk.len() as u64, expires_at)?,
            )];
            for (j, &i) in chunk.iter().enumerate() {
                let seq = first + j as u64;
                items.push((Guarded::Outbox(j), self.mark_entry(&entries[i], seq)?));
                items.push((
                    Guarded::FeedEvent,
                    super::tx::put(&self.table, &feed_record(&entries[i], seq, expires_at))?,
                ));
            }
            let oldest = chunk
                .iter()
                .map(|&i| entries[i].occurred_at)
                .min()
                .unwrap_or_else(Timestamp::now);
            let new = Chunk {
                org: org.clone(),
                first,
                through: first + chunk.len() as u64 - 1,
            };
            // Written whatever is there: a chunk of the same first place can only be of a
            // feed since re-created (a new epoch), whose events are gone.
            let chunk_record = Put::builder()
                .table_name(&self.table)
                .set_item(Some(super::records::to_item(&ChunkRecord::of(
                    &new, expires_at, oldest,
                ))?))
                .build()
                .map_err(|e| build_error("Put", e))?;
            items.push((
                Guarded::FeedEvent,
                TransactWriteItem::builder().put(chunk_record).build(),
            ));
            match self
                .transact(items, || ApiError::Unavailable {
                    retry_after_seconds: 1,
                })
                .await
            {
                Ok(()) => {
                    for (j, &i) in chunk.iter().enumerate() {
                        placed.push((i, events::from_audit(&entries[i], first + j as u64)));
                    }
                    chunks.push(new);
                    pending.drain(..chunk.len());
                }
                Err(TxFailure::Refused(refused)) => {
                    // An entry placed before (the stream delivered it again) keeps its place;
                    // a counter another consumer moved is read again.
                    let mut settled = Vec::new();
                    for (guard, old) in refused {
                        if let (Guarded::Outbox(j), Some(old)) = (guard, old) {
                            let Some(seq) = placed_at(&old) else {
                                tracing::error!("an outbox entry refused its place without one");
                                return Err(ApiError::Internal);
                            };
                            let i = chunk[j];
                            placed.push((i, events::from_audit(&entries[i], seq)));
                            settled.push(i);
                        }
                    }
                    pending.retain(|i| !settled.contains(i));
                }
                Err(TxFailure::Error(e)) => return Err(e),
            }
        }
        tracing::warn!("sequencing did not settle; the batch will be retried");
        Err(ApiError::Unavailable {
            retry_after_seconds: 1,
        })
    }

    /// The outbox entry an audit item's image (from the stream) holds.
    pub fn read_outbox_entry(&self, image: Item) -> Result<AuditEvent, ApiError> {
        from_item::<AuditRecord>(image)?.into_event()
    }

    /// The counter from `last` (as read; `None`: never moved) to `last + n`.
    fn move_counter(
        &self,
        org: &OrgId,
        last: Option<u64>,
        n: u64,
        expires_at: i64,
    ) -> Result<TransactWriteItem, ApiError> {
        let (pk, sk) = keys::feed_sequence(org);
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            // A counter made by an earlier version gets its epoch at its next move.
            .update_expression(
                "SET #last = :new, lastExpiresAt = :expires, epoch = if_not_exists(epoch, :epoch)",
            )
            .expression_attribute_names("#last", "last")
            .expression_attribute_values(
                ":epoch",
                AttributeValue::S(ulid::Ulid::generate().to_string().to_lowercase()),
            )
            .expression_attribute_values(":expires", AttributeValue::N(expires_at.to_string()))
            .expression_attribute_values(
                ":new",
                AttributeValue::N((last.unwrap_or(0) + n).to_string()),
            );
        update = match last {
            None => update.condition_expression("attribute_not_exists(PK)"),
            Some(last) => update
                .condition_expression("#last = :old")
                .expression_attribute_values(":old", AttributeValue::N(last.to_string())),
        };
        let update = update.build().map_err(|e| build_error("Update", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The audit item takes its place, unless it has one (then its old image says which).
    fn mark_entry(&self, e: &AuditEvent, seq: u64) -> Result<TransactWriteItem, ApiError> {
        let (pk, sk) = keys::audit(&e.organization_id, e.member_id.as_ref(), &e.id);
        let update = Update::builder()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            // Out of the outbox index: placed (its chunk's record stands for it until its
            // event is published).
            .update_expression("SET feedSequence = :seq REMOVE GSI6PK, GSI6SK")
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(feedSequence)")
            .expression_attribute_values(":seq", AttributeValue::N(seq.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| build_error("Update", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The feed after place `after`, oldest first: every item read (at most `limit` that
    /// match `types`, none at all after [`FEED_SCAN_CAP`] items), with the entry of each
    /// live match; and whether the feed goes on. Consistent reads only: an index could show
    /// place 7 before place 6.
    pub(super) async fn feed_page(
        &self,
        org: &OrgId,
        after: u64,
        limit: usize,
        types: &[String],
    ) -> Result<(Vec<FeedEntry>, bool), ApiError> {
        let now = Timestamp::now().unix_seconds();
        let wanted = |kind: &str| types.is_empty() || types.iter().any(|t| t == kind);
        let mut scanned: Vec<(u64, FeedRecord)> = Vec::new();
        let mut matched = 0;
        let mut start: Option<Item> = None;
        let mut more = false;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK > :after")
                .expression_attribute_values(":pk", AttributeValue::S(keys::feed_partition(org)))
                .expression_attribute_values(
                    ":after",
                    AttributeValue::S(events::sequence_text(after)),
                )
                .consistent_read(true)
                .limit(match types.is_empty() {
                    // Places are small: at least 100 a Query, so expired places at the
                    // head (TTL deletes within days) cost few round trips.
                    true => (limit + 1 - matched)
                        .max(100)
                        .min(FEED_SCAN_CAP - scanned.len()),
                    false => FEED_SCAN_CAP - scanned.len(),
                } as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            start = out.last_evaluated_key().cloned();
            for item in out.items.unwrap_or_default() {
                let record: FeedRecord = from_item(item)?;
                let seq = record.sk.parse::<u64>().map_err(|_| {
                    tracing::error!(sk = %record.sk, "a feed item with a bad place");
                    ApiError::Internal
                })?;
                if matched == limit {
                    more = true;
                    break;
                }
                if wanted(&record.kind) && record.expires_at > now {
                    matched += 1;
                }
                scanned.push((seq, record));
            }
            if more || start.is_none() {
                break;
            }
            if scanned.len() >= FEED_SCAN_CAP {
                more = true;
                break;
            }
        }
        let live: Vec<(String, String)> = scanned
            .iter()
            .filter(|(_, r)| wanted(&r.kind) && r.expires_at > now)
            .map(|(_, r)| (r.audit_pk.clone(), r.audit_sk.clone()))
            .collect();
        let mut loaded = self.audit_entries(&live).await?;
        let entries = scanned
            .into_iter()
            .map(|(seq, r)| {
                let expired = r.expires_at <= now;
                let event = match wanted(&r.kind) && !expired {
                    true => Some(loaded.remove(&(r.audit_pk, r.audit_sk)).ok_or_else(|| {
                        tracing::error!(seq, "a feed item points at no audit item");
                        ApiError::Internal
                    })?),
                    false => None,
                };
                Ok(FeedEntry {
                    seq,
                    expired,
                    event,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok((entries, more))
    }

    /// The feed's last place and epoch.
    pub(super) async fn head(&self, org: &OrgId) -> Result<FeedHead, ApiError> {
        Ok(self
            .get::<SequenceRecord>(keys::feed_sequence(org))
            .await?
            .map(|r| FeedHead {
                last: r.last,
                epoch: r.epoch,
            })
            .unwrap_or_default())
    }

    /// Whether place `seq` exists now: the counter is read first, so a place at or below it
    /// that is absent was given and then deleted (TTL), not still being committed.
    pub(super) async fn place_state(&self, org: &OrgId, seq: u64) -> Result<PlaceState, ApiError> {
        let last = self
            .get::<SequenceRecord>(keys::feed_sequence(org))
            .await?
            .map_or(0, |r| r.last);
        if seq > last {
            return Ok(PlaceState::NotYet);
        }
        let place = (keys::feed_partition(org), events::sequence_text(seq));
        let now = Timestamp::now().unix_seconds();
        Ok(match self.get::<FeedRecord>(place).await? {
            Some(r) if r.expires_at > now => PlaceState::Live,
            _ => PlaceState::Gone,
        })
    }

    /// The event at place `seq` of the feed, whole; `None` once it is past retention.
    pub async fn feed_event(&self, org: &OrgId, seq: u64) -> Result<Option<CloudEvent>, ApiError> {
        let place = (keys::feed_partition(org), events::sequence_text(seq));
        let now = Timestamp::now().unix_seconds();
        let Some(r) = self
            .get::<FeedRecord>(place)
            .await?
            .filter(|r| r.expires_at > now)
        else {
            return Ok(None);
        };
        match self.get::<AuditRecord>((r.audit_pk, r.audit_sk)).await? {
            Some(a) => Ok(Some(events::from_audit(&a.into_event()?, seq))),
            None => Ok(None),
        }
    }

    /// Audit entries by key, consistent (`batch_get`).
    async fn audit_entries(
        &self,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), AuditEvent>, ApiError> {
        let mut out = HashMap::new();
        for item in self.batch_get(keys).await?.0 {
            let e = from_item::<AuditRecord>(item)?.into_event()?;
            let key = keys::audit(&e.organization_id, e.member_id.as_ref(), &e.id);
            out.insert(key, e);
        }
        Ok(out)
    }
}

/// The first pending entries that one transaction can place: at most
/// [`PLACES_PER_TRANSACTION`], and [`CHUNK_BYTES`] (always at least one).
fn chunk(entries: &[AuditEvent], pending: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for &i in pending.iter().take(PLACES_PER_TRANSACTION) {
        let size = serde_json::to_string(&entries[i]).map_or(CHUNK_BYTES, |t| t.len()) + 512;
        if !out.is_empty() && bytes + size > CHUNK_BYTES {
            break;
        }
        bytes += size;
        out.push(i);
    }
    out
}

fn feed_record(e: &AuditEvent, seq: u64, expires_at: i64) -> FeedRecord {
    let (audit_pk, audit_sk) = keys::audit(&e.organization_id, e.member_id.as_ref(), &e.id);
    FeedRecord {
        pk: keys::feed_partition(&e.organization_id),
        sk: events::sequence_text(seq),
        entity: "feedEvent".into(),
        kind: e.action.clone(),
        audit_pk,
        audit_sk,
        expires_at,
    }
}

/// The place an audit item was given, from its image.
fn placed_at(item: &Item) -> Option<u64> {
    match item.get("feedSequence") {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dynamo::records::to_item;

    #[test]
    fn a_place_sorts_as_its_number_and_a_feed_item_points_at_its_entry() {
        let org = OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}"));
        let e = AuditEvent {
            id: AuditEventId::generate(),
            organization_id: org.clone(),
            member_id: None,
            role_id: None,
            webhook_id: None,
            group_id: None,
            actor_key_id: None,
            action: "organization.updated".into(),
            changes: Default::default(),
            justification: None,
            request_id: None,
            member_version: 2,
            occurred_at: Timestamp::now(),
            resource: None,
        };
        let r = feed_record(&e, 9, 1);
        assert_eq!(r.pk, keys::feed_partition(&org));
        assert!(r.sk < feed_record(&e, 10, 1).sk);
        // The counter item sorts before every place, so `SK > place` never returns it.
        assert!(keys::feed_sequence(&org).1 < events::sequence_text(0));
        assert_eq!((r.audit_pk, r.audit_sk), keys::audit(&org, None, &e.id));
        // A transaction places at most 49 entries and ~3 MB of them.
        let small: Vec<AuditEvent> = (0..120).map(|_| e.clone()).collect();
        let all: Vec<usize> = (0..small.len()).collect();
        assert_eq!(chunk(&small, &all).len(), PLACES_PER_TRANSACTION);
        let mut big = e.clone();
        big.resource = Some(serde_json::json!("x".repeat(300 * 1024)));
        let large: Vec<AuditEvent> = (0..20).map(|_| big.clone()).collect();
        assert_eq!(chunk(&large, &(0..20).collect::<Vec<_>>()).len(), 10);
        let mut huge = e.clone();
        huge.resource = Some(serde_json::json!("x".repeat(4 * 1024 * 1024)));
        assert_eq!(chunk(&[huge], &[0]).len(), 1, "one always goes");
        let item = to_item(&feed_record(&e, 1, 1)).unwrap_or_default();
        assert_eq!(item.get("type"), Some(&AttributeValue::S(e.action)));
    }
}
