//! Delivery as Svix and Stripe do it: a redelivery sends only what a first delivery would,
//! a delivery whose retry was lost can be sent again, `Retry-After` is honoured, 410 Gone and
//! days of failures disable the endpoint, a rotation says how long the old secret signs, and
//! an organisation whose endpoints hang never holds up another's deliveries.

use crate::scopes::eventually;
use crate::webhooks::{feed_ids, subscribe};
use crate::Ctx;
use aws_sdk_dynamodb::types::AttributeValue;
use members_tests::receiver::Receiver;
use members_tests::{ensure, ensure_eq, Stack, Tenant, TestResult, TABLE};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The receiver's first record of event `id` answered with `status`, once there is one.
fn arrival(receiver: &Receiver, id: &Value, status: u16, what: &str) -> Result<Value, String> {
    eventually(Duration::from_secs(60), what, || {
        Ok(receiver
            .received()?
            .into_iter()
            .find(|r| r["id"] == *id && r["status"] == status))
    })
}

/// The webhook's delivery of the `kind` event of `subject`, once it exists.
fn delivery_of(t: &Tenant, hook: &str, kind: &str, subject: &str) -> Result<Value, String> {
    let event = eventually(Duration::from_secs(60), "the event placed", || {
        Ok(feed_ids(t)?
            .into_iter()
            .find(|e| e["type"] == kind && e["subject"] == subject))
    })?;
    let id = event["id"]
        .as_str()
        .unwrap_or_default()
        .replacen("evt_", "dlv_", 1);
    eventually(Duration::from_secs(60), "the delivery made", || {
        let r = t.call_as(
            &t.hooks_key,
            "GET",
            &format!("/v1/webhooks/{hook}/deliveries?limit=100"),
            None,
        )?;
        ensure_eq!(r.status, 200, "{}", r.text);
        Ok(r.json()["deliveries"]
            .as_array()
            .and_then(|all| all.iter().find(|d| d["id"] == json!(id)).cloned()))
    })
}

/// The delivery `id` of `hook` as the API shows it now.
fn delivery(t: &Tenant, hook: &str, id: &str) -> Result<Value, String> {
    let r = t.call_as(
        &t.hooks_key,
        "GET",
        &format!("/v1/webhooks/{hook}/deliveries?limit=100"),
        None,
    )?;
    r.json()["deliveries"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == json!(id)).cloned())
        .ok_or_else(|| format!("no delivery {id}: {}", r.text))
}

fn redeliver(t: &Tenant, hook: &str, id: &str) -> Result<members_tests::Reply, String> {
    t.call_as(
        &t.hooks_key,
        "POST",
        &format!("/v1/webhooks/{hook}/deliveries/{id}/redeliver"),
        None,
    )
}

fn webhook(t: &Tenant, hook: &str) -> Result<Value, String> {
    let r = t.call_as(&t.hooks_key, "GET", &format!("/v1/webhooks/{hook}"), None)?;
    ensure_eq!(r.status, 200, "{}", r.text);
    Ok(r.json())
}

fn patch_webhook(t: &Tenant, hook: &str, body: Value) -> Result<Value, String> {
    let r = t.call_as(
        &t.hooks_key,
        "PATCH",
        &format!("/v1/webhooks/{hook}"),
        Some(&body),
    )?;
    ensure_eq!(r.status, 200, "{}", r.text);
    Ok(r.json())
}

/// A delivery record's `expiresAt` (its TTL), read from the table.
async fn expires_at(st: &Stack, t: &Tenant, hook: &str, id: &str) -> Result<i64, String> {
    let item = st
        .store
        .client()
        .get_item()
        .table_name(TABLE)
        .key(
            "PK",
            AttributeValue::S(format!("ORG#{}#WEBHOOK#{hook}#DELIVERIES", t.org)),
        )
        .key("SK", AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("read the delivery: {e:?}"))?;
    item.item
        .and_then(|i| i.get("expiresAt").and_then(|v| v.as_n().ok()).cloned())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| "the delivery has no expiresAt".into())
}

/// The local queue's items of event `event_id`: (key, due in Unix ms).
async fn queued(st: &Stack, event_id: &str) -> Result<Vec<(String, i64)>, String> {
    let out = st
        .store
        .client()
        .query()
        .table_name(TABLE)
        .key_condition_expression("PK = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("LOCAL#WEBHOOKQUEUE".into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("read the queue: {e:?}"))?;
    Ok(out
        .items()
        .iter()
        .filter(|i| {
            i.get("ref")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|e| e.contains(event_id))
        })
        .filter_map(|i| i.get("SK").and_then(|v| v.as_s().ok()).cloned())
        .map(|sk| {
            let due = sk
                .split('#')
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            (sk, due)
        })
        .collect())
}

fn millis(timestamp: &Value) -> Result<i64, String> {
    let t = shared::model::Timestamp::parse(timestamp.as_str().unwrap_or_default())?;
    Ok(t.unix_millis())
}

fn now_millis() -> i64 {
    shared::model::Timestamp::now().unix_millis()
}

/// A redelivery is refused for a type the webhook no longer subscribes to, keeps its record
/// 30 days from itself, and a pending delivery whose retry was lost (its queue message gone)
/// can be redelivered once its `nextAttemptAt` has passed, not before.
pub async fn a_redelivery_sends_only_what_a_first_delivery_would(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let receiver = Receiver::start(&st.dir, "redelivery")?;
    let (hook, secret) = subscribe(&t, &receiver.url("/in"))?;
    receiver.control(&[&secret], 0.0)?;
    let all_types = webhook(&t, &hook)?["eventTypes"].clone();
    let member =
        t.create(&json!({"firstName": "R", "email": "r1@example.com", "role": "simple"}))?;
    let first = delivery_of(&t, &hook, "member.created", &member)?;
    let id = first["id"].as_str().unwrap_or_default().to_owned();
    let done = eventually(Duration::from_secs(60), "delivered", || {
        let d = delivery(&t, &hook, &id)?;
        Ok((d["status"] == "succeeded").then_some(d))
    })?;

    // No longer subscribed: refused, as a first delivery would not be sent.
    let fewer: Vec<Value> = all_types
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t != "member.created")
        .collect();
    patch_webhook(&t, &hook, json!({"eventTypes": fewer}))?;
    let r = redeliver(&t, &hook, &id)?;
    ensure_eq!(
        (r.status, r.code()),
        (409, "event_type_not_subscribed".to_owned()),
        "{}",
        r.text
    );
    patch_webhook(&t, &hook, json!({"eventTypes": all_types}))?;

    // A redelivery keeps the record 30 days from itself.
    let before = expires_at(st, &t, &hook, &id).await?;
    ensure_eq!(
        before,
        millis(&done["createdAt"])? / 1000 + 30 * 24 * 3600,
        "30 days from its creation"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let r = redeliver(&t, &hook, &id)?;
    ensure_eq!(r.status, 202, "{}", r.text);
    let after = expires_at(st, &t, &hook, &id).await?;
    ensure!(
        after > before && after >= now_millis() / 1000 - 5 + 30 * 24 * 3600,
        "moved to 30 days from the redelivery: {before} → {after}"
    );
    let event_id = first["eventId"].as_str().unwrap_or_default().to_owned();
    eventually(Duration::from_secs(60), "the redelivery received", || {
        let copies = receiver
            .received()?
            .iter()
            .filter(|d| d["id"] == json!(event_id) && d["status"] == 204)
            .count();
        Ok((copies == 2).then_some(()))
    })?;

    // A retry lost: the receiver fails, and once the delivery's third retry is queued, its
    // message is deleted (as a failed enqueue would leave it).
    receiver.control(&[&secret], 600.0)?;
    let member =
        t.create(&json!({"firstName": "R", "email": "r2@example.com", "role": "simple"}))?;
    let pending = delivery_of(&t, &hook, "member.created", &member)?;
    let id = pending["id"].as_str().unwrap_or_default().to_owned();
    let event_id = pending["eventId"].as_str().unwrap_or_default().to_owned();
    // Once the delivery (three attempts or more, between attempts) and its queued retry
    // agree on the next attempt, the consumer is done with it until then: lose the retry.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (stuck, due) = loop {
        let d = delivery(&t, &hook, &id)?;
        if d["status"] == "pending" && d["attemptCount"].as_u64() >= Some(3) {
            let due = millis(&d["nextAttemptAt"])?;
            let items = queued(st, &event_id).await?;
            // The queue's due is taken after the delivery's, once the attempt is saved.
            if due > now_millis() + 1000
                && items.iter().any(|(_, at)| (due..due + 2000).contains(at))
            {
                for (sk, _) in items {
                    st.store
                        .client()
                        .delete_item()
                        .table_name(TABLE)
                        .key("PK", AttributeValue::S("LOCAL#WEBHOOKQUEUE".into()))
                        .key("SK", AttributeValue::S(sk))
                        .send()
                        .await
                        .map_err(|e| format!("lose the retry: {e:?}"))?;
                }
                break (d, due);
            }
        }
        ensure!(Instant::now() < deadline, "the retry was never queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let attempts = delivery(&t, &hook, &id)?["attemptCount"].clone();
    ensure_eq!(attempts, stuck["attemptCount"], "no attempt since");
    if now_millis() < due {
        let r = redeliver(&t, &hook, &id)?;
        ensure_eq!(
            (r.status, r.code()),
            (409, "delivery_pending".to_owned()),
            "its retry is not due yet: {}",
            r.text
        );
    }
    tokio::time::sleep(Duration::from_millis(
        (due - now_millis()).max(0) as u64 + 1500,
    ))
    .await;
    let lost = delivery(&t, &hook, &id)?;
    ensure_eq!(
        (&lost["status"], &lost["attemptCount"]),
        (&json!("pending"), &stuck["attemptCount"]),
        "nothing retried it: {lost}"
    );
    receiver.control(&[&secret], 0.0)?;
    let r = redeliver(&t, &hook, &id)?;
    ensure_eq!(r.status, 202, "overdue: {}", r.text);
    eventually(
        Duration::from_secs(60),
        "the lost delivery received",
        || {
            let d = delivery(&t, &hook, &id)?;
            Ok((d["status"] == "succeeded").then_some(()))
        },
    )?;
    ensure!(
        receiver
            .received()?
            .iter()
            .any(|d| d["id"] == json!(event_id) && d["status"] == 204),
        "received"
    );
    Ok(())
}

/// Retry-After on 429 is honoured; 410 Gone disables the webhook at once, and failures
/// without a success for the limit (5 days; 30 s here) disable it too, each with a
/// `webhook.disabled` event by no key; enabling it again starts afresh; a rotation's
/// `overlapSeconds` says how long the old secret signs.
pub async fn endpoints_are_judged_as_svix_and_stripe_do(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let receiver = Receiver::start(&st.dir, "judged")?;
    let (hook, secret) = subscribe(&t, &receiver.url("/in"))?;
    receiver.control(&[&secret], 0.0)?;

    // 429 with Retry-After: 2 → the next attempt 2 s later (the schedule here: 0.3 s).
    receiver.behave(&json!({"status": 429, "retry_after": "2"}))?;
    let member =
        t.create(&json!({"firstName": "J", "email": "j1@example.com", "role": "simple"}))?;
    let d = delivery_of(&t, &hook, "member.created", &member)?;
    let event_id = d["eventId"].clone();
    let first = arrival(&receiver, &event_id, 429, "a 429")?;
    receiver.behave(&json!({"status": null}))?;
    let second = arrival(&receiver, &event_id, 204, "the retry")?;
    let waited = second["at"].as_f64().unwrap_or(0.0) - first["at"].as_f64().unwrap_or(0.0);
    ensure!(waited >= 2.0, "Retry-After honoured: {waited:.2} s");

    // 410 Gone: disabled at once, its delivery parked, a webhook.disabled event by no key.
    receiver.behave(&json!({"status": 410}))?;
    let member =
        t.create(&json!({"firstName": "J", "email": "j2@example.com", "role": "simple"}))?;
    let gone = eventually(Duration::from_secs(60), "disabled by 410", || {
        let w = webhook(&t, &hook)?;
        Ok((w["enabled"] == false).then_some(w))
    })?;
    ensure!(
        gone["disabledReason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{gone}"
    );
    let d = delivery_of(&t, &hook, "member.created", &member)?;
    ensure_eq!(d["status"], "parked", "{d}");
    let disabled = eventually(Duration::from_secs(60), "webhook.disabled placed", || {
        let r = t.call_as(
            &t.hooks_key,
            "GET",
            "/v1/events?types=webhook.disabled",
            None,
        )?;
        ensure_eq!(r.status, 200, "{}", r.text);
        Ok(r.json()["events"]
            .as_array()
            .and_then(|e| e.first().cloned()))
    })?;
    ensure_eq!(disabled["subject"], json!(hook), "{disabled}");
    ensure_eq!(
        disabled["data"]["actorKeyId"],
        Value::Null,
        "by the service: {disabled}"
    );
    ensure_eq!(disabled["data"]["object"]["enabled"], false, "{disabled}");

    // Enabled again: a fresh start. Then failing without a success: disabled after the limit.
    let again = patch_webhook(&t, &hook, json!({"enabled": true}))?;
    ensure_eq!(
        (&again["disabledReason"], &again["failingSince"]),
        (&Value::Null, &Value::Null),
        "{again}"
    );
    receiver.behave(&json!({"status": null, "fail_for_seconds": 600}))?;
    let started = Instant::now();
    let mut n = 0;
    let failed = loop {
        n += 1;
        t.create(
            &json!({"firstName": "J", "email": format!("f{n}@example.com"), "role": "simple"}),
        )?;
        let w = webhook(&t, &hook)?;
        if w["enabled"] == false {
            break w;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(150),
            "still enabled after 150 s of failures: {w}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    ensure!(
        started.elapsed() >= Duration::from_secs(30),
        "not before the limit: {:?}",
        started.elapsed()
    );
    ensure!(
        failed["disabledReason"]
            .as_str()
            .is_some_and(|r| r.contains("without a success"))
            && !failed["failingSince"].is_null(),
        "{failed}"
    );

    // Rotation: 0 ends the old secret now (one signature); a short overlap ends by itself.
    patch_webhook(&t, &hook, json!({"enabled": true}))?;
    let rotate = |body: Option<Value>| {
        t.call_as(
            &t.hooks_key,
            "POST",
            &format!("/v1/webhooks/{hook}/rotate-secret"),
            body.as_ref(),
        )
    };
    for bad in [
        json!({"overlapSeconds": -1}),
        json!({"overlapSeconds": 604801}),
        json!({"overlap": 5}),
        json!({"overlapSeconds": "60"}),
    ] {
        let r = rotate(Some(bad.clone()))?;
        ensure!(
            (400..500).contains(&r.status) && r.status != 409,
            "{bad}: {} {}",
            r.status,
            r.text
        );
    }
    let r = rotate(Some(json!({"overlapSeconds": 0})))?;
    ensure_eq!(r.status, 200, "{}", r.text);
    ensure_eq!(r.json()["secretRotatedUntil"], Value::Null, "{}", r.text);
    let new_secret = r.json()["secret"].as_str().unwrap_or_default().to_owned();
    receiver.control(&[&new_secret], 0.0)?;
    let member =
        t.create(&json!({"firstName": "J", "email": "j3@example.com", "role": "simple"}))?;
    let d = delivery_of(&t, &hook, "member.created", &member)?;
    let event_id = d["eventId"].clone();
    let got = arrival(&receiver, &event_id, 204, "signed by the new secret")?;
    ensure_eq!(
        (got["valid"].clone(), got["signatures"].clone()),
        (json!(true), json!(1)),
        "{got}"
    );
    let r = rotate(Some(json!({"overlapSeconds": 2})))?;
    ensure_eq!(r.status, 200, "{}", r.text);
    let until = millis(&r.json()["secretRotatedUntil"])?;
    ensure!(
        (until - now_millis()).abs() < 5_000,
        "2 s from now: {}",
        r.text
    );
    std::thread::sleep(Duration::from_millis(
        (until - now_millis()).max(0) as u64 + 500,
    ));
    ensure_eq!(
        webhook(&t, &hook)?["secretRotatedUntil"],
        Value::Null,
        "passed"
    );
    Ok(())
}

/// An organisation whose endpoint hangs (each attempt until the 15 s timeout) with a backlog
/// of events never holds up another organisation's delivery: it arrives while most of the
/// first one's events have not been attempted yet.
pub async fn one_hanging_endpoint_never_stalls_another_organisation(ctx: Arc<Ctx>) -> TestResult {
    const BACKLOG: usize = 12;
    let st = &ctx.stack;
    let (a, b) = (st.tenant(false).await?, st.tenant(false).await?);
    let hanging = Receiver::start(&st.dir, "hanging")?;
    let prompt = Receiver::start(&st.dir, "prompt")?;
    let (_, secret) = subscribe(&a, &hanging.url("/in"))?;
    hanging.control(&[&secret], 0.0)?;
    hanging.behave(&json!({"hang_seconds": 60}))?;
    let (_, secret) = subscribe(&b, &prompt.url("/in"))?;
    prompt.control(&[&secret], 0.0)?;
    let mut members = Vec::new();
    for i in 0..BACKLOG {
        members.push(a.create(
            &json!({"firstName": "H", "email": format!("h{i}@example.com"), "role": "simple"}),
        )?);
    }
    let backlog: BTreeSet<String> =
        eventually(Duration::from_secs(60), "the backlog placed", || {
            let ids: BTreeSet<String> = feed_ids(&a)?
                .iter()
                .filter(|e| members.iter().any(|m| e["subject"] == json!(m)))
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect();
            Ok((ids.len() == BACKLOG).then_some(ids))
        })?;
    eventually(Duration::from_secs(60), "the first hanging attempt", || {
        Ok((!hanging.received()?.is_empty()).then_some(()))
    })?;
    let member =
        b.create(&json!({"firstName": "P", "email": "p@example.com", "role": "simple"}))?;
    let arrived = eventually(
        Duration::from_secs(120),
        "the other organisation's event",
        || {
            Ok(prompt
                .received()?
                .into_iter()
                .find(|r| r["event"]["subject"] == json!(member) && r["status"] == 204))
        },
    )?;
    let at = arrived["at"].as_f64().unwrap_or(f64::MAX);
    let attempted: BTreeSet<String> = hanging
        .received()?
        .iter()
        .filter(|r| r["at"].as_f64().is_some_and(|t| t < at))
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .filter(|id| backlog.contains(id))
        .collect();
    hanging.behave(&json!({"hang_seconds": 0}))?;
    ensure!(
        attempted.len() < BACKLOG,
        "the other organisation waited for the whole backlog: {} of {BACKLOG} attempted first",
        attempted.len()
    );
    Ok(())
}
