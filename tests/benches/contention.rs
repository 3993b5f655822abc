//! `make bench`: one organisation under many writers, on a store that plays DynamoDB's
//! transaction conflicts (src/conflicts.rs: each transaction holds its items for
//! `MEMBERS_TX_HOLD_MS`, default 20 ms), against the same load spread over as many
//! organisations. The handlers run in-process (no `cargo lambda watch`), so the figures are
//! the store's: what sharing an item costs, not what the emulator costs.
//!
//! For each operation and each count of concurrent writers (1, 4, 16, 64): successful
//! writes/s, attempts per success (a transaction cancelled by a conflict and tried again is
//! an attempt), client-visible failures by status and code, p50/p99 latency; the ratio one
//! organisation ÷ spread is what sharing an item costs (1.0: nothing).

use members_tests::stale::StaleProxy;
use members_tests::{free_port, new_tenant, DynamoLocal, Stack, Tenant, TABLE};
use serde_json::{json, Value};
use shared::error::ApiError;
use shared::http::{ApiRequest, ApiResponse};
use shared::store::DynamoStore;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WRITERS: [usize; 4] = [1, 4, 16, 64];
/// Writes in one cell (an operation × a writer count × a layout).
const WRITES: usize = 128;
const SMOKE_WRITERS: [usize; 2] = [1, 4];
const SMOKE_WRITES: usize = 8;
/// Issue 20's targets: 64 writers creating in one organisation reach this share of the
/// same load spread over 64 organisations, with no failure. Measured apart from the table:
/// a cell of 128 writes by 64 writers is two writes each, and this machine moves such a
/// cell by ±30 % from run to run; so `TARGET_ROUNDS` rounds of `TARGET_WRITES` writes,
/// one organisation and spread alternating, and the ratio of the medians.
const TARGET_RATIO: f64 = 0.8;
const TARGET_WRITES: usize = 640;
const TARGET_ROUNDS: usize = 3;
/// An identity provider's initial provisioning: users, and concurrent requests (Microsoft
/// asks SCIM apps to take 25 requests per second per provisioning job).
const PROVISIONING: (usize, usize) = (2_000, 25);
const SMOKE_PROVISIONING: (usize, usize) = (40, 5);

fn main() {
    members_tests::bench_main(run);
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Create,
    ScimCreate,
    PatchField,
    RoleChange,
    Deactivate,
}

impl Op {
    const ALL: [Op; 5] = [
        Op::Create,
        Op::ScimCreate,
        Op::PatchField,
        Op::RoleChange,
        Op::Deactivate,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Create => "POST /v1/members",
            Op::ScimCreate => "SCIM POST /Users",
            Op::PatchField => "PATCH one field",
            Op::RoleChange => "PATCH role (custom)",
            Op::Deactivate => "DELETE (deactivate)",
        }
    }

    /// Whether each write needs a member made beforehand.
    fn needs_member(self) -> bool {
        matches!(self, Op::PatchField | Op::RoleChange | Op::Deactivate)
    }
}

fn request(method: &str, path: &str, key: &str, body: Option<Value>) -> ApiRequest {
    let id = path.rsplit('/').next().filter(|s| s.starts_with("mem_"));
    let content_type = if path.starts_with("/scim/") {
        "application/scim+json"
    } else {
        "application/json"
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

/// An organisation ready for `op`: its tenant, a custom role, and members to write.
struct Target {
    tenant: Tenant,
    role: String,
    members: Vec<String>,
}

async fn call(
    store: &Arc<DynamoStore>,
    op: Op,
    target: &Target,
    n: usize,
    tag: &str,
) -> Result<ApiResponse, ApiError> {
    let t = &target.tenant;
    let member = || target.members.get(n).cloned().unwrap_or_default();
    match op {
        Op::Create => {
            let body = json!({"firstName": "C", "email": format!("c{n}-{tag}@example.com"), "role": "simple"});
            let req = request("POST", "/v1/members", &t.write_key, Some(body));
            shared::handlers::create_member(store.clone(), req).await
        }
        Op::ScimCreate => {
            let body = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("s{n}-{tag}@example.com"),
                "name": {"givenName": "S", "familyName": "Cim"},
                "active": true,
            });
            let req = request("POST", "/scim/v2/Users", &t.scim_key, Some(body));
            shared::handlers::scim_create_user(store.clone(), req).await
        }
        Op::PatchField => {
            let path = format!("/v1/members/{}", member());
            let req = request("PATCH", &path, &t.write_key, Some(json!({"headline": tag})));
            shared::handlers::update_member(store.clone(), req).await
        }
        Op::RoleChange => {
            let path = format!("/v1/members/{}", member());
            let req = request(
                "PATCH",
                &path,
                &t.write_key,
                Some(json!({"role": target.role})),
            );
            shared::handlers::update_member(store.clone(), req).await
        }
        Op::Deactivate => {
            let path = format!("/v1/members/{}", member());
            let req = request("DELETE", &path, &t.write_key, None);
            shared::handlers::deactivate_member(store.clone(), req).await
        }
    }
}

/// Organisations for one cell: one shared by every writer, or one per writer.
async fn targets(
    setup: &Arc<DynamoStore>,
    op: Op,
    orgs: usize,
    writes: usize,
) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for _ in 0..orgs {
        let tenant = new_tenant(setup, "", false).await?;
        let role = shared::handlers::create_role(
            setup.clone(),
            request(
                "POST",
                "/v1/roles",
                &tenant.write_key,
                Some(json!({"name": "Contractor"})),
            ),
        )
        .await
        .map_err(|e| format!("role: {e:?}"))?;
        let role: Value = serde_json::from_str(role.body.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        out.push(Target {
            tenant,
            role: role["id"].as_str().unwrap_or_default().to_owned(),
            members: Vec::new(),
        });
    }
    if op.needs_member() {
        for n in 0..writes {
            let target = &mut out[n % orgs];
            let body =
                json!({"firstName": "M", "email": format!("m{n}@example.com"), "role": "simple"});
            let req = request("POST", "/v1/members", &target.tenant.write_key, Some(body));
            let r = shared::handlers::create_member(setup.clone(), req)
                .await
                .map_err(|e| format!("setup create: {e:?}"))?;
            let v: Value = serde_json::from_str(r.body.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string())?;
            target
                .members
                .push(v["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    Ok(out)
}

struct Cell {
    elapsed: Duration,
    per_second: f64,
    attempts_per_success: f64,
    failures: BTreeMap<String, usize>,
    p50: Duration,
    p99: Duration,
}

/// `writes` writes of `op` by `writers` tasks, write n on organisation n % orgs.
async fn cell(
    store: &Arc<DynamoStore>,
    proxy: &StaleProxy,
    op: Op,
    targets: Arc<Vec<Target>>,
    writers: usize,
    writes: usize,
) -> Cell {
    let counted = |p: &StaleProxy| {
        let c = &p.conflicts;
        c.transactions.load(Ordering::Relaxed)
            + c.write_transactions_cancelled.load(Ordering::Relaxed)
    };
    let attempts_before = counted(proxy);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (store, targets, next) = (store.clone(), targets.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= writes {
                    return out;
                }
                // Consecutive writes go to different organisations when spread; the n-th
                // write of an organisation has a member of its own.
                let target = &targets[n % targets.len()];
                let index = n / targets.len();
                let began = Instant::now();
                let r = call(&store, op, target, index, &format!("w{n}")).await;
                let outcome = match r {
                    Ok(r) if r.status < 300 => None,
                    Ok(r) => Some(format!("{}", r.status)),
                    Err(e) => Some(format!("{} {}", e.problem().status, e.code())),
                };
                out.push((began.elapsed(), outcome));
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        for (took, outcome) in t.await.unwrap_or_default() {
            latencies.push(took);
            if let Some(code) = outcome {
                *failures.entry(code).or_default() += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    let successes = latencies.len() - failures.values().sum::<usize>();
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    Cell {
        elapsed,
        per_second: successes as f64 / elapsed.as_secs_f64(),
        attempts_per_success: (counted(proxy) - attempts_before) as f64 / successes.max(1) as f64,
        failures,
        p50: at(0.5),
        p99: at(0.99),
    }
}

async fn run() -> Result<(), String> {
    let smoke = std::env::var_os("BENCH_SMOKE").is_some();
    let (writer_counts, writes): (&[usize], usize) = match smoke {
        true => (&SMOKE_WRITERS, SMOKE_WRITES),
        false => (&WRITERS, WRITES),
    };
    let dir = std::env::temp_dir().join(format!("members-bench-contention-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dynamo = DynamoLocal::start(free_port()?, None, &dir.join("dynamodb.log"))?;
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], dynamo.port));
    let hold = members_tests::conflicts::hold();
    let proxy = StaleProxy::start_holding(upstream, hold).await?;
    // Setup writes go straight to DynamoDB Local; the measured ones through the proxy.
    let setup = Arc::new(DynamoStore::new(
        Stack::harness_client(&dynamo.endpoint()).await,
        TABLE,
    ));
    setup.create_table().await.map_err(|e| format!("{e:?}"))?;
    let store = Arc::new(
        DynamoStore::new(Stack::harness_client(&proxy.endpoint()).await, TABLE)
            .with_key_cache(Duration::from_secs(600)),
    );
    println!(
        "one organisation vs the same load over as many organisations; {writes} writes a cell; transactions hold their items {} ms",
        hold.as_millis()
    );
    println!(
        "{:<22} {:>7} {:>10} {:>10} {:>7} {:>8} {:>8}  {:<28} {:>6}",
        "operation",
        "writers",
        "layout",
        "writes/s",
        "tries",
        "p50 ms",
        "p99 ms",
        "failures",
        "ratio"
    );
    for op in Op::ALL {
        for &writers in writer_counts {
            let mut rates = Vec::new();
            for orgs in [1, writers] {
                let layout = if orgs == 1 { "one org" } else { "spread" };
                let t = Arc::new(targets(&setup, op, orgs, writes).await?);
                let c = cell(&store, &proxy, op, t, writers, writes).await;
                rates.push(c.per_second);
                let failures = match c.failures.is_empty() {
                    true => "0".to_owned(),
                    false => c
                        .failures
                        .iter()
                        .map(|(code, n)| format!("{n}× {code}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                let ratio = match (orgs == writers, rates.as_slice()) {
                    (true, [one, spread]) if *spread > 0.0 => format!("{:.2}", one / spread),
                    _ => String::new(),
                };
                println!(
                    "{:<22} {:>7} {:>10} {:>10.1} {:>7.2} {:>8.1} {:>8.1}  {:<28} {:>6}",
                    op.name(),
                    writers,
                    layout,
                    c.per_second,
                    c.attempts_per_success,
                    c.p50.as_secs_f64() * 1000.0,
                    c.p99.as_secs_f64() * 1000.0,
                    failures,
                    ratio
                );
                if writers == 1 {
                    break;
                }
            }
        }
    }
    let (users, concurrency) = match smoke {
        true => SMOKE_PROVISIONING,
        false => PROVISIONING,
    };
    let t = Arc::new(targets(&setup, Op::ScimCreate, 1, users).await?);
    let c = cell(&store, &proxy, Op::ScimCreate, t, concurrency, users).await;
    let errors = c.failures.values().sum::<usize>();
    println!(
        "SCIM initial provisioning: {users} users at {concurrency} concurrent requests into one organisation: {:.1} s ({:.1} users/s, {:.2} tries a user, p99 {:.0} ms), {errors} errors {}",
        c.elapsed.as_secs_f64(),
        c.per_second,
        c.attempts_per_success,
        c.p99.as_secs_f64() * 1000.0,
        if errors == 0 { "(target: 0, met)" } else { "(target: 0, NOT MET)" }
    );
    let writers = writer_counts.last().copied().unwrap_or(1);
    let (rounds, writes) = match smoke {
        true => (1, SMOKE_WRITES * 2),
        false => (TARGET_ROUNDS, TARGET_WRITES),
    };
    let (mut one, mut spread, mut failures) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        for (orgs, rates) in [(1, &mut one), (writers, &mut spread)] {
            let t = Arc::new(targets(&setup, Op::Create, orgs, writes).await?);
            let c = cell(&store, &proxy, Op::Create, t, writers, writes).await;
            failures += c.failures.values().sum::<usize>();
            rates.push(c.per_second);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = median(&mut one) / median(&mut spread).max(f64::MIN_POSITIVE);
    let shown = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "target: {writers} writers creating in one organisation, {rounds} rounds of {writes} writes: writes/s one org [{}], spread [{}]; ratio of medians {ratio:.2} (≥ {TARGET_RATIO}), {failures} failures (0): {}",
        shown(&one),
        shown(&spread),
        if ratio >= TARGET_RATIO && failures == 0 { "met" } else { "NOT MET" }
    );
    println!("{}", proxy.conflicts.summary());
    println!("ratio: writes/s of one organisation ÷ writes/s of the same load spread (1.0: sharing costs nothing)");
    Ok(())
}
