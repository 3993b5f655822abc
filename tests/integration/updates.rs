//! PATCH and PUT: every rule that involves two requests, raced for real through
//! `cargo lambda watch --concurrency 16` and in-process from many tokio tasks, then the
//! table re-read and recounted.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, s, Reply, TestResult};
use serde_json::{json, Value};
use shared::http::ApiRequest;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

fn codes(replies: &[Reply]) -> Vec<(u16, String)> {
    let mut out: Vec<_> = replies.iter().map(|r| (r.status, r.code())).collect();
    out.sort();
    out
}

fn patch(id: &str, body: Value) -> (&'static str, String, Value) {
    ("PATCH", format!("/v1/members/{id}"), body)
}

/// Two members change at the same instant in a way that only one of them may: exactly one
/// wins, the other gets `code`, then `restore` undoes the winner's change. `rounds` times.
async fn pairwise(
    ctx: &Ctx,
    hris: bool,
    second: Value,
    change: Value,
    restore: Value,
    code: &str,
    rounds: usize,
) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(hris).await?;
    let (a, b) = (t.root.to_string(), t.create(&second)?);
    for round in 0..rounds {
        let replies = t.race(vec![patch(&a, change.clone()), patch(&b, change.clone())])?;
        let won: Vec<usize> = (0..2).filter(|i| replies[*i].status == 200).collect();
        ensure_eq!(
            won.len(),
            1,
            "round {round}: exactly one wins: {:?}",
            codes(&replies)
        );
        let lost = &replies[1 - won[0]];
        ensure_eq!(
            (lost.status, lost.code()),
            (422, code.to_owned()),
            "round {round}: the other is refused"
        );
        let winner = [&a, &b][won[0]];
        let back = t.patch_member(winner, &restore)?;
        ensure_eq!(back.status, 200, "round {round}: restore: {}", back.text);
    }
    decided_by_condition(ctx, &t.org, code, rounds)?;
    st.check_invariants(&t.org).await
}

/// The requests really raced: some refusals came from the transaction's condition, after
/// both requests had read a state in which each alone was allowed.
fn decided_by_condition(
    ctx: &Ctx,
    org: &shared::model::OrgId,
    code: &str,
    rounds: usize,
) -> TestResult {
    let by_condition = ctx.stack.refused_by_condition(org, code);
    println!("{code}: {by_condition} of {rounds} rounds decided by the DynamoDB condition");
    ensure!(
        by_condition >= 1,
        "no round was decided by the condition; did the requests interleave?"
    );
    Ok(())
}

pub async fn admins_demoting_each_other_never_leave_zero(ctx: Arc<Ctx>) -> TestResult {
    let second = json!({"firstName": "B", "email": "b@example.com", "role": "admin"});
    pairwise(
        &ctx,
        false,
        second,
        json!({"role": "simple"}),
        json!({"role": "admin"}),
        "last_admin",
        200,
    )
    .await
}

pub async fn hris_admins_demoting_each_other_never_leave_zero(ctx: Arc<Ctx>) -> TestResult {
    // Both are admin + hris_admin; giving up hris_admin is what only one of them may do.
    let second = json!({"firstName": "B", "email": "b@example.com", "role": "admin", "hrisRole": "hris_admin"});
    pairwise(
        &ctx,
        true,
        second,
        json!({"hrisRole": "hris_employee"}),
        json!({"hrisRole": "hris_admin"}),
        "last_hris_admin",
        200,
    )
    .await
}

pub async fn the_last_admin_and_hris_admin_pair_survives(ctx: Arc<Ctx>) -> TestResult {
    // Both stay HRIS admins and other admins exist; the last admin+hris_admin is the rule.
    let st = &ctx.stack;
    let t = st.tenant(true).await?;
    t.create(&json!({"firstName": "Plain", "email": "plain-admin@example.com", "role": "admin", "hrisRole": "hris_employee"}))?;
    let (a, b) = (t.root.to_string(), t.create(&json!({"firstName": "B", "email": "b@example.com", "role": "admin", "hrisRole": "hris_admin"}))?);
    for round in 0..200 {
        let replies = t.race(vec![
            patch(&a, json!({"role": "simple"})),
            patch(&b, json!({"role": "simple"})),
        ])?;
        let won: Vec<usize> = (0..2).filter(|i| replies[*i].status == 200).collect();
        ensure_eq!(won.len(), 1, "round {round}: {:?}", codes(&replies));
        ensure_eq!(
            replies[1 - won[0]].code(),
            "last_admin_hris_admin",
            "round {round}"
        );
        ensure_eq!(
            t.patch_member([&a, &b][won[0]], &json!({"role": "admin"}))?
                .status,
            200,
            "round {round}: restore"
        );
    }
    decided_by_condition(&ctx, &t.org, "last_admin_hris_admin", 200)?;
    st.check_invariants(&t.org).await
}

pub async fn deactivating_the_last_admins_at_once_keeps_one(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    // The primary member cannot be deactivated at all: hand that role to a non-admin first.
    t.create(
        &json!({"firstName": "P", "email": "p@example.com", "role": "simple", "isPrimary": true}),
    )?;
    let (a, b) = (
        t.root.to_string(),
        t.create(&json!({"firstName": "B", "email": "b@example.com", "role": "admin"}))?,
    );
    for round in 0..50 {
        let replies = t.race(vec![
            patch(&a, json!({"isActive": false})),
            patch(&b, json!({"deactivated": true})),
        ])?;
        let won: Vec<usize> = (0..2).filter(|i| replies[*i].status == 200).collect();
        ensure_eq!(won.len(), 1, "round {round}: {:?}", codes(&replies));
        ensure_eq!(replies[1 - won[0]].code(), "last_admin", "round {round}");
        ensure_eq!(
            t.patch_member([&a, &b][won[0]], &json!({"isActive": true}))?
                .status,
            200,
            "round {round}: reactivate"
        );
    }
    decided_by_condition(&ctx, &t.org, "last_admin", 50)?;
    st.check_invariants(&t.org).await
}

/// One (field, value) per client; the value is unique to the client.
fn field_change(i: usize) -> (String, Value) {
    let fields = [
        "headline",
        "jobTitle",
        "firstName",
        "lastName",
        "name",
        "userId",
        "fleetDmLabelId",
        "onboardDate",
    ];
    let field = fields[i % fields.len()];
    let value = match field {
        "userId" => json!(format!("usr_client{i}")),
        "fleetDmLabelId" => json!(1000 + i),
        "onboardDate" => json!(format!("2025-01-{:02}T00:00:00Z", 1 + i % 28)),
        _ => json!(format!("{field}-{i}")),
    };
    (field.to_owned(), value)
}

/// Checks that no successful update was lost: versions moved once per success, each success
/// has its audit event, and every field holds the value of the last success that set it.
async fn no_update_lost(
    ctx: &Ctx,
    t: &members_tests::Tenant,
    id: &str,
    statuses: &[(u16, String)],
    start_version: u64,
) -> TestResult {
    let wins = statuses.iter().filter(|(s, _)| *s == 200).count();
    ensure!(wins >= 1, "someone wins");
    println!(
        "{wins} of {} concurrent PATCHes won, the others lost the version race",
        statuses.len()
    );
    ensure!(
        wins < statuses.len(),
        "nobody lost a race: the requests did not interleave"
    );
    ensure!(
        statuses
            .iter()
            .all(|(s, c)| *s == 200 || (*s == 422 && c == "member_update_in_progress")),
        "every loser is told member_update_in_progress: {statuses:?}"
    );
    let member = t.get_member(id)?.json();
    ensure_eq!(
        member["version"].as_u64(),
        Some(start_version + wins as u64),
        "one version per success"
    );
    let mut events: Vec<_> = ctx
        .stack
        .audit_events(&t.org, id)
        .await?
        .into_iter()
        .filter(|e| e.action == "member.updated")
        .collect();
    ensure_eq!(events.len(), wins, "one audit event per success");
    events.sort_by_key(|e| e.member_version);
    // Replay the audit log: the last writer of each field decides its final value.
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    for e in events {
        for (field, change) in e.changes {
            last.insert(field, change["after"].clone());
        }
    }
    ensure!(!last.is_empty(), "the audit log names the fields written");
    for (field, value) in last {
        if field == "name" || field.starts_with("user") {
            continue; // derived from other fields as well
        }
        ensure_eq!(
            member[&field],
            value,
            "final {field} is the last successful write's"
        );
    }
    Ok(())
}

pub async fn thirty_two_clients_patch_one_member_through_watch(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let id =
        t.create(&json!({"firstName": "Target", "email": "target@example.com", "role": "simple"}))?;
    let requests = (0..32)
        .map(|i| {
            let (field, value) = field_change(i);
            patch(&id, json!({ field: value }))
        })
        .collect();
    let replies = t.race(requests)?;
    no_update_lost(&ctx, &t, &id, &codes(&replies), 1).await?;
    ctx.stack.check_invariants(&t.org).await
}

pub async fn thirty_two_tasks_patch_one_member_in_process(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let id =
        t.create(&json!({"firstName": "Target", "email": "target@example.com", "role": "simple"}))?;
    let store = Arc::new(ctx.stack.store.clone());
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (field, value) = field_change(i);
            let req = in_process_patch(&t.write_key, &id, &json!({ field: value }));
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                match shared::handlers::update_member(store, req).await {
                    Ok(r) => (r.status, String::new()),
                    Err(e) => (e.problem().status, e.code().to_owned()),
                }
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.map_err(|e| e.to_string())?);
    }
    no_update_lost(&ctx, &t, &id, &statuses, 1).await?;
    ctx.stack.check_invariants(&t.org).await
}

/// The store as a function builds it, over a client whose wire the test controls.
pub async fn tapped_store(
    st: &members_tests::Stack,
) -> Result<
    (
        Arc<shared::store::DynamoStore>,
        Arc<members_tests::wiretap::Tap>,
    ),
    String,
> {
    let (client, tap) = members_tests::wiretap::tapped_client(&st.dynamo.endpoint()).await?;
    let store = shared::store::DynamoStore::new(client, members_tests::TABLE);
    Ok((Arc::new(store), tap))
}

pub fn in_process_patch(key: &str, id: &str, body: &Value) -> ApiRequest {
    ApiRequest {
        method: "PATCH".into(),
        path: format!("/v1/members/{id}"),
        path_id: Some(id.to_owned()),
        headers: HashMap::from([
            ("authorization".to_owned(), format!("Bearer {key}")),
            ("content-type".to_owned(), "application/json".to_owned()),
        ]),
        query: Vec::new(),
        body: body.to_string().into_bytes(),
        request_id: None,
    }
}

pub async fn email_races_never_duplicate_an_email(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let x = t.create(&json!({"firstName": "X", "email": "x@example.com", "role": "simple"}))?;
    let y = t.create(&json!({"firstName": "Y", "email": "y@example.com", "role": "simple"}))?;
    for round in 0..20 {
        // Both want the same new address: one gets it.
        let wanted = format!("z{round}@example.com");
        let replies = t.race(vec![
            patch(&x, json!({"email": wanted})),
            patch(&y, json!({"email": wanted.to_uppercase()})),
        ])?;
        let won = replies.iter().filter(|r| r.status == 200).count();
        let taken = replies
            .iter()
            .filter(|r| r.status == 409 && r.code() == "email_taken")
            .count();
        ensure_eq!((won, taken), (1, 1), "round {round}: {:?}", codes(&replies));
        // A swap at the same instant: each address is still held by the other, so neither moves.
        let (ex, ey) = (
            t.get_member(&x)?.json()["email"].clone(),
            t.get_member(&y)?.json()["email"].clone(),
        );
        let replies = t.race(vec![
            patch(&x, json!({"email": ey})),
            patch(&y, json!({"email": ex})),
        ])?;
        ensure!(
            replies.iter().all(|r| r.status == 409),
            "round {round}: swap: {:?}",
            codes(&replies)
        );
        st.check_invariants(&t.org).await?;
    }
    let emails: Vec<String> = st
        .members_of(&t.org)
        .await?
        .iter()
        .map(|m| s(m, "emailNormalized"))
        .collect();
    let mut unique = emails.clone();
    unique.sort();
    unique.dedup();
    ensure_eq!(
        unique.len(),
        emails.len(),
        "no two members share an email: {emails:?}"
    );
    Ok(())
}

pub async fn primary_transfer_races_leave_exactly_one(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let ids: Vec<String> = (0..8)
        .map(|i| t.create(&json!({"firstName": format!("M{i}"), "email": format!("m{i}@example.com"), "role": "simple"})))
        .collect::<Result<_, _>>()?;
    for round in 0..10 {
        let replies = t.race(
            ids.iter()
                .map(|id| patch(id, json!({"isPrimary": true})))
                .collect(),
        )?;
        let won = replies.iter().filter(|r| r.status == 200).count();
        ensure!(
            won >= 1,
            "round {round}: someone becomes primary: {:?}",
            codes(&replies)
        );
        ensure!(
            replies.iter().all(|r| r.status == 200
                || (r.status == 409 && r.code() == "organization_changed")
                || r.code() == "member_update_in_progress"),
            "round {round}: refusals are clean: {:?}",
            codes(&replies)
        );
        st.check_invariants(&t.org).await?;
    }
    // The primary cannot be unset or deactivated; only replaced.
    let primary = st
        .organization(&t.org)
        .await?
        .primary_member_id
        .ok_or("no primary")?
        .to_string();
    let r = t.patch_member(&primary, &json!({"isPrimary": false}))?;
    ensure_eq!(
        (r.status, r.code()),
        (422, "primary_required".to_owned()),
        "unset primary"
    );
    let r = t.patch_member(&primary, &json!({"isActive": false}))?;
    ensure_eq!(
        (r.status, r.code()),
        (422, "primary_must_be_active".to_owned()),
        "deactivate primary"
    );
    st.check_invariants(&t.org).await
}

/// Real DynamoDB cancels a transaction with `TransactionConflict` when another one holds an
/// item; DynamoDB Local never does, so it is injected here (see `members_tests::wiretap`).
/// The store retries the whole transaction up to twice; a third conflict is answered as
/// `member_update_in_progress`, never a 500, and nothing is written.
pub async fn transaction_conflicts_are_retried_then_refused_cleanly(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let id = t.create(&json!({"firstName": "C", "email": "c@example.com", "role": "simple"}))?;
    let (store, tap) = tapped_store(st).await?;
    let call = |body: Value| {
        shared::handlers::update_member(store.clone(), in_process_patch(&t.write_key, &id, &body))
    };

    tap.inject_conflicts(2);
    let ok = call(json!({"headline": "after two conflicts"}))
        .await
        .map_err(|e| format!("{e:?}"))?;
    ensure_eq!(ok.status, 200, "two conflicts are absorbed by the retries");
    ensure_eq!(
        tap.take_calls().get("TransactWriteItems").copied(),
        Some(3),
        "three attempts"
    );

    tap.inject_conflicts(3);
    let refused = call(json!({"headline": "never"})).await;
    let e = refused.err().ok_or("a third conflict must be refused")?;
    ensure_eq!(
        (e.problem().status, e.code()),
        (422, "member_update_in_progress"),
        "as seed 002 says"
    );
    let m = t.get_member(&id)?.json();
    ensure_eq!(
        (m["headline"].clone(), m["version"].clone()),
        (json!("after two conflicts"), json!(2)),
        "nothing written"
    );

    tap.inject_conflicts(3);
    let create = shared::handlers::create_member(store.clone(), {
        let mut r = in_process_patch(
            &t.write_key,
            &id,
            &json!({"firstName": "N", "email": "n@example.com", "role": "admin"}),
        );
        r.method = "POST".into();
        r.path_id = None;
        r
    })
    .await;
    let e = create
        .err()
        .ok_or("a create that keeps conflicting must be refused")?;
    ensure_eq!(
        (e.problem().status, e.code()),
        (409, "write_conflict"),
        "create"
    );
    st.check_invariants(&t.org).await
}
