//! Nothing lost after a long AWS incident: placing, then publishing, fail for longer than
//! the consumer's retries (it gives up, as Lambda does after `MaximumRetryAttempts`); then
//! `membersctl events repair` places and publishes what was given up, and every event is in
//! the feed and at the receiver exactly once.

use crate::webhooks::{feed_ids, subscribe, wait_for};
use crate::Ctx;
use members_tests::consumers::consumer_with;
use members_tests::receiver::Receiver;
use members_tests::stale::StaleProxy;
use members_tests::{ensure, ensure_eq, Stack, Tenant, TestResult, TABLE};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `membersctl --json events repair …` against the stack's DynamoDB Local.
fn repair_cli(st: &Stack, args: &[&str]) -> Result<Value, String> {
    let out = st
        .membersctl()
        .args(["--json", "events", "repair", "--older-than", "0s"])
        .args(args)
        .output()
        .map_err(|e| format!("membersctl: {e}"))?;
    ensure!(
        out.status.success(),
        "membersctl events repair failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).map_err(|e| format!("repair's answer: {e}"))
}

/// Waits until the consumer's log says it gave up on the outbox entries of each of `members`.
fn wait_for_give_ups(log: &std::path::Path, members: &[String]) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let given: Vec<&str> = text.lines().filter(|l| l.contains("giving up")).collect();
        if members
            .iter()
            .all(|m| given.iter().any(|l| l.contains(&format!("#MEMBER#{m}#"))))
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the consumer did not give up on {members:?} in 3 minutes; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn create(t: &Tenant, prefix: &str) -> Result<Vec<String>, String> {
    (0..3)
        .map(|i| {
            t.create(&json!({"firstName": "R", "email": format!("{prefix}{i}@example.com"), "role": "simple"}))
        })
        .collect()
}

/// The feed's events about `members`, by id: how many times each is in the feed.
fn in_feed(t: &Tenant, members: &[String]) -> Result<BTreeMap<String, usize>, String> {
    let mut out = BTreeMap::new();
    for e in feed_ids(t)? {
        if members.iter().any(|m| e["subject"] == json!(m)) {
            *out.entry(e["id"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    Ok(out)
}

pub async fn an_incident_longer_than_the_retries_is_repaired_exactly_once(
    ctx: Arc<Ctx>,
) -> TestResult {
    // The operator stack: its consumer is replaced for a while, which the main stack's
    // tests would notice.
    let st = ctx.operator_stack().await?;
    let t = st.tenant(false).await?;
    let receiver = Receiver::start(&st.dir, "repair")?;
    let (_, secret) = subscribe(&t, &receiver.url("/repair"))?;
    receiver.control(&[&secret], 0.0)?;
    // The webhook's own event is placed before the incident begins.
    let deadline = Instant::now() + Duration::from_secs(120);
    let placed = || -> Result<bool, String> {
        let page = t.call_as(&t.hooks_key, "GET", "/v1/events?limit=100", None)?;
        Ok(page.json()["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["type"] == "webhook.created")))
    };
    while !placed()? {
        ensure!(Instant::now() < deadline, "webhook.created never placed");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A consumer that reaches DynamoDB Local through a proxy playing the incident, and
    // gives up on a batch after 2 retries.
    st.kill_consumer()?;
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], st.dynamo.port));
    let proxy = StaleProxy::start_holding(upstream, Duration::ZERO).await?;
    let log = st.dir.join("consumer-incident.log");
    let incident = consumer_with(
        &proxy.endpoint(),
        &log,
        &["--max-retries", "2", "--repair-every", "0"],
    );
    let result = async {
        let _consumer = incident?;
        // 1. Placing fails (every transaction moving a feed's counter).
        proxy.faults.fail("TransactWriteItems", "#SEQUENCE");
        let unplaced = create(&t, "unplaced")?;
        wait_for_give_ups(&log, &unplaced)?;
        // 2. Placing works, publishing fails (the local queue stands for EventBridge).
        proxy.faults.heal();
        proxy.faults.fail("BatchWriteItem", "LOCAL#WEBHOOKQUEUE");
        let unpublished = create(&t, "unpublished")?;
        wait_for_give_ups(&log, &unpublished)?;
        proxy.faults.heal();

        let all: Vec<String> = unplaced.iter().chain(&unpublished).cloned().collect();
        let before = in_feed(&t, &all)?;
        ensure_eq!(
            before.len(),
            3,
            "only the unpublished events were placed: {before:?}"
        );
        ensure!(
            before.values().all(|n| *n == 1),
            "each placed once: {before:?}"
        );
        let early: Vec<Value> = receiver.received()?;
        ensure!(
            early
                .iter()
                .all(|d| !before.contains_key(d["id"].as_str().unwrap_or_default())),
            "an unpublished event reached the receiver"
        );

        // 3. The repair: 3 entries placed and published, 3 placed events published.
        let done = repair_cli(st, &["--org", t.org.as_str()])?;
        ensure_eq!(
            done,
            json!({"placed": 3, "published": 3, "failed": 0}),
            "first repair"
        );
        let after = in_feed(&t, &all)?;
        ensure_eq!(after.len(), 6, "every event in the feed: {after:?}");
        ensure!(after.values().all(|n| *n == 1), "each once: {after:?}");
        let want: BTreeSet<String> = after.keys().cloned().collect();
        let got = wait_for(&receiver, &want, Duration::from_secs(120))?;
        let mut times: BTreeMap<String, usize> = BTreeMap::new();
        for d in &got {
            let id = d["id"].as_str().unwrap_or_default();
            if want.contains(id) {
                *times.entry(id.to_owned()).or_default() += 1;
            }
        }
        ensure_eq!(times.len(), 6, "every event at the receiver: {times:?}");
        ensure!(
            times.values().all(|n| *n == 1),
            "each delivered once: {times:?}"
        );

        // 4. Nothing left: a second repair finds nothing, the outbox index holds nothing of
        //    the organisation.
        let again = repair_cli(st, &["--org", t.org.as_str()])?;
        ensure_eq!(
            again,
            json!({"placed": 0, "published": 0, "failed": 0}),
            "second repair"
        );
        let left = st
            .store
            .client()
            .query()
            .table_name(TABLE)
            .index_name("GSI6")
            .key_condition_expression("GSI6PK = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("OUTBOX#{}", t.org)),
            )
            .send()
            .await
            .map_err(|e| format!("outbox index: {e:?}"))?;
        ensure_eq!(left.count(), 0, "the outbox index after the repair");
        Ok(())
    }
    .await;
    // Whatever the outcome: the stack's own consumer again, and what the incident gave up of
    // other tests' organisations repaired.
    proxy.faults.heal();
    st.start_consumer()?;
    repair_cli(st, &[])?;
    result
}
