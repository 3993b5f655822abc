//! Create and get, over HTTP, checked against what the table holds.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, http, s, TestResult};
use serde_json::json;
use std::sync::Arc;

pub async fn create_then_get_round_trips(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let body = json!({
        "firstName": "Grace", "lastName": "Hopper", "email": "Grace@Example.com", "role": "simple",
        "department": "it", "jobTitle": "Rear Admiral", "headline": "COBOL",
        "locations": [{"locationId": "loc_hq", "role": ["admin", "viewer"]}],
        "collaborationRules": [{"role": "hiring_manager", "departments": ["it"], "locations": ["loc_hq"]}],
        "fleetDmLabelId": 123,
        "settings": {"password": "never-shown-pass-1", "profilePictureUrl": "https://example.com/g.png", "defaultLocationId": "loc_hq"},
        "backgroundCheckExempt": true, "backgroundCheckExemptReason": "other",
        "backgroundCheckExemptJustification": "Check on file with the agency.",
        "onboardDate": "2026-01-15T00:00:00.000Z", "offboardDate": "2026-04-30T00:00:00.000Z",
        "createdAt": "2024-01-15T00:00:00.000Z"
    });
    let created = t.post_member(&body)?;
    ensure_eq!(created.status, 201, "create: {}", created.text);
    let m = created.json();
    let id = m["id"].as_str().unwrap_or_default().to_owned();
    ensure_eq!(
        created.header("location").map(str::to_owned),
        Some(format!("/v1/members/{id}")),
        "Location"
    );
    ensure_eq!(created.header("etag"), Some("\"1\""), "ETag");
    ensure_eq!(
        created.header("content-type"),
        Some("application/json"),
        "content type"
    );
    ensure_eq!(m["name"], "Grace Hopper", "derived name");
    ensure_eq!(
        m["user"],
        json!({"id": m["userId"], "name": "Grace Hopper", "email": "Grace@Example.com"}),
        "user"
    );
    ensure_eq!(m["createdAt"], "2024-01-15T00:00:00.000Z", "join date");
    ensure_eq!(m["isActive"], true, "active");
    ensure_eq!(m["deactivated"], false, "deactivated");
    ensure_eq!(
        m["settings"]["defaultLocationId"],
        "loc_hq",
        "default location"
    );
    ensure!(
        !created.text.contains("never-shown") && !created.text.contains("argon2"),
        "password leaked: {}",
        created.text
    );
    ensure!(
        m.get("backgroundCheckExemptJustification").is_none(),
        "justification is audit-only"
    );

    let got = t.get_member(&id)?;
    ensure_eq!(got.status, 200, "get");
    ensure_eq!(got.json(), m, "get returns what create returned");
    ensure_eq!(got.header("etag"), Some("\"1\""), "get ETag");
    let bearer = format!("Bearer {}", t.read_key);
    let cached = http(
        "GET",
        &format!("{}/v1/members/{id}", t.api),
        None,
        &[("Authorization", &bearer), ("If-None-Match", "\"1\"")],
        None,
    )?;
    ensure_eq!(
        (cached.status, cached.text.as_str()),
        (304, ""),
        "If-None-Match"
    );

    // What the table holds: an argon2id hash, never the password; the audit event in the same write.
    let raw = st.members_of(&t.org).await?;
    let item = raw
        .iter()
        .find(|i| s(i, "id") == id)
        .ok_or("member item missing")?;
    ensure!(
        s(item, "passwordHash").starts_with("$argon2id$"),
        "password stored as argon2id"
    );
    let audit = st.audit_events(&t.org, &id).await?;
    ensure_eq!(audit.len(), 1, "one audit event");
    ensure_eq!(audit[0].action, "member.created", "audit action");
    ensure_eq!(
        audit[0].justification.as_deref(),
        Some("Check on file with the agency."),
        "justification"
    );
    let changes = serde_json::to_string(&audit[0].changes).unwrap_or_default();
    ensure!(
        changes.contains("[redacted]") && !changes.contains("never-shown"),
        "audit redacts the password"
    );
    st.check_invariants(&t.org).await
}

pub async fn bad_input_gets_clear_problems(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let url = format!("{}/v1/members", t.api);
    let bearer = format!("Bearer {}", t.write_key);
    let ok = r#"{"firstName":"A","email":"a@example.com","role":"simple"}"#;
    let big = format!(
        r#"{{"firstName":"{}","email":"b@example.com","role":"simple"}}"#,
        "x".repeat(65 * 1024)
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    // Invalid UTF-8 is a unit test of `http::ApiRequest::json_body`: cargo lambda watch
    // itself answers 500 before the function runs when a JSON body is not UTF-8.
    // (case, content type, body, status, code, field named in errors)
    let cases: Vec<(&str, Option<&str>, Vec<u8>, u16, &str, Option<&str>)> = vec![
        ("malformed JSON", Some("application/json"), b"{\"firstName\": ".to_vec(), 400, "malformed_json", None),
        ("deep nesting", Some("application/json"), deep.into_bytes(), 400, "malformed_json", None),
        ("wrong content type", Some("text/plain"), ok.as_bytes().to_vec(), 415, "unsupported_media_type", None),
        ("body over 64 KiB", Some("application/json"), big.into_bytes(), 413, "payload_too_large", None),
        ("not an object", Some("application/json"), b"[]".to_vec(), 422, "validation_failed", Some("")),
        ("unknown field", Some("application/json"), br#"{"firstName":"A","email":"a@example.com","role":"simple","shoeSize":44}"#.to_vec(), 422, "validation_failed", Some("shoeSize")),
        ("read-only field", Some("application/json"), br#"{"firstName":"A","email":"a@example.com","role":"simple","updatedAt":"2026-01-01T00:00:00Z"}"#.to_vec(), 422, "validation_failed", Some("updatedAt")),
        ("invalid enum", Some("application/json"), br#"{"firstName":"A","email":"a@example.com","role":"simple","hrisRole":"chief"}"#.to_vec(), 422, "validation_failed", Some("hrisRole")),
        ("missing required", Some("application/json"), br#"{"firstName":"A","role":"simple"}"#.to_vec(), 422, "validation_failed", Some("email")),
        ("bad collaboration rule", Some("application/json"), br#"{"firstName":"A","email":"a@example.com","role":"reviewer","collaborationRules":[{"role":"admin"}]}"#.to_vec(), 422, "validation_failed", Some("collaborationRules[0].role")),
        ("exemption without reason", Some("application/json"), br#"{"firstName":"A","email":"a@example.com","role":"simple","backgroundCheckExempt":true}"#.to_vec(), 422, "exemption_reason_required", Some("backgroundCheckExemptReason")),
        ("offboard before onboard", Some("application/json"), br#"{"firstName":"A","email":"a@example.com","role":"simple","onboardDate":"2026-02-01T00:00:00Z","offboardDate":"2026-01-01T00:00:00Z"}"#.to_vec(), 422, "offboard_before_onboard", Some("offboardDate")),
        ("foreign organisation", Some("application/json"), br#"{"firstName":"A","email":"a@example.com","role":"simple","organizationId":"org_someoneelse"}"#.to_vec(), 422, "organization_mismatch", Some("organizationId")),
        ("unknown custom role", Some("application/json"), br#"{"firstName":"A","email":"a@example.com","role":"rol_nosuchrole"}"#.to_vec(), 422, "unknown_role", Some("role")),
        ("control characters", Some("application/json"), b"{\"firstName\":\"A\\u0000B\",\"email\":\"a@example.com\",\"role\":\"simple\"}".to_vec(), 422, "validation_failed", Some("firstName")),
        ("email taken", Some("application/json"), br#"{"firstName":"A","email":"ROOT@example.com","role":"simple"}"#.to_vec(), 409, "email_taken", Some("email")),
    ];
    for (case, content_type, body, status, code, field) in cases {
        let mut headers = vec![("Authorization", bearer.as_str())];
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct));
        }
        let r = http("POST", &url, Some(&body), &headers, None)?;
        ensure_eq!(
            (r.status, r.code()),
            (status, code.to_owned()),
            "{case}: {}",
            r.text
        );
        ensure_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{case}"
        );
        let p = r.json();
        for member in ["type", "title", "status", "detail", "code"] {
            ensure!(!p[member].is_null(), "{case}: problem lacks {member}");
        }
        if let Some(field) = field {
            let named = p["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["field"] == field));
            ensure!(named, "{case}: errors should name {field}: {}", r.text);
        }
    }
    let r = http(
        "POST",
        &url,
        Some(br#"{"firstName":"A","email":"a@example.com","role":"simple","department":"sales"}"#),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        None,
    )?;
    ensure!(
        r.text.contains("none, admin, gov, hr, it, itsm, qms"),
        "enum errors list the allowed values: {}",
        r.text
    );
    ensure_eq!(
        ctx.stack.members_of(&t.org).await?.len(),
        1,
        "no refused request wrote a member"
    );
    ctx.stack.check_invariants(&t.org).await
}

pub async fn keys_scopes_and_tenants(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let (a, b) = (st.tenant(false).await?, st.tenant(false).await?);
    let url = format!("{}/v1/members", a.api);
    let body = br#"{"firstName":"A","email":"a@example.com","role":"simple"}"#;
    let json_ct = ("Content-Type", "application/json");
    let unknown = format!("Bearer mapi_{}", "ab".repeat(32));
    let read_only = format!("Bearer {}", a.read_key);
    // (case, Authorization header, status, code)
    let cases: Vec<(&str, Option<&str>, u16, &str)> = vec![
        ("no key", None, 401, "missing_api_key"),
        (
            "not bearer",
            Some("Basic dXNlcjpwYXNz"),
            401,
            "invalid_api_key",
        ),
        ("garbage", Some("Bearer hello"), 401, "invalid_api_key"),
        ("unknown key", Some(&unknown), 401, "invalid_api_key"),
        (
            "read-only key writing",
            Some(&read_only),
            403,
            "insufficient_scope",
        ),
    ];
    for (case, auth, status, code) in cases {
        let mut headers = vec![json_ct];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        let r = http("POST", &url, Some(body), &headers, None)?;
        ensure_eq!((r.status, r.code()), (status, code.to_owned()), "{case}");
        if status == 401 {
            ensure_eq!(r.header("www-authenticate"), Some("Bearer"), "{case}");
        }
    }
    // A member of another organisation does not exist for this one.
    let other = b.get_member(a.root.as_str())?;
    ensure_eq!(
        (other.status, other.code()),
        (404, "not_found".to_owned()),
        "cross-tenant get"
    );
    ensure!(
        !other.text.contains(a.root.as_str()),
        "no trace of the other tenant's member"
    );
    ensure_eq!(a.get_member("mem_nosuchmember")?.status, 404, "unknown id");
    ensure_eq!(a.get_member("not-an-id")?.status, 404, "malformed id");

    // Revoked: the same answer as an unknown key.
    let unknown_reply = http(
        "GET",
        &format!("{}/v1/members/{}", a.api, a.root),
        None,
        &[("Authorization", &unknown)],
        None,
    )?;
    let keys = st
        .store
        .api_keys(&a.org)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (read_key, _) = keys
        .iter()
        .find(|(k, _)| k.scopes.len() == 1)
        .ok_or("read key not listed")?;
    ensure_eq!(
        a.get_member(a.root.as_str())?.status,
        200,
        "read key works before revocation"
    );
    st.store
        .revoke_api_key(&a.org, &read_key.id)
        .await
        .map_err(|e| format!("{e:?}"))?;
    // Warm instances may keep a live key for API_KEY_CACHE_SECONDS; after that it is refused.
    let cache = std::time::Duration::from_secs(members_tests::KEY_CACHE_SECONDS);
    tokio::time::sleep(cache + std::time::Duration::from_millis(500)).await;
    let revoked = a.get_member(a.root.as_str())?;
    ensure_eq!(revoked.status, 401, "revoked key");
    ensure_eq!(
        revoked.text,
        unknown_reply.text,
        "revoked and unknown keys get the same body"
    );
    Ok(())
}

pub async fn idempotency_key_replays(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let url = format!("{}/v1/members", t.api);
    let bearer = format!("Bearer {}", t.write_key);
    let send = |key: &str, body: &str| {
        http(
            "POST",
            &url,
            Some(body.as_bytes()),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            None,
        )
    };
    let body = r#"{"firstName":"Idem","email":"idem@example.com","role":"simple"}"#;
    let first = send("create-idem-1", body)?;
    let again = send("create-idem-1", body)?;
    ensure_eq!((first.status, again.status), (201, 201), "both succeed");
    ensure_eq!(first.json(), again.json(), "same body");
    ensure_eq!(
        first.header("location"),
        again.header("location"),
        "same Location"
    );
    ensure_eq!(
        again.header("idempotent-replayed"),
        Some("true"),
        "marked as replay"
    );
    let other = send(
        "create-idem-1",
        r#"{"firstName":"Other","email":"other@example.com","role":"simple"}"#,
    )?;
    ensure_eq!(
        (other.status, other.code()),
        (422, "idempotency_key_reused".to_owned()),
        "another body"
    );
    ensure_eq!(
        ctx.stack.members_of(&t.org).await?.len(),
        2,
        "one member created"
    );
    Ok(())
}

pub async fn primary_moves_on_create(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let r = t.post_member(&json!({"firstName": "New", "email": "new@example.com", "role": "admin", "isPrimary": true}))?;
    ensure_eq!(r.status, 201, "create primary: {}", r.text);
    let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    let org = st.organization(&t.org).await?;
    ensure_eq!(
        org.primary_member_id.map(|p| p.to_string()),
        Some(id),
        "organisation names the new primary"
    );
    let old = st
        .member(&t.org, t.root.as_str())
        .await?
        .ok_or("root missing")?;
    ensure!(!old.is_primary, "the old primary is no longer primary");
    ensure_eq!(old.version, 2, "the old primary's version moved");
    let got = t.get_member(t.root.as_str())?;
    ensure_eq!(got.header("etag"), Some("\"2\""), "its ETag too");
    let audit = st
        .items(&format!("ORG#{}#MEMBER#{}#AUDIT", t.org, t.root))
        .await?;
    ensure!(
        audit
            .iter()
            .any(|e| s(e, "action") == "member.primary_moved"),
        "handover audited"
    );
    st.check_invariants(&t.org).await
}

pub async fn hris_organisation_requires_hris_roles(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(true).await?;
    let cases = [
        (
            json!({"firstName": "A", "email": "a@example.com", "role": "simple"}),
            422,
            "hris_role_required",
        ),
        (
            json!({"firstName": "A", "email": "a@example.com", "role": "no_access", "hrisRole": "hris_no_access"}),
            422,
            "no_access_combination",
        ),
        (
            json!({"firstName": "A", "email": "a@example.com", "role": "no_access", "hrisRole": "hris_employee"}),
            201,
            "",
        ),
        (
            json!({"firstName": "B", "email": "b@example.com", "role": "admin", "hrisRole": "hris_admin"}),
            201,
            "",
        ),
    ];
    for (body, status, code) in cases {
        let r = t.post_member(&body)?;
        ensure_eq!(r.status, status, "{body}: {}", r.text);
        if !code.is_empty() {
            ensure_eq!(r.code(), code, "{body}");
        }
    }
    let org = st.organization(&t.org).await?;
    ensure_eq!(
        (
            org.counters.active_admins,
            org.counters.active_hris_admins,
            org.counters.active_dual_admins
        ),
        (2, 2, 2),
        "counters"
    );
    st.check_invariants(&t.org).await
}
