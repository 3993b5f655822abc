//! Failure of the store, and what reaches the logs.

use members_tests::{ensure, ensure_eq, no_secret_in, Stack, TestResult};
use serde_json::json;
use std::time::Duration;

pub async fn dynamodb_stopped_gives_503_and_writes_nothing() -> TestResult {
    let mut st = Stack::start("faults", true).await?;
    let t = st.tenant(false).await?;
    let before = st.organization(&t.org).await?;
    st.dynamo.stop();
    let body = json!({"firstName": "Lost", "email": "lost@example.com", "role": "admin"});
    let created = t.post_member(&body)?;
    ensure_eq!(
        (created.status, created.code()),
        (503, "service_unavailable".to_owned()),
        "create: {}",
        created.text
    );
    ensure!(
        created
            .header("retry-after")
            .is_some_and(|s| s.parse::<u32>().is_ok()),
        "Retry-After on create"
    );
    ensure_eq!(
        created.header("content-type"),
        Some("application/problem+json"),
        "problem+json"
    );
    let got = t.get_member(t.root.as_str())?;
    ensure_eq!(
        (got.status, got.header("retry-after").is_some()),
        (503, true),
        "get"
    );

    st.dynamo.restart()?;
    // Nothing was half-written: no member, no email guard, counters as before.
    let mut members = Vec::new();
    for _ in 0..50 {
        match st.members_of(&t.org).await {
            Ok(m) => {
                members = m;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    ensure_eq!(members.len(), 1, "only the first admin exists");
    ensure_eq!(
        st.organization(&t.org).await?.counters,
        before.counters,
        "counters untouched"
    );
    // And the service recovers by itself.
    let again = t.post_member(&body)?;
    ensure_eq!(again.status, 201, "after restart: {}", again.text);
    st.check_invariants(&t.org).await?;
    burst_through_an_outage(&mut st).await?;
    st.stop();
    no_secret_in(&st.watch_log)?;
    st.clean_up();
    Ok(())
}

/// 8 clients create and update members while DynamoDB Local is stopped and started again
/// under them: every answer is a success, a rule's refusal or a 503 with `Retry-After`
/// (never a 500), every acknowledged create is in the table with its audit event, and the
/// counters equal a recount.
async fn burst_through_an_outage(st: &mut Stack) -> TestResult {
    let t = st.tenant(false).await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || -> Result<Vec<(u16, String, Option<String>, bool)>, String> {
                let mut out = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < 400 {
                    i += 1;
                    let role = if i % 3 == 0 { "admin" } else { "simple" };
                    let r = t.post_member(&json!({"firstName": format!("B{c}-{i}"), "email": format!("b{c}-{i}@example.com"), "role": role}))?;
                    let id = r.json()["id"].as_str().map(str::to_owned);
                    out.push((r.status, r.code(), id.clone(), r.header("retry-after").is_some()));
                    if let (201, Some(id)) = (r.status, id) {
                        let p = t.patch_member(&id, &json!({"headline": "after", "role": "admin"}))?;
                        out.push((p.status, p.code(), None, p.header("retry-after").is_some()));
                    }
                }
                Ok(out)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    st.dynamo.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    st.dynamo.restart()?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut replies = Vec::new();
    for c in clients {
        replies.extend(c.join().map_err(|_| "client panicked".to_owned())??);
    }
    let unavailable = replies.iter().filter(|r| r.0 == 503).count();
    let acknowledged: Vec<String> = replies
        .iter()
        .filter(|r| r.0 == 201)
        .filter_map(|r| r.2.clone())
        .collect();
    println!(
        "outage burst: {} requests, {} acknowledged creates, {unavailable} answered 503",
        replies.len(),
        acknowledged.len()
    );
    let unknown = replies
        .iter()
        .filter(|r| r.0 == 503 && r.1 == "outcome_unknown")
        .count();
    println!("  of the 503s, {unknown} said the outcome was unknown (cut off mid-write)");
    for (status, code, _, retry_after) in &replies {
        // A write cut off mid-flight may have been applied: it says so (outcome_unknown),
        // never "nothing was written". The invariants below hold either way.
        ensure!(
            *status < 500
                || (*status == 503
                    && *retry_after
                    && (code == "service_unavailable" || code == "outcome_unknown")),
            "{status} {code}: only 503 with Retry-After may fail a request"
        );
        ensure!(
            *status != 409 || code == "organization_changed" || code == "write_conflict",
            "{status} {code}"
        );
    }
    ensure!(
        unavailable > 0,
        "the outage was not noticed: did DynamoDB Local stop?"
    );
    let stored = st.members_of(&t.org).await?;
    let ids: std::collections::BTreeSet<String> =
        stored.iter().map(|m| members_tests::s(m, "id")).collect();
    for id in &acknowledged {
        ensure!(ids.contains(id), "acknowledged create {id} is missing");
        let audit = st
            .items(&format!("ORG#{}#MEMBER#{id}#AUDIT", t.org))
            .await?;
        ensure!(!audit.is_empty(), "{id} has no audit event");
    }
    st.check_invariants(&t.org).await
}
