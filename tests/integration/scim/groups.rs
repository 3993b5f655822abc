//! SCIM Groups as Okta and Entra ID push them: memberships, roles from groups, a
//! membership change that would leave no admin refused whole, races with `/v1`, and a
//! 1,000-member PATCH.

use super::{expect, expect_error, patch_op, urlencoding};
use crate::Ctx;
use members_tests::{ensure, ensure_eq, Tenant, TestResult};
use serde_json::{json, Value};
use shared::scim::{GROUP, MEMBER, USER};
use std::sync::Arc;

/// A user provisioned through SCIM: its SCIM id.
fn user(t: &Tenant, name: &str) -> Result<String, String> {
    let body = json!({"schemas": [USER], "userName": format!("{name}@corp.example"),
                      "name": {"givenName": name}, "active": true});
    let user = expect(t.scim("POST", "/Users", Some(&body), &[])?, 201, name)?;
    Ok(user["id"].as_str().unwrap_or_default().to_owned())
}

fn group(t: &Tenant, name: &str, members: &[&str]) -> Result<String, String> {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    let body = json!({"schemas": [GROUP], "displayName": name, "members": members});
    let g = expect(t.scim("POST", "/Groups", Some(&body), &[])?, 201, name)?;
    Ok(g["id"].as_str().unwrap_or_default().to_owned())
}

fn ids(group: &Value) -> Vec<String> {
    let mut out: Vec<String> = group["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

fn role(t: &Tenant, id: &str) -> Result<String, String> {
    Ok(t.get_member(id)?.json()["role"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Okta's group push: create the group empty, find it by name, add members in a batch,
/// re-send `{id, displayName}` with each change, remove by filter, rename, delete.
pub async fn okta_group_push_sequence(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let (a, b, c) = (user(&t, "ann")?, user(&t, "ben")?, user(&t, "cat")?);
    let gid = group(&t, "Engineering", &[])?;
    let path = format!("/Groups/{gid}");
    let found = expect(
        t.scim(
            "GET",
            &format!(
                "/Groups?filter={}&excludedAttributes=members",
                urlencoding("displayName eq \"engineering\"")
            ),
            None,
            &[],
        )?,
        200,
        "find by name",
    )?;
    ensure_eq!(found["totalResults"], 1, "found by name in any case");
    ensure_eq!(found["Resources"][0]["id"], json!(gid), "the group");
    ensure!(
        found["Resources"][0].get("members").is_none(),
        "members excluded"
    );
    // The same name in another case: taken.
    let dup = json!({"schemas": [GROUP], "displayName": "ENGINEERING"});
    expect_error(
        t.scim("POST", "/Groups", Some(&dup), &[])?,
        409,
        Some("uniqueness"),
        "name taken",
    )?;
    let add = patch_op(json!([
        {"op": "replace", "value": {"id": gid, "displayName": "Engineering"}},
        {"op": "add", "path": "members", "value": [{"value": a, "display": "ann"}, {"value": b}]},
    ]));
    let g = expect(t.scim("PATCH", &path, Some(&add), &[])?, 200, "add")?;
    ensure_eq!(ids(&g), sorted(&[&a, &b]), "added");
    // The same add again changes nothing.
    let again = expect(t.scim("PATCH", &path, Some(&add), &[])?, 200, "add again")?;
    ensure_eq!(again["meta"]["version"], g["meta"]["version"], "a no-op");
    let remove = patch_op(json!([
        {"op": "replace", "value": {"id": gid, "displayName": "Engineering"}},
        {"op": "remove", "path": format!("members[value eq \"{a}\"]")},
        {"op": "remove", "path": format!("members[value eq \"{c}\"]")},
    ]));
    let g = expect(t.scim("PATCH", &path, Some(&remove), &[])?, 200, "remove")?;
    ensure_eq!(ids(&g), sorted(&[&b]), "removed (an absent member: no-op)");
    // Each user reads its groups.
    let ub = expect(t.scim("GET", &format!("/Users/{b}"), None, &[])?, 200, "b")?;
    ensure_eq!(ub["groups"][0]["value"], json!(gid), "b's groups");
    let ua = expect(t.scim("GET", &format!("/Users/{a}"), None, &[])?, 200, "a")?;
    ensure!(ua.get("groups").is_none(), "a is in no group: {ua}");
    ensure_eq!(
        t.get_member(&b)?.json()["scimGroups"],
        json!([gid]),
        "/v1 shows it"
    );
    // A user's groups are read-only.
    let set = patch_op(json!([{"op": "add", "path": "groups", "value": [{"value": gid}]}]));
    expect_error(
        t.scim("PATCH", &format!("/Users/{a}"), Some(&set), &[])?,
        400,
        Some("mutability"),
        "groups are read-only",
    )?;
    // Rename; PUT keeps the members it does not mention.
    let rename = patch_op(json!([{"op": "replace", "value": {"id": gid, "displayName": "Eng"}}]));
    let g = expect(t.scim("PATCH", &path, Some(&rename), &[])?, 200, "rename")?;
    ensure_eq!(g["displayName"], "Eng", "renamed");
    let put = json!({"schemas": [GROUP], "displayName": "Engineering", "externalId": "00g1"});
    let g = expect(t.scim("PUT", &path, Some(&put), &[])?, 200, "put")?;
    ensure_eq!(
        (g["displayName"].clone(), g["externalId"].clone(), ids(&g)),
        (json!("Engineering"), json!("00g1"), sorted(&[&b])),
        "put"
    );
    let by_external = expect(
        t.scim(
            "GET",
            &format!("/Groups?filter={}", urlencoding("externalId eq \"00g1\"")),
            None,
            &[],
        )?,
        200,
        "by externalId",
    )?;
    ensure_eq!(by_external["totalResults"], 1, "found by externalId");
    // A stale If-Match is 412.
    expect_error(
        t.scim("PATCH", &path, Some(&rename), &[("If-Match", "W/\"1\"")])?,
        412,
        None,
        "stale",
    )?;
    // An unknown id: 400 naming it, nothing applied.
    let ghost = "mem_01ghost000000000000000000";
    let bad = patch_op(
        json!([{"op": "add", "path": "members", "value": [{"value": a}, {"value": ghost}]}]),
    );
    let detail = expect_error(
        t.scim("PATCH", &path, Some(&bad), &[])?,
        400,
        Some("invalidValue"),
        "unknown member",
    )?;
    ensure!(detail.contains(ghost), "names it: {detail}");
    let g = expect(t.scim("GET", &path, None, &[])?, 200, "read")?;
    ensure_eq!(ids(&g), sorted(&[&b]), "nothing applied");
    // Delete: gone for ever, and out of its members.
    let r = t.scim("DELETE", &path, None, &[])?;
    ensure_eq!(r.status, 204, "delete: {}", r.text);
    expect_error(t.scim("GET", &path, None, &[])?, 404, None, "deleted")?;
    ensure_eq!(
        t.get_member(&b)?.json()["scimGroups"],
        json!([]),
        "b left it"
    );
    // The organisation's history has the group's events, with the acting key; a key
    // without the scope `scim` does not see them (a group is read with `scim`).
    let mut actions = Vec::new();
    for item in st.items(&format!("ORG#{}#AUDIT", t.org)).await? {
        let e = st
            .store
            .read_outbox_entry(item)
            .map_err(|e| format!("an audit entry: {e:?}"))?;
        if e.action.starts_with("group.") {
            ensure!(e.actor_key_id.is_some(), "{}: the acting key", e.action);
            actions.push(e.action);
        }
    }
    ensure!(
        ["group.created", "group.updated", "group.deleted"]
            .iter()
            .all(|a| actions.iter().any(|x| x == a)),
        "group events: {actions:?}"
    );
    let history = t.call("GET", "/v1/organization/audit-events", None)?;
    ensure!(
        !history.text.contains("group."),
        "a members key sees no group event: {}",
        history.text
    );
    st.check_invariants(&t.org).await
}

/// Entra ID's group shapes (capitalised ops, `Add` with `$ref: null`, `Remove` with a value
/// array), with a group → role mapping: the first listed group wins, `/v1` cannot change a
/// mapped role, and a membership change that would leave no admin is refused whole.
pub async fn entra_groups_decide_roles(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let root = t.root.to_string();
    let (a, b, c) = (user(&t, "ada")?, user(&t, "bob")?, user(&t, "cy")?);
    let custom = t
        .call("POST", "/v1/roles", Some(&json!({"name": "Auditor"})))?
        .json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let admins = group(&t, "Admins", &[])?;
    let auditors = group(&t, "Auditors", &[])?;
    let mapping = json!({"scim": {"groupRoles": [
        {"groupId": admins, "role": "admin"},
        {"groupId": auditors, "role": custom},
    ]}});
    let r = t.call("PATCH", "/v1/organization", Some(&mapping))?;
    ensure_eq!(r.status, 200, "mapping: {}", r.text);
    ensure_eq!(
        r.json()["scim"]["groupRoles"][0]["groupId"],
        json!(admins),
        "shown"
    );
    // Provisioned users in no mapped group have the default role.
    ensure_eq!(role(&t, &a)?, "simple", "default role");
    let add = |id: &str| {
        patch_op(json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": id}]}]))
    };
    let remove =
        |id: &str| patch_op(json!([{"op": "Remove", "path": "members", "value": [{"value": id}]}]));
    expect(
        t.scim("PATCH", &format!("/Groups/{admins}"), Some(&add(&a)), &[])?,
        200,
        "a → admins",
    )?;
    expect(
        t.scim("PATCH", &format!("/Groups/{auditors}"), Some(&add(&b)), &[])?,
        200,
        "b → auditors",
    )?;
    expect(
        t.scim("PATCH", &format!("/Groups/{auditors}"), Some(&add(&a)), &[])?,
        200,
        "a → auditors",
    )?;
    ensure_eq!(
        (role(&t, &a)?, role(&t, &b)?),
        ("admin".to_owned(), custom.clone()),
        "the first listed group decides"
    );
    let u = expect(t.scim("GET", &format!("/Users/{a}"), None, &[])?, 200, "a")?;
    ensure_eq!(u[MEMBER]["role"], "admin", "SCIM shows the role");
    // A mapped role is the identity provider's.
    let r = t.patch_member(&a, &json!({"role": "reviewer"}))?;
    ensure_eq!(
        (r.status, r.code()),
        (409, "role_managed_by_idp".to_owned()),
        "/v1: {}",
        r.text
    );
    // Entra's default Remove: path members, a value array (defined above).
    expect(
        t.scim(
            "PATCH",
            &format!("/Groups/{admins}"),
            Some(&remove(&a)),
            &[],
        )?,
        200,
        "a out of admins",
    )?;
    ensure_eq!(role(&t, &a)?, custom, "the next group decides");
    // A member created through /v1 is under the identity provider once in a group: in
    // Admins it is an admin; out of its last group it has the default role again, and the
    // admin's collaboration rule it had goes with the role (no refusal).
    let v = t.create(&json!({"firstName": "V", "email": "v@example.com", "role": "simple"}))?;
    expect(
        t.scim("PATCH", &format!("/Groups/{admins}"), Some(&add(&v)), &[])?,
        200,
        "v → admins",
    )?;
    ensure_eq!(role(&t, &v)?, "admin", "a /v1 member in an admins group");
    let rules =
        json!({"collaborationRules": [{"role": "admin", "departments": [], "locations": []}]});
    ensure_eq!(t.patch_member(&v, &rules)?.status, 200, "an admin's rule");
    expect(
        t.scim(
            "PATCH",
            &format!("/Groups/{admins}"),
            Some(&remove(&v)),
            &[],
        )?,
        200,
        "v out",
    )?;
    let m = t.get_member(&v)?.json();
    ensure_eq!(
        (m["role"].clone(), m["collaborationRules"].clone()),
        (json!("simple"), json!([])),
        "out of its last group: the default role, without the admin's rule"
    );
    // A user in groups deleted through SCIM: out of its groups, then deactivated.
    let d = user(&t, "dee")?;
    expect(
        t.scim("PATCH", &format!("/Groups/{auditors}"), Some(&add(&d)), &[])?,
        200,
        "d → auditors",
    )?;
    let r = t.scim("DELETE", &format!("/Users/{d}"), None, &[])?;
    ensure_eq!(r.status, 204, "delete a user in a group: {}", r.text);
    let m = t.get_member(&d)?.json();
    ensure_eq!(
        (m["isActive"].clone(), m["scimGroups"].clone()),
        (json!(false), json!([])),
        "deprovisioned, in no group"
    );
    // A PUT naming a member twice: once.
    let put = json!({"schemas": [GROUP], "displayName": "Auditors",
                     "members": [{"value": a}, {"value": b}, {"value": b}]});
    let g = expect(
        t.scim("PUT", &format!("/Groups/{auditors}"), Some(&put), &[])?,
        200,
        "put",
    )?;
    ensure_eq!(ids(&g), sorted(&[&a, &b]), "each member once");
    // c is the only admin besides root; root steps down: the group holds the last admin.
    expect(
        t.scim("PATCH", &format!("/Groups/{admins}"), Some(&add(&c)), &[])?,
        200,
        "c → admins",
    )?;
    let r = t.patch_member(&root, &json!({"role": "simple"}))?;
    ensure_eq!(r.status, 200, "root steps down: {}", r.text);
    let detail = expect_error(
        t.scim(
            "PATCH",
            &format!("/Groups/{admins}"),
            Some(&remove(&c)),
            &[],
        )?,
        400,
        Some("invalidValue"),
        "the last admin leaves",
    )?;
    ensure!(detail.contains("last_admin"), "names the rule: {detail}");
    let detail = expect_error(
        t.scim("DELETE", &format!("/Groups/{admins}"), None, &[])?,
        400,
        Some("invalidValue"),
        "delete the last admins' group",
    )?;
    ensure!(detail.contains("last_admin"), "names the rule: {detail}");
    ensure_eq!(role(&t, &c)?, "admin", "nothing applied");
    // A mapping that would leave no admin is refused whole too.
    let r = t.call(
        "PATCH",
        "/v1/organization",
        Some(&json!({"scim": {"groupRoles": [{"groupId": auditors, "role": "admin"}]}})),
    )?;
    ensure_eq!(r.status, 200, "auditors are admins now: {}", r.text);
    ensure_eq!(
        (role(&t, &a)?, role(&t, &b)?, role(&t, &c)?),
        ("admin".to_owned(), "admin".to_owned(), "simple".to_owned()),
        "every member under the identity provider got the role the new mapping decides"
    );
    let r = t.call(
        "PATCH",
        "/v1/organization",
        Some(&json!({"scim": {"groupRoles": [{"groupId": admins, "role": "admin"}]}})),
    )?;
    ensure_eq!(r.status, 200, "back: {}", r.text);
    let r = t.call(
        "PATCH",
        "/v1/organization",
        Some(&json!({"scim": {"groupRoles": [], "defaultRole": "reviewer"}})),
    )?;
    ensure_eq!(r.status, 200, "no mapping: {}", r.text);
    ensure_eq!(role(&t, &c)?, "admin", "without a mapping, roles stay");
    // Entra renames with Replace.
    let rename =
        patch_op(json!([{"op": "Replace", "path": "displayName", "value": "Administrators"}]));
    let g = expect(
        t.scim("PATCH", &format!("/Groups/{admins}"), Some(&rename), &[])?,
        200,
        "rename",
    )?;
    ensure_eq!(g["displayName"], "Administrators", "renamed");
    st.check_invariants(&t.org).await
}

/// Two admins: root (`/v1`) and one through a group. The group loses its member while
/// `/v1` demotes root, many times: at most one wins, never zero admins. Two PATCHes adding
/// different members to one group at once both land.
pub async fn group_membership_races_v1_demotion(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let root = t.root.to_string();
    let a = user(&t, "amy")?;
    let admins = group(&t, "Admins", &[&a])?;
    let mapping = json!({"scim": {"groupRoles": [{"groupId": admins, "role": "admin"}]}});
    ensure_eq!(
        t.call("PATCH", "/v1/organization", Some(&mapping))?.status,
        200,
        "mapping"
    );
    ensure_eq!(role(&t, &a)?, "admin", "a is an admin through the group");
    let path = format!("/Groups/{admins}");
    let leave = patch_op(json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")}]));
    let join = patch_op(json!([{"op": "add", "path": "members", "value": [{"value": a}]}]));
    let rounds = std::env::var("SCIM_RACE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let (mut group_won, mut v1_won) = (0, 0);
    for round in 0..rounds {
        let scim = {
            let (t, path, body) = (t.clone(), path.clone(), leave.clone());
            std::thread::spawn(move || t.scim("PATCH", &path, Some(&body), &[]))
        };
        // The group's change reads more before it writes: /v1 starts a little later, by a
        // varying amount, so that either may write first.
        std::thread::sleep(std::time::Duration::from_millis(15 * (round % 12) as u64));
        let v1 = t.patch_member(&root, &json!({"role": "simple"}))?;
        let scim = scim.join().map_err(|_| "thread panicked".to_owned())??;
        match (scim.status, v1.status) {
            (200, 422) => {
                group_won += 1;
                ensure_eq!(v1.code(), "last_admin", "round {round}");
                expect(t.scim("PATCH", &path, Some(&join), &[])?, 200, "back in")?;
            }
            (400, 200) => {
                v1_won += 1;
                ensure!(
                    scim.text.contains("last_admin"),
                    "round {round}: {}",
                    scim.text
                );
                let r = t.patch_member(&root, &json!({"role": "admin"}))?;
                ensure_eq!(r.status, 200, "round {round}: root admin again");
            }
            other => {
                return Err(format!(
                    "round {round}: {other:?}: {} / {}",
                    scim.text, v1.text
                ))
            }
        }
        let c = st.organization(&t.org).await?.counters;
        ensure_eq!(c.active_admins, 2, "round {round}: both admins again");
    }
    eprintln!("group vs /v1 races: the group won {group_won}, /v1 won {v1_won} of {rounds}");
    // Concurrent adds of different members to one group: each lands.
    let others: Vec<String> = (0..6)
        .map(|i| user(&t, &format!("racer{i}")))
        .collect::<Result<_, _>>()?;
    let handles: Vec<_> = others
        .iter()
        .map(|id| {
            let (t, path) = (t.clone(), path.clone());
            let body =
                patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));
            std::thread::spawn(move || t.scim("PATCH", &path, Some(&body), &[]))
        })
        .collect();
    for h in handles {
        let r = h.join().map_err(|_| "thread panicked".to_owned())??;
        ensure_eq!(r.status, 200, "a concurrent add: {}", r.text);
    }
    let g = expect(t.scim("GET", &path, None, &[])?, 200, "read")?;
    ensure_eq!(ids(&g).len(), 7, "every concurrent add landed: {g}");
    st.check_invariants(&t.org).await
}

/// Okta pushes up to 1,000 members in one PATCH: every one joins (each its own member
/// write), the answer lists them all and stays far below 6 MB, and the same PATCH again
/// changes nothing.
pub async fn a_thousand_member_patch(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let n = 1000;
    let mut users = Vec::with_capacity(n);
    // Provisioned 25 at a time, as an identity provider would.
    for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|i| {
                let t = t.clone();
                let i = *i;
                std::thread::spawn(move || user(&t, &format!("bulk{i:04}")))
            })
            .collect();
        for h in handles {
            users.push(h.join().map_err(|_| "thread panicked".to_owned())??);
        }
    }
    let gid = group(&t, "Everyone", &[])?;
    let members: Vec<Value> = users.iter().map(|u| json!({"value": u})).collect();
    let add = patch_op(json!([{"op": "add", "path": "members", "value": members}]));
    let started = std::time::Instant::now();
    let r = t.scim("PATCH", &format!("/Groups/{gid}"), Some(&add), &[])?;
    let took = started.elapsed();
    ensure!(
        r.text.len() < 6 * 1024 * 1024,
        "answer {} bytes",
        r.text.len()
    );
    let g = expect(r, 200, "a thousand members")?;
    ensure_eq!(ids(&g).len(), n, "every member joined");
    eprintln!(
        "a 1,000-member group PATCH took {:.1} s locally",
        took.as_secs_f64()
    );
    let r = t.scim("PATCH", &format!("/Groups/{gid}"), Some(&add), &[])?;
    let again = expect(r, 200, "again")?;
    ensure_eq!(again["meta"]["version"], g["meta"]["version"], "a no-op");
    st.check_invariants(&t.org).await
}
