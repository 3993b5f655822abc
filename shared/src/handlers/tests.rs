//! Handlers over real API Gateway payloads (`events/*.json`) and the in-memory store.

use super::{create_member, get_member, put_members, update_member};
use crate::auth::{hash_key, issue_key};
use crate::http::ApiRequest;
use crate::model::*;
use crate::store::memory::MemoryStore;
use crate::store::Store;
use serde_json::{json, Value};
use std::sync::Arc;

const CREATE_EVENT: &str = include_str!("../../../events/create-member.json");
const GET_EVENT: &str = include_str!("../../../events/get-member.json");
const UPDATE_EVENT: &str = include_str!("../../../events/update-member.json");
const PUT_EVENT: &str = include_str!("../../../events/put-members.json");

struct Fixture {
    store: Arc<MemoryStore>,
    org: OrgId,
    admin: MemberId,
    write_key: String,
    read_key: String,
    revoked_key: String,
    other_org_key: String,
}

fn fixture() -> Fixture {
    let store = Arc::new(MemoryStore::default());
    let now = Timestamp::now();
    let org = OrgId::generate();
    let other = OrgId::generate();
    let admin = crate::rules::new_member(
        crate::input::parse_member_patch(
            &json!({"firstName": "Root", "email": "root@example.com", "role": "admin"}),
        )
        .unwrap_or_else(|e| panic!("{e:?}")),
        &blank_org(&org),
        now,
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
    .member;
    let mut keys = Vec::new();
    {
        let mut s = store.state.lock().unwrap_or_else(|e| e.into_inner());
        for (owner, scopes, revoked) in [
            (&org, vec![Scope::ReadMembers, Scope::WriteMembers], false),
            (&org, vec![Scope::ReadMembers], false),
            (&org, vec![Scope::ReadMembers, Scope::WriteMembers], true),
            (&other, vec![Scope::ReadMembers, Scope::WriteMembers], false),
        ] {
            let mut issued = issue_key(owner, "test", scopes).unwrap_or_else(|e| panic!("{e}"));
            if revoked {
                issued.record.key.revoked_at = Some(now);
            }
            s.keys
                .insert(issued.record.hash.clone(), issued.record.key.clone());
            keys.push(issued.secret);
        }
        s.orgs.insert(org.clone(), blank_org(&org));
        s.orgs.insert(other.clone(), blank_org(&other));
        s.emails
            .insert((org.clone(), admin.email.normalized()), admin.id.clone());
        s.members
            .insert((org.clone(), admin.id.clone()), admin.clone());
    }
    Fixture {
        store,
        org,
        admin: admin.id,
        write_key: keys[0].clone(),
        read_key: keys[1].clone(),
        revoked_key: keys[2].clone(),
        other_org_key: keys[3].clone(),
    }
}

fn blank_org(id: &OrgId) -> Organization {
    let mut org = Organization::new("Acme", false);
    org.id = id.clone();
    org.counters.active_admins = 1;
    org
}

fn event(raw: &str) -> ApiRequest {
    let req =
        lambda_http::request::from_str(raw).unwrap_or_else(|e| panic!("event does not parse: {e}"));
    ApiRequest::from_lambda(req)
}

fn create_request(key: &str, body: &str) -> ApiRequest {
    let mut r = event(CREATE_EVENT);
    r.headers
        .insert("authorization".into(), format!("Bearer {key}"));
    r.headers.remove("idempotency-key");
    r.body = body.as_bytes().to_vec();
    r
}

fn get_request(key: &str, id: &str) -> ApiRequest {
    let mut r = event(GET_EVENT);
    r.headers
        .insert("authorization".into(), format!("Bearer {key}"));
    r.path_id = Some(id.to_owned());
    r
}

fn body_of(r: &crate::http::ApiResponse) -> Value {
    r.body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

async fn create(f: &Fixture, req: ApiRequest) -> (u16, Value, crate::http::ApiResponse) {
    let response = match create_member(f.store.clone(), req).await {
        Ok(r) => r,
        Err(e) => crate::http::ApiResponse::problem(&e),
    };
    (response.status, body_of(&response), response)
}

#[test]
fn the_events_are_real_http_api_v2_payloads() {
    let r = event(CREATE_EVENT);
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/members")
    );
    assert_eq!(r.request_id.as_deref(), Some("CkHq3gxLjoEEJvA="));
    assert!(r.header("idempotency-key").is_some());
    let r = event(GET_EVENT);
    assert_eq!(r.path_id.as_deref(), Some("mem_01jd8x7k2m3n4p5q6r7s8t9v0w"));
}

#[tokio::test]
async fn create_from_the_recorded_event_returns_201_with_location_and_etag() {
    let f = fixture();
    let mut req = event(CREATE_EVENT);
    req.headers
        .insert("authorization".into(), format!("Bearer {}", f.write_key));
    let (status, body, response) = create(&f, req).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap_or_default();
    assert_eq!(
        response.header("Location"),
        Some(format!("/v1/members/{id}").as_str())
    );
    assert_eq!(response.header("ETag"), Some("\"1\""));
    assert_eq!(body["name"], "John Doe");
    assert_eq!(body["user"]["email"], "john@example.com");
    assert_eq!(body["organizationId"], f.org.as_str());
    assert_eq!(body["settings"]["hasPassword"], true);
    let text = response.body.clone().unwrap_or_default();
    assert!(
        !text.contains("correct horse") && !text.contains("argon2"),
        "{text}"
    );
    let s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(s.audit.len(), 1);
    assert_eq!(
        s.audit[0].changes["settings.password"]["after"],
        "[redacted]"
    );
}

#[tokio::test]
async fn create_refuses_bad_input_with_the_right_status_and_code() {
    let f = fixture();
    let ok = r#"{"firstName":"A","email":"a@example.com","role":"simple"}"#;
    let big = format!(
        r#"{{"firstName":"{}","email":"a@example.com","role":"simple"}}"#,
        "x".repeat(70 * 1024)
    );
    // (name, key, content type, body, status, code)
    let cases: Vec<(&str, Option<&str>, Option<&str>, String, u16, &str)> = vec![
        (
            "malformed JSON",
            Some(&f.write_key),
            Some("application/json"),
            "{\"firstName\":".into(),
            400,
            "malformed_json",
        ),
        (
            "wrong content type",
            Some(&f.write_key),
            Some("text/plain"),
            ok.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            Some(&f.write_key),
            None,
            ok.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "body over 64 KiB",
            Some(&f.write_key),
            Some("application/json"),
            big,
            413,
            "payload_too_large",
        ),
        (
            "unknown field",
            Some(&f.write_key),
            Some("application/json"),
            r#"{"firstName":"A","email":"a@example.com","role":"simple","nick":"x"}"#.into(),
            422,
            "validation_failed",
        ),
        (
            "read-only field",
            Some(&f.write_key),
            Some("application/json"),
            r#"{"id":"mem_x","firstName":"A","email":"a@example.com","role":"simple"}"#.into(),
            422,
            "validation_failed",
        ),
        (
            "invalid enum",
            Some(&f.write_key),
            Some("application/json"),
            r#"{"firstName":"A","email":"a@example.com","role":"owner"}"#.into(),
            422,
            "validation_failed",
        ),
        (
            "missing required",
            Some(&f.write_key),
            Some("application/json"),
            r#"{"firstName":"A"}"#.into(),
            422,
            "validation_failed",
        ),
        (
            "no_access while HRIS off",
            Some(&f.write_key),
            Some("application/json"),
            r#"{"firstName":"A","email":"a@example.com","role":"no_access"}"#.into(),
            422,
            "no_access_requires_hris",
        ),
        (
            "email taken, other case",
            Some(&f.write_key),
            Some("application/json"),
            r#"{"firstName":"A","email":"ROOT@example.com","role":"simple"}"#.into(),
            409,
            "email_taken",
        ),
        (
            "no key",
            None,
            Some("application/json"),
            ok.into(),
            401,
            "missing_api_key",
        ),
        (
            "garbage key",
            Some("not-a-key"),
            Some("application/json"),
            ok.into(),
            401,
            "invalid_api_key",
        ),
        (
            "unknown key",
            Some("mapi_0000000000000000000000000000000000000000000000000000000000000000"),
            Some("application/json"),
            ok.into(),
            401,
            "invalid_api_key",
        ),
        (
            "revoked key",
            Some(&f.revoked_key),
            Some("application/json"),
            ok.into(),
            401,
            "invalid_api_key",
        ),
        (
            "read-only key",
            Some(&f.read_key),
            Some("application/json"),
            ok.into(),
            403,
            "insufficient_scope",
        ),
    ];
    for (name, key, content_type, body, status, code) in cases {
        let mut req = create_request(key.unwrap_or(""), &body);
        match key {
            Some(_) => {}
            None => {
                req.headers.remove("authorization");
            }
        }
        match content_type {
            Some(ct) => req.headers.insert("content-type".into(), ct.into()),
            None => req.headers.remove("content-type"),
        };
        let (got_status, got, response) = create(&f, req).await;
        assert_eq!(
            (got_status, got["code"].as_str()),
            (status, Some(code)),
            "{name}: {got}"
        );
        assert_eq!(response.content_type, "application/problem+json", "{name}");
        assert_eq!(got["status"], status, "{name}");
    }
    let s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(
        s.members.len(),
        1,
        "nothing was written by a refused request"
    );
}

#[tokio::test]
async fn field_errors_name_the_field_and_list_allowed_values() {
    let f = fixture();
    let req = create_request(
        &f.write_key,
        r#"{"firstName":"A","email":"a@example.com","role":"simple","department":"sales","version":2}"#,
    );
    let (_, body, _) = create(&f, req).await;
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    let department = errors
        .iter()
        .find(|e| e["field"] == "department")
        .cloned()
        .unwrap_or_default();
    assert_eq!(department["code"], "invalid_value");
    assert!(department["message"]
        .as_str()
        .unwrap_or_default()
        .contains("none, admin, gov, hr, it, itsm, qms"));
    assert!(errors
        .iter()
        .any(|e| e["field"] == "version" && e["code"] == "read_only_field"));
}

#[tokio::test]
async fn an_unavailable_store_is_a_503_with_retry_after() {
    let f = fixture();
    f.store
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unavailable = true;
    let (status, body, response) = create(
        &f,
        create_request(
            &f.write_key,
            r#"{"firstName":"A","email":"a@example.com","role":"simple"}"#,
        ),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("service_unavailable"))
    );
    assert_eq!(response.header("Retry-After"), Some("1"));
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let f = fixture();
    let body = r#"{"firstName":"A","email":"a@example.com","role":"simple"}"#;
    let with_key = |body: &str| {
        let mut r = create_request(&f.write_key, body);
        r.headers
            .insert("idempotency-key".into(), "order-42".into());
        r
    };
    let (s1, b1, r1) = create(&f, with_key(body)).await;
    let (s2, b2, r2) = create(&f, with_key(body)).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(b1, b2);
    assert_eq!(r1.header("Location"), r2.header("Location"));
    assert_eq!(r2.header("Idempotent-Replayed"), Some("true"));
    let (s3, b3, _) = create(
        &f,
        with_key(r#"{"firstName":"B","email":"b@example.com","role":"simple"}"#),
    )
    .await;
    assert_eq!(
        (s3, b3["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let mut bad = with_key(body);
    bad.headers
        .insert("idempotency-key".into(), "has space".into());
    let (s4, b4, _) = create(&f, bad).await;
    assert_eq!(
        (s4, b4["code"].as_str()),
        (400, Some("invalid_idempotency_key"))
    );
    assert_eq!(
        f.store
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .members
            .len(),
        2
    );
}

#[tokio::test]
async fn get_answers_200_with_etag_304_when_unchanged_and_404_across_organisations() {
    let f = fixture();
    let get = |key: &str, id: &str| get_member(f.store.clone(), get_request(key, id));
    let ok = get(&f.read_key, f.admin.as_str())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("ETag"), Some("\"1\""));
    assert_eq!(body_of(&ok)["email"], "root@example.com");

    let mut conditional = get_request(&f.read_key, f.admin.as_str());
    conditional
        .headers
        .insert("if-none-match".into(), "\"1\"".into());
    let not_modified = get_member(f.store.clone(), conditional)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        (not_modified.status, not_modified.body.is_none()),
        (304, true)
    );
    assert_eq!(not_modified.header("ETag"), Some("\"1\""));

    let mut stale = get_request(&f.read_key, f.admin.as_str());
    stale.headers.insert("if-none-match".into(), "\"0\"".into());
    assert_eq!(
        get_member(f.store.clone(), stale)
            .await
            .map(|r| r.status)
            .ok(),
        Some(200)
    );

    for (name, key, id) in [
        (
            "another organisation's key",
            f.other_org_key.as_str(),
            f.admin.as_str(),
        ),
        ("unknown id", f.read_key.as_str(), "mem_doesnotexist"),
        ("malformed id", f.read_key.as_str(), "../../etc"),
    ] {
        let err = get(key, id).await.err().map(|e| e.code());
        assert_eq!(err, Some("not_found"), "{name}");
    }
    assert_eq!(
        get(&f.revoked_key, f.admin.as_str())
            .await
            .err()
            .map(|e| e.code()),
        Some("invalid_api_key")
    );
    assert!(f
        .store
        .api_key_by_hash(&hash_key(&f.read_key))
        .await
        .is_ok());
}

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

#[tokio::test]
async fn the_fallback_answers_405_with_allow_on_a_known_path_and_404_elsewhere() {
    let mut req = event(GET_EVENT);
    req.method = "PUT".into();
    req.headers.remove("authorization");
    let err = super::fallback(Arc::new(()), req.clone())
        .await
        .err()
        .unwrap_or_else(|| panic!("the fallback never succeeds"));
    let response = crate::http::ApiResponse::problem(&err);
    assert_eq!(response.status, 405);
    assert_eq!(response.header("Allow"), Some("GET, PATCH, DELETE"));
    assert_eq!(body_of(&response)["code"], "method_not_allowed");

    req.path = "/v1/members/mem_1/avatar".into();
    let err = super::fallback(Arc::new(()), req)
        .await
        .err()
        .unwrap_or_else(|| panic!("the fallback never succeeds"));
    let response = crate::http::ApiResponse::problem(&err);
    assert_eq!((response.status, response.header("Allow")), (404, None));
    assert_eq!(body_of(&response)["code"], "not_found");
}
