//! Signed webhooks, end to end: the API, the stream consumer's deliveries, and a receiver on
//! 127.0.0.1 that verifies every signature with the `standardwebhooks` package.

use crate::Ctx;
use members_tests::receiver::Receiver;
use members_tests::{ensure, ensure_eq, Tenant, TestResult};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The events the first test writes: 4 members × (create, 3 updates, deactivate), 1 role.
const WRITTEN: usize = 4 * 5 + 1;

/// Every event type a members-and-webhooks key may read.
fn readable_types() -> Vec<&'static str> {
    shared::events::TYPES
        .into_iter()
        .filter(|t| shared::events::read_scope(t) != shared::model::Scope::Scim)
        .collect()
}

/// A webhook for every type its key may read at `url`: (id, secret).
pub(crate) fn subscribe(t: &Tenant, url: &str) -> Result<(String, String), String> {
    let r = t.call_as(
        &t.hooks_key,
        "POST",
        "/v1/webhooks",
        // Every type but the SCIM groups' (those need the scope scim, which this key lacks).
        Some(&json!({"url": url, "eventTypes": readable_types(), "description": "tests"})),
    )?;
    ensure_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    Ok((
        v["id"].as_str().unwrap_or_default().to_owned(),
        v["secret"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// The ids of the organisation's events after `after` (the feed, read to its end).
pub(crate) fn feed_ids(t: &Tenant) -> Result<Vec<Value>, String> {
    let (mut out, mut cursor): (Vec<Value>, Option<String>) = (Vec::new(), None);
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/events?limit=100&after={c}"),
            None => "/v1/events?limit=100".to_owned(),
        };
        let p = t.call("GET", &path, None)?.json();
        let events = p["events"].as_array().cloned().unwrap_or_default();
        let done = events.is_empty();
        out.extend(events);
        cursor = p["nextCursor"].as_str().map(str::to_owned);
        if done {
            return Ok(out);
        }
    }
}

/// Waits until the receiver has acknowledged (2xx) every id of `want`, or `patience` passes.
pub(crate) fn wait_for(
    r: &Receiver,
    want: &BTreeSet<String>,
    patience: Duration,
) -> Result<Vec<Value>, String> {
    let deadline = Instant::now() + patience;
    loop {
        let got = r.received()?;
        let acked: BTreeSet<String> = got
            .iter()
            .filter(|d| d["status"] == 204)
            .filter_map(|d| d["id"].as_str().map(str::to_owned))
            .collect();
        if want.is_subset(&acked) || Instant::now() > deadline {
            return Ok(got);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every write's event reaches the receiver, signed (verified by `standardwebhooks`), once
/// after deduplication by `webhook-id`, each version of each member once; a replayed old
/// signature and a forged one fail verification.
pub async fn every_event_arrives_signed_once_each_version_once(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let receiver = Receiver::start(&st.dir, "signed")?;
    let (_, secret) = subscribe(&t, &receiver.url("/hooks"))?;
    receiver.control(&[&secret], 0.0)?;
    // Writers on several members at once, each member changed in turn.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let t = t.clone();
            std::thread::spawn(move || -> Result<String, String> {
                let id = t.create(&json!({"firstName": "H", "email": format!("h{w}@example.com"), "role": "simple"}))?;
                for n in 0..3 {
                    let r = t.patch_member(&id, &json!({"headline": format!("v{n}")}))?;
                    ensure_eq!(r.status, 200, "{}", r.text);
                }
                let r = t.call("DELETE", &format!("/v1/members/{id}"), None)?;
                ensure_eq!(r.status, 200, "{}", r.text);
                Ok(id)
            })
        })
        .collect();
    let mut subjects = BTreeSet::new();
    for w in writers {
        subjects.insert(w.join().map_err(|_| "writer panicked")??);
    }
    let role = t.call("POST", "/v1/roles", Some(&json!({"name": "Hooked"})))?;
    ensure_eq!(role.status, 201, "{}", role.text);
    subjects.insert(role.json()["id"].as_str().unwrap_or_default().to_owned());
    // Every event of those writes, once the stream consumer has placed them in the feed
    // (chosen by subject: the organisation's own setup events are placed when they are).
    let deadline = Instant::now() + Duration::from_secs(120);
    let want: BTreeSet<String> = loop {
        let written: BTreeSet<String> = feed_ids(&t)?
            .iter()
            .filter(|e| e["subject"].as_str().is_some_and(|s| subjects.contains(s)))
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        if written.len() >= WRITTEN || Instant::now() > deadline {
            break written;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure_eq!(want.len(), WRITTEN, "events written");
    let got = wait_for(&receiver, &want, Duration::from_secs(120))?;
    // Deliveries before the receiver had the secret were answered 503 unverified (`null`).
    let invalid: Vec<&Value> = got.iter().filter(|d| d["valid"] == false).collect();
    ensure!(invalid.is_empty(), "every signature verifies: {invalid:?}");
    let ids: Vec<String> = got
        .iter()
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    ensure!(
        want.is_subset(&unique),
        "every event arrived: missing {:?}",
        want.difference(&unique).collect::<Vec<_>>()
    );
    // Deduplicated by webhook-id, each member's events carry one version each, 1 to 5:
    // deliveries are not ordered (several are in flight at once), so a receiver orders a
    // member's events by `data.version`, and can, since no two share one.
    let mut seen = BTreeSet::new();
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for d in &got {
        let id = d["id"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(id.clone()) {
            continue;
        }
        ensure_eq!(d["event"]["id"], json!(id), "webhook-id is the event id");
        let subject = d["event"]["subject"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let version = d["event"]["data"]["version"].as_u64().unwrap_or(0);
        if subjects.contains(&subject) && subject.starts_with("mem_") {
            versions.entry(subject).or_default().push(version);
        }
    }
    for (subject, mut got) in versions {
        got.sort_unstable();
        ensure_eq!(got, vec![1, 2, 3, 4, 5], "{subject}: each version once");
    }
    // Replay: a genuine signature made ten minutes ago fails (the timestamp is signed and
    // too old); a forged one fails; the same message signed now passes.
    let body = serde_json::to_string(&got[0]["event"]).unwrap_or_default();
    let id = got[0]["id"].as_str().unwrap_or_default();
    let headers = |at: i64, key: &str| {
        json!({
            "webhook-id": id,
            "webhook-timestamp": at.to_string(),
            "webhook-signature": shared::webhooks::sign::signature_header(&[key], id, at, &body),
        })
    };
    let now = shared::model::Timestamp::now().unix_seconds();
    let (ok, why) = receiver.verify(&headers(now, &secret), &body)?;
    ensure!(ok, "signed now: {why}");
    let (ok, why) = receiver.verify(&headers(now - 600, &secret), &body)?;
    ensure!(!ok, "a replay of a ten-minute-old signature must fail");
    ensure!(
        why.to_lowercase().contains("timestamp") || why.to_lowercase().contains("old"),
        "{why}"
    );
    let forged = shared::webhooks::sign::new_secret()?;
    let (ok, _) = receiver.verify(&headers(now, &forged), &body)?;
    ensure!(!ok, "another key's signature must fail");
    Ok(())
}

/// A receiver that answers 500 for a while gets every event later; the deliveries log shows
/// each attempt; a redelivery sends the event again (same webhook-id); a rotated secret
/// signs beside the old one.
pub async fn a_failing_receiver_gets_every_event_later(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let receiver = Receiver::start(&st.dir, "failing")?;
    let (hook, secret) = subscribe(&t, &receiver.url("/in"))?;
    receiver.control(&[&secret], 4.0)?;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(t.create(
            &json!({"firstName": "F", "email": format!("f{i}@example.com"), "role": "simple"}),
        )?);
    }
    let want: BTreeSet<String> = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let events = feed_ids(&t)?;
            let created: BTreeSet<String> = events
                .iter()
                .filter(|e| ids.iter().any(|m| e["subject"] == json!(m)))
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect();
            if created.len() == ids.len() || Instant::now() > deadline {
                break created;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    ensure_eq!(want.len(), ids.len(), "events placed");
    let got = wait_for(&receiver, &want, Duration::from_secs(120))?;
    let failed = got.iter().filter(|d| d["status"] == 500).count();
    ensure!(
        failed > 0,
        "the receiver refused some deliveries first: {got:?}"
    );
    let acked: BTreeSet<String> = got
        .iter()
        .filter(|d| d["status"] == 204)
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        want.is_subset(&acked),
        "every event delivered after the outage"
    );

    // The deliveries log: newest first, each with its attempts.
    let r = t.call_as(
        &t.hooks_key,
        "GET",
        &format!("/v1/webhooks/{hook}/deliveries?limit=100"),
        None,
    )?;
    ensure_eq!(r.status, 200, "{}", r.text);
    let deliveries = r.json()["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let retried = deliveries
        .iter()
        .find(|d| d["attempts"].as_array().is_some_and(|a| a.len() > 1))
        .cloned()
        .ok_or("a delivery with more than one attempt")?;
    ensure_eq!(retried["status"], "succeeded", "{retried}");
    ensure_eq!(retried["attempts"][0]["statusCode"], 500, "{retried}");
    let last = retried["attempts"].as_array().map_or(0, |a| a.len()) - 1;
    ensure!(
        retried["attempts"][last]["statusCode"]
            .as_u64()
            .is_some_and(|s| (200..300).contains(&s)),
        "{retried}"
    );

    // Redeliver: the same event again (same webhook-id), now signed with both secrets.
    let rotated = t.call_as(
        &t.hooks_key,
        "POST",
        &format!("/v1/webhooks/{hook}/rotate-secret"),
        None,
    )?;
    ensure_eq!(rotated.status, 200, "{}", rotated.text);
    let new_secret = rotated.json()["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(
        new_secret != secret && new_secret.starts_with("whsec_"),
        "a new secret"
    );
    let twice = t.call_as(
        &t.hooks_key,
        "POST",
        &format!("/v1/webhooks/{hook}/rotate-secret"),
        None,
    )?;
    ensure_eq!(
        (twice.status, twice.code()),
        (409, "rotation_in_progress".to_owned()),
        "the old secret keeps its day: {}",
        twice.text
    );
    receiver.control(&[&new_secret], 0.0)?;
    let delivery = retried["id"].as_str().unwrap_or_default();
    let event = retried["eventId"].as_str().unwrap_or_default().to_owned();
    let before = got.iter().filter(|d| d["id"] == json!(event)).count();
    let again = t.call_as(
        &t.hooks_key,
        "POST",
        &format!("/v1/webhooks/{hook}/deliveries/{delivery}/redeliver"),
        None,
    )?;
    ensure_eq!(again.status, 202, "{}", again.text);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = receiver.received()?;
        let copies: Vec<&Value> = now.iter().filter(|d| d["id"] == json!(event)).collect();
        if copies.len() > before {
            let newest = copies[copies.len() - 1];
            ensure_eq!(newest["valid"], true, "{newest}");
            ensure_eq!(
                newest["signatures"],
                2,
                "old and new secret both sign for a day"
            );
            break;
        }
        ensure!(Instant::now() < deadline, "the redelivery never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Bad URLs are refused (https only but for the local loopback setting; no private,
/// link-local or metadata address), secrets never shown again, scopes apart from members'.
pub async fn webhook_urls_secrets_and_scopes(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let post = |key: &str, body: Value| t.call_as(key, "POST", "/v1/webhooks", Some(&body));
    for url in [
        "http://example.com/hook",
        "https://10.0.0.8/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://user:pw@example.com/",
        "http://192.168.1.10:8080/",
        "ftp://example.com/",
    ] {
        let r = post(
            &t.hooks_key,
            json!({"url": url, "eventTypes": ["member.created"]}),
        )?;
        ensure_eq!(
            (r.status, r.code()),
            (422, "validation_failed".to_owned()),
            "{url}: {}",
            r.text
        );
        ensure!(r.text.contains("url_refused"), "{url}: {}", r.text);
    }
    let members_only = post(
        &t.write_key,
        json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["member.created"]}),
    )?;
    ensure_eq!(
        members_only.status,
        403,
        "a members key cannot add a webhook: {}",
        members_only.text
    );
    let made = post(
        &t.hooks_key,
        json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["member.created"]}),
    )?;
    ensure_eq!(made.status, 201, "{}", made.text);
    let id = made.json()["id"].as_str().unwrap_or_default().to_owned();
    let secret = made.json()["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for path in ["/v1/webhooks".to_owned(), format!("/v1/webhooks/{id}")] {
        let r = t.call_as(&t.hooks_key, "GET", &path, None)?;
        ensure_eq!(r.status, 200, "{}", r.text);
        ensure!(
            !r.text.contains(&secret) && !r.text.contains("whsec_"),
            "{path} shows no secret"
        );
    }
    let patched = t.call_as(
        &t.hooks_key,
        "PATCH",
        &format!("/v1/webhooks/{id}"),
        Some(&json!({"enabled": false, "url": "https://10.1.1.1/"})),
    )?;
    ensure_eq!(
        patched.status,
        422,
        "a PATCH is checked too: {}",
        patched.text
    );
    let patched = t.call_as(
        &t.hooks_key,
        "PATCH",
        &format!("/v1/webhooks/{id}"),
        Some(&json!({"enabled": false})),
    )?;
    ensure_eq!(
        (patched.status, patched.json()["enabled"].clone()),
        (200, json!(false)),
        "{}",
        patched.text
    );
    // At most 20 an organisation.
    let mut made_ids = vec![id.clone()];
    for _ in 1..20 {
        let r = post(
            &t.hooks_key,
            json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["role.created"]}),
        )?;
        ensure_eq!(r.status, 201, "{}", r.text);
        made_ids.push(r.json()["id"].as_str().unwrap_or_default().to_owned());
    }
    let over = post(
        &t.hooks_key,
        json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["role.created"]}),
    )?;
    ensure_eq!(
        (over.status, over.code()),
        (422, "webhook_limit".to_owned()),
        "{}",
        over.text
    );
    for id in &made_ids {
        let r = t.call_as(&t.hooks_key, "DELETE", &format!("/v1/webhooks/{id}"), None)?;
        ensure_eq!(r.status, 204, "{}", r.text);
    }
    let gone = t.call_as(&t.hooks_key, "GET", &format!("/v1/webhooks/{id}"), None)?;
    ensure_eq!(gone.status, 404, "{}", gone.text);
    let again = post(
        &t.hooks_key,
        json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["role.created"]}),
    )?;
    ensure_eq!(again.status, 201, "deleting frees a place: {}", again.text);
    Ok(())
}
