//! A key learns nothing its scopes refuse it, through any side door: a webhook it subscribes
//! or points elsewhere, a redelivery, the feed, the organisation's history, and a webhook
//! whose subscribing key was revoked after the fact (SPEC, "Scopes").

use crate::Ctx;
use members_tests::receiver::Receiver;
use members_tests::{ensure, ensure_eq, Reply, Tenant, TestResult};
use serde_json::{json, Value};
use shared::auth::issue_key;
use shared::model::Scope;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Polls `probe` until it answers `Some`, for at most `patience`.
pub(crate) fn eventually<T>(
    patience: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(found) = probe()? {
            return Ok(found);
        }
        ensure!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every item of a list answer (`field`), read to its end with `cursor`/`after`.
fn all_of(
    t: &Tenant,
    key: &str,
    path: &str,
    field: &str,
    after: &str,
) -> Result<Vec<Value>, String> {
    let (mut out, mut cursor): (Vec<Value>, Option<String>) = (Vec::new(), None);
    loop {
        let page_path = match &cursor {
            Some(c) => format!("{path}?limit=100&{after}={c}"),
            None => format!("{path}?limit=100"),
        };
        let r = t.call_as(key, "GET", &page_path, None)?;
        ensure_eq!(r.status, 200, "{page_path}: {}", r.text);
        let page = r.json();
        let items = page[field].as_array().cloned().unwrap_or_default();
        // The feed always gives a cursor and says when it is at its end; a page of
        // another list ends without a cursor. A page may be empty (all hidden) and go on.
        let done = page["hasMore"] == json!(false);
        out.extend(items);
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if done || cursor.is_none() {
            return Ok(out);
        }
    }
}

fn types_of(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .filter_map(|e| e[field].as_str().map(str::to_owned))
        .collect()
}

fn refused_for(r: &Reply, scope: &str, what: &str) -> TestResult {
    ensure_eq!(
        (r.status, r.code()),
        (403, "insufficient_scope".to_owned()),
        "{what}: {}",
        r.text
    );
    ensure!(
        r.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains(scope)),
        "{what} names {scope}: {}",
        r.text
    );
    Ok(())
}

pub async fn a_key_learns_nothing_its_scopes_refuse(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let issue = |name: &str, scopes: Vec<Scope>| {
        let issued = issue_key(&t.org, name, scopes)?;
        Ok::<_, String>(issued)
    };
    let hooks_only = issue("hooks-only", vec![Scope::WriteWebhooks])?;
    st.store
        .put_api_key(&hooks_only.record)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let hk = hooks_only.secret.as_str();
    let attacker = Receiver::start(&st.dir, "attacker")?;
    let victim_hook = Receiver::start(&st.dir, "owner")?;

    // Directly: no member data for a webhooks key.
    let r = t.call_as(hk, "GET", "/v1/members", None)?;
    ensure_eq!(r.status, 403, "{}", r.text);

    // Subscribing to any type whose data it may not read is refused, naming the scope; a
    // webhook of webhook events is its own to make.
    for types in [
        json!(["member.created"]),
        json!(["member.updated", "webhook.created"]),
        json!(["role.created"]),
        json!(["organization.updated"]),
    ] {
        let r = t.call_as(
            hk,
            "POST",
            "/v1/webhooks",
            Some(&json!({"url": attacker.url("/steal"), "eventTypes": types})),
        )?;
        refused_for(&r, "r_members", &format!("subscribing to {types}"))?;
    }
    let own = t.call_as(
        hk,
        "POST",
        "/v1/webhooks",
        Some(&json!({"url": attacker.url("/own"), "eventTypes": ["webhook.created", "webhook.updated"]})),
    )?;
    ensure_eq!(own.status, 201, "{}", own.text);
    ensure_eq!(
        own.json()["subscribedByKeyId"],
        json!(hooks_only.record.key.id),
        "{}",
        own.text
    );

    // A member-events webhook made by a key that may read members…
    let made = t.call_as(
        &t.hooks_key,
        "POST",
        "/v1/webhooks",
        Some(&json!({"url": victim_hook.url("/members"), "eventTypes": ["member.created", "member.updated"]})),
    )?;
    ensure_eq!(made.status, 201, "{}", made.text);
    let hook = made.json()["id"].as_str().unwrap_or_default().to_owned();
    victim_hook.control(&[made.json()["secret"].as_str().unwrap_or_default()], 0.0)?;
    // …cannot be pointed elsewhere, or widened, by the webhooks-only key; it can still be
    // described, and that leaves the binding as it was.
    let path = format!("/v1/webhooks/{hook}");
    for body in [
        json!({"url": attacker.url("/steal")}),
        json!({"eventTypes": ["member.created"]}),
        json!({"url": attacker.url("/steal"), "eventTypes": ["webhook.created", "member.updated"], "description": "x"}),
    ] {
        let r = t.call_as(hk, "PATCH", &path, Some(&body))?;
        refused_for(&r, "r_members", &format!("PATCH {body}"))?;
    }
    // Nor can it take the secret, which signs member events.
    let r = t.call_as(hk, "POST", &format!("{path}/rotate-secret"), None)?;
    refused_for(&r, "r_members", "rotating a member-events webhook's secret")?;
    let described = t.call_as(hk, "PATCH", &path, Some(&json!({"description": "ops"})))?;
    ensure_eq!(described.status, 200, "{}", described.text);
    ensure_eq!(
        described.json()["url"],
        json!(victim_hook.url("/members")),
        "url unchanged"
    );
    ensure_eq!(
        described.json()["subscribedByKeyId"],
        made.json()["subscribedByKeyId"],
        "binding unchanged"
    );

    // A member event reaches the owner's webhook only.
    let member =
        t.create(&json!({"firstName": "S", "email": "s@example.com", "role": "simple"}))?;
    let delivery = eventually(Duration::from_secs(120), "the member's delivery", || {
        let ds = all_of(
            &t,
            hk,
            &format!("{path}/deliveries"),
            "deliveries",
            "cursor",
        )?;
        Ok(ds.into_iter().find(|d| d["status"] == "succeeded"))
    })?;
    ensure_eq!(delivery["eventType"], "member.created", "{delivery}");
    // The deliveries log (r_webhooks) carries no member data.
    let log = t.call_as(hk, "GET", &format!("{path}/deliveries"), None)?;
    ensure!(
        !log.text.contains("s@example.com") && !log.text.contains(&member),
        "{}",
        log.text
    );
    // Redelivering it needs r_members too; the owner's key may.
    let redeliver = format!(
        "{path}/deliveries/{}/redeliver",
        delivery["id"].as_str().unwrap_or_default()
    );
    let r = t.call_as(hk, "POST", &redeliver, None)?;
    refused_for(&r, "r_members", "redelivering a member event")?;
    let r = t.call_as(&t.hooks_key, "POST", &redeliver, None)?;
    ensure_eq!(r.status, 202, "{}", r.text);
    ensure!(
        attacker.received()?.iter().all(|d| d["event"]["type"]
            .as_str()
            .is_some_and(|k| k.starts_with("webhook."))),
        "the attacker's endpoint got webhook events only: {:?}",
        attacker.received()?
    );

    // The feed and the organisation's history show each key what its scopes read: webhook
    // changes (with the acting key) to webhook keys, member changes to member keys.
    let webhook_events = ["webhook.created", "webhook.updated", "webhook.redelivered"];
    let both = eventually(Duration::from_secs(120), "every event placed", || {
        let feed = all_of(&t, &t.hooks_key, "/v1/events", "events", "after")?;
        let kinds = types_of(&feed, "type");
        let placed = webhook_events.iter().all(|k| kinds.iter().any(|t| t == k))
            && kinds.iter().any(|k| k == "member.created");
        Ok(placed.then_some(feed))
    })?;
    let hooks_feed = types_of(&all_of(&t, hk, "/v1/events", "events", "after")?, "type");
    // Asking the feed about a type it may not read is refused, not answered with where
    // such events lie.
    let r = t.call_as(hk, "GET", "/v1/events?types=member.created&limit=1", None)?;
    refused_for(&r, "r_members", "the feed filtered on member events")?;
    let members_feed = types_of(
        &all_of(&t, &t.read_key, "/v1/events", "events", "after")?,
        "type",
    );
    ensure!(
        hooks_feed.iter().all(|k| k.starts_with("webhook.")),
        "{hooks_feed:?}"
    );
    ensure!(
        !members_feed.iter().any(|k| k.starts_with("webhook.")),
        "{members_feed:?}"
    );
    ensure_eq!(
        hooks_feed.len() + members_feed.len(),
        both.len(),
        "every event is someone's"
    );
    let history = all_of(&t, hk, "/v1/organization/audit-events", "events", "cursor")?;
    let actions = types_of(&history, "action");
    for k in webhook_events {
        ensure!(
            actions.iter().any(|a| a == k),
            "{k} in the history: {actions:?}"
        );
    }
    ensure!(
        actions.iter().all(|a| a.starts_with("webhook.")),
        "{actions:?}"
    );
    let by_hooks_only = history
        .iter()
        .find(|e| e["action"] == "webhook.updated")
        .map(|e| e["actorKeyId"].clone());
    ensure_eq!(
        by_hooks_only,
        Some(json!(hooks_only.record.key.id)),
        "the acting key is recorded"
    );
    ensure!(
        !serde_json::to_string(&history)
            .unwrap_or_default()
            .contains("whsec_"),
        "no secret in the history"
    );
    let members_history = types_of(
        &all_of(
            &t,
            &t.read_key,
            "/v1/organization/audit-events",
            "events",
            "cursor",
        )?,
        "action",
    );
    ensure!(
        !members_history.iter().any(|a| a.starts_with("webhook.")),
        "{members_history:?}"
    );
    Ok(())
}

/// A webhook is bound to the key that chose its URL and types: once that key is revoked,
/// nothing more is sent (each delivery is parked, saying why) until a live key that may
/// read the events takes it over.
pub async fn a_revoked_subscriber_stops_its_webhook(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let owner = issue_key(
        &t.org,
        "owner",
        vec![Scope::ReadMembers, Scope::WriteWebhooks],
    )?;
    st.store
        .put_api_key(&owner.record)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let receiver = Receiver::start(&st.dir, "revoked")?;
    let made = t.call_as(
        &owner.secret,
        "POST",
        "/v1/webhooks",
        Some(&json!({"url": receiver.url("/in"), "eventTypes": ["member.updated"]})),
    )?;
    ensure_eq!(made.status, 201, "{}", made.text);
    let hook = made.json()["id"].as_str().unwrap_or_default().to_owned();
    receiver.control(&[made.json()["secret"].as_str().unwrap_or_default()], 0.0)?;
    let deliveries = format!("/v1/webhooks/{hook}/deliveries");
    let patch = |n: u32| -> TestResult {
        let r = t.patch_member(t.root.as_str(), &json!({"headline": format!("h{n}")}))?;
        ensure_eq!(r.status, 200, "{}", r.text);
        Ok(())
    };
    let delivered = |n: usize| -> Result<Option<()>, String> {
        let got = receiver.received()?;
        Ok((got.iter().filter(|d| d["status"] == 204).count() >= n).then_some(()))
    };

    patch(1)?;
    eventually(Duration::from_secs(120), "the first delivery", || {
        delivered(1)
    })?;
    st.store
        .revoke_api_key(&t.org, &owner.record.key.id)
        .await
        .map_err(|e| format!("{e:?}"))?;
    patch(2)?;
    let parked = eventually(Duration::from_secs(120), "a parked delivery", || {
        let ds = all_of(&t, &t.hooks_key, &deliveries, "deliveries", "cursor")?;
        Ok(ds.into_iter().find(|d| d["status"] == "parked"))
    })?;
    let why = parked["attempts"][0]["error"].as_str().unwrap_or_default();
    ensure!(
        why.contains("revoked") && why.contains(owner.record.key.id.as_str()),
        "{parked}"
    );
    ensure_eq!(
        receiver.received()?.len(),
        1,
        "nothing sent after the revocation"
    );

    // Taken over by a live key that may read members: delivered again, and the parked one
    // can be redelivered.
    let r = t.call_as(
        &t.hooks_key,
        "PATCH",
        &format!("/v1/webhooks/{hook}"),
        Some(&json!({"eventTypes": ["member.updated"]})),
    )?;
    ensure_eq!(r.status, 200, "{}", r.text);
    ensure_eq!(
        r.json()["subscribedByKeyId"],
        json!(t.hooks_key_id),
        "{}",
        r.text
    );
    patch(3)?;
    eventually(
        Duration::from_secs(120),
        "delivery after the takeover",
        || delivered(2),
    )?;
    let again = t.call_as(
        &t.hooks_key,
        "POST",
        &format!(
            "{deliveries}/{}/redeliver",
            parked["id"].as_str().unwrap_or_default()
        ),
        None,
    )?;
    ensure_eq!(again.status, 202, "{}", again.text);
    eventually(
        Duration::from_secs(120),
        "the parked event redelivered",
        || delivered(3),
    )?;
    Ok(())
}
