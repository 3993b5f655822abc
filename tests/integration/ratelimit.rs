//! Rate limits per key and per organisation, counted across function instances: an
//! organisation given limits of its own (`membersctl rate-limits`) is held to them by the
//! function that served it and by another that never did, in the draft's exact header
//! syntax, and SCIM answers 429 in its own format with `Retry-After`.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, Reply, TestResult};
use std::sync::Arc;
use std::time::Duration;

/// (remaining, seconds to reset) of `policy` in a `RateLimit` field.
fn standing(reply: &Reply, policy: &str) -> Option<(u64, u64)> {
    let field = reply.header("RateLimit")?;
    let item = field
        .split(", ")
        .find(|i| i.starts_with(&format!("\"{policy}\";")))?;
    let mut r = None;
    let mut t = None;
    for param in item.split(';').skip(1) {
        match param.split_once('=') {
            Some(("r", v)) => r = v.parse().ok(),
            Some(("t", v)) => t = v.parse().ok(),
            _ => {}
        }
    }
    Some((r?, t?))
}

pub async fn keys_and_organisations_are_held_to_their_limits(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let out = ctx
        .stack
        .membersctl()
        .args(["--json", "rate-limits", "--org", t.org.as_str()])
        .args(["--per-key", "20", "--per-org", "30"])
        .output()
        .map_err(|e| format!("membersctl: {e}"))?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    ensure_eq!(said["perKey"], 20, "{said}");

    // Not within 20 s of a window's end: the test's requests fall in one window.
    let first = t.call_as(&t.read_key, "GET", "/v1/members?limit=1", None)?;
    ensure_eq!(first.status, 200, "{}", first.text);
    let (_, reset) = standing(&first, "key").ok_or(format!("no RateLimit: {:?}", first.headers))?;
    let slept = reset < 20;
    if slept {
        tokio::time::sleep(Duration::from_secs(reset + 1)).await;
    }
    ensure_eq!(
        first.header("RateLimit-Policy"),
        Some("\"key\";q=20;w=60, \"organization\";q=30;w=60"),
        "{:?}",
        first.headers
    );

    // The read key: 20 in this window, the first call's included unless it was the last's.
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..25 {
        let r = t.call_as(&t.read_key, "GET", "/v1/members?limit=1", None)?;
        statuses.push(r.status);
        last = Some(r);
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let expected = if slept { 20 } else { 19 };
    ensure!(
        admitted == expected && statuses[admitted..].iter().all(|s| *s == 429),
        "20 a key, then 429: {statuses:?}"
    );
    let refused = last.ok_or("no reply")?;
    ensure_eq!(refused.json()["code"], "rate_limited", "{}", refused.text);
    let retry: u64 = refused
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .ok_or(format!("no Retry-After: {:?}", refused.headers))?;
    let (remaining, reset) = standing(&refused, "key").ok_or("no RateLimit")?;
    ensure!(
        remaining == 0 && retry == reset && (1..=60).contains(&retry),
        "{:?}",
        refused.headers
    );

    // The write key has its own 20, but the organisation only 30 in all.
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(
            t.call_as(&t.write_key, "GET", "/v1/members?limit=1", None)?
                .status,
        );
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    ensure!(
        admitted == 10 && statuses[admitted..].iter().all(|s| *s == 429),
        "the organisation's 30, then 429: {statuses:?}"
    );

    // Another function, another process: it counts what the first one synced.
    let other = t.call_as(&t.write_key, "GET", "/v1/organization", None)?;
    ensure_eq!(other.status, 429, "{}", other.text);
    ensure_eq!(
        standing(&other, "organization").map(|s| s.0),
        Some(0),
        "{:?}",
        other.headers
    );

    // SCIM: its own error format, and Retry-After (Entra ID pauses the job that long).
    let scim = t.call_as(&t.scim_key, "GET", "/scim/v2/Users?count=1", None)?;
    ensure_eq!(scim.status, 429, "{}", scim.text);
    let body = scim.json();
    ensure_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error",
        "{}",
        scim.text
    );
    ensure_eq!(body["status"], "429", "{}", scim.text);
    ensure!(scim.header("Retry-After").is_some(), "{:?}", scim.headers);

    // Another organisation is not held back.
    let u = ctx.stack.tenant(false).await?;
    let r = u.call_as(&u.read_key, "GET", "/v1/members?limit=1", None)?;
    ensure_eq!(r.status, 200, "{}", r.text);
    ensure!(
        r.header("RateLimit-Policy")
            .is_some_and(|p| p.starts_with("\"key\";q=1000000;w=60")),
        "the stack's defaults: {:?}",
        r.headers
    );
    Ok(())
}
