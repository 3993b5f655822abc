//! The operator's `membersctl recount`: counters that an upgrade left missing (an
//! organisation created before SCIM has no `scimMembers` nor `activeMembers`) or that were
//! damaged are set from the members, also while the API keeps writing.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, membersctl, TestResult, TABLE};
use serde_json::{json, Value};
use shared::model::OrgId;
use shared::store::dynamo::{keys, AttributeValue, RecountOutcome, RECOUNT_ATTEMPTS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The organisation item as stored.
async fn org_item(ctx: &Ctx, org: &OrgId) -> Result<HashMap<String, AttributeValue>, String> {
    let (pk, sk) = keys::org(org);
    ctx.stack
        .store
        .client()
        .get_item()
        .table_name(TABLE)
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S(sk))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("get org: {e:?}"))?
        .item
        .ok_or_else(|| "no org item".to_owned())
}

/// An upgrade's starting point, by hand: the SCIM counters and the stamp gone, and
/// `damage` written over the others.
async fn damage(ctx: &Ctx, org: &OrgId, set: &str, values: &[(&str, i64)]) -> TestResult {
    let (pk, sk) = keys::org(org);
    let mut update = ctx
        .stack
        .store
        .client()
        .update_item()
        .table_name(TABLE)
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S(sk))
        .update_expression(format!(
            "{set} REMOVE scimMembers, activeMembers, counterWrites"
        ));
    for (name, value) in values {
        update = update.expression_attribute_values(*name, AttributeValue::N(value.to_string()));
    }
    update.send().await.map_err(|e| format!("damage: {e:?}"))?;
    Ok(())
}

/// `membersctl --json recount …` against the stack's DynamoDB Local: (success, stdout, stderr).
fn recount_cli(ctx: &Ctx, args: &[&str]) -> Result<(bool, String, String), String> {
    let out = std::process::Command::new(membersctl())
        .arg("--json")
        .arg("recount")
        .args(args)
        .env("AWS_ENDPOINT_URL_DYNAMODB", ctx.stack.dynamo.endpoint())
        .env("TABLE_NAME", TABLE)
        .output()
        .map_err(|e| format!("membersctl: {e}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// An organisation whose counters are missing or wrong gets them from its members: the dry
/// run reports the differences and writes nothing, the recount writes them, the next run
/// finds nothing to do, and an unknown organisation is a clear failure.
pub async fn recount_restores_missing_and_damaged_counters(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    t.create(&json!({"firstName": "Ada", "email": "ada@example.com", "role": "admin"}))?;
    let bo = t.create(&json!({"firstName": "Bo", "email": "bo@example.com", "role": "simple"}))?;
    let cy = t.create(&json!({"firstName": "Cy", "email": "cy@example.com", "role": "simple"}))?;
    ensure_eq!(
        t.call("DELETE", &format!("/v1/members/{bo}"), None)?.status,
        200,
        "Bo deactivated"
    );
    ensure_eq!(
        t.scim("DELETE", &format!("/Users/{cy}"), None, &[])?.status,
        204,
        "Cy deleted through SCIM"
    );
    st.check_invariants(&t.org).await?;
    damage(&ctx, &t.org, "SET activeAdmins = :seven", &[(":seven", 7)]).await?;
    let damaged = org_item(&ctx, &t.org).await?;

    let org = t.org.to_string();
    let (ok, out, err) = recount_cli(&ctx, &["--org", &org, "--dry-run"])?;
    ensure!(ok, "dry run: {out} {err}");
    let report: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    // Root and Ada are active admins; Bo is inactive; Cy is inactive and hidden from SCIM.
    ensure_eq!(
        report,
        json!([{
            "organizationId": org,
            "outcome": "would correct",
            "differences": [
                {"counter": "activeAdmins", "stored": 7, "counted": 2},
                {"counter": "scimMembers", "stored": null, "counted": 3},
                {"counter": "activeMembers", "stored": null, "counted": 2},
            ],
        }]),
        "dry run's report"
    );
    ensure_eq!(
        org_item(&ctx, &t.org).await?,
        damaged,
        "a dry run writes nothing"
    );

    let (ok, out, err) = recount_cli(&ctx, &["--org", &org])?;
    ensure!(ok, "recount: {out} {err}");
    ensure!(out.contains("\"outcome\":\"corrected\""), "{out}");
    st.check_invariants(&t.org).await?;
    let (ok, out, err) = recount_cli(&ctx, &["--org", &org])?;
    ensure!(
        ok && out.contains("\"outcome\":\"unchanged\""),
        "again: {out} {err}"
    );
    // The counters go on from the recount: Bo comes back.
    ensure_eq!(
        t.call("POST", &format!("/v1/members/{bo}/reactivate"), None)?
            .status,
        200,
        "Bo reactivated"
    );
    st.check_invariants(&t.org).await?;

    let (ok, out, err) = recount_cli(&ctx, &["--org", "org_01JDOESNOTEXIST0000000000"])?;
    ensure!(
        !ok && err.contains("no such organisation"),
        "unknown org: {out} {err}"
    );
    let (ok, _, err) = recount_cli(&ctx, &[])?;
    ensure!(
        !ok && err.contains("--org"),
        "neither --org nor --all: {err}"
    );
    Ok(())
}

/// A count taken before writers moved the counters is never written, even when their moves
/// cancel out (a deactivation and a reactivation leave the counters as read, the stamp
/// not); a recount racing writers never breaks exact counters.
pub async fn recount_never_writes_a_count_that_writers_moved_under(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let mut ids = Vec::new();
    for i in 0..2 {
        ids.push(t.create(&json!({"firstName": format!("W{i}"), "email": format!("w{i}@example.com"), "role": "simple"}))?);
    }
    damage(
        &ctx,
        &t.org,
        "SET activeWithoutHrisRole = :many",
        &[(":many", 100)],
    )
    .await?;
    let store = &st.store;
    let recount = |e| format!("recount: {e:?}");

    let mut stale = store.tally_counters(&t.org).await.map_err(recount)?;
    let w = &ids[0];
    for (method, path) in [
        ("DELETE", format!("/v1/members/{w}")),
        ("POST", format!("/v1/members/{w}/reactivate")),
    ] {
        let r = t.call(method, &path, None)?;
        ensure_eq!(r.status, 200, "{method} {path}: {}", r.text);
    }
    let moved = org_item(&ctx, &t.org).await?;
    ensure_eq!(
        moved.get("activeWithoutHrisRole"),
        Some(&AttributeValue::N("100".into())),
        "the two moves cancel out"
    );
    ensure!(
        !store
            .settle_tally(&mut stale, false)
            .await
            .map_err(recount)?,
        "a count older than two moves is refused"
    );
    ensure!(
        !store
            .settle_tally(&mut stale, true)
            .await
            .map_err(recount)?,
        "and not reported by a dry run"
    );
    ensure_eq!(org_item(&ctx, &t.org).await?, moved, "nothing written");

    let started = std::time::Instant::now();
    let mut fresh = store.tally_counters(&t.org).await.map_err(recount)?;
    // One attempt's length: a Scan of the whole shared table, longer the fuller it is.
    let attempt = started.elapsed();
    ensure!(
        store
            .settle_tally(&mut fresh, false)
            .await
            .map_err(recount)?,
        "a count with no move since is written"
    );
    ensure_eq!(fresh.recount.outcome, RecountOutcome::Corrected, "outcome");
    st.check_invariants(&t.org).await?;

    // Damaged again, then writers toggle both members while whole recounts run until one
    // has corrected the counters, and once more: the counters end exact.
    damage(
        &ctx,
        &t.org,
        "SET activeWithoutHrisRole = :many",
        &[(":many", 100)],
    )
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_return = StopOnDrop(stop.clone());
    let writers: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (t, id, stop) = (t.clone(), id.clone(), stop.clone());
            // Paced by an attempt's length, so that most attempts see no move even when the
            // suite slows them (under the full suite a fixed pace left none quiet).
            let pause = attempt * (5 + 2 * i as u32);
            std::thread::spawn(move || -> Result<usize, String> {
                let mut moves = 0;
                while !stop.load(Ordering::Relaxed) {
                    for (method, path) in [
                        ("DELETE", format!("/v1/members/{id}")),
                        ("POST", format!("/v1/members/{id}/reactivate")),
                    ] {
                        let r = t.call(method, &path, None)?;
                        if r.status != 200 {
                            return Err(format!("{method} {path}: {} {}", r.status, r.text));
                        }
                        moves += 1;
                        let until = std::time::Instant::now() + pause;
                        while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                    }
                }
                Ok(moves)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for _ in 0..8 {
        let r = store
            .recount_counters(Some(&t.org), false)
            .await
            .map_err(recount)?;
        outcomes.extend(r.into_iter().map(|r| r.outcome));
        if outcomes.contains(&RecountOutcome::Corrected) && outcomes.len() >= 2 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut moves = 0;
    for w in writers {
        moves += w.join().map_err(|_| "writer panicked".to_owned())??;
    }
    eprintln!(
        "recount race: {moves} counter moves by 2 writers during {} recounts (an attempt {attempt:?}): {outcomes:?}",
        outcomes.len()
    );
    ensure!(moves > 0, "the writers moved nothing");
    ensure!(
        outcomes.contains(&RecountOutcome::Corrected),
        "no recount found a quiet second in 8 runs of {RECOUNT_ATTEMPTS} attempts"
    );
    st.check_invariants(&t.org).await
}

/// Sets the flag when dropped: writer threads stop even when the test returns early.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
