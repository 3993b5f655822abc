//! Custom roles: they exist for every member holding them (active or not), cannot be deleted
//! under a holder or twice, have names that cannot be mistaken for another's, and leave
//! history in the organisation's audit events.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, Reply, TestResult};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

fn codes(replies: &[Reply]) -> Vec<(u16, String)> {
    replies.iter().map(|r| (r.status, r.code())).collect()
}

pub async fn custom_roles_cannot_vanish_under_a_member(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let made = t.call(
        "POST",
        "/v1/roles",
        Some(&json!({"name": "Auditor", "description": "Reads audit trails"})),
    )?;
    ensure_eq!(made.status, 201, "{}", made.text);
    let role = made.json()["id"].as_str().unwrap_or_default().to_owned();
    ensure_eq!(
        made.header("location").map(str::to_owned),
        Some(format!("/v1/roles/{role}")),
        "Location"
    );
    let dup = t.call("POST", "/v1/roles", Some(&json!({"name": "AUDITOR"})))?;
    ensure_eq!(
        (dup.status, dup.code()),
        (409, "role_name_taken".to_owned()),
        "names are unique"
    );
    let builtin_name = t.call("POST", "/v1/roles", Some(&json!({"name": "Admin"})))?;
    ensure_eq!(
        (builtin_name.status, builtin_name.code()),
        (409, "role_name_taken".to_owned()),
        "built-in names are taken"
    );
    let list = t.call("GET", "/v1/roles", None)?.json();
    let names: Vec<&str> = list["roles"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    ensure_eq!(
        names,
        vec!["admin", "simple", "reviewer", "no_access", "Auditor"],
        "built-in, then custom"
    );

    let holder = t.create(&json!({"firstName": "R", "email": "r@example.com", "role": role}))?;
    let in_use = t.call("DELETE", &format!("/v1/roles/{role}"), None)?;
    ensure_eq!(
        (in_use.status, in_use.code()),
        (409, "role_in_use".to_owned()),
        "{}",
        in_use.text
    );
    ensure_eq!(
        t.call("DELETE", &format!("/v1/members/{holder}"), None)?
            .status,
        200,
        "deactivate the holder"
    );
    // A deactivated holder still holds it: a member never holds a role that does not exist.
    let still = t.call("DELETE", &format!("/v1/roles/{role}"), None)?;
    ensure_eq!(
        (still.status, still.code()),
        (409, "role_in_use".to_owned()),
        "a deactivated holder keeps the role: {}",
        still.text
    );
    ensure_eq!(
        t.patch_member(&holder, &json!({"role": "simple"}))?.status,
        200,
        "the deactivated holder gets another role"
    );
    ensure_eq!(
        t.call("DELETE", &format!("/v1/roles/{role}"), None)?.status,
        204,
        "unused: deleted"
    );
    ensure_eq!(
        t.call("DELETE", &format!("/v1/roles/{role}"), None)?.status,
        404,
        "deleted twice: gone"
    );
    for (what, body) in [
        (
            "an inactive create",
            json!({"firstName": "I", "email": "i@example.com", "role": role, "isActive": false}),
        ),
        (
            "an unknown role, inactive",
            json!({"firstName": "J", "email": "j@example.com", "role": "rol_doesnotexist", "isActive": false}),
        ),
    ] {
        let r = t.post_member(&body)?;
        ensure_eq!(
            (r.status, r.code()),
            (422, "unknown_role".to_owned()),
            "{what}: {}",
            r.text
        );
    }
    let gone = t.patch_member(&holder, &json!({"role": role}))?;
    ensure_eq!(
        (gone.status, gone.code()),
        (422, "unknown_role".to_owned()),
        "a deactivated member cannot take a deleted role: {}",
        gone.text
    );
    ensure_eq!(
        t.call("DELETE", "/v1/roles/admin", None)?.code(),
        "builtin_role",
        "built-in"
    );
    ensure_eq!(
        t.call("DELETE", "/v1/roles/rol_nosuchrole", None)?.status,
        404,
        "unknown"
    );
    let other = st.tenant(false).await?;
    let foreign = other.create(&json!({"firstName": "F", "email": "f@example.com", "role": role}));
    ensure!(
        foreign.is_err(),
        "another organisation's role id is not a role here"
    );

    // Racing: giving a role and deleting it at the same instant never leaves a holder of a
    // deleted role, whether the member is active or deactivated.
    let member =
        t.create(&json!({"firstName": "S", "email": "s@example.com", "role": "simple"}))?;
    assignment_races_deletion(st, &t, &member, "Race", 20).await?;
    // Racing: two deletions of one role (one 204, the other 404, never `role_in_use`), and a
    // deletion against a reactivation of a deactivated holder.
    for round in 0..10 {
        let made = t.call(
            "POST",
            "/v1/roles",
            Some(&json!({"name": format!("Twice {round}")})),
        )?;
        let role = made.json()["id"].as_str().unwrap_or_default().to_owned();
        let path = format!("/v1/roles/{role}");
        let replies = t.race(vec![
            ("DELETE", path.clone(), json!(null)),
            ("DELETE", path.clone(), json!(null)),
        ])?;
        let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        statuses.sort();
        ensure!(
            statuses == [204, 404] || statuses == [204, 204],
            "round {round}: two deletions answered {:?}",
            codes(&replies)
        );
    }
    ensure_eq!(
        t.call("DELETE", &format!("/v1/members/{member}"), None)?
            .status,
        200,
        "deactivate S"
    );
    assignment_races_deletion(st, &t, &member, "Dormant", 10).await?;
    let ids: BTreeSet<String> = st
        .items(&format!("ORG#{}#ROLE#", t.org))
        .await?
        .iter()
        .map(|i| members_tests::s(i, "id"))
        .collect();
    ensure!(ids.len() <= 31, "roles: {ids:?}");
    st.check_invariants(&t.org).await
}

/// `rounds` times: a new role, given to `member` and deleted at the same instant. Either may
/// win, never both (the invariants: no member holds a role that does not exist, and every
/// role counts its holders exactly); the member is given `simple` back after each round.
async fn assignment_races_deletion(
    st: &members_tests::Stack,
    t: &members_tests::Tenant,
    member: &str,
    label: &str,
    rounds: usize,
) -> TestResult {
    for round in 0..rounds {
        let made = t.call(
            "POST",
            "/v1/roles",
            Some(&json!({"name": format!("{label} {round}")})),
        )?;
        let role = made.json()["id"].as_str().unwrap_or_default().to_owned();
        let replies = t.race(vec![
            (
                "PATCH",
                format!("/v1/members/{member}"),
                json!({"role": role}),
            ),
            ("DELETE", format!("/v1/roles/{role}"), json!(null)),
        ])?;
        ensure!(
            replies.iter().all(|r| [200, 204].contains(&r.status)
                || ["role_in_use", "unknown_role"].contains(&r.code().as_str())),
            "{label} round {round}: unexpected answers: {:?}",
            codes(&replies)
        );
        st.check_invariants(&t.org).await?;
        if t.get_member(member)?.json()["role"] == role.as_str() {
            ensure_eq!(
                t.patch_member(member, &json!({"role": "simple"}))?.status,
                200,
                "{label} round {round}: reset"
            );
        }
    }
    Ok(())
}

/// Role names that only look different are one name (NFC, trimmed, confusable skeleton); names
/// with invisible, format or bidi characters are refused; member free text follows the same
/// character rules. Creating and deleting roles, and changing settings, are events of the
/// organisation's history, newest first.
pub async fn look_alike_names_are_refused_and_role_changes_have_history(
    ctx: Arc<Ctx>,
) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let create = |name: &str| t.call("POST", "/v1/roles", Some(&json!({"name": name})));
    let cafe = create("Caf\u{e9}")?;
    ensure_eq!(cafe.status, 201, "{}", cafe.text);
    let cafe_id = cafe.json()["id"].as_str().unwrap_or_default().to_owned();
    for (name, status, code) in [
        ("Admin\u{200b}", 422, "validation_failed"),
        ("Ad\u{202e}nimda", 422, "validation_failed"),
        ("Ops\u{2066}x\u{2069}", 422, "validation_failed"),
        (" admin ", 409, "role_name_taken"),
        ("\u{0430}dmin", 409, "role_name_taken"),
        ("ADM\u{0406}N", 409, "role_name_taken"),
        ("Cafe\u{301}", 409, "role_name_taken"),
        ("  CAF\u{c9} ", 409, "role_name_taken"),
    ] {
        let r = create(name)?;
        ensure_eq!(
            (r.status, r.code()),
            (status, code.to_owned()),
            "{name:?}: {}",
            r.text
        );
    }
    let spaced = create("  Team \u{3000}  lead ")?;
    ensure_eq!(
        (spaced.status, spaced.json()["name"].clone()),
        (201, json!("Team lead")),
        "stored NFC, trimmed, spaces folded: {}",
        spaced.text
    );

    // Member free text: the same characters refused, NFC and trimmed when stored.
    let bad = t.post_member(
        &json!({"firstName": "Eve\u{202e}gnp", "email": "eve@example.com", "role": "simple"}),
    )?;
    ensure_eq!(
        (bad.status, bad.json()["errors"][0]["field"].clone()),
        (422, json!("firstName")),
        "{}",
        bad.text
    );
    let ok = t.post_member(&json!({"firstName": " Jose\u{301} ", "jobTitle": "\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}", "email": "jose@example.com", "role": "simple"}))?;
    ensure_eq!(
        (
            ok.status,
            ok.json()["firstName"].clone(),
            ok.json()["jobTitle"].clone()
        ),
        (
            201,
            json!("Jos\u{e9}"),
            json!("\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}")
        ),
        "{}",
        ok.text
    );

    // The organisation's history: newest first, roles and settings, with the actor.
    ensure_eq!(
        t.call("DELETE", &format!("/v1/roles/{cafe_id}"), None)?
            .status,
        204,
        "delete Café"
    );
    ensure_eq!(
        t.patch_organization(&json!({"backgroundCheckRequired": true}))?
            .status,
        200,
        "a settings change"
    );
    let page = t.call("GET", "/v1/organization/audit-events?limit=2", None)?;
    ensure_eq!(page.status, 200, "{}", page.text);
    let first = page.json();
    let actions: Vec<String> = first["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure_eq!(
        actions,
        vec!["organization.updated", "role.deleted"],
        "newest first"
    );
    ensure_eq!(
        first["events"][1]["roleId"].as_str(),
        Some(cafe_id.as_str()),
        "the deleted role"
    );
    ensure_eq!(
        first["events"][1]["changes"]["name"],
        json!({"before": "Caf\u{e9}", "after": null}),
        "what was deleted"
    );
    let cursor = first["nextCursor"].as_str().unwrap_or_default().to_owned();
    ensure!(!cursor.is_empty(), "more pages: {}", page.text);
    let rest = t
        .call(
            "GET",
            &format!("/v1/organization/audit-events?cursor={cursor}"),
            None,
        )?
        .json();
    let older: Vec<&str> = rest["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    ensure_eq!(
        older,
        vec!["role.created", "role.created"],
        "Team lead, then Café"
    );
    ensure_eq!(rest["nextCursor"], json!(null), "the end");
    // Read with the read-only key; the member history cursor is not this one's.
    let read = members_tests::http(
        "GET",
        &format!("{}/v1/organization/audit-events", t.api),
        None,
        &[("Authorization", &format!("Bearer {}", t.read_key))],
        None,
    )?;
    ensure_eq!(read.status, 200, "r_members reads it");
    let foreign = t.call(
        "GET",
        &format!("/v1/members/{}/audit-events?cursor={cursor}", t.root),
        None,
    )?;
    ensure_eq!(foreign.status, 400, "a cursor of another history");
    st.check_invariants(&t.org).await
}
