//! PATCH and PUT through the handlers, on the in-memory store.

use super::*;

fn patch_request(f: &Fixture, id: &str, body: &str) -> ApiRequest {
    let mut r = event(UPDATE_EVENT);
    r.headers
        .insert("authorization".into(), format!("Bearer {}", f.write_key));
    r.headers.remove("if-match");
    r.query.clear();
    r.path_id = Some(id.to_owned());
    r.body = body.as_bytes().to_vec();
    r
}

async fn patch(f: &Fixture, req: ApiRequest) -> (u16, Value, crate::http::ApiResponse) {
    let response = match update_member(f.store.clone(), req).await {
        Ok(r) => r,
        Err(e) => crate::http::ApiResponse::problem(&e),
    };
    (response.status, body_of(&response), response)
}

/// argon2id (tens of milliseconds, megabytes) runs only for a change that will be written:
/// not for a dry run, nor for a request a rule refuses.
#[tokio::test]
async fn a_password_is_hashed_only_for_a_write() {
    let f = fixture();
    let hashes = || crate::model::HASHES.with(|n| n.get());
    let id = new_member(
        &f,
        json!({"firstName": "P", "email": "p@example.com", "role": "simple"}),
    )
    .await;
    let start = hashes();
    let password = json!({"password": "a-long-new-password"});
    let mut dry = patch_request(&f, &id, &json!({"settings": password}).to_string());
    dry.query.push(("dryRun".into(), "true".into()));
    let (status, body, _) = patch(&f, dry).await;
    assert_eq!(
        (status, body["settings"]["hasPassword"].clone()),
        (200, json!(true)),
        "{body}"
    );
    let refused = patch_request(
        &f,
        f.admin.as_str(),
        &json!({"role": "simple", "settings": password}).to_string(),
    );
    let (status, body, _) = patch(&f, refused).await;
    assert_eq!(
        (status, body["code"].clone()),
        (422, json!("last_admin")),
        "{body}"
    );
    let bad_create = json!({"firstName": "Q", "email": "q@example.com", "role": "simple",
        "backgroundCheckExempt": true, "settings": password});
    let (status, body, _) = create(&f, create_request(&f.write_key, &bad_create.to_string())).await;
    assert_eq!(
        (status, body["code"].clone()),
        (422, json!("exemption_reason_required")),
        "{body}"
    );
    assert_eq!(
        hashes(),
        start,
        "nothing was hashed for a dry run or a refusal"
    );
    let real = patch_request(&f, &id, &json!({"settings": password}).to_string());
    let (status, _, _) = patch(&f, real).await;
    assert_eq!(status, 200);
    assert_eq!(hashes(), start + 1, "hashed once for the write");
    let s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
    let stored = s
        .members
        .values()
        .find(|m| m.id.as_str() == id)
        .and_then(|m| m.password_hash.clone());
    assert!(stored.is_some_and(|h| h.verify("a-long-new-password")));
}

async fn new_member(f: &Fixture, body: Value) -> String {
    let (status, created, _) = create(f, create_request(&f.write_key, &body.to_string())).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn patch_from_the_recorded_event_updates_and_moves_the_etag() {
    let f = fixture();
    let mut req = event(UPDATE_EVENT);
    req.headers
        .insert("authorization".into(), format!("Bearer {}", f.write_key));
    req.path_id = Some(f.admin.to_string());
    let (status, body, response) = patch(&f, req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(response.header("ETag"), Some("\"2\""));
    assert_eq!(
        (body["jobTitle"].as_str(), body["department"].as_str()),
        (Some("Software Engineer"), Some("it"))
    );
    assert_eq!(body["backgroundCheckExemptReason"], "other");
    assert!(body.get("backgroundCheckExemptJustification").is_none());
    let s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
    let event = s
        .audit
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("no audit event"));
    assert_eq!(event.action, "member.updated");
    assert_eq!(
        event.justification.as_deref(),
        Some("Contractor with existing background check on file from staffing agency.")
    );
    assert_eq!(
        event.changes["jobTitle"],
        json!({"before": null, "after": "Software Engineer"})
    );
}

#[tokio::test]
async fn patch_refusals_table() {
    let f = fixture();
    let simple = new_member(
        &f,
        json!({"firstName": "S", "email": "s@example.com", "role": "simple"}),
    )
    .await;
    let admin = f.admin.to_string();
    // (case, member, body, query, If-Match, status, code)
    let cases: Vec<(
        &str,
        &str,
        &str,
        Option<(&str, &str)>,
        Option<&str>,
        u16,
        &str,
    )> = vec![
        (
            "demote the only admin",
            &admin,
            r#"{"role":"simple"}"#,
            None,
            None,
            422,
            "last_admin",
        ),
        (
            "deactivate the only admin",
            &admin,
            r#"{"isActive":false}"#,
            None,
            None,
            422,
            "last_admin",
        ),
        (
            "stale If-Match",
            &simple,
            r#"{"headline":"x"}"#,
            None,
            Some("\"7\""),
            412,
            "precondition_failed",
        ),
        (
            "email taken",
            &simple,
            r#"{"email":"Root@Example.com"}"#,
            None,
            None,
            409,
            "email_taken",
        ),
        (
            "read-only version",
            &simple,
            r#"{"version":9}"#,
            None,
            None,
            422,
            "validation_failed",
        ),
        (
            "unknown query parameter",
            &simple,
            r#"{"headline":"x"}"#,
            Some(("force", "true")),
            None,
            400,
            "unknown_query_parameter",
        ),
        (
            "bad dryRun",
            &simple,
            r#"{"headline":"x"}"#,
            Some(("dryRun", "yes")),
            None,
            400,
            "invalid_query_parameter",
        ),
        (
            "unknown member",
            "mem_nobody",
            r#"{"headline":"x"}"#,
            None,
            None,
            404,
            "not_found",
        ),
        (
            "null on a required field",
            &simple,
            r#"{"email":null}"#,
            None,
            None,
            422,
            "validation_failed",
        ),
        (
            "exempt without reason",
            &simple,
            r#"{"backgroundCheckExempt":true}"#,
            None,
            None,
            422,
            "exemption_reason_required",
        ),
    ];
    for (case, id, body, query, if_match, status, code) in cases {
        let mut req = patch_request(&f, id, body);
        if let Some((k, v)) = query {
            req.query.push((k.into(), v.into()));
        }
        if let Some(tag) = if_match {
            req.headers.insert("if-match".into(), tag.into());
        }
        let (got_status, got, _) = patch(&f, req).await;
        assert_eq!(
            (got_status, got["code"].as_str()),
            (status, Some(code)),
            "{case}: {got}"
        );
    }
    let s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        s.members.values().all(|m| m.version == 1),
        "no refused PATCH wrote"
    );
}

#[tokio::test]
async fn a_patch_that_changes_nothing_writes_nothing_and_dry_run_writes_nothing() {
    let f = fixture();
    let id = new_member(
        &f,
        json!({"firstName": "S", "email": "s@example.com", "role": "simple", "headline": "h"}),
    )
    .await;
    let audits = |f: &Fixture| {
        f.store
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .audit
            .len()
    };
    let before = audits(&f);
    let (status, body, response) = patch(
        &f,
        patch_request(&f, &id, r#"{"headline":"h","role":"simple"}"#),
    )
    .await;
    assert_eq!(
        (status, response.header("ETag")),
        (200, Some("\"1\"")),
        "{body}"
    );
    assert_eq!(audits(&f), before, "no audit event for a no-op");

    let mut dry = patch_request(&f, &id, r#"{"role":"admin","headline":"new"}"#);
    dry.query.push(("dryRun".into(), "true".into()));
    let (status, body, response) = patch(&f, dry).await;
    assert_eq!(
        (status, body["role"].as_str(), body["version"].as_u64()),
        (200, Some("admin"), Some(2))
    );
    assert_eq!(
        (response.header("Dry-Run"), response.header("ETag")),
        (Some("true"), None)
    );
    let s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
    let stored = s
        .members
        .values()
        .find(|m| m.id.as_str() == id)
        .cloned()
        .unwrap_or_else(|| panic!("gone"));
    assert_eq!((stored.version, stored.headline.as_deref()), (1, Some("h")));
}

#[tokio::test]
async fn put_speaks_seed_002() {
    let f = fixture();
    let id = new_member(&f, json!({"firstName": "John", "lastName": "Doe", "email": "john.doe@example.com", "role": "reviewer", "headline": "headline"})).await;
    let put = |body: String| {
        let mut r = event(PUT_EVENT);
        r.headers
            .insert("authorization".into(), format!("Bearer {}", f.write_key));
        r.body = body.into_bytes();
        put_members(f.store.clone(), r)
    };
    let recorded = event(PUT_EVENT);
    let mut body: Value = serde_json::from_slice(&recorded.body).unwrap_or_default();
    body["id"] = json!(id);
    let response = put(body.to_string())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let got = body_of(&response);
    assert_eq!(response.status, 200, "{got}");
    assert_eq!(
        got,
        json!({"id": id, "name": "John Doe", "headline": "headline", "email": "john.doe@example.com", "role": "simple",
               "hris_role": "hris_employee", "collaboration_rules": [{"role": "hiring_manager", "departments": ["it"], "locations": ["loc_london"]}]})
    );
    assert_eq!(response.header("ETag"), Some("\"2\""));

    // (case, body, status, code, field named)
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "missing role",
            json!({"id": id}),
            422,
            "validation_failed",
            "role",
        ),
        (
            "missing id",
            json!({"role": "simple"}),
            422,
            "validation_failed",
            "id",
        ),
        (
            "camelCase is not this call's",
            json!({"id": id, "role": "simple", "hrisRole": "hris_admin"}),
            422,
            "validation_failed",
            "hrisRole",
        ),
        (
            "bad hris_role",
            json!({"id": id, "role": "simple", "hris_role": "boss"}),
            422,
            "validation_failed",
            "hris_role",
        ),
        (
            "bad rule",
            json!({"id": id, "role": "reviewer", "collaboration_rules": [{"role": "admin"}]}),
            422,
            "validation_failed",
            "collaboration_rules[0].role",
        ),
        (
            "no_access while HRIS is off",
            json!({"id": id, "role": "no_access"}),
            422,
            "no_access_requires_hris",
            "role",
        ),
        (
            "last admin",
            json!({"id": f.admin, "role": "simple"}),
            422,
            "last_admin",
            "role",
        ),
    ];
    for (case, body, status, code, field) in cases {
        let response = match put(body.to_string()).await {
            Ok(r) => r,
            Err(e) => crate::http::ApiResponse::problem(&e),
        };
        let got = body_of(&response);
        assert_eq!(
            (response.status, got["code"].as_str()),
            (status, Some(code)),
            "{case}: {got}"
        );
        let named = got["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["field"] == field));
        assert!(named, "{case}: should name {field}: {got}");
    }
    let unknown = put(json!({"id": "mem_nobody", "role": "simple"}).to_string())
        .await
        .err()
        .map(|e| e.code());
    assert_eq!(unknown, Some("not_found"));
}
