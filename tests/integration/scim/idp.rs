//! The request sequences of Okta's and Microsoft Entra ID's SCIM provisioning guides.

use super::{expect, expect_error, find, patch_op};
use crate::Ctx;
use members_tests::{ensure, ensure_eq, TestResult};
use serde_json::{json, Value};
use shared::scim::{ENTERPRISE, LIST, MEMBER, USER};
use std::sync::Arc;

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
    // The member in /v1: the mapping of docs/scim.md.
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

/// Entra ID's provisioning with its default mapping (userPrincipalName → userName, mail →
/// the work email, two different values): its probe filter, create with the enterprise
/// extension, find by externalId, its PATCH shapes (capitalised ops, booleans as strings,
/// filtered paths), values read back as sent, DELETE (that id 404 for ever), and
/// provisioning the same userName again (a new SCIM id, the same member).
pub async fn entra_provisioning_sequence(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    // Entra's connection test: a filter on a random value.
    let probe = find(&t, "userName eq \"6d2a1b54-0c2e-4b2a-9a1b-5a0f7c1e9d3e\"")?;
    ensure_eq!(probe["totalResults"], 0, "probe");
    let upn = "AdeleV@contoso.onmicrosoft.com";
    let create = json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": upn,
        "active": true,
        "displayName": "Adele Vance",
        "emails": [{"primary": true, "type": "work", "value": "Adele.Vance@contoso.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Adele Vance", "familyName": "Vance", "givenName": "Adele"},
        "roles": [],
        ENTERPRISE: {"department": "IT", "manager": {"value": "x"}}
    });
    let user = expect(t.scim("POST", "/Users", Some(&create), &[])?, 201, "create")?;
    let id = user["id"].as_str().unwrap_or_default().to_owned();
    ensure_eq!(
        (
            user["userName"].clone(),
            user["emails"][0]["value"].clone(),
            user[ENTERPRISE]["department"].clone()
        ),
        (json!(upn), json!("Adele.Vance@contoso.com"), json!("IT")),
        "userName and the work email as two values, the department as sent"
    );
    let m = t.get_member(&id)?.json();
    ensure_eq!(
        (
            m["email"].clone(),
            m["scimUserName"].clone(),
            m["department"].clone()
        ),
        (json!("Adele.Vance@contoso.com"), json!(upn), json!("it")),
        "/v1 shows both"
    );
    // If-None-Match with the current version: 304, nothing sent again.
    let etag = t
        .scim("GET", &format!("/Users/{id}"), None, &[])?
        .header("etag")
        .unwrap_or_default()
        .to_owned();
    let r = t.scim(
        "GET",
        &format!("/Users/{id}"),
        None,
        &[("If-None-Match", &etag)],
    )?;
    ensure_eq!((r.status, r.text.as_str()), (304, ""), "not modified");
    let found = find(&t, "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"")?;
    ensure_eq!(
        found["Resources"][0]["id"],
        json!(id),
        "found by externalId"
    );
    for filter in [
        format!("userName eq \"{}\"", upn.to_lowercase()),
        "emails[type eq \"work\"].value eq \"adele.vance@contoso.com\"".into(),
        format!("userName eq \"{upn}\" and emails.value eq \"Adele.Vance@contoso.com\""),
    ] {
        ensure_eq!(find(&t, &filter)?["totalResults"], 1, "found by {filter}");
    }
    ensure_eq!(
        find(&t, "userName eq \"Adele.Vance@contoso.com\"")?["totalResults"],
        0,
        "the email is not the userName"
    );
    // A second create of the same userName (any case) is a conflict Entra understands, and
    // so is a userName that is another member's email.
    let mut same = create.clone();
    same["userName"] = json!(upn.to_uppercase());
    same["emails"] = json!([{"type": "work", "value": "other@contoso.com"}]);
    let detail = expect_error(
        t.scim("POST", "/Users", Some(&same), &[])?,
        409,
        Some("uniqueness"),
        "again",
    )?;
    ensure!(detail.contains("userName"), "{detail}");
    let mut taken = same.clone();
    taken["userName"] = json!("adele.vance@contoso.com");
    expect_error(
        t.scim("POST", "/Users", Some(&taken), &[])?,
        409,
        Some("uniqueness"),
        "a userName that is another member's email",
    )?;
    // Entra's PATCH: several operations, capitalised, with filtered paths and string
    // booleans; `attributes` applies to the answer.
    let new_upn = "Adele.Vance@contoso.onmicrosoft.com";
    let ops = patch_op(json!([
        {"op": "Replace", "path": "displayName", "value": "Adele V."},
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "adele@contoso.com"},
        {"op": "Replace", "path": "userName", "value": new_upn},
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
            user["emails"][0]["value"].clone(),
            user["name"]["familyName"].clone(),
            user[ENTERPRISE]["department"].clone(),
            user["title"].clone(),
            user["active"].clone()
        ),
        (
            json!("Adele V."),
            json!(new_upn),
            json!("adele@contoso.com"),
            json!("Vance-Smith"),
            json!("HR"),
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
    ensure_eq!(
        find(&t, &format!("userName eq \"{upn}\""))?["totalResults"],
        0,
        "old userName released"
    );
    let on = patch_op(json!([{"op": "Replace", "path": "active", "value": "True"}]));
    let user = expect(
        t.scim(
            "PATCH",
            &format!("/Users/{id}?attributes=userName,active"),
            Some(&on),
            &[],
        )?,
        200,
        "reactivate",
    )?;
    let mut shown: Vec<&String> = user
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    shown.sort();
    ensure_eq!(
        shown,
        vec!["active", "id", "schemas", "userName"],
        "attributes on a PATCH answer"
    );
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
    let gone = |what: &str| -> TestResult {
        expect_error(
            t.scim("GET", &format!("/Users/{id}"), None, &[])?,
            404,
            None,
            what,
        )?;
        expect_error(
            t.scim("PATCH", &format!("/Users/{id}"), Some(&on), &[])?,
            404,
            None,
            what,
        )?;
        expect_error(
            t.scim("DELETE", &format!("/Users/{id}"), None, &[])?,
            404,
            None,
            what,
        )?;
        Ok(())
    };
    gone("deleted")?;
    ensure_eq!(
        find(&t, &format!("userName eq \"{new_upn}\""))?["totalResults"],
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
    // Provisioned again with the same userName: the same member, under a new SCIM id; the
    // deleted id stays 404.
    let mut again = create.clone();
    again["userName"] = json!(new_upn);
    again["emails"] = json!([{"primary": true, "type": "work", "value": "adele@contoso.com"}]);
    let user = expect(
        t.scim("POST", "/Users", Some(&again), &[])?,
        201,
        "provision again",
    )?;
    let new_id = user["id"].as_str().unwrap_or_default().to_owned();
    ensure_eq!(
        (new_id.clone(), user["active"].clone()),
        (format!("{id}-1"), json!(true)),
        "back under a new id"
    );
    ensure_eq!(user["name"]["familyName"], "Vance", "with what was sent");
    gone("the deleted id, after the member came back")?;
    expect(
        t.scim("GET", &format!("/Users/{new_id}"), None, &[])?,
        200,
        "the new id",
    )?;
    ensure_eq!(
        t.get_member(&id)?.json()["isActive"],
        true,
        "the same member in /v1"
    );
    ensure_eq!(
        find(&t, "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"")?["totalResults"],
        1,
        "externalId again"
    );
    st.check_invariants(&t.org).await
}
