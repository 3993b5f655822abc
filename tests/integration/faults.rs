//! Failure of the store, and what reaches the logs.

use members_tests::{ensure, ensure_eq, Stack, TestResult};
use serde_json::json;
use std::path::Path;
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
    st.stop();
    no_secret_in(&st.watch_log)?;
    st.clean_up();
    Ok(())
}

/// Scans a log for what must never be logged: API keys, password hashes, passwords and
/// emails the tests sent, request bodies.
pub fn no_secret_in(log: &Path) -> TestResult {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    ensure!(
        text.contains("request finished"),
        "the log has request lines at all ({})",
        log.display()
    );
    for needle in [
        "mapi_",
        "$argon2",
        "never-shown",
        "@example.com",
        "password\":",
        "firstName",
    ] {
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return Err(format!("{needle:?} appears in {}: {line}", log.display()));
        }
    }
    Ok(())
}
