//! The organisation's rules on the paths the race tests of `updates` and `races` do not
//! drive: switching HRIS on and off, the primary hand-over's writes. Each test ends by
//! re-reading the table's invariants.

use crate::Ctx;
use members_tests::{b, ensure, ensure_eq, s, Reply, TestResult};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

fn codes(replies: &[Reply]) -> Vec<(u16, String)> {
    replies.iter().map(|r| (r.status, r.code())).collect()
}

/// Rule 3: HRIS cannot be switched on while an active member has no `hrisRole` (they would
/// be stranded: every later write of them would be refused), race-proof.
pub async fn hris_on_is_refused_while_a_member_has_no_hris_role(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let nia =
        t.create(&json!({"firstName": "Nia", "email": "nia@example.com", "role": "simple"}))?;
    let refused = t.patch_organization(&json!({"hrisEnabled": true}))?;
    ensure_eq!(
        (refused.status, refused.code()),
        (422, "hris_blocked_by_members".to_owned()),
        "{}",
        refused.text
    );
    ensure!(
        refused.text.contains(&nia),
        "the refusal names Nia: {}",
        refused.text
    );
    let listed = t.call("GET", "/v1/members?hrisRole=none", None)?.json();
    let ids: Vec<&str> = listed["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    ensure_eq!(ids, vec![nia.as_str()], "hrisRole=none lists who blocks it");
    for (query, expected) in [
        ("hrisRole=none&role=simple", 1),
        ("hrisRole=none&role=admin", 0),
        ("hrisRole=none&department=none&status=all", 1),
    ] {
        let page = t.call("GET", &format!("/v1/members?{query}"), None)?.json();
        ensure_eq!(
            page["members"].as_array().map_or(0, Vec::len),
            expected,
            "{query}"
        );
    }
    ensure_eq!(
        t.patch_member(&nia, &json!({"jobTitle": "Engineer"}))?
            .status,
        200,
        "Nia can still be changed"
    );
    // A deactivated member without an HRIS role does not block it; a reactivation of such a
    // member while HRIS is on needs one.
    let old =
        t.create(&json!({"firstName": "Old", "email": "old@example.com", "role": "simple"}))?;
    ensure_eq!(
        t.call("DELETE", &format!("/v1/members/{old}"), None)?
            .status,
        200,
        "deactivate"
    );
    ensure_eq!(
        t.patch_member(&nia, &json!({"hrisRole": "hris_employee"}))?
            .status,
        200,
        "give Nia an HRIS role"
    );
    let on = t.patch_organization(&json!({"hrisEnabled": true}))?;
    ensure_eq!(on.status, 200, "HRIS on: {}", on.text);
    ensure_eq!(
        t.patch_member(&nia, &json!({"jobTitle": "Lead"}))?.status,
        200,
        "Nia is not stranded"
    );
    st.check_invariants(&t.org).await?;

    // Racing: HRIS on against a member losing (or a new member lacking) an HRIS role.
    ensure_eq!(
        t.patch_organization(&json!({"hrisEnabled": false}))?.status,
        200,
        "HRIS off"
    );
    for round in 0..12 {
        let email = format!("r{round}@example.com");
        let replies = t.race(vec![
            (
                "PATCH",
                "/v1/organization".into(),
                json!({"hrisEnabled": true}),
            ),
            (
                "PATCH",
                format!("/v1/members/{nia}"),
                json!({"hrisRole": null}),
            ),
            (
                "POST",
                "/v1/members".into(),
                json!({"firstName": "R", "email": email, "role": "simple"}),
            ),
        ])?;
        ensure!(
            replies.iter().all(|r| r.status < 500),
            "round {round}: {:?}",
            codes(&replies)
        );
        let org = st.organization(&t.org).await?;
        let members = st.members_of(&t.org).await?;
        let stranded: Vec<String> = members
            .iter()
            .filter(|m| b(m, "isActive") && s(m, "hrisRole").is_empty())
            .map(|m| s(m, "id"))
            .collect();
        ensure!(
            !org.hris_enabled || stranded.is_empty(),
            "round {round}: HRIS on with members without an HRIS role {stranded:?}: {:?}",
            codes(&replies)
        );
        st.check_invariants(&t.org).await?;
        // Back to the start: HRIS off, Nia with an HRIS role, the new member gone.
        if org.hris_enabled {
            ensure_eq!(
                t.patch_organization(&json!({"hrisEnabled": false}))?.status,
                200,
                "round {round}: reset HRIS"
            );
        }
        ensure_eq!(
            t.patch_member(&nia, &json!({"hrisRole": "hris_employee"}))?
                .status,
            200,
            "round {round}: reset Nia"
        );
        for id in stranded.iter().filter(|id| **id != nia) {
            t.call("DELETE", &format!("/v1/members/{id}"), None)?;
        }
    }
    st.check_invariants(&t.org).await
}

pub async fn organization_settings_keep_the_hris_rules(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let org = t.call("GET", "/v1/organization", None)?;
    ensure_eq!(
        (
            org.status,
            org.json()["hrisEnabled"].clone(),
            org.json()["counts"]["activeAdmins"].clone()
        ),
        (200, json!(false), json!(1)),
        "{}",
        org.text
    );
    let tag = org.header("etag").unwrap_or("").to_owned();
    let renamed =
        t.patch_organization(&json!({"name": "Renamed", "backgroundCheckRequired": true}))?;
    ensure_eq!(
        (renamed.status, renamed.json()["name"].clone()),
        (200, json!("Renamed")),
        "{}",
        renamed.text
    );
    let bearer = format!("Bearer {}", t.write_key);
    let stale = members_tests::http(
        "PATCH",
        &format!("{}/v1/organization", t.api),
        Some(br#"{"name":"X"}"#),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
            ("If-Match", &tag),
        ],
        None,
    )?;
    ensure_eq!(
        (stale.status, stale.code()),
        (412, "precondition_failed".to_owned()),
        "stale If-Match"
    );
    let bad = t.patch_organization(&json!({"counts": {}, "hrisEnabled": "yes"}))?;
    ensure_eq!(
        (bad.status, bad.code()),
        (422, "validation_failed".to_owned()),
        "read-only and wrong type"
    );

    // HRIS on needs an admin + hris_admin: take the root's HRIS role away first (allowed while off).
    ensure_eq!(
        t.patch_member(t.root.as_str(), &json!({"hrisRole": "hris_employee"}))?
            .status,
        200,
        "demote hris"
    );
    let refused = t.patch_organization(&json!({"hrisEnabled": true}))?;
    ensure_eq!(
        (refused.status, refused.code()),
        (422, "hris_requires_admin_hris_admin".to_owned()),
        "{}",
        refused.text
    );
    ensure_eq!(
        t.patch_member(t.root.as_str(), &json!({"hrisRole": "hris_admin"}))?
            .status,
        200,
        "promote hris"
    );
    ensure_eq!(
        t.patch_organization(&json!({"hrisEnabled": true}))?.status,
        200,
        "HRIS on"
    );

    // HRIS off is refused while no_access members exist, naming them.
    let x = t.create(&json!({"firstName": "X", "email": "x@example.com", "role": "no_access", "hrisRole": "hris_employee"}))?;
    let blocked = t.patch_organization(&json!({"hrisEnabled": false}))?;
    ensure_eq!(
        (blocked.status, blocked.code()),
        (422, "hris_blocked_by_members".to_owned()),
        "{}",
        blocked.text
    );
    ensure!(
        blocked.text.contains(&x),
        "the answer names the blocking member: {}",
        blocked.text
    );

    // Racing: HRIS off against a member becoming no_access. Never both.
    let y = t.create(&json!({"firstName": "Y", "email": "y@example.com", "role": "simple", "hrisRole": "hris_employee"}))?;
    ensure_eq!(
        t.patch_member(&x, &json!({"role": "simple"}))?.status,
        200,
        "unblock"
    );
    for round in 0..20 {
        let replies: Vec<Reply> = t.race(vec![
            (
                "PATCH",
                "/v1/organization".into(),
                json!({"hrisEnabled": false}),
            ),
            (
                "PATCH",
                format!("/v1/members/{y}"),
                json!({"role": "no_access"}),
            ),
        ])?;
        let expected = [
            "",
            "hris_blocked_by_members",
            "organization_changed",
            "member_update_in_progress",
            "no_access_requires_hris",
        ];
        ensure!(
            replies
                .iter()
                .all(|r| r.status < 500 && expected.contains(&r.code().as_str())),
            "round {round}: unexpected answers: {:?}",
            replies
                .iter()
                .map(|r| (r.status, r.code()))
                .collect::<Vec<_>>()
        );
        let org = st.organization(&t.org).await?;
        let member = t.get_member(&y)?.json();
        ensure!(
            org.hris_enabled || member["role"] != "no_access",
            "round {round}: HRIS off with a no_access member: {:?}",
            replies
                .iter()
                .map(|r| (r.status, r.code()))
                .collect::<Vec<_>>()
        );
        st.check_invariants(&t.org).await?;
        // Back to the start: HRIS on, y simple.
        if member["role"] == "no_access" {
            ensure_eq!(
                t.patch_member(&y, &json!({"role": "simple"}))?.status,
                200,
                "round {round}: reset y"
            );
        }
        if !org.hris_enabled {
            ensure_eq!(
                t.patch_organization(&json!({"hrisEnabled": true}))?.status,
                200,
                "round {round}: reset HRIS"
            );
        }
    }
    let history = st.items(&format!("ORG#{}#AUDIT", t.org)).await?;
    ensure!(
        history.len() >= 2,
        "organisation changes are audited: {}",
        history.len()
    );
    st.check_invariants(&t.org).await
}

/// The primary hand-over writes the old primary like any update: `?updatedSince=` sees it,
/// and its `member.primary_moved` event carries the version that was written.
pub async fn the_old_primary_is_written_like_any_update(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let a = t.create(
        &json!({"firstName": "A", "email": "a@example.com", "role": "simple", "isPrimary": true}),
    )?;
    let since = t.get_member(&a)?.json()["updatedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let b = t.create(
        &json!({"firstName": "B", "email": "b@example.com", "role": "simple", "isPrimary": true}),
    )?;
    // B's creation instant, later than A's: A is listed only if its demotion, written at that
    // instant, moved A's `updatedSince` index key.
    let mark = t.get_member(&b)?.json()["updatedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(mark > since, "B was created after A: {mark} vs {since}");
    let listed = t
        .call(
            "GET",
            &format!("/v1/members?updatedSince={}&limit=100", urlencode(&mark)),
            None,
        )?
        .json();
    let ids: BTreeSet<&str> = listed["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    ensure!(
        ids.contains(a.as_str()) && ids.contains(b.as_str()),
        "updatedSince={mark} lists the demoted A and the new primary B: {ids:?} (A was last written {since})"
    );
    let stored = t.get_member(&a)?.json();
    ensure_eq!(
        (stored["isPrimary"].clone(), stored["version"].clone()),
        (json!(false), json!(2)),
        "A demoted"
    );
    let history = t
        .call("GET", &format!("/v1/members/{a}/audit-events"), None)?
        .json();
    let moved = &history["events"][0];
    ensure_eq!(
        (moved["action"].clone(), moved["memberVersion"].clone()),
        (json!("member.primary_moved"), json!(2)),
        "the event is of the version written"
    );
    // Through PATCH as well, and back.
    ensure_eq!(
        t.patch_member(&a, &json!({"isPrimary": true}))?.status,
        200,
        "A primary again"
    );
    let b_now = t.get_member(&b)?.json();
    ensure_eq!(
        (b_now["isPrimary"].clone(), b_now["version"].clone()),
        (json!(false), json!(2)),
        "B demoted"
    );
    let b_history = t
        .call("GET", &format!("/v1/members/{b}/audit-events"), None)?
        .json();
    ensure_eq!(
        b_history["events"][0]["memberVersion"],
        json!(2),
        "B's event"
    );
    st.check_invariants(&t.org).await
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}
