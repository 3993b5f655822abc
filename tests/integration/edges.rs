//! The edges: values at the ends of their range, sizes past what the other tests use, and
//! what real DynamoDB and Lambda do that the local stack does not (1 MB Query pages, 6 MB
//! answers, lost answers, in-progress tokens, lazily expired TTL items). Every answer here
//! also passes the test client's 6 MB check (`members_tests::lambda_answer_fits`).

use crate::updates::{in_process_patch, tapped_store};
use crate::Ctx;
use aws_sdk_dynamodb::types::AttributeValue;
use members_tests::{ensure, ensure_eq, Tenant, TestResult};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// Collaboration rules of about `kb` KB (50 rules of `simple` members' roles).
fn big_rules(tag: &str, kb: usize) -> Value {
    let per_rule = kb * 1000 / 50;
    let names = per_rule / 125;
    let rules: Vec<Value> = (0..50)
        .map(|r| {
            let departments: Vec<String> = (0..names)
                .map(|d| format!("{tag}-{r}-{d}-{}", "d".repeat(110)))
                .collect();
            json!({"role": "recruiting_admin", "departments": departments, "locations": []})
        })
        .collect();
    json!(rules)
}

/// Every page of a list, following `nextCursor`; each page's items under `field`.
fn all_pages(t: &Tenant, path: &str, field: &str) -> Result<(Vec<Value>, usize), String> {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_owned(),
        };
        let r = t.call("GET", &url, None)?;
        ensure_eq!(r.status, 200, "{url}: {}", &r.text[..r.text.len().min(300)]);
        let page = r.json();
        items.extend(page[field].as_array().cloned().unwrap_or_default());
        pages += 1;
        ensure!(pages < 200, "{path}: the cursor never ends");
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok((items, pages)),
        }
    }
}

pub async fn instants_outside_years_1_to_9999_are_refused_not_stored(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let id = t.create(&json!({"firstName": "E", "email": "e@example.com", "role": "simple"}))?;
    for (field, value) in [
        ("onboardDate", "0000-01-01T00:00:00+01:00"),
        ("offboardDate", "9999-12-31T23:00:00-01:00"),
        ("createdAt", "0000-12-31T23:59:59Z"),
    ] {
        let r = t.patch_member(&id, &json!({ field: value }))?;
        ensure_eq!(
            (r.status, r.json()["errors"][0]["field"].clone()),
            (422, json!(field)),
            "PATCH {field} {value}: {}",
            r.text
        );
        let r = t.post_member(
            &json!({"firstName": "F", "email": "f@example.com", "role": "simple", field: value}),
        )?;
        ensure_eq!(r.status, 422, "POST {field} {value}: {}", r.text);
    }
    let edge = json!({"onboardDate": "0001-01-01T00:00:00Z", "offboardDate": "9999-12-31T22:59:59.999-01:00"});
    let r = t.patch_member(&id, &edge)?;
    ensure_eq!(r.status, 200, "the ends of the range: {}", r.text);
    let got = t.get_member(&id)?;
    ensure_eq!(
        (
            got.status,
            got.json()["onboardDate"].clone(),
            got.json()["offboardDate"].clone()
        ),
        (
            200,
            json!("0001-01-01T00:00:00.000Z"),
            json!("9999-12-31T23:59:59.999Z")
        ),
        "read back"
    );
    for since in ["9999-12-31T23:00:00-01:00", "0000-01-01T00:00:00+01:00"] {
        let r = t.call(
            "GET",
            &format!("/v1/members?updatedSince={}", since.replace('+', "%2B")),
            None,
        )?;
        ensure_eq!(
            (r.status, r.code()),
            (400, "invalid_query_parameter".to_owned()),
            "updatedSince={since}: {}",
            r.text
        );
    }
    let r = t.call("GET", "/v1/members?updatedSince=0001-01-01T00:00:00Z", None)?;
    ensure_eq!(r.status, 200, "updatedSince at the start of the range");
    Ok(())
}

pub async fn a_history_over_one_megabyte_reads_back_to_its_first_event(
    ctx: Arc<Ctx>,
) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let id = t.create(&json!({"firstName": "H", "email": "h@example.com", "role": "simple"}))?;
    // Each event holds the rules before and after: ~110 KB; 16 of them pass 1 MB.
    let changes = 16;
    for i in 0..changes {
        let r = t.patch_member(
            &id,
            &json!({"collaborationRules": big_rules(&format!("v{i}"), 55)}),
        )?;
        ensure_eq!(
            r.status,
            200,
            "change {i}: {}",
            &r.text[..r.text.len().min(300)]
        );
    }
    let (events, pages) = all_pages(
        &t,
        &format!("/v1/members/{id}/audit-events?limit=100"),
        "events",
    )?;
    ensure_eq!(events.len(), changes + 1, "every event, in {pages} pages");
    ensure_eq!(
        events.last().map(|e| e["action"].clone()),
        Some(json!("member.created")),
        "the oldest event is reachable"
    );
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    ensure_eq!(ids.len(), events.len(), "no event twice");
    Ok(())
}

pub async fn large_members_list_in_pages_under_lambdas_limit(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    // ~62 KB bodies: 100 of them make a ~6.5 MB page at limit=100 without a byte budget.
    let n = 100;
    let mut created = HashSet::new();
    for i in 0..n {
        let id = t.create(&json!({
            "firstName": format!("L{i}"),
            "email": format!("large{i}@example.com"),
            "role": "simple",
            "collaborationRules": big_rules(&format!("m{i}"), 60),
        }))?;
        // The sequence that made `cargo lambda watch` answer its own 500 on a fresh stack
        // (62 KB creates, each followed by a PATCH): every answer must be the function's.
        let r = t.patch_member(&id, &json!({"headline": format!("large {i}")}))?;
        ensure_eq!(r.status, 200, "PATCH after create {i}: {}", r.text);
        created.insert(id);
    }
    let (members, pages) = all_pages(&t, "/v1/members?limit=100", "members")?;
    ensure!(
        pages >= 2,
        "a 6.5 MB list comes in more than one page ({pages})"
    );
    let listed: HashSet<String> = members
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    ensure_eq!(listed.len(), members.len(), "no member twice");
    ensure!(created.is_subset(&listed), "every member listed");
    Ok(())
}

pub async fn roles_come_in_pages(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    for i in 0..7 {
        let r = t.call(
            "POST",
            "/v1/roles",
            Some(&json!({"name": format!("Paged {i}")})),
        )?;
        ensure_eq!(r.status, 201, "role {i}: {}", r.text);
    }
    let (roles, pages) = all_pages(&t, "/v1/roles?limit=3", "roles")?;
    ensure_eq!(
        (roles.len(), pages),
        (4 + 7, 3),
        "4 built-in + 7 custom in pages of 3"
    );
    let r = t.call("GET", "/v1/roles?limit=101", None)?;
    ensure_eq!(r.status, 400, "limit is 1 to 100");
    Ok(())
}

pub async fn field_errors_stay_small_whatever_the_body(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let mut body = serde_json::Map::new();
    let mut i = 0;
    while Value::Object(body.clone()).to_string().len() < 60_000 {
        body.insert(format!("k{i}"), json!(1));
        i += 1;
    }
    body.insert("x".repeat(2_000), json!(1));
    let r = t.post_member(&Value::Object(body))?;
    let p = r.json();
    ensure_eq!(r.status, 422, "{}", &r.text[..r.text.len().min(300)]);
    ensure_eq!(p["errors"].as_array().map(Vec::len), Some(50), "50 listed");
    ensure!(
        p["errorsOmitted"]
            .as_u64()
            .is_some_and(|n| n as usize + 50 >= i),
        "the rest counted: {}",
        p["errorsOmitted"]
    );
    ensure!(
        r.text.len() < 20_000,
        "{} bytes for {i} unknown keys",
        r.text.len()
    );
    Ok(())
}

pub async fn an_expired_idempotency_record_frees_its_key(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let post = |body: &Value| {
        let bearer = format!("Bearer {}", t.write_key);
        members_tests::http(
            "POST",
            &format!("{}/v1/members", t.api),
            Some(body.to_string().as_bytes()),
            &[
                ("Authorization", bearer.as_str()),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "expiring-key"),
            ],
            None,
        )
    };
    let first = post(&json!({"firstName": "A", "email": "exp-a@example.com", "role": "simple"}))?;
    ensure_eq!(first.status, 201, "{}", first.text);
    // DynamoDB deletes expired items lazily (within days; DynamoDB Local never): age it.
    let pk = format!("ORG#{}#IDEMPOTENCY#expiring-key", t.org);
    st.store
        .client()
        .update_item()
        .table_name(members_tests::TABLE)
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S("IDEMPOTENCY".into()))
        .update_expression("SET expiresAt = :past")
        .expression_attribute_values(":past", AttributeValue::N("1000".into()))
        .send()
        .await
        .map_err(|e| format!("age the record: {e:?}"))?;
    let second = post(&json!({"firstName": "B", "email": "exp-b@example.com", "role": "simple"}))?;
    ensure_eq!(
        (second.status, second.header("idempotent-replayed")),
        (201, None),
        "an expired key is free again: {}",
        second.text
    );
    ensure!(second.json()["id"] != first.json()["id"], "a new member");
    let replay = post(&json!({"firstName": "B", "email": "exp-b@example.com", "role": "simple"}))?;
    ensure_eq!(
        (replay.status, replay.json()["id"].clone()),
        (201, second.json()["id"].clone()),
        "and holds the new answer"
    );
    st.check_invariants(&t.org).await
}

pub async fn unsettled_transactions_are_settled_by_their_token(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let id = t.create(&json!({"firstName": "U", "email": "u@example.com", "role": "simple"}))?;
    let (store, tap) = tapped_store(st).await?;
    let call = |body: Value| {
        shared::handlers::update_member(store.clone(), in_process_patch(&t.write_key, &id, &body))
    };

    tap.inject_in_progress(2);
    let ok = call(json!({"headline": "after in-progress"}))
        .await
        .map_err(|e| format!("TransactionInProgress must be waited out, not a 500: {e:?}"))?;
    ensure_eq!(ok.status, 200, "in progress, then done");

    tap.inject_throttling(2);
    let ok = call(json!({"headline": "after throttling"}))
        .await
        .map_err(|e| format!("throttling must be waited out: {e:?}"))?;
    ensure_eq!(ok.status, 200, "throttled twice, then done");
    let got = t.get_member(&id)?.json();
    ensure_eq!(got["version"].clone(), json!(3), "applied once");

    // The first attempt commits and its answer is lost; asked again under the same token,
    // DynamoDB answers with the first success instead of applying it twice.
    tap.lose_answers(1);
    let r = call(json!({"headline": "answer lost"})).await;
    let got = t.get_member(&id)?.json();
    ensure_eq!(
        (got["headline"].clone(), got["version"].clone()),
        (json!("answer lost"), json!(4)),
        "applied exactly once"
    );
    match r {
        Ok(ok) => ensure_eq!(ok.status, 200, "settled as a success"),
        Err(e) => ensure_eq!(
            (e.problem().status, e.code()),
            (503, "outcome_unknown"),
            "never 'nothing was written' nor a rule's refusal"
        ),
    }
    st.check_invariants(&t.org).await
}

pub async fn deactivating_twice_answers_200_whatever_the_rules_now_say(
    ctx: Arc<Ctx>,
) -> TestResult {
    let t = ctx.stack.tenant(true).await?;
    let id = t.create(&json!({"firstName": "N", "email": "noaccess@example.com", "role": "no_access", "hrisRole": "hris_employee"}))?;
    let path = format!("/v1/members/{id}");
    let first = t.call("DELETE", &path, None)?;
    ensure_eq!(first.status, 200, "deactivate: {}", first.text);
    let off = t.patch_organization(&json!({"hrisEnabled": false}))?;
    ensure_eq!(
        off.status,
        200,
        "HRIS off (no active no_access member): {}",
        off.text
    );
    // no_access is not allowed while HRIS is off, but nothing is asked to change.
    let again = t.call("DELETE", &path, None)?;
    ensure_eq!(
        (again.status, again.json()["version"].clone()),
        (200, first.json()["version"].clone()),
        "a second DELETE changes nothing: {}",
        again.text
    );
    let active = t.call("POST", &format!("/v1/members/{}/reactivate", t.root), None)?;
    ensure_eq!(
        active.status,
        200,
        "reactivating an active member: {}",
        active.text
    );
    ctx.stack.check_invariants(&t.org).await
}

/// What a client puts where an id goes never reaches a log line: the log scan after the
/// suite (`logs::no_secret_in_any_log_line`) fails on any `@example.com` in the logs.
pub async fn ids_that_are_not_ids_never_reach_a_log(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let not_an_id = "ada-logged@example.com";
    for (method, path, body) in [
        ("GET", format!("/v1/members/{not_an_id}"), None),
        (
            "PATCH",
            format!("/v1/members/{not_an_id}"),
            Some(json!({"headline": "x"})),
        ),
        ("GET", format!("/v1/members/{not_an_id}/audit-events"), None),
        (
            "PUT",
            "/v1/members".to_owned(),
            Some(json!({"id": not_an_id, "role": "simple"})),
        ),
        ("DELETE", format!("/v1/roles/{not_an_id}"), None),
        ("GET", format!("/v1/{not_an_id}"), None),
    ] {
        let r = t.call(method, &path, body.as_ref())?;
        ensure_eq!(r.status, 404, "{method} {path}: {}", r.text);
    }
    Ok(())
}

/// Every endpoint honours a query parameter or refuses it: none is silently ignored.
pub async fn query_flags_are_honoured_or_refused(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let id = t.create(&json!({"firstName": "Q", "email": "q@example.com", "role": "simple"}))?;
    let dry = t.call(
        "PUT",
        "/v1/members?dryRun=true",
        Some(&json!({"id": id, "role": "reviewer"})),
    )?;
    ensure_eq!(
        (
            dry.status,
            dry.header("dry-run"),
            dry.json()["role"].clone()
        ),
        (200, Some("true"), json!("reviewer")),
        "PUT ?dryRun=true answers as it would be: {}",
        dry.text
    );
    let m = t.get_member(&id)?.json();
    ensure_eq!(
        (m["role"].clone(), m["version"].clone()),
        (json!("simple"), json!(1)),
        "and writes nothing"
    );
    let body = json!({"firstName": "R", "email": "r@example.com", "role": "simple"});
    for (method, path, body) in [
        ("POST", "/v1/members?dryRun=true".to_owned(), Some(body)),
        (
            "PUT",
            "/v1/members?force=1".to_owned(),
            Some(json!({"id": id, "role": "admin"})),
        ),
        ("GET", format!("/v1/members/{id}?fields=email"), None),
        ("GET", "/v1/organization?expand=all".to_owned(), None),
    ] {
        let r = t.call(method, &path, body.as_ref())?;
        ensure_eq!(
            (r.status, r.code()),
            (400, "unknown_query_parameter".to_owned()),
            "{method} {path}: {}",
            r.text
        );
    }
    let r = t.call("GET", "/v1/members?email=r@example.com", None)?;
    ensure_eq!(
        r.json()["members"],
        json!([]),
        "the refused POST created nothing"
    );
    ctx.stack.check_invariants(&t.org).await
}
