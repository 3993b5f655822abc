//! Writes over HTTP as clients send them: conditional requests (`If-Match`, `?dryRun=true`)
//! and seed 002's PUT, with its shape and its rules.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, http, TestResult};
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn if_match_and_dry_run_over_http(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let id = t.create(&json!({"firstName": "E", "email": "e@example.com", "role": "simple", "settings": {"password": "first-password-1"}}))?;
    let url = format!("{}/v1/members/{id}", t.api);
    let bearer = format!("Bearer {}", t.write_key);
    let send = |body: &str, extra: &[(&str, &str)], query: &str| {
        let mut headers = vec![
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        http(
            "PATCH",
            &format!("{url}{query}"),
            Some(body.as_bytes()),
            &headers,
            None,
        )
    };
    let ok = send(
        r#"{"headline":"one","settings":{"password":"second-password-2"}}"#,
        &[("If-Match", "\"1\"")],
        "",
    )?;
    ensure_eq!(
        (ok.status, ok.header("etag")),
        (200, Some("\"2\"")),
        "If-Match current: {}",
        ok.text
    );
    ensure!(
        !ok.text.contains("second-password") && !ok.text.contains("argon2"),
        "no password in the answer"
    );
    let stale = send(r#"{"headline":"two"}"#, &[("If-Match", "\"1\"")], "")?;
    ensure_eq!(
        (stale.status, stale.code()),
        (412, "precondition_failed".to_owned()),
        "If-Match stale"
    );
    let dry = send(r#"{"role":"admin"}"#, &[], "?dryRun=true")?;
    ensure_eq!(
        (dry.status, dry.json()["role"].clone()),
        (200, json!("admin")),
        "dry run answers as it would be"
    );
    ensure_eq!(
        t.get_member(&id)?.json()["role"],
        "simple",
        "dry run wrote nothing"
    );
    let dry_last_admin = send(r#"{"role":"simple"}"#, &[], "?dryRun=true");
    ensure_eq!(dry_last_admin?.status, 200, "dry run of a harmless change");
    let root_url = format!("{}/v1/members/{}?dryRun=true", t.api, t.root);
    let r = http(
        "PATCH",
        &root_url,
        Some(br#"{"role":"simple"}"#),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        None,
    )?;
    ensure_eq!(
        (r.status, r.code()),
        (422, "last_admin".to_owned()),
        "dry run runs the counter rules"
    );
    let audit = st.audit_events(&t.org, &id).await?;
    let text = serde_json::to_string(&audit).unwrap_or_default();
    ensure!(
        text.contains("[redacted]") && !text.contains("second-password"),
        "audit redacts the new password"
    );
    st.check_invariants(&t.org).await
}

pub async fn put_members_over_http(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(true).await?;
    let id = t.create(&json!({"firstName": "John", "lastName": "Doe", "email": "john.doe@example.com", "role": "simple", "hrisRole": "hris_employee", "headline": "headline"}))?;
    let bearer = format!("Bearer {}", t.write_key);
    let put = |body: Value| {
        http(
            "PUT",
            &format!("{}/v1/members", t.api),
            Some(body.to_string().as_bytes()),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            None,
        )
    };
    let r = put(
        json!({"id": id, "role": "reviewer", "hris_role": "hris_admin", "collaboration_rules": [{"role": "reviewer", "departments": [], "locations": []}]}),
    )?;
    ensure_eq!(r.status, 200, "{}", r.text);
    ensure_eq!(
        r.json(),
        json!({"id": id, "name": "John Doe", "headline": "headline", "email": "john.doe@example.com", "role": "reviewer", "hris_role": "hris_admin", "collaboration_rules": [{"role": "reviewer", "departments": [], "locations": []}]}),
        "seed 002's shape"
    );
    let r = put(json!({"id": id, "role": "no_access", "hris_role": "hris_no_access"}))?;
    ensure_eq!(
        (r.status, r.code()),
        (422, "no_access_combination".to_owned()),
        "seed 002: no_access + hris_no_access"
    );
    let r = put(json!({"id": t.root, "role": "simple", "hris_role": "hris_admin"}))?;
    ensure_eq!(
        (r.status, r.code()),
        (422, "last_admin".to_owned()),
        "seed 002: last admin"
    );
    let r = put(json!({"id": t.root, "role": "admin", "hris_role": "hris_employee"}))?;
    ensure_eq!(
        (r.status, r.code()),
        (422, "last_admin_hris_admin".to_owned()),
        "seed 002: the only admin + hris_admin"
    );
    // Seed 002: hris_role is "Mandatory if Workable HR is enabled" (PATCH stays partial).
    for body in [
        json!({"id": id, "role": "simple"}),
        json!({"id": id, "role": "simple", "hris_role": null}),
    ] {
        let r = put(body.clone())?;
        ensure_eq!(
            (r.status, r.code(), r.json()["errors"][0]["field"].clone()),
            (422, "hris_role_required".to_owned(), json!("hris_role")),
            "{body}: {}",
            r.text
        );
    }
    let m = ctx.stack.member(&t.org, &id).await?;
    ensure_eq!(
        m.map(|m| m.role.as_str().to_owned()),
        Some("reviewer".to_owned()),
        "the refused PUTs wrote nothing"
    );
    let r = put(json!({"id": id, "role": "simple", "hris_role": "hris_employee"}))?;
    ensure_eq!(r.status, 200, "{}", r.text);
    ensure_eq!(
        t.patch_member(&id, &json!({"jobTitle": "PATCH stays partial"}))?
            .status,
        200,
        "PATCH without hrisRole"
    );
    // With HRIS off, hris_role may be left out: it stays as it is.
    let off = ctx.stack.tenant(false).await?;
    let other = off.create(&json!({"firstName": "O", "email": "o@example.com", "role": "simple", "hrisRole": "hris_employee"}))?;
    let r = http(
        "PUT",
        &format!("{}/v1/members", off.api),
        Some(
            json!({"id": other, "role": "reviewer"})
                .to_string()
                .as_bytes(),
        ),
        &[
            ("Authorization", &format!("Bearer {}", off.write_key)),
            ("Content-Type", "application/json"),
        ],
        None,
    )?;
    ensure_eq!(
        (r.status, r.json()["hris_role"].clone()),
        (200, json!("hris_employee")),
        "HRIS off: {}",
        r.text
    );
    ctx.stack.check_invariants(&t.org).await
}
