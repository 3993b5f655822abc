//! `membersctl events consume`: the local stand-in for the `publish-events` function, and
//! for `deliver-webhooks` with its queue. It reads the table's stream from DynamoDB Local
//! (the real Streams API) and does what the function does on AWS (`shared::consumer::handle`):
//! places each new outbox entry in its organisation's feed, then queues it for webhooks. Lambda keeps an event source mapping's position; here each shard's
//! position is an item of the table (`LOCAL#STREAM`, the shard id), moved only after a batch
//! is done, so a consumer killed mid-batch resumes where it stood and loses nothing.

use aws_sdk_dynamodbstreams::types::{Shard, ShardIteratorType};
use aws_sdk_dynamodbstreams::Client as Streams;
use shared::consumer::{handle, Publisher, Repaired, StreamRecord};
use shared::events::CloudEvent;
use shared::model::{OrgId, Timestamp};
use shared::store::dynamo::Window;
use shared::store::DynamoStore;
use shared::webhooks::deliver::{deliver_event, Sender};
use shared::webhooks::EventRef;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// The partition of the shards' checkpoints.
const CHECKPOINTS: &str = "LOCAL#STREAM";

/// How long the consumer waits when the stream has nothing new.
const IDLE: Duration = Duration::from_millis(100);

/// Prints each event as it is placed (`event <sequence> <type> <subject> <id>`; on stderr
/// when the second field says so: the repair's stdout is its report) and queues it for
/// webhook delivery, as the EventBridge rule does on AWS.
struct LocalPublisher<'a>(&'a DynamoStore, Echo);

#[derive(Clone, Copy, PartialEq)]
enum Echo {
    Stdout,
    Stderr,
}

impl Publisher for LocalPublisher<'_> {
    async fn publish(&self, events: &[CloudEvent]) -> usize {
        let refs: Vec<EventRef> = events.iter().map(EventRef::of).collect();
        if let Err(err) = self.0.queue_local_now(&refs).await {
            eprintln!("membersctl: cannot queue events for webhooks: {err}");
            return 0;
        }
        for e in events {
            let line = format!("event {} {} {} {}", e.sequence, e.kind, e.subject, e.id);
            match self.1 {
                Echo::Stdout => println!("{line}"),
                Echo::Stderr => eprintln!("{line}"),
            }
        }
        events.len()
    }
}

/// Deliveries in flight at once, and for one organisation: an organisation whose endpoints
/// hang takes at most [`PER_ORG`] of the [`SLOTS`], so the others' go on.
const SLOTS: usize = 32;
const PER_ORG: usize = 8;
/// The due queue is read in pages of this many, at most [`PAGES`] a round, to find events
/// of organisations with a free slot behind those of one without.
const PAGE: i32 = 100;
const PAGES: usize = 10;

/// The local stand-in for `deliver-webhooks` and its queue: due events from the table's
/// queue partition, each delivered (signed), then queued again for its next retry if a
/// delivery failed; up to [`SLOTS`] at once, fairly between organisations. An event leaves
/// the queue only after its retry is queued, so a consumer killed meanwhile delivers it
/// again (at least once). The queue is read at most every [`IDLE`]: what it held and could
/// not start yet waits in memory for a free slot, so a backlog costs no read per delivery.
async fn deliver_forever(store: DynamoStore) {
    let store = Arc::new(store);
    let sender = Sender::from_env();
    let mut running: JoinSet<()> = JoinSet::new();
    // Each task's queue key and organisation, by task.
    let mut tasks: HashMap<tokio::task::Id, (String, OrgId)> = HashMap::new();
    let mut per_org: HashMap<OrgId, usize> = HashMap::new();
    // Due events read and not started yet, in queue order.
    let mut waiting: Vec<(String, EventRef)> = Vec::new();
    // Each read takes the queue's head, then goes on from where the last read stopped
    // (back to the head once it reached the end): events behind more than a read's pages
    // are reached too, and what just became due is never behind a long backlog.
    let mut after: Option<String> = None;
    let mut read_at: Option<tokio::time::Instant> = None;
    loop {
        if read_at.is_none_or(|at| at.elapsed() >= IDLE) {
            match read_due(&store, &mut after, &tasks, &per_org).await {
                Ok(due) => waiting = due,
                Err(e) => {
                    // Read again after a pause (DynamoDB Local restarting), not in a loop.
                    eprintln!("membersctl: cannot read the webhook queue: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            // From the end of the read: a slow read is not followed by another at once.
            read_at = Some(tokio::time::Instant::now());
        }
        waiting.retain(|(key, event)| {
            let org = &event.organization_id;
            let n = per_org.get(org).copied().unwrap_or(0);
            if running.len() >= SLOTS || n >= PER_ORG || tasks.values().any(|(k, _)| k == key) {
                return true;
            }
            per_org.insert(org.clone(), n + 1);
            let (store, sender, queued, event) =
                (store.clone(), sender.clone(), key.clone(), event.clone());
            let task = running.spawn(shared::metrics::scoped("deliver-webhooks", async move {
                deliver_one(&store, &sender, &queued, &event).await
            }));
            tasks.insert(task.id(), (key.clone(), org.clone()));
            false
        });
        // Wait for a delivery to end, or for the time to read the queue again.
        let next_read = read_at
            .map(|at| at + IDLE)
            .unwrap_or_else(tokio::time::Instant::now);
        let mut ended = match running.is_empty() {
            true => {
                tokio::time::sleep_until(next_read).await;
                None
            }
            false => tokio::select! {
                ended = running.join_next_with_id() => ended,
                _ = tokio::time::sleep_until(next_read) => None,
            },
        };
        while let Some(result) = ended {
            let id = match result {
                Ok((id, ())) => id,
                Err(e) => e.id(),
            };
            if let Some((_, org)) = tasks.remove(&id) {
                if let Some(n) = per_org.get_mut(&org) {
                    *n -= 1;
                    if *n == 0 {
                        per_org.remove(&org);
                    }
                }
            }
            ended = running.try_join_next_with_id();
        }
    }
}

/// Due events of the queue not yet running, in pages of [`PAGE`], until the pages read
/// hold enough to fill the free slots (within each organisation's share) or [`PAGES`] were
/// read. An error only when the first page could not be read.
async fn read_due(
    store: &DynamoStore,
    after: &mut Option<String>,
    tasks: &HashMap<tokio::task::Id, (String, OrgId)>,
    per_org: &HashMap<OrgId, usize>,
) -> Result<Vec<(String, EventRef)>, shared::ApiError> {
    let mut out = Vec::new();
    let mut free = SLOTS.saturating_sub(tasks.len());
    let mut shares = per_org.clone();
    for n in 0..PAGES {
        if free == 0 {
            break;
        }
        let from = match n {
            0 => None,
            _ => after.clone(),
        };
        let page = match store.due_local(PAGE, from.as_deref()).await {
            Ok(page) => page,
            Err(e) if n == 0 => return Err(e),
            // What the first pages held is worth starting; the rest is read next time.
            Err(_) => break,
        };
        let full = page.len() == PAGE as usize;
        let last = page.last().map(|(key, _)| key.clone());
        // The head page alone keeps a cursor carried from the last read, unless the whole
        // queue fits it.
        if n > 0 || after.is_none() || !full {
            *after = if full { last } else { None };
        }
        for (key, event) in page {
            if tasks.values().any(|(k, _)| *k == key) || out.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let share = shares.entry(event.organization_id.clone()).or_default();
            if *share < PER_ORG && free > 0 {
                *share += 1;
                free -= 1;
            }
            out.push((key, event));
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

/// One queued event: delivered, its retry queued if one is due, then off the queue.
async fn deliver_one(store: &DynamoStore, sender: &Sender, key: &str, event: &EventRef) {
    let retry = match deliver_event(store, sender, event).await {
        Ok(retry) => retry,
        Err(e) => {
            eprintln!(
                "membersctl: delivering {} failed ({e}); retrying in 5 s",
                event.id
            );
            Some(Duration::from_secs(5))
        }
    };
    if let Some(delay) = retry {
        if let Err(e) = store.queue_local(event, delay).await {
            // Left where it is: read again after a pause, not in a tight loop.
            eprintln!("membersctl: cannot queue a retry ({e})");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
    }
    if let Err(e) = store.unqueue_local(key).await {
        eprintln!("membersctl: cannot take a delivered event off the queue ({e})");
    }
}

/// Timeouts for a worker that waits on a busy DynamoDB Local rather than giving up.
pub fn patient_timeouts() -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(60))
        .build()
}

/// How the consumer meets failure.
pub struct Policy {
    /// Attempts of one batch before it is given up (`None`: never).
    pub max_retries: Option<u32>,
    /// How often the repair runs (and the age of what it repairs); zero: never.
    pub repair_every: Duration,
}

/// `membersctl events repair`: the repair with the local publisher (the webhook queue).
pub async fn repair(
    store: &DynamoStore,
    org: Option<&OrgId>,
    window: Window,
) -> Result<Repaired, shared::ApiError> {
    shared::consumer::repair(store, org, window, &LocalPublisher(store, Echo::Stderr)).await
}

/// The repair every `every`, of entries older than `every`: what the `repair-events`
/// function does on AWS on its schedule.
async fn repair_forever(store: DynamoStore, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let window = Window {
            since: None,
            before: Timestamp::now().plus_millis(-(every.as_millis() as i64)),
        };
        match repair(&store, None, window).await {
            Ok(done) if done == Repaired::default() => {}
            Ok(done) => eprintln!("membersctl: repair: {done:?}"),
            Err(e) => eprintln!("membersctl: repair failed ({e}); trying at the next round"),
        }
    }
}

/// Runs until stopped. Only a table without a stream ends it: every other failure (a
/// timeout, DynamoDB Local restarting) is logged and tried again after a pause, up to
/// `policy.max_retries` times for a batch.
pub async fn run(store: &DynamoStore, streams: &Streams, policy: Policy) -> Result<(), String> {
    let stream = loop {
        match store
            .client()
            .describe_table()
            .table_name(store.table())
            .send()
            .await
        {
            Ok(out) => {
                break out.table.and_then(|t| t.latest_stream_arn).ok_or_else(|| {
                    format!(
                        "table {} has no stream; create it with `membersctl create-table` (a \
                         table made before events existed: delete and recreate it locally)",
                        store.table()
                    )
                })?
            }
            Err(e) => {
                eprintln!(
                    "membersctl: cannot describe table {} ({e}); trying again",
                    store.table()
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    eprintln!(
        "membersctl: consuming the stream of table {}",
        store.table()
    );
    tokio::spawn(deliver_forever(store.clone()));
    if !policy.repair_every.is_zero() {
        tokio::spawn(repair_forever(store.clone(), policy.repair_every));
    }
    // Failed attempts of each shard's current batch.
    let mut attempts: HashMap<String, u32> = HashMap::new();
    let mut iterators: HashMap<String, String> = HashMap::new();
    let mut closed: HashSet<String> = HashSet::new();
    loop {
        let shards = match shards(streams, &stream).await {
            Ok(shards) => shards,
            Err(e) => {
                eprintln!("membersctl: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let known: HashSet<&str> = shards.iter().filter_map(|s| s.shard_id()).collect();
        let mut busy = false;
        for shard in &shards {
            let Some(id) = shard.shard_id() else { continue };
            // A child shard waits for its parent: one item's records stay in order.
            let parent_open = shard
                .parent_shard_id()
                .is_some_and(|p| known.contains(p) && !closed.contains(p));
            if closed.contains(id) || parent_open {
                continue;
            }
            let iterator = match iterators.remove(id) {
                Some(it) => it,
                None => match iterator(store, streams, &stream, id).await {
                    Ok(it) => it,
                    Err(e) => {
                        eprintln!("membersctl: {e}; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            let out = match streams
                .get_records()
                .shard_iterator(&iterator)
                // GetRecords' most: fewer round trips, checkpoints and shard listings.
                .limit(1000)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    eprintln!(
                        "membersctl: GetRecords failed ({}); asking again",
                        aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)
                    );
                    continue;
                }
            };
            let records: Vec<StreamRecord> = out.records().iter().filter_map(record).collect();
            // Saving a checkpoint writes the table, which makes a stream record of its own: a
            // batch of only those is passed over without another save (or this never idles).
            let own = |r: &StreamRecord| matches!(r.new_image.get("PK"), Some(shared::store::dynamo::AttributeValue::S(pk)) if pk.starts_with("LOCAL#"));
            if records.iter().all(own) {
                if let Some(next) = out.next_shard_iterator {
                    iterators.insert(id.to_owned(), next);
                } else {
                    closed.insert(id.to_owned());
                }
                continue;
            }
            if let Some(last) = records.last() {
                busy = true;
                let publisher = LocalPublisher(store, Echo::Stdout);
                let handled = handle(store, &records, &publisher);
                if let Some(failed) = shared::metrics::scoped("publish-events", handled).await {
                    let n = attempts.entry(id.to_owned()).or_default();
                    *n += 1;
                    if policy.max_retries.is_some_and(|max| *n > max) {
                        // As Lambda after MaximumRetryAttempts: the records are given up
                        // (on AWS, reported to PublishEventsFailures) so the shard goes on;
                        // their entries stay in the outbox index for the repair.
                        let entries: Vec<&str> = records
                            .iter()
                            .skip_while(|r| r.sequence_number != failed)
                            .filter(|r| r.event_name == "INSERT")
                            .filter(|r| {
                                matches!(r.new_image.get("entity"), Some(shared::store::dynamo::AttributeValue::S(e)) if e == "auditEvent")
                            })
                            .filter_map(|r| match r.new_image.get("PK") {
                                Some(shared::store::dynamo::AttributeValue::S(pk)) => Some(pk.as_str()),
                                _ => None,
                            })
                            .collect();
                        eprintln!(
                            "membersctl: giving up on shard {id} records {failed} to {} after {} retries, {} outbox entries ({}); `membersctl events repair` finishes them",
                            last.sequence_number,
                            *n - 1,
                            entries.len(),
                            entries.join(" ")
                        );
                    } else {
                        // Not moved: the batch is read again from the checkpoint.
                        eprintln!("membersctl: batch failed at record {failed}; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
                attempts.remove(id);
                if let Err(e) = save_checkpoint(store, id, &last.sequence_number).await {
                    // Not moved: the batch is given again (placing is idempotent).
                    eprintln!("membersctl: {e}; the batch will be read again");
                    continue;
                }
            }
            match out.next_shard_iterator {
                Some(next) => {
                    iterators.insert(id.to_owned(), next);
                }
                None => {
                    closed.insert(id.to_owned());
                }
            }
        }
        if !busy {
            tokio::time::sleep(IDLE).await;
        }
    }
}

async fn shards(streams: &Streams, arn: &str) -> Result<Vec<Shard>, String> {
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let page = streams
            .describe_stream()
            .stream_arn(arn)
            .set_exclusive_start_shard_id(start.take())
            .send()
            .await
            .map_err(|e| format!("cannot describe the stream: {e}"))?;
        let description = page.stream_description;
        let last = description
            .as_ref()
            .and_then(|d| d.last_evaluated_shard_id.clone());
        out.extend(description.and_then(|d| d.shards).unwrap_or_default());
        match last {
            Some(id) => start = Some(id),
            None => return Ok(out),
        }
    }
}

/// An iterator after the shard's checkpoint, or from its oldest record.
async fn iterator(
    store: &DynamoStore,
    streams: &Streams,
    arn: &str,
    shard: &str,
) -> Result<String, String> {
    let request = streams.get_shard_iterator().stream_arn(arn).shard_id(shard);
    let request = match checkpoint(store, shard).await? {
        Some(after) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(after),
        None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
    };
    request
        .send()
        .await
        .map_err(|e| format!("cannot read shard {shard}: {e}"))?
        .shard_iterator
        .ok_or_else(|| format!("no iterator for shard {shard}"))
}

fn record(r: &aws_sdk_dynamodbstreams::types::Record) -> Option<StreamRecord> {
    let change = r.dynamodb.as_ref()?;
    let image: serde_dynamo::Item = change.new_image.clone().unwrap_or_default().into();
    Some(StreamRecord {
        sequence_number: change.sequence_number.clone()?,
        event_name: r.event_name.as_ref()?.as_str().to_owned(),
        new_image: image.into(),
    })
}

fn checkpoint_key(shard: &str) -> HashMap<String, shared::store::dynamo::AttributeValue> {
    use shared::store::dynamo::AttributeValue as A;
    HashMap::from([
        ("PK".to_owned(), A::S(CHECKPOINTS.into())),
        ("SK".to_owned(), A::S(shard.to_owned())),
    ])
}

async fn checkpoint(store: &DynamoStore, shard: &str) -> Result<Option<String>, String> {
    let out = store
        .client()
        .get_item()
        .table_name(store.table())
        .set_key(Some(checkpoint_key(shard)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("cannot read the checkpoint: {e}"))?;
    Ok(out.item.and_then(|i| match i.get("after") {
        Some(shared::store::dynamo::AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    }))
}

async fn save_checkpoint(store: &DynamoStore, shard: &str, after: &str) -> Result<(), String> {
    let mut item = checkpoint_key(shard);
    item.insert(
        "after".into(),
        shared::store::dynamo::AttributeValue::S(after.to_owned()),
    );
    store
        .client()
        .put_item()
        .table_name(store.table())
        .set_item(Some(item))
        .send()
        .await
        .map_err(|e| format!("cannot save the checkpoint: {e}"))?;
    Ok(())
}
