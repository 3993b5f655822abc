//! SCIM 2.0 over the running stack: the request sequences of Okta's and Microsoft Entra ID's
//! provisioning guides, the rules and errors an identity provider meets, paging and
//! filters, races between SCIM and `/v1`, and scim2-tester's RFC checks.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, Reply, Tenant, TestResult};
use serde_json::{json, Value};
use shared::scim::{ENTERPRISE, ERROR, LIST, MEMBER, PATCH_OP, USER};
use std::sync::Arc;

fn patch_op(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

/// A reply that must have `status`, as a SCIM document when it has a body.
fn expect(r: Reply, status: u16, what: &str) -> Result<Value, String> {
    ensure!(
        r.status == status,
        "{what}: {} (want {status}) {}",
        r.status,
        r.text
    );
    if !r.text.is_empty() {
        ensure_eq!(
            r.header("content-type"),
            Some("application/scim+json"),
            "{what}: media type"
        );
    }
    Ok(r.json())
}

/// A SCIM error with `status` and `scim_type` (RFC 7644 §3.12): its detail is returned.
fn expect_error(
    r: Reply,
    status: u16,
    scim_type: Option<&str>,
    what: &str,
) -> Result<String, String> {
    let e = expect(r, status, what)?;
    ensure_eq!(e["schemas"], json!([ERROR]), "{what}: schemas");
    ensure_eq!(
        e["status"],
        json!(status.to_string()),
        "{what}: status is a string"
    );
    ensure_eq!(e["scimType"].as_str(), scim_type, "{what}: scimType");
    Ok(e["detail"].as_str().unwrap_or_default().to_owned())
}

fn find(t: &Tenant, filter: &str) -> Result<Value, String> {
    let q = urlencoding(filter);
    expect(
        t.scim("GET", &format!("/Users?filter={q}"), None, &[])?,
        200,
        filter,
    )
}

fn urlencoding(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Okta's SCIM 2.0 guide: find by userName, create, read, update (PUT), deactivate and
/// reactivate by PATCH; the member and its history follow in `/v1`.
pub async fn okta_provisioning_sequence(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let found = find(&t, "userName eq \"test.user@okta.local\"")?;
    ensure_eq!(
        (
            found["schemas"].clone(),
            found["totalResults"].clone(),
            found["Resources"].clone()
        ),
        (json!([LIST]), json!(0), json!([])),
        "nobody yet"
    );
    let create = json!({
        "schemas": [USER],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    });
    let r = t.scim("POST", "/Users", Some(&create), &[])?;
    let location = r.header("location").unwrap_or_default().to_owned();
    let user = expect(r, 201, "create")?;
    let id = user["id"].as_str().unwrap_or_default().to_owned();
    ensure!(
        location.ends_with(&format!("/scim/v2/Users/{id}")),
        "Location {location}"
    );
    ensure_eq!(user["meta"]["location"], json!(location), "meta.location");
    ensure_eq!(user["userName"], "test.user@okta.local", "userName");
    ensure_eq!(user["externalId"], "00ujl29u0le5T6Aj10h7", "externalId");
    ensure_eq!(user["meta"]["version"], "W/\"1\"", "version");
    ensure_eq!(
        user[MEMBER]["role"],
        "simple",
        "the organisation's default role"
    );
    ensure!(
        !user.to_string().contains("1mz050nq"),
        "a password never comes back"
    );
    // The member in /v1: the mapping of the README.
    let m = t.get_member(&id)?.json();
    ensure_eq!(
        (
            m["email"].clone(),
            m["firstName"].clone(),
            m["lastName"].clone(),
            m["name"].clone(),
            m["externalId"].clone()
        ),
        (
            json!("test.user@okta.local"),
            json!("Test"),
            json!("User"),
            json!("Test User"),
            json!("00ujl29u0le5T6Aj10h7")
        ),
        "the member"
    );
    ensure_eq!(
        m["settings"]["hasPassword"],
        false,
        "Okta's password is not kept"
    );
    // Okta looks the user up again by userName (any case) before each change.
    let found = find(&t, "userName eq \"TEST.USER@okta.local\"")?;
    ensure_eq!(found["totalResults"], 1, "found by userName");
    ensure_eq!(found["Resources"][0]["id"], json!(id), "the same user");
    let r = t.scim("GET", &format!("/Users/{id}"), None, &[])?;
    ensure_eq!(r.header("etag"), Some("W/\"1\""), "ETag");
    expect(r, 200, "read")?;
    // Profile update: Okta PUTs the whole user.
    let mut put = create.clone();
    put["name"]["familyName"] = json!("Userson");
    put["title"] = json!("Engineer");
    put["id"] = json!(id);
    let user = expect(
        t.scim("PUT", &format!("/Users/{id}"), Some(&put), &[])?,
        200,
        "put",
    )?;
    ensure_eq!(
        (user["name"]["familyName"].clone(), user["title"].clone()),
        (json!("Userson"), json!("Engineer")),
        "put"
    );
    // Deactivate, then reactivate: Okta's PATCH without a path.
    let off = patch_op(json!([{"op": "replace", "value": {"active": false}}]));
    let user = expect(
        t.scim("PATCH", &format!("/Users/{id}"), Some(&off), &[])?,
        200,
        "deactivate",
    )?;
    ensure_eq!(user["active"], false, "deactivated");
    // Still readable, as Okta's test suite requires.
    let user = expect(
        t.scim("GET", &format!("/Users/{id}"), None, &[])?,
        200,
        "read deactivated",
    )?;
    ensure_eq!(user["active"], false, "reads inactive");
    ensure_eq!(
        t.get_member(&id)?.json()["isActive"],
        false,
        "inactive in /v1"
    );
    let on = patch_op(json!([{"op": "replace", "value": {"active": true}}]));
    let user = expect(
        t.scim("PATCH", &format!("/Users/{id}"), Some(&on), &[])?,
        200,
        "reactivate",
    )?;
    ensure_eq!(
        (user["active"].clone(), user["meta"]["version"].clone()),
        (json!(true), json!("W/\"4\"")),
        "reactivated"
    );
    // The same writes as /v1's: in the member's history.
    let history = t
        .call("GET", &format!("/v1/members/{id}/audit-events"), None)?
        .json();
    let actions: Vec<&str> = history["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    ensure_eq!(
        actions,
        vec![
            "member.reactivated",
            "member.deactivated",
            "member.updated",
            "member.created"
        ],
        "history"
    );
    st.check_invariants(&t.org).await
}

/// Entra ID's provisioning: its probe filter, create with the enterprise extension, find by
/// externalId, its PATCH shapes (capitalised ops, booleans as strings, filtered paths),
/// DELETE, and provisioning the same userName again.
pub async fn entra_provisioning_sequence(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    // Entra's connection test: a filter on a random value.
    let probe = find(&t, "userName eq \"6d2a1b54-0c2e-4b2a-9a1b-5a0f7c1e9d3e\"")?;
    ensure_eq!(probe["totalResults"], 0, "probe");
    let create = json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee@contoso.com",
        "active": true,
        "displayName": "Adele Vance",
        "emails": [{"primary": true, "type": "work", "value": "Test_User_ab6490ee@contoso.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Adele Vance", "familyName": "Vance", "givenName": "Adele"},
        "roles": [],
        ENTERPRISE: {"department": "IT", "manager": {"value": "x"}}
    });
    let user = expect(t.scim("POST", "/Users", Some(&create), &[])?, 201, "create")?;
    let id = user["id"].as_str().unwrap_or_default().to_owned();
    ensure_eq!(user[ENTERPRISE]["department"], "it", "department, any case");
    let found = find(&t, "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"")?;
    ensure_eq!(
        found["Resources"][0]["id"],
        json!(id),
        "found by externalId"
    );
    let found = find(
        &t,
        "emails[type eq \"work\"].value eq \"test_user_ab6490ee@contoso.com\"",
    )?;
    ensure_eq!(found["totalResults"], 1, "found by work email");
    // A second create of the same userName is a conflict Entra understands.
    let detail = expect_error(
        t.scim("POST", "/Users", Some(&create), &[])?,
        409,
        Some("uniqueness"),
        "again",
    )?;
    ensure!(detail.contains("userName"), "{detail}");
    // Entra's PATCH: several operations, capitalised, with filtered paths and string booleans.
    let ops = patch_op(json!([
        {"op": "Replace", "path": "displayName", "value": "Adele V."},
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "adele@contoso.com"},
        {"op": "Replace", "path": "userName", "value": "adele@contoso.com"},
        {"op": "Replace", "path": "name.familyName", "value": "Vance-Smith"},
        {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": "HR"},
        {"op": "Add", "path": "title", "value": "Product Manager"},
        {"op": "Replace", "path": "active", "value": "False"}
    ]));
    let user = expect(
        t.scim("PATCH", &format!("/Users/{id}"), Some(&ops), &[])?,
        200,
        "patch",
    )?;
    ensure_eq!(
        (
            user["displayName"].clone(),
            user["userName"].clone(),
            user["name"]["familyName"].clone(),
            user[ENTERPRISE]["department"].clone(),
            user["title"].clone(),
            user["active"].clone()
        ),
        (
            json!("Adele V."),
            json!("adele@contoso.com"),
            json!("Vance-Smith"),
            json!("hr"),
            json!("Product Manager"),
            json!(false)
        ),
        "Entra's patch"
    );
    ensure_eq!(
        user["meta"]["version"],
        "W/\"2\"",
        "one write for all the operations"
    );
    let on = patch_op(json!([{"op": "Replace", "path": "active", "value": "True"}]));
    expect(
        t.scim("PATCH", &format!("/Users/{id}"), Some(&on), &[])?,
        200,
        "reactivate",
    )?;
    // A value Entra cannot map is refused with the allowed values.
    let bad = patch_op(
        json!([{"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": "Sales"}]),
    );
    let detail = expect_error(
        t.scim("PATCH", &format!("/Users/{id}"), Some(&bad), &[])?,
        400,
        Some("invalidValue"),
        "department",
    )?;
    ensure!(
        detail.contains("qms"),
        "names the allowed departments: {detail}"
    );
    // DELETE: gone from SCIM, kept (inactive) in /v1, its externalId released.
    let r = t.scim("DELETE", &format!("/Users/{id}"), None, &[])?;
    ensure_eq!(r.status, 204, "delete: {}", r.text);
    expect_error(
        t.scim("GET", &format!("/Users/{id}"), None, &[])?,
        404,
        None,
        "deleted",
    )?;
    expect_error(
        t.scim("PATCH", &format!("/Users/{id}"), Some(&on), &[])?,
        404,
        None,
        "patch deleted",
    )?;
    expect_error(
        t.scim("DELETE", &format!("/Users/{id}"), None, &[])?,
        404,
        None,
        "delete again",
    )?;
    ensure_eq!(
        find(&t, "userName eq \"adele@contoso.com\"")?["totalResults"],
        0,
        "not listed"
    );
    let list = expect(t.scim("GET", "/Users", None, &[])?, 200, "list")?;
    ensure!(!list.to_string().contains(&id), "not in the list");
    let m = t.get_member(&id)?.json();
    ensure_eq!(
        (
            m["isActive"].clone(),
            m["scimDeprovisioned"].clone(),
            m["externalId"].clone()
        ),
        (json!(false), json!(true), Value::Null),
        "kept in /v1"
    );
    st.check_invariants(&t.org).await?;
    // Provisioned again: the same member comes back, not a permanent 409.
    let mut again = create.clone();
    again["userName"] = json!("adele@contoso.com");
    again["emails"] = json!([{"primary": true, "type": "work", "value": "adele@contoso.com"}]);
    let user = expect(
        t.scim("POST", "/Users", Some(&again), &[])?,
        201,
        "provision again",
    )?;
    ensure_eq!(
        (user["id"].clone(), user["active"].clone()),
        (json!(id), json!(true)),
        "back"
    );
    ensure_eq!(user["name"]["familyName"], "Vance", "with what was sent");
    ensure_eq!(
        find(&t, "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"")?["totalResults"],
        1,
        "externalId again"
    );
    st.check_invariants(&t.org).await
}

/// What an identity provider meets when it breaks a rule or asks for what is not served,
/// and how lists page.
pub async fn scim_rules_errors_and_paging(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let root = t.root.to_string();
    // The last admin (the root, also the primary member) cannot go.
    let off = patch_op(json!([{"op": "replace", "value": {"active": false}}]));
    let detail = expect_error(
        t.scim("PATCH", &format!("/Users/{root}"), Some(&off), &[])?,
        400,
        Some("invalidValue"),
        "last admin",
    )?;
    ensure!(
        detail.contains("first") && detail.contains("then retry"),
        "says what to do: {detail}"
    );
    expect_error(
        t.scim("DELETE", &format!("/Users/{root}"), None, &[])?,
        400,
        Some("invalidValue"),
        "delete the primary",
    )?;
    let demote =
        patch_op(json!([{"op": "replace", "path": format!("{MEMBER}:role"), "value": "simple"}]));
    let detail = expect_error(
        t.scim("PATCH", &format!("/Users/{root}"), Some(&demote), &[])?,
        400,
        Some("invalidValue"),
        "demote",
    )?;
    ensure!(detail.contains("admin"), "{detail}");
    // Stale If-Match: 412; the right one: written.
    let title = patch_op(json!([{"op": "add", "path": "title", "value": "Founder"}]));
    expect_error(
        t.scim(
            "PATCH",
            &format!("/Users/{root}"),
            Some(&title),
            &[("If-Match", "W/\"99\"")],
        )?,
        412,
        None,
        "stale",
    )?;
    let user = expect(
        t.scim(
            "PATCH",
            &format!("/Users/{root}"),
            Some(&title),
            &[("If-Match", "W/\"1\"")],
        )?,
        200,
        "fresh",
    )?;
    ensure_eq!(user["title"], "Founder", "written");
    // Protocol errors carry RFC 7644's scimType.
    for (filter, what) in [
        ("title eq \"x\"", "unsupported attribute"),
        ("userName eq \"a\" or active eq true", "or"),
        ("userName sw \"a\"", "operator"),
    ] {
        let r = t.scim(
            "GET",
            &format!("/Users?filter={}", urlencoding(filter)),
            None,
            &[],
        )?;
        expect_error(r, 400, Some("invalidFilter"), what)?;
    }
    let r = t.scim("GET", "/Users?startIndex=10001", None, &[])?;
    ensure!(
        expect_error(r, 400, Some("invalidValue"), "startIndex")?.contains("10000"),
        "startIndex cap"
    );
    let remove = patch_op(json!([{"op": "remove", "path": "userName"}]));
    expect_error(
        t.scim("PATCH", &format!("/Users/{root}"), Some(&remove), &[])?,
        400,
        Some("mutability"),
        "remove userName",
    )?;
    let bad_path = patch_op(json!([{"op": "replace", "path": "emails[type eq", "value": "x"}]));
    expect_error(
        t.scim("PATCH", &format!("/Users/{root}"), Some(&bad_path), &[])?,
        400,
        Some("invalidPath"),
        "path",
    )?;
    let r = t.scim(
        "POST",
        "/Users",
        None,
        &[("Content-Type", "application/scim+json")],
    )?;
    expect_error(r, 400, Some("invalidSyntax"), "empty body")?;
    expect_error(t.scim("GET", "/Groups", None, &[])?, 404, None, "no Groups")?;
    let schema = expect(
        t.scim("GET", &format!("/Schemas/{}", urlencoding(USER)), None, &[])?,
        200,
        "encoded schema id",
    )?;
    ensure_eq!(
        schema["id"],
        json!(USER),
        "a percent-encoded URN names the schema"
    );
    expect_error(
        t.scim("POST", "/.search", Some(&json!({})), &[])?,
        501,
        None,
        "search",
    )?;
    let r = t.scim("DELETE", "/ServiceProviderConfig", None, &[])?;
    ensure_eq!(r.header("allow"), Some("GET"), "405 with Allow");
    expect_error(r, 405, None, "method")?;
    // externalId is unique too.
    let user = |n: usize, active: bool| {
        json!({"userName": format!("u{n}@example.com"), "name": {"givenName": format!("U{n}")},
               "externalId": format!("ext-{n}"), "active": active})
    };
    expect(
        t.scim("POST", "/Users", Some(&user(0, true)), &[])?,
        201,
        "u0",
    )?;
    let mut clash = user(1, true);
    clash["externalId"] = json!("ext-0");
    expect_error(
        t.scim("POST", "/Users", Some(&clash), &[])?,
        409,
        Some("uniqueness"),
        "externalId",
    )?;
    // Paging: whatever the page size, every user exactly once, totalResults exact.
    for n in 1..=6 {
        expect(
            t.scim("POST", "/Users", Some(&user(n, n % 3 != 0)), &[])?,
            201,
            "user",
        )?;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut start = 1;
    loop {
        let page = expect(
            t.scim(
                "GET",
                &format!("/Users?startIndex={start}&count=3"),
                None,
                &[],
            )?,
            200,
            "page",
        )?;
        ensure_eq!(
            page["totalResults"],
            8,
            "totalResults: the root and 7 users"
        );
        let ids: Vec<String> = page["Resources"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|u| u["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ensure_eq!(page["itemsPerPage"], json!(ids.len()), "itemsPerPage");
        if ids.is_empty() {
            break;
        }
        seen.extend(ids);
        start += 3;
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    ensure_eq!(
        (seen.len(), unique.len()),
        (8, 8),
        "each user once: {seen:?}"
    );
    let inactive = find(&t, "active eq false")?;
    ensure_eq!(inactive["totalResults"], 2, "u3 and u6 are inactive");
    let count = expect(t.scim("GET", "/Users?count=0", None, &[])?, 200, "count=0")?;
    ensure_eq!(
        (count["totalResults"].clone(), count["Resources"].clone()),
        (json!(8), json!([])),
        "count=0"
    );
    // meta.lastModified: counted on the index (eventually consistent, like any GSI read).
    let since = st
        .member(&t.org, &root)
        .await?
        .map(|m| m.updated_at.to_string())
        .unwrap_or_default();
    let recent = find(
        &t,
        &format!("meta.lastModified gt \"{since}\" and active eq true"),
    )?;
    let n = recent["Resources"].as_array().map_or(0, Vec::len);
    ensure_eq!(
        recent["totalResults"],
        json!(n),
        "totalResults is what is listed"
    );
    ensure_eq!(n, 5, "the active users changed after the root's title");
    // attributes / excludedAttributes.
    let some = expect(
        t.scim(
            "GET",
            &format!("/Users/{root}?attributes=userName,name.givenName"),
            None,
            &[],
        )?,
        200,
        "attributes",
    )?;
    let mut keys: Vec<&String> = some
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    keys.sort();
    ensure_eq!(
        keys,
        vec!["id", "name", "schemas", "userName"],
        "only what was asked"
    );
    let less = expect(
        t.scim(
            "GET",
            &format!("/Users?excludedAttributes=emails,{MEMBER}"),
            None,
            &[],
        )?,
        200,
        "excluded",
    )?;
    ensure!(
        less["Resources"].as_array().is_some_and(|r| r
            .iter()
            .all(|u| u.get("emails").is_none() && u.get(MEMBER).is_none())),
        "excluded"
    );
    st.check_invariants(&t.org).await
}

/// Two active admins; SCIM deactivates one while `/v1` demotes the other, 200 times: at most
/// one of the two writes wins, and the organisation never has zero admins.
pub async fn scim_deactivation_races_v1_demotion(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let root = t.root.to_string();
    let admin = json!({"userName": "second.admin@example.com", "displayName": "Second Admin", MEMBER: {"role": "admin"}});
    let other = expect(t.scim("POST", "/Users", Some(&admin), &[])?, 201, "admin")?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let off = patch_op(json!([{"op": "replace", "value": {"active": false}}]));
    let on = patch_op(json!([{"op": "replace", "value": {"active": true}}]));
    let (mut scim_won, mut v1_won) = (0, 0);
    let rounds = std::env::var("SCIM_RACE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    for round in 0..rounds {
        let scim = {
            let (t, path, body) = (t.clone(), format!("/Users/{other}"), off.clone());
            std::thread::spawn(move || t.scim("PATCH", &path, Some(&body), &[]))
        };
        let v1 = t.patch_member(&root, &json!({"role": "simple"}))?;
        let scim = scim.join().map_err(|_| "thread panicked".to_owned())??;
        match (scim.status, v1.status) {
            (200, 422) => {
                scim_won += 1;
                ensure_eq!(
                    v1.code(),
                    "last_admin",
                    "round {round}: /v1 refused by the rule"
                );
                expect(
                    t.scim("PATCH", &format!("/Users/{other}"), Some(&on), &[])?,
                    200,
                    "back on",
                )?;
            }
            (400, 200) => {
                v1_won += 1;
                ensure!(
                    scim.text.contains("invalidValue"),
                    "round {round}: {}",
                    scim.text
                );
                ensure_eq!(
                    t.patch_member(&root, &json!({"role": "admin"}))?.status,
                    200,
                    "round {round}: root admin again"
                );
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
        if round % 50 == 0 {
            st.check_invariants(&t.org).await?;
        }
    }
    eprintln!("scim vs /v1 races: SCIM won {scim_won}, /v1 won {v1_won} of {rounds}");
    st.check_invariants(&t.org).await
}

/// scim2-tester (PyPI), every check it has for what ServiceProviderConfig announces, in an
/// organisation of its own; its figures are printed for the summary.
pub async fn scim2_tester_passes(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let root = members_tests::workspace_root();
    let report = st.dir.join("scim2-tester.json");
    let out = std::process::Command::new(root.join(".local/scim-venv/bin/python"))
        .arg(root.join("tests/scim/run_tester.py"))
        .args(["--url", &format!("{}/scim/v2", t.api)])
        .arg("--json")
        .arg(&report)
        .env("SCIM_TOKEN", &t.scim_key)
        .output()
        .map_err(|e| format!("scim2-tester: {e} (run `make deps`)"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("scim2-tester:"))
        .unwrap_or("no summary")
        .to_owned();
    eprintln!("{summary}");
    ensure!(
        out.status.success(),
        "{summary}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    st.check_invariants(&t.org).await
}
