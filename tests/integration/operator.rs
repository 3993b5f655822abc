//! The operator's `membersctl recount`: counters that an upgrade left missing (an
//! organisation created before SCIM has no `scimMembers` nor `activeMembers`) or that were
//! damaged are set from the members, also while the API keeps writing; an organisation
//! created before counter shards is served as before until the recount moves its counts
//! into shards.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, Stack, TestResult, TABLE};
use serde_json::{json, Value};
use shared::model::{AuditEvent, AuditEventId, OrgId, Organization, Timestamp};
use shared::store::dynamo::{
    keys, AttributeValue, RecountOutcome, COUNTER_SHARDS, RECOUNT_ATTEMPTS,
};
use shared::store::{Store, UpdateOrganization};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The item at `key`, as stored (consistent).
async fn item_at(
    st: &Stack,
    (pk, sk): (String, String),
) -> Result<HashMap<String, AttributeValue>, String> {
    st.store
        .client()
        .get_item()
        .table_name(TABLE)
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S(sk))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("get item: {e:?}"))?
        .item
        .ok_or_else(|| "no such item".to_owned())
}

/// The organisation item as stored.
async fn org_item(st: &Stack, org: &OrgId) -> Result<HashMap<String, AttributeValue>, String> {
    item_at(st, keys::org(org)).await
}

/// Damage by hand: the SCIM counters and the stamp gone from the organisation item, and
/// `damage` written over the others.
async fn damage(st: &Stack, org: &OrgId, set: &str, values: &[(&str, i64)]) -> TestResult {
    let (pk, sk) = keys::org(org);
    let mut update = st
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

/// An organisation as an older version left it: every count on its item, no counter shards.
async fn make_legacy(st: &Stack, org: &OrgId) -> TestResult {
    let client = st.store.client();
    let counted = st.organization(org).await?.counters;
    let shards = (0..COUNTER_SHARDS).map(|index| keys::counter_shard(org, index));
    delete_items(st, shards).await?;
    let (pk, sk) = keys::org(org);
    let mut update = client
        .update_item()
        .table_name(TABLE)
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S(sk));
    let mut sets = Vec::new();
    for (name, value) in counted.fields() {
        sets.push(format!("{name} = :{name}"));
        update = update
            .expression_attribute_values(format!(":{name}"), AttributeValue::N(value.to_string()));
    }
    update
        .update_expression(format!(
            "SET {} REMOVE counterShards, counterWrites",
            sets.join(", ")
        ))
        .send()
        .await
        .map_err(|e| format!("legacy: {e:?}"))?;
    Ok(())
}

/// Deletes these items (PK, SK), by hand.
async fn delete_items(st: &Stack, items: impl Iterator<Item = (String, String)>) -> TestResult {
    for (pk, sk) in items {
        st.store
            .client()
            .delete_item()
            .table_name(TABLE)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .send()
            .await
            .map_err(|e| format!("delete: {e:?}"))?;
    }
    Ok(())
}

/// How many counter shards the organisation has.
async fn shard_count(st: &Stack, org: &OrgId) -> Result<usize, String> {
    let page = st
        .store
        .client()
        .query()
        .table_name(TABLE)
        .key_condition_expression("PK = :pk AND begins_with(SK, :shard)")
        .expression_attribute_values(":pk", AttributeValue::S(keys::org(org).0))
        .expression_attribute_values(":shard", AttributeValue::S("COUNTS#".into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("shards: {e:?}"))?;
    Ok(page.items().len())
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().unwrap_or(i64::MIN),
        _ => 0,
    }
}

/// `membersctl --json recount …` against the stack's DynamoDB Local: (success, stdout, stderr).
fn recount_cli(st: &Stack, args: &[&str]) -> Result<(bool, String, String), String> {
    let out = st
        .membersctl()
        .arg("--json")
        .arg("recount")
        .args(args)
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
    let st = ctx.operator_stack().await?;
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
    // The upgrade's starting point: an organisation created before SCIM (no SCIM counters)
    // and before counter shards, then damaged by hand.
    make_legacy(st, &t.org).await?;
    damage(st, &t.org, "SET activeAdmins = :seven", &[(":seven", 7)]).await?;
    let damaged = org_item(st, &t.org).await?;

    let org = t.org.to_string();
    let (ok, out, err) = recount_cli(st, &["--org", &org, "--dry-run"])?;
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
            "shards": "moved into counter shards",
        }]),
        "dry run's report"
    );
    ensure_eq!(
        org_item(st, &t.org).await?,
        damaged,
        "a dry run writes nothing"
    );
    ensure_eq!(shard_count(st, &t.org).await?, 0, "nor shards");
    // Until the recount, the API serves the organisation as the older version did: a
    // create counts on the organisation item, and no shard appears.
    t.create(&json!({"firstName": "Di", "email": "di@example.com", "role": "simple"}))?;
    let served = org_item(st, &t.org).await?;
    ensure_eq!(
        number(&served, "activeWithoutHrisRole") - number(&damaged, "activeWithoutHrisRole"),
        1,
        "Di counted on the organisation item"
    );
    ensure_eq!(
        shard_count(st, &t.org).await?,
        0,
        "no shard written by a create"
    );

    let (ok, out, err) = recount_cli(st, &["--org", &org])?;
    ensure!(ok, "recount: {out} {err}");
    ensure!(out.contains("\"outcome\":\"corrected\""), "{out}");
    // Upgraded: every count in shards, each its own members' (check_invariants), and no
    // count of the older version left on the item.
    st.check_invariants(&t.org).await?;
    let upgraded = org_item(st, &t.org).await?;
    for gone in [
        "activeMembers",
        "scimMembers",
        "activeWithoutHrisRole",
        "activeNoAccess",
    ] {
        ensure!(
            !upgraded.contains_key(gone),
            "{gone} left on the organisation item"
        );
    }
    let (ok, out, err) = recount_cli(st, &["--org", &org])?;
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

    let (ok, out, err) = recount_cli(st, &["--org", "org_01JDOESNOTEXIST0000000000"])?;
    ensure!(
        !ok && err.contains("no such organisation"),
        "unknown org: {out} {err}"
    );
    let (ok, _, err) = recount_cli(st, &[])?;
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
    let st = ctx.operator_stack().await?;
    let t = st.tenant(false).await?;
    let mut ids = Vec::new();
    for i in 0..2 {
        ids.push(t.create(&json!({"firstName": format!("W{i}"), "email": format!("w{i}@example.com"), "role": "simple"}))?);
    }
    damage(
        st,
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
    let moved = org_item(st, &t.org).await?;
    ensure_eq!(
        st.organization(&t.org).await?.counters,
        stale.recount.stored,
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
    ensure_eq!(org_item(st, &t.org).await?, moved, "nothing written");

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
        st,
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

/// An HRIS switch that read an organisation of the older layout, committed after a recount
/// moved its counts into shards, is refused (409 `organization_changed`: its conditions were
/// on the item's counts, which are gone), never written unchecked nor answered 500; the
/// same switch read afresh sets every shard's mirror.
pub async fn a_switch_that_read_the_older_layout_is_refused_after_the_upgrade(
    ctx: Arc<Ctx>,
) -> TestResult {
    let st = ctx.operator_stack().await?;
    let t = st.tenant(false).await?;
    make_legacy(st, &t.org).await?;
    let store = &st.store;
    let read = |e| format!("read: {e:?}");
    let before = store
        .organization(&t.org)
        .await
        .map_err(read)?
        .ok_or("no organisation")?;
    ensure_eq!(before.counter_shards, 0, "read as the older layout");
    let (ok, out, err) = recount_cli(st, &["--org", t.org.as_str()])?;
    ensure!(
        ok && out.contains("moved into counter shards"),
        "upgrade: {out} {err}"
    );
    let switch = |before: Organization| {
        let mut after = before.clone();
        after.hris_enabled = true;
        after.version += 1;
        after.updated_at = Timestamp::now();
        UpdateOrganization {
            audit: AuditEvent {
                id: AuditEventId::generate(),
                organization_id: after.id.clone(),
                member_id: None,
                role_id: None,
                webhook_id: None,
                group_id: None,
                actor_key_id: None,
                action: "organization.updated".into(),
                changes: serde_json::Map::new(),
                justification: None,
                request_id: None,
                member_version: after.version,
                occurred_at: after.updated_at,
                resource: None,
            },
            before,
            after,
            if_match: false,
        }
    };
    let stale = store.update_organization(&switch(before)).await;
    ensure_eq!(
        stale.as_ref().err().map(|e| e.code()),
        Some("organization_changed"),
        "the stale switch: {stale:?}"
    );
    ensure!(
        !st.organization(&t.org).await?.hris_enabled,
        "nothing written"
    );
    st.check_invariants(&t.org).await?;
    let fresh = store
        .organization(&t.org)
        .await
        .map_err(read)?
        .ok_or("no organisation")?;
    store
        .update_organization(&switch(fresh))
        .await
        .map_err(|e| format!("the fresh switch: {e:?}"))?;
    ensure!(st.organization(&t.org).await?.hris_enabled, "switched on");
    // Every shard mirrors it (check_shards).
    st.check_invariants(&t.org).await
}

/// A custom role of the older layout (counts on its item, no holder shards) keeps working:
/// a create and a PATCH that give it count on its item (written again when the shard they
/// tried is not there), its deletion is refused while held. `membersctl recount` moves its
/// counts into holder shards, never on a count that moved under it; afterwards writes count
/// on the shards, and the role is deleted once nobody holds it.
pub async fn a_role_of_the_older_layout_keeps_counting_on_its_item(ctx: Arc<Ctx>) -> TestResult {
    let st = ctx.operator_stack().await?;
    let t = st.tenant(false).await?;
    let r = t.call("POST", "/v1/roles", Some(&json!({"name": "Old"})))?;
    ensure_eq!(r.status, 201, "role: {}", r.text);
    let role = r.json()["id"].as_str().unwrap_or_default().to_owned();
    let role_id = shared::model::CustomRoleId::parse(&role).map_err(|e| format!("{e:?}"))?;
    let client = st.store.client();
    let shards = (0..COUNTER_SHARDS).map(|index| keys::role_holders(&t.org, &role_id, index));
    delete_items(st, shards).await?;
    let (pk, sk) = keys::role(&t.org, &role_id);
    client
        .update_item()
        .table_name(TABLE)
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S(sk))
        .update_expression("REMOVE holderShards")
        .send()
        .await
        .map_err(|e| format!("older role: {e:?}"))?;

    let a = t.create(&json!({"firstName": "A", "email": "a@example.com", "role": role}))?;
    let b = t.create(&json!({"firstName": "B", "email": "b@example.com", "role": "simple"}))?;
    let r = t.call(
        "PATCH",
        &format!("/v1/members/{b}"),
        Some(&json!({"role": role})),
    )?;
    ensure_eq!(r.status, 200, "PATCH to the older role: {}", r.text);
    let r = t.call("GET", "/v1/roles", None)?;
    let listed = r.json()["roles"]
        .as_array()
        .and_then(|roles| roles.iter().find(|x| x["id"] == json!(role)).cloned())
        .unwrap_or_default();
    ensure_eq!(
        (listed["holders"].clone(), listed["activeHolders"].clone()),
        (json!(2), json!(2)),
        "counted: {}",
        r.text
    );
    st.check_invariants(&t.org).await?;
    let r = t.call("DELETE", &format!("/v1/roles/{role}"), None)?;
    ensure_eq!(
        (r.status, r.code()),
        (409, "role_in_use".to_owned()),
        "held: {}",
        r.text
    );

    // A move of the role's counts between the tally and its write: the role is not moved.
    let c = t.create(&json!({"firstName": "C", "email": "c@example.com", "role": role}))?;
    let mut tally = st
        .store
        .tally_counters(&t.org)
        .await
        .map_err(|e| format!("{e:?}"))?;
    ensure_eq!(
        tally.recount.roles,
        vec![role_id.clone()],
        "an older role found"
    );
    let r = t.call(
        "PATCH",
        &format!("/v1/members/{c}"),
        Some(&json!({"role": "simple"})),
    )?;
    ensure_eq!(r.status, 200, "off the older role: {}", r.text);
    let written = st
        .store
        .settle_tally(&mut tally, false)
        .await
        .map_err(|e| format!("{e:?}"))?;
    ensure!(
        !written,
        "a tally the role's stamp moved under is not written"
    );
    let item = role_item(st, &t.org, &role_id).await?;
    ensure_eq!(item.get("holderShards"), None, "still older");
    // The recount moves it.
    let org = t.org.to_string();
    let (ok, out, err) = recount_cli(st, &["--org", &org])?;
    ensure!(
        ok && out.contains("\"rolesIntoHolderShards\"") && out.contains(&role),
        "recount: {out} {err}"
    );
    let item = role_item(st, &t.org, &role_id).await?;
    ensure_eq!(
        item.get("holderShards"),
        Some(&AttributeValue::N(COUNTER_SHARDS.to_string())),
        "marked sharded: {item:?}"
    );
    ensure!(
        !item.contains_key("holders") && !item.contains_key("activeHolders"),
        "no counts left on the item: {item:?}"
    );
    // Each shard its own holders' (check_invariants), and a write now counts on a shard.
    st.check_invariants(&t.org).await?;
    ensure_eq!(
        t.call("DELETE", &format!("/v1/members/{a}"), None)?.status,
        200,
        "a holder deactivated"
    );
    st.check_invariants(&t.org).await?;
    ensure!(
        !role_item(st, &t.org, &role_id)
            .await?
            .contains_key("holders"),
        "the deactivation counted on a shard"
    );
    let (ok, out, err) = recount_cli(st, &["--org", &org])?;
    ensure!(
        ok && out.contains("\"outcome\":\"unchanged\""),
        "again: {out} {err}"
    );
    for m in [&a, &b] {
        let r = t.call(
            "PATCH",
            &format!("/v1/members/{m}"),
            Some(&json!({"role": "simple"})),
        )?;
        ensure_eq!(r.status, 200, "off the role: {}", r.text);
    }
    let r = t.call("DELETE", &format!("/v1/roles/{role}"), None)?;
    ensure_eq!(r.status, 204, "deleted once idle: {}", r.text);
    st.check_invariants(&t.org).await
}

/// A custom role's item as stored.
async fn role_item(
    st: &Stack,
    org: &OrgId,
    role: &shared::model::CustomRoleId,
) -> Result<HashMap<String, AttributeValue>, String> {
    item_at(st, keys::role(org, role)).await
}

/// Sets the flag when dropped: writer threads stop even when the test returns early.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
