//! `make bench`: what a SCIM group change of many members costs, against the same member
//! writes sent one by one. Okta pushes up to 1,000 members in one PATCH, which must answer
//! inside API Gateway's 30 s; each membership is a write of its member (docs/design.md,
//! "SCIM /Groups"), so the baseline is the same number of `/v1` PATCHes of those members at
//! the group change's own concurrency. The handlers run in-process over the store that
//! plays DynamoDB's transaction conflicts (each transaction holds its items
//! `MEMBERS_TX_HOLD_MS`, default 20 ms), as the contention bench does.
//!
//! Prints: the group PATCH's time, the baseline's, their ratio (1.0: a group change costs
//! what its member writes cost), and the same PATCH again (nothing to write).

use members_tests::stale::StaleProxy;
use members_tests::{free_port, new_tenant, DynamoLocal, Stack, TABLE};
use serde_json::{json, Value};
use shared::http::ApiRequest;
use shared::store::DynamoStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Members of the group change, and of the smoke run.
const MEMBERS: usize = 1_000;
const SMOKE_MEMBERS: usize = 20;
/// Member writes a group change runs at once (handlers/memberships.rs): the baseline's too.
const IN_FLIGHT: usize = 16;
/// API Gateway's limit on an answer.
const GATEWAY_SECONDS: f64 = 30.0;

fn main() {
    members_tests::bench_main(run);
}

fn request(method: &str, path: &str, key: &str, body: Option<Value>) -> ApiRequest {
    let id = path
        .rsplit('/')
        .next()
        .filter(|s| s.starts_with("mem_") || s.starts_with("grp_"));
    let content_type = match path.starts_with("/scim/") {
        true => "application/scim+json",
        false => "application/json",
    };
    ApiRequest {
        method: method.into(),
        path: path.into(),
        path_id: id.map(str::to_owned),
        headers: HashMap::from([
            ("authorization".to_owned(), format!("Bearer {key}")),
            ("content-type".to_owned(), content_type.to_owned()),
        ]),
        query: Vec::new(),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        request_id: None,
    }
}

fn body(r: &shared::http::ApiResponse) -> Value {
    serde_json::from_str(r.body.as_deref().unwrap_or_default()).unwrap_or(Value::Null)
}

async fn run() -> Result<(), String> {
    let smoke = std::env::var_os("BENCH_SMOKE").is_some();
    let n = if smoke { SMOKE_MEMBERS } else { MEMBERS };
    let dir = std::env::temp_dir().join(format!("members-bench-groups-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dynamo = DynamoLocal::start(free_port()?, None, &dir.join("dynamodb.log"))?;
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], dynamo.port));
    let hold = members_tests::conflicts::hold();
    let proxy = StaleProxy::start_holding(upstream, hold).await?;
    let setup = Arc::new(DynamoStore::new(
        Stack::harness_client(&dynamo.endpoint()).await,
        TABLE,
    ));
    setup.create_table().await.map_err(|e| format!("{e:?}"))?;
    let store = Arc::new(
        DynamoStore::new(Stack::harness_client(&proxy.endpoint()).await, TABLE)
            .with_key_cache(Duration::from_secs(600)),
    );
    let t = new_tenant(&setup, "", false).await?;
    // The users, provisioned through SCIM straight into DynamoDB Local.
    let mut users: Vec<String> = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
        let made = futures_util::future::join_all(chunk.iter().map(|i| {
            let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                              "userName": format!("u{i}@corp.example"), "name": {"givenName": "U"},
                              "active": true});
            let req = request("POST", "/scim/v2/Users", &t.scim_key, Some(user));
            shared::handlers::scim_create_user(setup.clone(), req)
        }))
        .await;
        for r in made {
            let r = r.map_err(|e| format!("provision: {e:?}"))?;
            users.push(body(&r)["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    // The baseline: a /v1 PATCH of each of those members, IN_FLIGHT at once.
    let started = Instant::now();
    let results: Vec<_> = futures_util::stream::StreamExt::collect(
        futures_util::stream::StreamExt::buffer_unordered(
            futures_util::stream::iter(users.iter().map(|id| {
                let req = request(
                    "PATCH",
                    &format!("/v1/members/{id}"),
                    &t.write_key,
                    Some(json!({"headline": "baseline"})),
                );
                shared::handlers::update_member(store.clone(), req)
            })),
            IN_FLIGHT,
        ),
    )
    .await;
    let baseline = started.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    // The group change: one PATCH adding every member.
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Everyone"});
    let created = shared::handlers::scim_create_group(
        store.clone(),
        request("POST", "/scim/v2/Groups", &t.scim_key, Some(group)),
    )
    .await
    .map_err(|e| format!("group: {e:?}"))?;
    let gid = body(&created)["id"].as_str().unwrap_or_default().to_owned();
    let members: Vec<Value> = users.iter().map(|u| json!({"value": u})).collect();
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "add", "path": "members", "value": members}]});
    let path = format!("/scim/v2/Groups/{gid}");
    let started = Instant::now();
    let answer = shared::handlers::scim_patch_group(
        store.clone(),
        request("PATCH", &path, &t.scim_key, Some(patch.clone())),
    )
    .await
    .map_err(|e| format!("group PATCH: {e:?}"))?;
    let took = started.elapsed();
    let joined = body(&answer)["members"].as_array().map_or(0, Vec::len);
    let started = Instant::now();
    shared::handlers::scim_patch_group(
        store.clone(),
        request("PATCH", &path, &t.scim_key, Some(patch)),
    )
    .await
    .map_err(|e| format!("group PATCH again: {e:?}"))?;
    let again = started.elapsed();
    let ratio = took.as_secs_f64() / baseline.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "a group PATCH adding {n} members ({joined} joined, answer {} KB): {:.1} s; the same {n} member writes as /v1 PATCHes, {IN_FLIGHT} at once: {:.1} s ({failed} failed); ratio {ratio:.2} (1.0: a group change costs what its member writes cost); the same PATCH again: {:.2} s",
        answer.body.as_deref().map_or(0, str::len) / 1024,
        took.as_secs_f64(),
        baseline.as_secs_f64(),
        again.as_secs_f64(),
    );
    println!(
        "target: a {n}-member PATCH answers inside API Gateway's {GATEWAY_SECONDS} s: {}",
        if took.as_secs_f64() < GATEWAY_SECONDS && joined == n {
            "met"
        } else {
            "NOT MET"
        }
    );
    println!("{}", proxy.conflicts.summary());
    Ok(())
}
