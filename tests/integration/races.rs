//! Rules that involve two requests, raced for real: many clients at once through
//! `cargo lambda watch --concurrency 16`, then the table re-read and recounted.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, s, Reply, Tenant, TestResult};
use serde_json::{json, Value};
use std::sync::Arc;

const CLIENTS: usize = 16;

/// Creates `bodies[i]` from client `i`, all released at the same instant.
fn race(
    t: &Tenant,
    bodies: Vec<Value>,
    idempotency_key: Option<&str>,
) -> Result<Vec<Reply>, String> {
    t.race_with(
        bodies
            .into_iter()
            .map(|b| ("POST", "/v1/members".to_owned(), b))
            .collect(),
        idempotency_key,
    )
}

fn statuses(replies: &[Reply]) -> Vec<(u16, String)> {
    let mut out: Vec<_> = replies.iter().map(|r| (r.status, r.code())).collect();
    out.sort();
    out
}

pub async fn concurrent_creates_with_one_email_admit_one(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    for round in 0..5 {
        let email = format!("race{round}@example.com");
        let bodies = (0..CLIENTS)
            .map(|i| json!({"firstName": format!("Client{i}"), "email": if i % 2 == 0 { email.clone() } else { email.to_uppercase() }, "role": "admin"}))
            .collect();
        let replies = race(&t, bodies, None)?;
        let created = replies.iter().filter(|r| r.status == 201).count();
        let taken = replies
            .iter()
            .filter(|r| r.status == 409 && r.code() == "email_taken")
            .count();
        ensure_eq!(
            (created, taken),
            (1, CLIENTS - 1),
            "round {round}: {:?}",
            statuses(&replies)
        );
        let holders = st
            .members_of(&t.org)
            .await?
            .into_iter()
            .filter(|m| s(m, "emailNormalized") == email)
            .count();
        ensure_eq!(holders, 1, "round {round}: members with the email");
    }
    st.check_invariants(&t.org).await
}

pub async fn concurrent_admin_creates_keep_counters_exact(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(true).await?;
    let bodies = (0..CLIENTS)
        .map(|i| {
            let hris = ["hris_admin", "hris_employee"][i % 2];
            let role = ["admin", "admin", "simple", "reviewer"][i % 4];
            json!({"firstName": format!("P{i}"), "email": format!("p{i}@example.com"), "role": role, "hrisRole": hris})
        })
        .collect();
    let replies = race(&t, bodies, None)?;
    ensure!(
        replies.iter().all(|r| r.status == 201),
        "all created: {:?}",
        statuses(&replies)
    );
    let org = st.organization(&t.org).await?;
    // root (admin + hris_admin) + 8 admins, of which 4 hris_admin; 8 hris_admin in all.
    ensure_eq!(
        (
            org.counters.active_admins,
            org.counters.active_hris_admins,
            org.counters.active_dual_admins
        ),
        (9, 9, 5),
        "counters"
    );
    st.check_invariants(&t.org).await
}

pub async fn concurrent_retries_with_one_idempotency_key_create_one_member(
    ctx: Arc<Ctx>,
) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let body = json!({"firstName": "Once", "email": "once@example.com", "role": "simple"});
    let replies = race(&t, vec![body; CLIENTS], Some("one-key-many-retries"))?;
    ensure!(
        replies.iter().all(|r| r.status == 201),
        "every retry gets the first answer: {:?}",
        statuses(&replies)
    );
    let ids: std::collections::BTreeSet<String> = replies
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or("").to_owned())
        .collect();
    ensure_eq!(ids.len(), 1, "one id for all: {ids:?}");
    ensure_eq!(st.members_of(&t.org).await?.len(), 2, "root + one member");
    st.check_invariants(&t.org).await
}

pub async fn concurrent_primary_claims_leave_one_primary(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let bodies = (0..CLIENTS)
        .map(|i| json!({"firstName": format!("C{i}"), "email": format!("c{i}@example.com"), "role": "simple", "isPrimary": true}))
        .collect();
    let replies = race(&t, bodies, None)?;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let refused = replies
        .iter()
        .filter(|r| r.status == 409 && r.code() == "organization_changed")
        .count();
    ensure!(
        created >= 1,
        "at least one claim wins: {:?}",
        statuses(&replies)
    );
    ensure_eq!(
        created + refused,
        CLIENTS,
        "every other claim is refused cleanly: {:?}",
        statuses(&replies)
    );
    st.check_invariants(&t.org).await
}
