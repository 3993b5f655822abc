//! `make bench`: change events through the local stack (DynamoDB Local, its stream, the
//! consumer `membersctl events consume`, a receiver verifying signatures).
//!
//! 1. Write → webhook received at 100 writes/s: PATCHes through the handler, each started
//!    on its 10 ms slot (over 100 members, so they seldom meet), until the receiver has
//!    the event; p50 and p99 over a few hundred writes.
//! 2. Events per second through the consumer (placed in the feed, queued for delivery) of a
//!    backlog of one organisation, then of one spread over 20, against the bare read of the
//!    stream's records (GetRecords only), in the same run. The backlog's organisations have
//!    no webhook: what is measured is what `publish-events` does on AWS.

use members_tests::receiver::Receiver;
use members_tests::{consumer, free_port, new_tenant, DynamoLocal, TABLE};
use serde_json::json;
use shared::http::ApiRequest;
use shared::model::*;
use shared::store::DynamoStore;
use shared::webhooks::Webhook;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    members_tests::bench_main(run);
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

async fn run() -> Result<(), String> {
    let writes = members_tests::bench_rounds(300, 5);
    let backlog = members_tests::bench_rounds(2000, 20);
    let dir = std::env::temp_dir().join(format!("members-bench-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dynamo = DynamoLocal::start(free_port()?, None, &dir.join("dynamodb.log"))?;
    let client = DynamoStore::client_from_env(Some(&dynamo.endpoint())).await;
    let store =
        Arc::new(DynamoStore::new(client.clone(), TABLE).with_key_cache(Duration::from_secs(60)));
    store.create_table().await.map_err(|e| format!("{e:?}"))?;
    let t = new_tenant(&store, "", false).await?;
    // The backlogs' organisations (no webhooks), made now so their first events are placed
    // before the backlogs are written.
    let one = vec![new_tenant(&store, "", false).await?];
    let mut twenty = Vec::new();
    for _ in 0..20 {
        twenty.push(new_tenant(&store, "", false).await?);
    }
    let receiver = Receiver::start(&dir, "bench")?;
    let secret = shared::webhooks::sign::new_secret()?;
    receiver.control(&[&secret], 0.0)?;
    let now = Timestamp::now();
    let webhook = Webhook {
        id: WebhookId::generate(),
        organization_id: t.org.clone(),
        url: receiver.url("/bench"),
        event_types: shared::events::TYPES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        description: None,
        enabled: true,
        secret: secret.clone(),
        previous_secret: None,
        previous_secret_expires_at: None,
        failing_since: None,
        disabled_reason: None,
        subscribed_by: Some(t.hooks_key_id.clone()),
        created_at: now,
        updated_at: now,
        version: 1,
    };
    let created = shared::webhooks::history::event(
        "webhook.created",
        &shared::audit::Actor::default(),
        None,
        Some(&webhook),
    );
    store
        .create_webhook(&webhook, &created)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let patch = |t: &members_tests::Tenant, member: &MemberId, i: usize| {
        request(
            t,
            "PATCH",
            &format!("/v1/members/{member}"),
            Some(member),
            json!({"headline": format!("headline {i}")}),
        )
    };
    // 100 members to write to, round robin: at 100 writes/s one member is written each
    // second, so writes seldom meet even when DynamoDB Local is slow (one that does is
    // retried).
    let mut members = vec![t.root.clone()];
    for i in 0..members_tests::bench_rounds(99, 4) {
        let body =
            json!({"firstName": "B", "email": format!("bench{i}@example.com"), "role": "simple"});
        let r = shared::handlers::create_member(
            store.clone(),
            request(&t, "POST", "/v1/members", None, body),
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
        let v: serde_json::Value =
            serde_json::from_str(r.body.as_deref().unwrap_or("")).map_err(|e| e.to_string())?;
        members.push(
            MemberId::parse(v["id"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?,
        );
    }

    println!(
        "consumer: {} (MEMBERSCTL; make bench sets the optimised build)",
        members_tests::membersctl().display()
    );
    // 1. Write → received, the consumer running, writes started on their slots: at 50
    //    writes/s, then at 100 (the target's rate).
    let running = consumer(&dynamo.endpoint(), &dir.join("consumer-1.log"))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // 5 writes/s first: the pipeline's own latency, DynamoDB Local unloaded.
    let mut first = 0;
    for (count, slot) in [(writes / 5, 200), (writes, 20), (writes, 10)] {
        let started = Instant::now();
        let mut writers = Vec::new();
        let phase = first..first + count;
        first += count;
        for i in phase.clone() {
            let k = (i - phase.start) as u64;
            tokio::time::sleep_until((started + Duration::from_millis(slot * k)).into()).await;
            let (store, member) = (store.clone(), members[i % members.len()].clone());
            let req = patch(&t, &member, i);
            writers.push(tokio::spawn(async move {
                // A write that meets another of the same member is retried, as a client would.
                let mut tries = 0;
                let r = loop {
                    match shared::handlers::update_member(store.clone(), req.clone()).await {
                        Ok(r) => break r,
                        Err(_) if tries < 10 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => return Err(format!("{e:?}")),
                    }
                };
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|e| e.to_string())?
                    .as_secs_f64();
                let version =
                    serde_json::from_str::<serde_json::Value>(r.body.as_deref().unwrap_or(""))
                        .ok()
                        .and_then(|v| v["version"].as_u64())
                        .ok_or(format!("no version: {} {:?}", r.status, r.body))?;
                Ok::<_, String>((member.to_string(), version, at))
            }));
        }
        let mut acked: Vec<(String, u64, f64)> = Vec::new();
        for w in writers {
            acked.push(w.await.map_err(|e| e.to_string())??);
        }
        let rate = count as f64 / started.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(120);
        let received = loop {
            let got = receiver.received()?;
            let versions: HashMap<(String, u64), f64> = got
                .iter()
                .filter(|d| d["status"] == 204 && d["event"]["type"] == "member.updated")
                .filter_map(|d| {
                    let subject = d["event"]["subject"].as_str()?.to_owned();
                    Some((
                        (subject, d["event"]["data"]["version"].as_u64()?),
                        d["at"].as_f64()?,
                    ))
                })
                .collect();
            if acked
                .iter()
                .all(|(m, v, _)| versions.contains_key(&(m.clone(), *v)))
                || Instant::now() > deadline
            {
                break versions;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut latencies: Vec<Duration> = acked
            .iter()
            .filter_map(|(m, v, at)| {
                Some(Duration::from_secs_f64(
                    (received.get(&(m.clone(), *v))? - at).max(0.0),
                ))
            })
            .collect();
        if latencies.len() != acked.len() {
            return Err(format!(
                "{} of {} events received",
                latencies.len(),
                acked.len()
            ));
        }
        let (p50, p99) = (
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99),
        );
        println!(
        "write → webhook received ({count} PATCHes at {rate:.0} writes/s, consumer + signed delivery): p50 {:.0} ms, p99 {:.0} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    }
    running.stop();

    // 2. Backlogs written with the consumer stopped, then consumed: one organisation's, then
    //    one spread over 20, each against a bare read of the whole stream in the same run.
    let config = DynamoStore::sdk_config(Some(&dynamo.endpoint())).await;
    let streams = aws_sdk_dynamodbstreams::Client::new(&config);
    let arn = client
        .describe_table()
        .table_name(TABLE)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .table
        .and_then(|t| t.latest_stream_arn)
        .ok_or("no stream")?;
    for (round, (label, tenants)) in
        (2..).zip([("1 organisation", one), ("20 organisations", twenty)])
    {
        let before: Vec<usize> = {
            let mut out = Vec::new();
            for t in &tenants {
                out.push(counter(&store, &t.org).await);
            }
            out
        };
        for i in 0..backlog {
            let t = &tenants[i % tenants.len()];
            shared::handlers::update_member(store.clone(), patch(t, &t.root, first + i))
                .await
                .map_err(|e| format!("{e:?}"))?;
        }
        let (records, bare) = bare_read(&streams, &arn).await?;
        let started = Instant::now();
        let again = consumer(
            &dynamo.endpoint(),
            &dir.join(format!("consumer-{round}.log")),
        )?;
        let deadline = Instant::now() + Duration::from_secs(600);
        for (k, t) in tenants.iter().enumerate() {
            let share = (0..backlog).filter(|i| i % tenants.len() == k).count();
            while counter(&store, &t.org).await < before[k] + share {
                if Instant::now() > deadline {
                    return Err("the consumer did not place the backlog in 10 minutes".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let consumed = started.elapsed();
        again.stop();
        let bare_rate = records as f64 / bare.as_secs_f64();
        let rate = backlog as f64 / consumed.as_secs_f64();
        println!(
            "{label}: bare stream read {records} records in {:.2} s = {bare_rate:.0} records/s; consumer (start included) placed and queued {backlog} events in {:.2} s = {rate:.0} events/s; ratio {:.3}",
            bare.as_secs_f64(),
            consumed.as_secs_f64(),
            rate / bare_rate
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A request to the handlers as API Gateway would pass it, with `t`'s writing key.
fn request(
    t: &members_tests::Tenant,
    method: &str,
    path: &str,
    id: Option<&MemberId>,
    body: serde_json::Value,
) -> ApiRequest {
    ApiRequest {
        method: method.into(),
        path: path.into(),
        path_id: id.map(|m| m.to_string()),
        headers: HashMap::from([
            (
                "authorization".to_owned(),
                format!("Bearer {}", t.write_key),
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
        ]),
        query: Vec::new(),
        body: body.to_string().into_bytes(),
        request_id: Some(format!("bench-{}", AuditEventId::generate())),
    }
}

/// The organisation's last place in its feed.
async fn counter(store: &DynamoStore, org: &OrgId) -> usize {
    let item = store
        .client()
        .get_item()
        .table_name(TABLE)
        .key(
            "PK",
            shared::store::dynamo::AttributeValue::S(format!("ORG#{org}#EVENTS")),
        )
        .key(
            "SK",
            shared::store::dynamo::AttributeValue::S("#SEQUENCE".into()),
        )
        .consistent_read(true)
        .send()
        .await
        .ok()
        .and_then(|o| o.item);
    match item.as_ref().and_then(|i| i.get("last")) {
        Some(shared::store::dynamo::AttributeValue::N(n)) => n.parse::<usize>().unwrap_or(0),
        _ => 0,
    }
}

/// Every record of the stream from its start, GetRecords only: (records, time taken).
async fn bare_read(
    streams: &aws_sdk_dynamodbstreams::Client,
    arn: &str,
) -> Result<(usize, Duration), String> {
    let started = Instant::now();
    let mut records = 0usize;
    let shards = streams
        .describe_stream()
        .stream_arn(arn)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .stream_description
        .and_then(|d| d.shards)
        .unwrap_or_default();
    for shard in shards {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard.shard_id().unwrap_or_default())
            .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .shard_iterator;
        while let Some(it) = iterator {
            let out = streams
                .get_records()
                .shard_iterator(it)
                .limit(1000)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if out.records().is_empty() {
                break;
            }
            records += out.records().len();
            iterator = out.next_shard_iterator;
        }
    }
    Ok((records, started.elapsed()))
}
