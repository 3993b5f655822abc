//! Handlers over real API Gateway payloads (`events/*.json`) and the in-memory store.

use super::{create_member, get_member, put_members, update_member};
use crate::auth::{hash_key, issue_key};
use crate::http::ApiRequest;
use crate::model::*;
use crate::store::memory::MemoryStore;
use crate::store::Store;
use serde_json::{json, Value};
use std::sync::Arc;

const CREATE_EVENT: &str = include_str!("../../../../events/create-member.json");
const GET_EVENT: &str = include_str!("../../../../events/get-member.json");
const UPDATE_EVENT: &str = include_str!("../../../../events/update-member.json");
const PUT_EVENT: &str = include_str!("../../../../events/put-members.json");

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

mod groups;
mod routes;
mod writes;
