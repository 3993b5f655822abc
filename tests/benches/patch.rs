//! `make bench`: a PATCH through the handler against DynamoDB Local, on a warm instance.
//!
//! 1. DynamoDB calls per PATCH, counted on the wire by `members_tests::wiretap` (target:
//!    exactly 2, BatchGetItem of member + organisation and one TransactWriteItems; the API
//!    key lookup is cached per instance for up to 60 s).
//! 2. Latency of a PATCH through the handler ÷ latency of the bare BatchGetItem +
//!    TransactWriteItems it issues, measured interleaved in the same run (target ≤ 1.15).

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use members_tests::{free_port, new_tenant, wiretap::tapped_client, DynamoLocal, TABLE};
use serde_json::json;
use shared::http::ApiRequest;
use shared::store::DynamoStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 300;
const SMOKE_ROUNDS: usize = 5;

fn main() {
    members_tests::bench_main(run);
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

async fn run() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("members-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dynamo = DynamoLocal::start(free_port()?, None, &dir.join("dynamodb.log"))?;
    let (client, tap) = tapped_client(&dynamo.endpoint()).await?;
    let plain = DynamoStore::new(client.clone(), TABLE);
    plain.create_table().await.map_err(|e| format!("{e:?}"))?;
    let t = new_tenant(&plain, "", false).await?;
    let (org, member, secret) = (t.org.clone(), t.root.clone(), t.write_key.clone());
    let store =
        Arc::new(DynamoStore::new(client.clone(), TABLE).with_key_cache(Duration::from_secs(60)));

    let patch = |i: usize| ApiRequest {
        method: "PATCH".into(),
        path: format!("/v1/members/{member}"),
        path_id: Some(member.to_string()),
        headers: HashMap::from([
            ("authorization".to_owned(), format!("Bearer {secret}")),
            ("content-type".to_owned(), "application/json".to_owned()),
        ]),
        query: Vec::new(),
        body: json!({"headline": format!("headline {i}"), "jobTitle": format!("title {i}")})
            .to_string()
            .into_bytes(),
        request_id: Some(format!("bench-{i}")),
    };
    // Warm: the key is cached, the connection pool is open.
    for i in 0..20 {
        let r = shared::handlers::update_member(store.clone(), patch(i))
            .await
            .map_err(|e| format!("{e:?}"))?;
        if r.status != 200 {
            return Err(format!("warm-up PATCH answered {}", r.status));
        }
    }
    tap.take_calls();

    // The bare calls a PATCH makes, with the same items.
    let (pk_member, pk_org) = (format!("ORG#{org}#MEMBER#{member}"), format!("ORG#{org}"));
    let key_of = |pk: &str, sk: &str| {
        HashMap::from([
            ("PK".to_owned(), AttributeValue::S(pk.to_owned())),
            ("SK".to_owned(), AttributeValue::S(sk.to_owned())),
        ])
    };
    let bare = |i: usize| {
        let (client, pk_member) = (client.clone(), pk_member.clone());
        let keys = KeysAndAttributes::builder()
            .keys(key_of(&pk_member, "MEMBER"))
            .keys(key_of(&pk_org, "ORG"))
            .consistent_read(true)
            .build();
        async move {
            let keys = keys.map_err(|e| e.to_string())?;
            let out = client
                .batch_get_item()
                .request_items(TABLE, keys)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            let mut item = out
                .responses()
                .and_then(|r| r.get(TABLE))
                .and_then(|items| {
                    items.iter().find(
                        |i| matches!(i.get("SK"), Some(AttributeValue::S(s)) if s == "MEMBER"),
                    )
                })
                .cloned()
                .ok_or("member not read")?;
            let version: u64 = match item.get("version") {
                Some(AttributeValue::N(n)) => n.parse().map_err(|_| "version")?,
                _ => return Err("no version".into()),
            };
            item.insert(
                "version".into(),
                AttributeValue::N((version + 1).to_string()),
            );
            item.insert("headline".into(), AttributeValue::S(format!("bare {i}")));
            let mut audit = key_of(&format!("{pk_member}#AUDIT"), &format!("bench{i:06}"));
            audit.insert("action".into(), AttributeValue::S("bench".into()));
            let put_member = Put::builder()
                .table_name(TABLE)
                .set_item(Some(item))
                .condition_expression("attribute_exists(PK) AND version = :v")
                .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
                .build()
                .map_err(|e| e.to_string())?;
            let put_audit = Put::builder()
                .table_name(TABLE)
                .set_item(Some(audit))
                .build()
                .map_err(|e| e.to_string())?;
            client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_member).build())
                .transact_items(TransactWriteItem::builder().put(put_audit).build())
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            Ok::<(), String>(())
        }
    };

    let rounds = members_tests::bench_rounds(ROUNDS, SMOKE_ROUNDS);
    let (mut handler, mut baseline) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let mut calls = 0usize;
    let mut by_operation = std::collections::BTreeMap::new();
    for i in 0..rounds {
        let started = Instant::now();
        let r = shared::handlers::update_member(store.clone(), patch(1000 + i))
            .await
            .map_err(|e| format!("{e:?}"))?;
        handler.push(started.elapsed());
        if r.status != 200 {
            return Err(format!("PATCH answered {}", r.status));
        }
        for (op, n) in tap.take_calls() {
            calls += n;
            *by_operation.entry(op).or_insert(0) += n;
        }
        let started = Instant::now();
        bare(i).await?;
        baseline.push(started.elapsed());
        tap.take_calls();
    }
    let (h50, b50) = (
        percentile(&mut handler, 0.5),
        percentile(&mut baseline, 0.5),
    );
    let (h99, b99) = (
        percentile(&mut handler, 0.99),
        percentile(&mut baseline, 0.99),
    );
    println!("PATCH /v1/members/{{id}} through the handler, warm instance, {rounds} rounds against DynamoDB Local");
    println!(
        "  DynamoDB calls per PATCH: {:.2}  ({by_operation:?})",
        calls as f64 / rounds as f64
    );
    println!(
        "  handler   p50 {:>8.3} ms   p99 {:>8.3} ms",
        h50.as_secs_f64() * 1e3,
        h99.as_secs_f64() * 1e3
    );
    println!(
        "  bare calls p50 {:>8.3} ms   p99 {:>8.3} ms   (BatchGetItem + TransactWriteItems)",
        b50.as_secs_f64() * 1e3,
        b99.as_secs_f64() * 1e3
    );
    println!(
        "  ratio handler / bare (p50): {:.3}  (target <= 1.15)",
        h50.as_secs_f64() / b50.as_secs_f64()
    );
    cost_per_operation(&store, &tap, &secret).await?;
    drop(dynamo);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A request to the handlers with the read/write key.
fn request(secret: &str, method: &str, path: &str, body: Option<serde_json::Value>) -> ApiRequest {
    let mut headers = HashMap::from([("authorization".to_owned(), format!("Bearer {secret}"))]);
    if body.is_some() {
        headers.insert("content-type".into(), "application/json".into());
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    ApiRequest {
        method: method.into(),
        path: path.into(),
        path_id: path.strip_prefix("/v1/members/").map(str::to_owned),
        headers,
        query: query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        request_id: None,
    }
}

/// DynamoDB calls and the capacity units DynamoDB reports (`ReturnConsumedCapacity`, added
/// on the wire by the tap) for one of each operation, averaged over a few.
async fn cost_per_operation(
    store: &Arc<DynamoStore>,
    tap: &members_tests::wiretap::Tap,
    secret: &str,
) -> Result<(), String> {
    // 25 creates, so that the list page below is a full one.
    let n = members_tests::bench_rounds(25, 2);
    tap.measure_capacity();
    println!("Cost per operation (warm instance, API key cached), mean of {n}, DynamoDB Local:");
    println!(
        "  {:<34} {:>5} {:>6} {:>6}  units by table and index; items written",
        "operation", "calls", "units", "floor"
    );
    let row = |label: &str,
               calls: std::collections::BTreeMap<String, usize>,
               cost: members_tests::cost::Cost| {
        let total: usize = calls.values().sum();
        let units = cost.units.get("total").copied().unwrap_or(0.0) / n as f64;
        let floor = cost.floor(n);
        let floor = if floor > 0.0 {
            format!("{floor:.1}")
        } else {
            "-".into()
        };
        println!(
            "  {label:<34} {:>5.2} {units:>6.1} {floor:>6}  {}",
            total as f64 / n as f64,
            cost.units_line(n)
        );
        if !cost.items.is_empty() {
            println!("  {:<55} items: {}", "", cost.items_line(n));
        }
        println!("  {:<55} calls: {calls:?}", "");
    };
    tap.take_calls();
    tap.take_cost();
    // The bench's member (a name, an email, a role), then one in every index: GSI3 and
    // GSI4 leave out members without an HRIS role or department (records.rs).
    let profiles = [
        ("", "plain", json!({})),
        (
            ", dept+HRIS",
            "every-index",
            json!({"department": "it", "hrisRole": "hris_employee"}),
        ),
    ];
    for (suffix, tag, extra) in profiles {
        let mut ids = Vec::new();
        for i in 0..n {
            let mut body = json!({"firstName": format!("C{i}"), "email": format!("cost-{tag}-{i}@example.com"), "role": "simple"});
            for (k, v) in extra.as_object().into_iter().flatten() {
                body[k] = v.clone();
            }
            let mut r = request(secret, "POST", "/v1/members", Some(body));
            r.headers
                .insert("idempotency-key".into(), format!("cost-{tag}-{i}"));
            let answer = shared::handlers::create_member(store.clone(), r)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let body: serde_json::Value =
                serde_json::from_str(answer.body.as_deref().unwrap_or_default())
                    .unwrap_or_default();
            ids.push(body["id"].as_str().unwrap_or_default().to_owned());
        }
        row(
            &format!("create (Idempotency-Key{suffix})"),
            tap.take_calls(),
            tap.take_cost(),
        );
        for id in &ids {
            let r = request(
                secret,
                "PATCH",
                &format!("/v1/members/{id}"),
                Some(json!({"jobTitle": "Cost"})),
            );
            shared::handlers::update_member(store.clone(), r)
                .await
                .map_err(|e| format!("{e:?}"))?;
        }
        row(
            &format!("PATCH of one field{suffix}"),
            tap.take_calls(),
            tap.take_cost(),
        );
        for id in &ids {
            let r = request(secret, "DELETE", &format!("/v1/members/{id}"), None);
            shared::handlers::deactivate_member(store.clone(), r)
                .await
                .map_err(|e| format!("{e:?}"))?;
        }
        row(
            &format!("deactivate{suffix}"),
            tap.take_calls(),
            tap.take_cost(),
        );
    }
    for _ in 0..n {
        let r = request(secret, "GET", "/v1/members?limit=25&status=all", None);
        shared::handlers::list_members(store.clone(), r)
            .await
            .map_err(|e| format!("{e:?}"))?;
    }
    row(
        "one list page of 25 (status=all)",
        tap.take_calls(),
        tap.take_cost(),
    );
    Ok(())
}
