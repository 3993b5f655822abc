//! Change events: one per change, written with it (the outbox), placed in the organisation's
//! feed by the stream consumer, and read with a cursor that never skips one.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, Tenant, TestResult};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One page of the feed after `after`.
fn page(t: &Tenant, after: Option<&str>, limit: usize, types: &str) -> Result<Value, String> {
    let mut path = format!("/v1/events?limit={limit}");
    if let Some(after) = after {
        path.push_str(&format!("&after={after}"));
    }
    if !types.is_empty() {
        path.push_str(&format!("&types={types}"));
    }
    let r = t.call("GET", &path, None)?;
    ensure_eq!(r.status, 200, "GET {path}: {}", r.text);
    Ok(r.json())
}

/// The ids of the organisation's outbox entries: every event written.
async fn written(ctx: &Ctx, t: &Tenant) -> Result<BTreeSet<String>, String> {
    let items = ctx.stack.items(&format!("ORG#{}#", t.org)).await?;
    Ok(items
        .iter()
        .filter(|i| members_tests::s(i, "entity") == "auditEvent")
        .map(|i| members_tests::s(i, "id"))
        .collect())
}

/// Follows the feed from `cursor` until it holds `want` events (or `patience` passes),
/// checking on every page that places are dense and increasing.
fn follow(
    t: &Tenant,
    cursor: &mut Option<String>,
    seen: &mut Vec<Value>,
    limit: usize,
) -> TestResult {
    let p = page(t, cursor.as_deref(), limit, "")?;
    for e in p["events"].as_array().cloned().unwrap_or_default() {
        let seq: u64 = e["sequence"].as_str().unwrap_or("").parse().unwrap_or(0);
        let previous = seen.last().map_or(0, |l| {
            l["sequence"].as_str().unwrap_or("").parse().unwrap_or(0)
        });
        ensure_eq!(seq, previous + 1, "places are dense and in order: {e}");
        seen.push(e);
    }
    let next = p["nextCursor"].as_str().map(str::to_owned);
    ensure!(next.is_some(), "nextCursor is always given: {p}");
    *cursor = next;
    Ok(())
}

/// Writers on many instances commit in their own order while a reader follows the feed, and
/// a second consumer races the first for the same stream: the reader sees every event
/// written, each once, each member's in version order.
pub async fn the_feed_never_skips_under_concurrent_writers_and_consumers(
    ctx: Arc<Ctx>,
) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    // A rival consumer: both place the same records; the counter's condition keeps one
    // place per event.
    let rival = st.extra_consumer("rival")?;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (t, done) = (t.clone(), done.clone());
        std::thread::spawn(move || -> Result<Vec<Value>, String> {
            let (mut cursor, mut seen) = (None, Vec::new());
            while !done.load(Ordering::SeqCst) {
                follow(&t, &mut cursor, &mut seen, 7)?;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(seen
                .into_iter()
                .chain(Some(json!({"cursor": cursor})))
                .collect())
        })
    };
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let t = t.clone();
            std::thread::spawn(move || -> TestResult {
                for i in 0..8 {
                    let id = t.create(&json!({
                        "firstName": format!("W{w}"), "email": format!("w{w}-{i}@example.com"),
                        "role": "simple"
                    }))?;
                    for n in 0..2 {
                        let r = t.patch_member(&id, &json!({"headline": format!("v{n}")}))?;
                        ensure_eq!(r.status, 200, "{}", r.text);
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in writers {
        w.join().map_err(|_| "writer panicked")??;
    }
    // 6 writers × 8 members × (1 create + 2 updates), and the organisation's first admin.
    let expected = written(&ctx, &t).await?;
    ensure_eq!(expected.len(), 6 * 8 * 3 + 1, "outbox entries");
    // The reader keeps following until it has them all (or a minute passes).
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let (mut cursor, mut seen) = (None, Vec::new());
        follow(&t, &mut cursor, &mut seen, 100)?;
        follow(&t, &mut cursor, &mut seen, 100)?;
        if seen.len() >= expected.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::SeqCst);
    let mut seen = reader.join().map_err(|_| "reader panicked")??;
    let cursor = seen
        .pop()
        .and_then(|c| c["cursor"].as_str().map(str::to_owned));
    // The concurrent reader's last cursor, followed to the end now that writing stopped.
    let mut cursor = cursor;
    loop {
        let before = seen.len();
        follow(&t, &mut cursor, &mut seen, 100)?;
        if seen.len() == before {
            break;
        }
    }
    drop(rival);
    let ids: Vec<String> = seen
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("").to_owned())
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    ensure_eq!(unique.len(), ids.len(), "each event once");
    ensure_eq!(
        unique,
        expected,
        "the reader saw exactly the events written"
    );
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    for e in &seen {
        let subject = e["subject"].as_str().unwrap_or("").to_owned();
        let version = e["data"]["version"].as_u64().unwrap_or(0);
        let last = versions.insert(subject.clone(), version).unwrap_or(0);
        ensure!(version > last, "{subject}: version {version} after {last}");
    }
    Ok(())
}

/// What an event holds, and what makes none: a refused, dry-run or no-op request.
pub async fn one_event_per_change_and_none_for_refused_dry_or_noop(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let id = t.create(&json!({
        "firstName": "Ada", "email": "ada-events@example.com", "role": "simple",
        "settings": {"password": "correct horse battery staple"}
    }))?;
    let dry = t.call(
        "PATCH",
        &format!("/v1/members/{id}?dryRun=true"),
        Some(&json!({"headline": "dry"})),
    )?;
    ensure_eq!(dry.status, 200, "{}", dry.text);
    let noop = t.patch_member(&id, &json!({"firstName": "Ada"}))?;
    ensure_eq!(noop.status, 200, "{}", noop.text);
    let refused = t.patch_member(&id, &json!({"role": "no_such_role"}))?;
    ensure!(refused.status >= 400, "{}", refused.text);
    let changed = t.patch_member(&id, &json!({"headline": "Engineer"}))?;
    ensure_eq!(changed.status, 200, "{}", changed.text);
    let member = t.get_member(&id)?.json();

    let deadline = Instant::now() + Duration::from_secs(120);
    let events = loop {
        let p = page(&t, None, 100, "")?;
        let events = p["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= 3 || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    ensure_eq!(
        kinds,
        vec!["member.created", "member.created", "member.updated"],
        "the first admin's creation, Ada's, and one update: {events:?}"
    );
    let update = &events[2];
    ensure_eq!(update["specversion"], "1.0", "{update}");
    ensure_eq!(update["subject"], json!(id), "{update}");
    ensure_eq!(update["datacontenttype"], "application/json", "{update}");
    ensure_eq!(
        update["data"]["object"],
        member,
        "the member as GET shows it"
    );
    ensure_eq!(update["data"]["version"], member["version"], "{update}");
    ensure_eq!(
        update["data"]["changes"]["headline"],
        json!({"before": null, "after": "Engineer"}),
        "{update}"
    );
    ensure!(
        update["data"]["actorKeyId"]
            .as_str()
            .is_some_and(|k| k.starts_with("key_")),
        "the key that acted: {update}"
    );
    let text = serde_json::to_string(&events).unwrap_or_default();
    ensure!(
        !text.contains("correct horse") && !text.contains("argon2"),
        "no secret in an event"
    );
    // types= filters, and the cursor still moves past what it leaves out.
    let p = page(&t, None, 100, "member.updated")?;
    ensure_eq!(p["events"].as_array().map(Vec::len), Some(1), "{p}");
    let after = p["nextCursor"].as_str().unwrap_or_default().to_owned();
    let rest = page(&t, Some(&after), 100, "")?;
    ensure_eq!(rest["events"], json!([]), "nothing after the last event");
    ensure_eq!(rest["hasMore"], false, "{rest}");
    ensure_eq!(
        rest["nextCursor"],
        json!(after),
        "an empty page keeps the place"
    );
    for bad in [
        "/v1/events?types=member.exploded",
        "/v1/events?after=bm9wZQ",
        "/v1/events?limit=0",
        "/v1/events?since=1",
    ] {
        let r = t.call("GET", bad, None)?;
        ensure_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    Ok(())
}

/// The consumer killed mid-batch (SIGKILL) and started again resumes from its checkpoint:
/// every event is placed, once; a reader that passed an event the retention deleted is told
/// (410), one that starts fresh skips it.
pub async fn a_consumer_killed_mid_batch_resumes_and_loses_nothing(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let (mut cursor, mut seen) = (None, Vec::new());
    follow(&t, &mut cursor, &mut seen, 100)?;
    st.kill_consumer()?;
    for i in 0..30 {
        t.create(
            &json!({"firstName": "K", "email": format!("k{i}@example.com"), "role": "simple"}),
        )?;
    }
    for pause in [150, 40, 400] {
        st.start_consumer()?;
        std::thread::sleep(Duration::from_millis(pause));
        st.kill_consumer()?;
    }
    st.start_consumer()?;
    let expected = written(&ctx, &t).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut cursor, mut seen) = (None, Vec::new());
    while seen.len() < expected.len() && Instant::now() < deadline {
        follow(&t, &mut cursor, &mut seen, 100)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let ids: BTreeSet<String> = seen
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("").to_owned())
        .collect();
    ensure_eq!(ids.len(), seen.len(), "each event once");
    ensure_eq!(ids, expected, "every event placed after the restarts");

    // Retention: places 1 and 2 expire (TTL deletes lazily; the read treats them as gone).
    let reader_at_1 = json_cursor_after(&t, 1)?;
    let last = expected.len() as u64;
    let reader_before_last = json_cursor_after(&t, last - 1)?;
    st.expire_feed_place(&t.org, 1).await?;
    st.expire_feed_place(&t.org, 2).await?;
    // The newest place deleted (as TTL would, days later): a reader just before it learns
    // on an empty page, not at the next write.
    st.delete_feed_place(&t.org, last).await?;
    let r = t.call(
        "GET",
        &format!("/v1/events?after={reader_before_last}"),
        None,
    )?;
    ensure_eq!(
        (r.status, r.code()),
        (410, "cursor_expired".to_owned()),
        "{}",
        r.text
    );
    let r = t.call("GET", &format!("/v1/events?after={reader_at_1}"), None)?;
    ensure_eq!(
        (r.status, r.code()),
        (410, "cursor_expired".to_owned()),
        "{}",
        r.text
    );
    let fresh = page(&t, None, 1, "")?;
    ensure_eq!(
        fresh["events"][0]["sequence"],
        json!("00000000000000000003"),
        "a fresh reader starts at the oldest live event: {fresh}"
    );
    Ok(())
}

/// The cursor that continues after place `seq` (read from the feed, not forged).
fn json_cursor_after(t: &Tenant, seq: u64) -> Result<String, String> {
    let p = page(t, None, seq as usize, "")?;
    let events = p["events"].as_array().cloned().unwrap_or_default();
    ensure_eq!(events.len(), seq as usize, "{p}");
    Ok(p["nextCursor"].as_str().unwrap_or_default().to_owned())
}

/// A feed cursor is its organisation's, of the feed's epoch: another organisation's is 400
/// `invalid_cursor` (never an empty page that would skip everything up to it), and one of a
/// feed since re-created is 410 `feed_reset` (its places name other events now). A reader
/// that starts when retention has deleted every place starts at the end, without a 410.
pub async fn a_cursor_is_bound_to_its_organisation_and_the_feeds_epoch(
    ctx: Arc<Ctx>,
) -> TestResult {
    let st = &ctx.stack;
    let (a, b) = (st.tenant(false).await?, st.tenant(false).await?);
    a.create(&json!({"firstName": "E", "email": "epoch-1@example.com", "role": "simple"}))?;
    let expected = written(&ctx, &a).await?.len();
    let (mut cursor, mut seen) = (None, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < expected && Instant::now() < deadline {
        follow(&a, &mut cursor, &mut seen, 100)?;
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure_eq!(seen.len(), expected, "every event placed");
    let at_end = cursor.ok_or("no cursor")?;
    let r = b.call("GET", &format!("/v1/events?after={at_end}"), None)?;
    ensure_eq!(
        (r.status, r.code()),
        (400, "invalid_cursor".to_owned()),
        "another organisation's cursor: {}",
        r.text
    );
    // The feed re-created: the next event opens a feed of a new epoch, at place 1.
    st.reset_feed(&a.org, seen.len() as u64).await?;
    a.create(&json!({"firstName": "E", "email": "epoch-2@example.com", "role": "simple"}))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut fresh = page(&a, None, 100, "")?;
    while fresh["events"].as_array().is_none_or(Vec::is_empty) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        fresh = page(&a, None, 100, "")?;
    }
    ensure_eq!(
        fresh["events"][0]["sequence"],
        json!("00000000000000000001"),
        "a new feed: {fresh}"
    );
    let r = a.call("GET", &format!("/v1/events?after={at_end}"), None)?;
    ensure_eq!(
        (r.status, r.code()),
        (410, "feed_reset".to_owned()),
        "a cursor of the feed before: {}",
        r.text
    );
    // Retention deleted every place (the counter stays): a fresh reader starts at the end,
    // and its cursor then gives the next event, not a 410 for places it never could see.
    st.delete_feed_place(&a.org, 1).await?;
    let empty = page(&a, None, 100, "")?;
    ensure_eq!(empty["events"], json!([]), "nothing live: {empty}");
    let from_end = empty["nextCursor"].as_str().unwrap_or_default().to_owned();
    a.create(&json!({"firstName": "E", "email": "epoch-3@example.com", "role": "simple"}))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = page(&a, Some(&from_end), 100, "")?;
    while next["events"].as_array().is_none_or(Vec::is_empty) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        next = page(&a, Some(&from_end), 100, "")?;
    }
    ensure_eq!(
        next["events"][0]["sequence"],
        json!("00000000000000000002"),
        "the next event after the end the retention left: {next}"
    );
    Ok(())
}
