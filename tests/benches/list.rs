//! `make bench`: one page of GET /v1/members from an organisation of 10,000 members,
//! against DynamoDB Local: DynamoDB calls and items read per page (target ≤ 2 × limit for
//! any single filter), p50 latency through the handler, and its ratio to the bare Query of
//! the same index, interleaved in the same run.

use aws_sdk_dynamodb::types::AttributeValue;
use members_tests::{free_port, new_tenant, DynamoLocal, TABLE};
use serde_json::json;
use shared::audit::{self, Actor};
use shared::http::ApiRequest;
use shared::input::parse_member_patch;
use shared::model::*;
use shared::store::{CreateMember, DynamoStore, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FULL_MEMBERS: usize = 10_000;
const FULL_ROUNDS: usize = 200;
const LIMIT: usize = 25;

fn main() {
    members_tests::bench_main(run);
}

fn p50(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn run() -> Result<(), String> {
    let members = members_tests::bench_rounds(FULL_MEMBERS, 400);
    let rounds = members_tests::bench_rounds(FULL_ROUNDS, 5);
    let dir = std::env::temp_dir().join(format!("members-bench-list-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dynamo = DynamoLocal::start(free_port()?, None, &dir.join("dynamodb.log"))?;
    let client = DynamoStore::client_from_env(Some(&dynamo.endpoint())).await;
    let store =
        Arc::new(DynamoStore::new(client.clone(), TABLE).with_key_cache(Duration::from_secs(60)));
    store.create_table().await.map_err(|e| format!("{e:?}"))?;
    let t = new_tenant(&store, "", false).await?;
    let org = store
        .organization(&t.org)
        .await
        .map_err(|e| format!("{e:?}"))?
        .ok_or("no organisation")?;

    // 10,000 members: 1% in department qms (half of them reviewers), 1% reviewers elsewhere.
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for i in 0..members {
        let (store, org, semaphore) = (store.clone(), org.clone(), semaphore.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await.map_err(|e| e.to_string())?;
            let department = if i % 100 == 0 { "qms" } else { "it" };
            let role = if i % 200 == 0 || i % 100 == 50 { "reviewer" } else { "simple" };
            let body = json!({"firstName": format!("M{i}"), "email": format!("m{i}@example.com"), "role": role, "department": department});
            let patch = parse_member_patch(&body).map_err(|e| format!("{e:?}"))?;
            let member = shared::rules::new_member(patch, &org, Timestamp::now()).map_err(|e| format!("{e:?}"))?.member;
            let audit = audit::event("member.created", &Actor::default(), None, &member, false, None);
            let write = CreateMember { member, audit, org, previous_primary: None, idempotency: None };
            store.create_member(&write).await.map_err(|e| format!("{e:?}"))
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    println!(
        "loaded {members} members in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let request = |query: &str| ApiRequest {
        method: "GET".into(),
        path: "/v1/members".into(),
        path_id: None,
        headers: HashMap::from([("authorization".to_owned(), format!("Bearer {}", t.read_key))]),
        query: query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        body: Vec::new(),
        request_id: None,
    };
    println!("GET /v1/members, limit {LIMIT}, {rounds} rounds each, organisation of {members} members, DynamoDB Local");
    println!(
        "  {:<44} {:>8} {:>6} {:>8} {:>10} {:>10} {:>10} {:>7}",
        "query", "returned", "calls", "read", "p50 ms", "store ms", "bare ms", "ratio"
    );
    let cases = [
        ("", "GSI1", format!("ORG#{}#MEMBERS#active", org.id)),
        (
            "department=qms",
            "GSI4",
            format!("ORG#{}#DEPARTMENT#qms#active", org.id),
        ),
        (
            "role=reviewer",
            "GSI2",
            format!("ORG#{}#ROLE#reviewer#active", org.id),
        ),
        ("status=all&department=qms", "", String::new()),
        ("department=qms&role=reviewer", "", String::new()),
        // Not in GSI3/GSI4 (records.rs): GSI1 with a filter. Every member here lacks an
        // HRIS role (the common case: most items match); only the root admin has
        // department `none` (the worst case: a page reads up to 1,000 items to find one).
        ("hrisRole=none", "", String::new()),
        ("department=none", "", String::new()),
    ];
    for (query, index, partition) in cases {
        let q = format!("limit={LIMIT}&{query}");
        let (mut through, mut bare, mut stored) = (Vec::new(), Vec::new(), Vec::new());
        let mut q_struct = ListQuery::new(LIMIT);
        for part in query.split('&') {
            match part {
                "department=qms" => q_struct.department = Some(Department::Qms),
                "department=none" => q_struct.department = Some(Department::None),
                "hrisRole=none" => q_struct.hris_role = Some(None),
                "role=reviewer" => q_struct.role = Some(Role::Builtin(BuiltinRole::Reviewer)),
                "status=all" => q_struct.status = StatusFilter::All,
                _ => {}
            }
        }
        let page = store
            .list_members(&org.id, &q_struct)
            .await
            .map_err(|e| format!("{e:?}"))?;
        for _ in 0..rounds {
            let t = Instant::now();
            let r = shared::handlers::list_members(store.clone(), request(&q))
                .await
                .map_err(|e| format!("{e:?}"))?;
            through.push(t.elapsed());
            if r.status != 200 {
                return Err(format!("{q}: {}", r.status));
            }
            // The store alone (the Query and reading the members back), no HTTP glue.
            let t = Instant::now();
            store
                .list_members(&org.id, &q_struct)
                .await
                .map_err(|e| format!("{e:?}"))?;
            stored.push(t.elapsed());
            if !index.is_empty() {
                let t = Instant::now();
                client
                    .query()
                    .table_name(TABLE)
                    .index_name(index)
                    .key_condition_expression(format!("{index}PK = :pk"))
                    .expression_attribute_values(":pk", AttributeValue::S(partition.clone()))
                    .limit(LIMIT as i32 + 1)
                    .send()
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                bare.push(t.elapsed());
            }
        }
        let h = p50(&mut through);
        let st = p50(&mut stored);
        let (bare_ms, ratio) = if bare.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            let b = p50(&mut bare);
            (
                format!("{:.3}", b.as_secs_f64() * 1e3),
                format!("{:.2}", h.as_secs_f64() / b.as_secs_f64()),
            )
        };
        println!(
            "  {:<44} {:>8} {:>6} {:>8} {:>10.3} {:>10.3} {:>10} {:>7}",
            if query.is_empty() {
                "(no filter)"
            } else {
                query
            },
            page.members.len(),
            page.calls,
            page.items_read,
            h.as_secs_f64() * 1e3,
            st.as_secs_f64() * 1e3,
            bare_ms,
            ratio
        );
    }
    drop(dynamo);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
