//! `make smoke` (scripts/smoke.py, what `make deploy-staging` runs against a new deployment)
//! against the local stack, so that it cannot rot: the tour passes and cleans up after
//! itself; a broken deployment fails on its first step, with one line saying which.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, workspace_root, TestResult};
use std::sync::Arc;

async fn smoke(
    api: &str,
    key: &str,
    scim: &str,
    hooks: &str,
) -> Result<(i32, String, String), String> {
    let out = tokio::process::Command::new("python3")
        .arg(workspace_root().join("scripts/smoke.py"))
        .args([
            "--url",
            api,
            "--key",
            key,
            "--scim-key",
            scim,
            "--hooks-key",
            hooks,
        ])
        // The consumer of a busy test stack may take a while to place the event.
        .args(["--feed-wait", "120"])
        .output()
        .await
        .map_err(|e| format!("python3 scripts/smoke.py: {e}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

pub async fn the_smoke_test_passes_here_and_fails_clearly(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let (code, out, err) = smoke(&t.api, &t.write_key, &t.scim_key, &t.hooks_key).await?;
    ensure_eq!(code, 0, "{out}\n{err}");
    let last = out.lines().last().unwrap_or_default();
    ensure!(
        last.starts_with("smoke: 12 passed, 0 failed against"),
        "{out}"
    );
    // It leaves the member it made deactivated.
    let member = out
        .lines()
        .find_map(|l| l.strip_prefix("smoke: ok   created "))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or(format!("no member in {out}"))?;
    let r = t.call("GET", &format!("/v1/members/{member}"), None)?;
    ensure_eq!(r.status, 200, "{}", r.text);
    ensure_eq!(r.json()["isActive"], false, "{}", r.text);

    // A key the deployment does not know: exit 1 on the first step, one line on stderr.
    let wrong = format!("mapi_{}", "0".repeat(64));
    let (code, out, err) = smoke(&t.api, &wrong, "", "").await?;
    ensure_eq!(code, 1, "{out}\n{err}");
    ensure_eq!(err.lines().count(), 1, "{err}");
    ensure!(
        err.starts_with("smoke: FAIL GET /v1/organization: expected 200, got 401"),
        "{err}"
    );
    ensure!(!out.contains("passed"), "{out}");
    Ok(())
}
