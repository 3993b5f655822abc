//! The rest of the API: lists, deactivation, history, organisation settings, custom roles.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, Tenant, TestResult};
use serde_json::{json, Value};
use std::sync::Arc;

/// Every page of a list, following `nextCursor`; checks pages are full but the last.
pub(crate) fn all_pages(t: &Tenant, query: &str, limit: usize) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for page_number in 0..1000 {
        let mut path = format!("/v1/members?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = t.call("GET", &path, None)?;
        if r.status != 200 {
            return Err(format!("{path}: {} {}", r.status, r.text));
        }
        let body = r.json();
        let members = body["members"].as_array().cloned().unwrap_or_default();
        cursor = body["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_some() && members.len() != limit {
            return Err(format!(
                "{query}: page {page_number} has {} members but is not the last",
                members.len()
            ));
        }
        out.extend(members);
        if cursor.is_none() {
            return Ok(out);
        }
    }
    Err("no last page".into())
}

pub(crate) fn ids(members: &[Value]) -> Vec<String> {
    members
        .iter()
        .map(|m| m["id"].as_str().unwrap_or("").to_owned())
        .collect()
}

pub async fn lists_page_filter_and_refuse_bad_queries(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let roles = ["simple", "reviewer", "admin"];
    let departments = ["it", "hr", "qms", "none"];
    let mut created = vec![(
        t.root.to_string(),
        "admin",
        "none",
        Vec::<&str>::new(),
        true,
    )];
    for i in 0..30 {
        let locations: Vec<&str> = if i % 3 == 0 {
            vec!["loc_a"]
        } else if i % 3 == 1 {
            vec!["loc_a", "loc_b"]
        } else {
            vec![]
        };
        let body = json!({
            "firstName": format!("M{i}"), "email": format!("m{i}@example.com"), "role": roles[i % 3],
            "department": departments[i % 4],
            "locations": locations.iter().map(|l| json!({"locationId": l, "role": ["viewer"]})).collect::<Vec<_>>(),
        });
        let id = t.create(&body)?;
        let active = i % 5 != 0;
        if !active {
            ensure_eq!(
                t.call("DELETE", &format!("/v1/members/{id}"), None)?.status,
                200,
                "deactivate"
            );
        }
        created.push((id, roles[i % 3], departments[i % 4], locations, active));
    }
    let expect = |f: &dyn Fn(&(String, &str, &str, Vec<&str>, bool)) -> bool| -> Vec<String> {
        let mut v: Vec<String> = created
            .iter()
            .filter(|c| f(c))
            .map(|c| c.0.clone())
            .collect();
        v.sort();
        v
    };
    // (query, expected ids in order)
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("", expect(&|c| c.4)),
        ("&status=inactive", expect(&|c| !c.4)),
        ("&status=all", expect(&|_| true)),
        ("&role=reviewer", expect(&|c| c.4 && c.1 == "reviewer")),
        ("&role=admin&status=all", expect(&|c| c.1 == "admin")),
        ("&department=hr", expect(&|c| c.4 && c.2 == "hr")),
        (
            "&locationId=loc_b",
            expect(&|c| c.4 && c.3.contains(&"loc_b")),
        ),
        (
            "&locationId=loc_a&status=inactive",
            expect(&|c| !c.4 && c.3.contains(&"loc_a")),
        ),
        (
            "&locationId=loc_a&role=simple",
            expect(&|c| c.4 && c.1 == "simple" && c.3.contains(&"loc_a")),
        ),
        (
            "&role=simple&department=it&status=all",
            expect(&|c| c.1 == "simple" && c.2 == "it"),
        ),
        ("&hrisRole=hris_admin", expect(&|c| c.0 == t.root.as_str())),
        (
            "&email=M7%40EXAMPLE.com&status=all",
            expect(&|c| c.0 == created[8].0),
        ),
        ("&email=nobody%40example.com", vec![]),
    ];
    for (query, expected) in cases {
        for limit in [1, 4, 100] {
            let got = ids(&all_pages(&t, query, limit)?);
            ensure_eq!(got, expected, "GET /v1/members?limit={limit}{query}");
        }
    }
    // The property: every combination of status, role, HRIS role and department lists exactly
    // the members that match, whichever index serves it (GSI2–GSI4 hold active members only).
    for status in ["active", "inactive", "all"] {
        for role in ["", "simple", "reviewer", "admin"] {
            for department in ["", "it", "hr", "qms", "none"] {
                for hris in ["", "none"] {
                    let mut query = format!("&status={status}");
                    for (name, value) in [
                        ("role", role),
                        ("department", department),
                        ("hrisRole", hris),
                    ] {
                        if !value.is_empty() {
                            query.push_str(&format!("&{name}={value}"));
                        }
                    }
                    let expected = expect(&|c| {
                        (status == "all" || c.4 == (status == "active"))
                            && (role.is_empty() || c.1 == role)
                            && (department.is_empty() || c.2 == department)
                            // Only the first admin has an HRIS role.
                            && (hris.is_empty() || c.0 != t.root.as_str())
                    });
                    let got = ids(&all_pages(&t, &query, 7)?);
                    ensure_eq!(got, expected, "GET /v1/members?limit=7{query}");
                }
            }
        }
    }
    // updatedSince: members changed at or after an instant, in the order they changed.
    let stamp = shared::model::Timestamp::now().to_string();
    let touched: Vec<String> = [&created[3].0, &created[2].0]
        .iter()
        .map(|id| id.to_string())
        .collect();
    for id in &touched {
        ensure_eq!(
            t.patch_member(id, &json!({"headline": "touched"}))?.status,
            200,
            "touch"
        );
    }
    let got = ids(&all_pages(
        &t,
        &format!("&updatedSince={}", stamp.replace(':', "%3A")),
        1,
    )?);
    ensure_eq!(got, touched, "updatedSince, in update order");
    // With a role filter too, in every status: the active partition comes from GSI2, the
    // inactive one from GSI1 (GSI2 holds active members only), both by id, one cursor.
    let leaving = created[4].0.clone();
    ensure_eq!(
        t.call("DELETE", &format!("/v1/members/{leaving}"), None)?
            .status,
        200,
        "deactivate after the instant"
    );
    let since = format!("&updatedSince={}", stamp.replace(':', "%3A"));
    let changed: Vec<(&String, &str, bool)> = created
        .iter()
        .filter(|c| touched.contains(&c.0) || c.0 == leaving)
        .map(|c| (&c.0, c.1, c.0 != leaving))
        .collect();
    for status in ["active", "inactive", "all"] {
        for role in ["", "simple", "reviewer", "admin"] {
            let mut query = format!("{since}&status={status}");
            if !role.is_empty() {
                query.push_str(&format!("&role={role}"));
            }
            let mut expected: Vec<String> = changed
                .iter()
                .filter(|(_, r, active)| {
                    (status == "all" || *active == (status == "active"))
                        && (role.is_empty() || *r == role)
                })
                .map(|(id, _, _)| id.to_string())
                .collect();
            expected.sort();
            for limit in [1, 100] {
                let mut got = ids(&all_pages(&t, &query, limit)?);
                got.sort();
                ensure_eq!(got, expected, "GET /v1/members?limit={limit}{query}");
            }
        }
    }

    let first = t
        .call("GET", "/v1/members?limit=2&role=simple", None)?
        .json();
    let cursor = first["nextCursor"].as_str().unwrap_or_default().to_owned();
    let bad: Vec<(String, u16, &str)> = vec![
        ("/v1/members?limit=0".into(), 400, "invalid_query_parameter"),
        (
            "/v1/members?limit=101".into(),
            400,
            "invalid_query_parameter",
        ),
        (
            "/v1/members?limit=abc".into(),
            400,
            "invalid_query_parameter",
        ),
        (
            "/v1/members?status=deleted".into(),
            400,
            "invalid_query_parameter",
        ),
        (
            "/v1/members?role=owner".into(),
            400,
            "invalid_query_parameter",
        ),
        (
            "/v1/members?department=sales".into(),
            400,
            "invalid_query_parameter",
        ),
        (
            "/v1/members?email=not-an-email".into(),
            400,
            "invalid_query_parameter",
        ),
        (
            "/v1/members?updatedSince=yesterday".into(),
            400,
            "invalid_query_parameter",
        ),
        (
            "/v1/members?sort=name".into(),
            400,
            "unknown_query_parameter",
        ),
        ("/v1/members?cursor=garbage".into(), 400, "invalid_cursor"),
        (
            format!("/v1/members?role=reviewer&cursor={cursor}"),
            400,
            "invalid_cursor",
        ),
    ];
    for (path, status, code) in bad {
        let r = t.call("GET", &path, None)?;
        ensure_eq!(
            (r.status, r.code()),
            (status, code.to_owned()),
            "{path}: {}",
            r.text
        );
        ensure_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{path}"
        );
    }
    // Another organisation's cursor position shows nothing of this one's.
    let other = ctx.stack.tenant(false).await?;
    let foreign = other.call(
        "GET",
        &format!("/v1/members?role=simple&limit=2&cursor={cursor}"),
        None,
    )?;
    ensure_eq!(foreign.status, 200, "a cursor is only a position");
    ensure!(
        foreign.json()["members"]
            .as_array()
            .is_some_and(|m| m.is_empty()),
        "no foreign data: {}",
        foreign.text
    );
    ctx.stack.check_invariants(&t.org).await
}

pub async fn deactivate_and_reactivate(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let id = t.create(&json!({"firstName": "D", "email": "d@example.com", "role": "admin", "locations": [{"locationId": "loc_x", "role": ["admin"]}]}))?;
    let path = format!("/v1/members/{id}");
    let gone = t.call("DELETE", &path, None)?;
    ensure_eq!(
        (
            gone.status,
            gone.json()["isActive"].clone(),
            gone.json()["deactivated"].clone()
        ),
        (200, json!(false), json!(true)),
        "{}",
        gone.text
    );
    ensure_eq!(gone.header("etag"), Some("\"2\""), "version moved");
    let again = t.call("DELETE", &path, None)?;
    ensure_eq!(
        (again.status, again.header("etag")),
        (200, Some("\"2\"")),
        "idempotent"
    );
    st.check_invariants(&t.org).await?;
    let back = t.call("POST", &format!("{path}/reactivate"), None)?;
    ensure_eq!(
        (back.status, back.json()["isActive"].clone()),
        (200, json!(true)),
        "{}",
        back.text
    );
    ensure_eq!(
        t.call("POST", &format!("{path}/reactivate"), Some(&json!({})))?
            .status,
        200,
        "idempotent, {{}} accepted"
    );
    let body = t.call(
        "POST",
        &format!("{path}/reactivate"),
        Some(&json!({"force": true})),
    )?;
    ensure_eq!(body.status, 422, "reactivate takes no body");
    let root = t.call("DELETE", &format!("/v1/members/{}", t.root), None)?;
    ensure_eq!(
        (root.status, root.code()),
        (422, "primary_must_be_active".to_owned()),
        "the primary member"
    );
    t.create(
        &json!({"firstName": "P", "email": "p@example.com", "role": "simple", "isPrimary": true}),
    )?;
    ensure_eq!(
        t.call("DELETE", &path, None)?.status,
        200,
        "one of two admins"
    );
    let last = t.call("DELETE", &format!("/v1/members/{}", t.root), None)?;
    ensure_eq!(
        (last.status, last.code()),
        (422, "last_admin".to_owned()),
        "the last admin"
    );
    ensure_eq!(
        t.call("DELETE", "/v1/members/mem_nobody", None)?.status,
        404,
        "unknown"
    );
    let audit = t.call("GET", &format!("{path}/audit-events"), None)?.json();
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    ensure_eq!(
        actions,
        vec![
            "member.deactivated",
            "member.reactivated",
            "member.deactivated",
            "member.created"
        ],
        "history, newest first"
    );
    st.check_invariants(&t.org).await
}

pub async fn audit_history_pages_newest_first(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let id = t.create(&json!({"firstName": "H", "email": "h@example.com", "role": "simple", "settings": {"password": "first-password"}}))?;
    for i in 0..5 {
        ensure_eq!(t.patch_member(&id, &json!({"headline": format!("h{i}"), "settings": {"password": format!("password-number-{i}")}}))?.status, 200, "patch");
    }
    let mut versions = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = t.call(
            "GET",
            &format!("/v1/members/{id}/audit-events?limit=2{cursor}"),
            None,
        )?;
        ensure_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        for e in body["events"].as_array().cloned().unwrap_or_default() {
            ensure!(
                !e.to_string().contains("password-number"),
                "no password in history"
            );
            ensure_eq!(
                e["actorKeyId"].as_str().map(|k| k.starts_with("key_")),
                Some(true),
                "actor"
            );
            versions.push(e["memberVersion"].as_u64().unwrap_or(0));
        }
        match body["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    ensure_eq!(
        versions,
        vec![6, 5, 4, 3, 2, 1],
        "every event once, newest first"
    );
    let other = ctx.stack.tenant(false).await?;
    ensure_eq!(
        other
            .call("GET", &format!("/v1/members/{id}/audit-events"), None)?
            .status,
        404,
        "another organisation's member"
    );
    ensure_eq!(
        t.call(
            "GET",
            &format!("/v1/members/{id}/audit-events?limit=0"),
            None
        )?
        .status,
        400,
        "bad limit"
    );
    Ok(())
}

/// A method a path does not serve gets 405 with `Allow` naming the ones it does; a path the
/// API does not have gets 404; both problem+json, with or without a key, and nothing written.
pub async fn other_methods_get_405_and_unknown_paths_404(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let before = st.members_of(&t.org).await?.len();
    let mut paths: Vec<&str> = members_tests::ROUTES.iter().map(|(_, p)| *p).collect();
    paths.dedup();
    for template in paths {
        let path = template.replace("{id}", t.root.as_str());
        let allow: Vec<&str> = members_tests::ROUTES
            .iter()
            .filter(|(_, p)| *p == template)
            .map(|(m, _)| *m)
            .collect();
        // (QUERY too reaches the fallback, but the test's HTTP client refuses to send it.)
        for method in [
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE",
        ] {
            if allow.contains(&method) {
                continue;
            }
            for reply in [
                t.call(method, &path, Some(&json!({"role": "simple"})))?,
                members_tests::http(method, &format!("{}{path}", t.api), None, &[], None)?,
            ] {
                ensure_eq!(reply.status, 405, "{method} {path}: {}", reply.text);
                let expected = allow.join(", ");
                ensure_eq!(
                    reply.header("allow"),
                    Some(expected.as_str()),
                    "{method} {path}: Allow"
                );
                if method != "HEAD" && template.starts_with("/scim/") {
                    // SCIM's paths answer SCIM errors (RFC 7644 §3.12).
                    ensure_eq!(
                        (reply.header("content-type"), reply.json()["status"].clone()),
                        (Some("application/scim+json"), json!("405")),
                        "{method} {path}"
                    );
                } else if method != "HEAD" {
                    ensure_eq!(reply.code(), "method_not_allowed", "{method} {path}");
                    ensure_eq!(
                        reply.header("content-type"),
                        Some("application/problem+json"),
                        "{method} {path}"
                    );
                }
            }
        }
    }
    for path in [
        "/v2/members",
        "/v1/members/x/y",
        "/v1/organizations",
        "/v1/roles/x/y",
    ] {
        for method in ["GET", "POST"] {
            let r = t.call(method, path, None)?;
            ensure_eq!(
                (r.status, r.code()),
                (404, "not_found".to_owned()),
                "{method} {path}: {}",
                r.text
            );
        }
    }
    ensure_eq!(
        st.members_of(&t.org).await?.len(),
        before,
        "nothing was written"
    );
    st.check_invariants(&t.org).await
}
