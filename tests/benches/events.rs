//! `make bench`: change events through the local stack (DynamoDB Local, its stream, the
//! consumer `membersctl events consume`, a receiver verifying signatures).
//!
//! 1. Write → webhook received: a PATCH through the handler, until the receiver has the
//!    event, p50 and p99 over a few hundred writes.
//! 2. Events per second through the consumer (placed in the feed, queued for webhooks)
//!    against the bare read of the same stream records (GetRecords only), in the same run.

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
    let patch = |i: usize| ApiRequest {
        method: "PATCH".into(),
        path: format!("/v1/members/{}", t.root),
        path_id: Some(t.root.to_string()),
        headers: HashMap::from([
            (
                "authorization".to_owned(),
                format!("Bearer {}", t.write_key),
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
        ]),
        query: Vec::new(),
        body: json!({"headline": format!("headline {i}")})
            .to_string()
            .into_bytes(),
        request_id: Some(format!("bench-{i}")),
    };

    // 1. Write → received, the consumer running.
    let running = consumer(&dynamo.endpoint(), &dir.join("consumer-1.log"))?;
    let mut acked: Vec<(u64, f64)> = Vec::new();
    for i in 0..writes {
        let r = shared::handlers::update_member(store.clone(), patch(i))
            .await
            .map_err(|e| format!("{e:?}"))?;
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs_f64();
        let version = serde_json::from_str::<serde_json::Value>(r.body.as_deref().unwrap_or(""))
            .ok()
            .and_then(|v| v["version"].as_u64())
            .ok_or("no version")?;
        acked.push((version, at));
        // Sequential writes, a few milliseconds apart: latency, not a queue, is measured.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let received = loop {
        let got = receiver.received()?;
        let versions: HashMap<u64, f64> = got
            .iter()
            .filter(|d| d["status"] == 204 && d["event"]["subject"] == json!(t.root))
            .filter_map(|d| Some((d["event"]["data"]["version"].as_u64()?, d["at"].as_f64()?)))
            .collect();
        if acked.iter().all(|(v, _)| versions.contains_key(v)) || Instant::now() > deadline {
            break versions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut latencies: Vec<Duration> = acked
        .iter()
        .filter_map(|(v, at)| Some(Duration::from_secs_f64((received.get(v)? - at).max(0.0))))
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
        "write → webhook received ({writes} PATCHes, consumer + signed delivery): p50 {:.0} ms, p99 {:.0} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    running.stop();

    // 2. A backlog written with the consumer stopped: read bare, then consumed.
    for i in 0..backlog {
        shared::handlers::update_member(store.clone(), patch(writes + i))
            .await
            .map_err(|e| format!("{e:?}"))?;
    }
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
    let started = Instant::now();
    let mut records = 0usize;
    let shards = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .stream_description
        .and_then(|d| d.shards)
        .unwrap_or_default();
    for shard in shards {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
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
                .limit(100)
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
    let bare = started.elapsed();
    let counter = |store: Arc<DynamoStore>, org: OrgId| async move {
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
    };
    let placed_before = counter(store.clone(), t.org.clone()).await;
    let started = Instant::now();
    let again = consumer(&dynamo.endpoint(), &dir.join("consumer-2.log"))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while counter(store.clone(), t.org.clone()).await < placed_before + backlog {
        if Instant::now() > deadline {
            return Err("the consumer did not place the backlog in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let consumed = started.elapsed();
    again.stop();
    let bare_rate = records as f64 / bare.as_secs_f64();
    let rate = backlog as f64 / consumed.as_secs_f64();
    println!(
        "bare stream read: {records} records in {:.2} s = {bare_rate:.0} records/s",
        bare.as_secs_f64()
    );
    println!(
        "consumer (start included): {backlog} events placed and queued in {:.2} s = {rate:.0} events/s; ratio to the bare read: {:.3}",
        consumed.as_secs_f64(),
        rate / bare_rate
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
