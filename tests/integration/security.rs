//! Every route against every kind of bad credential, mass assignment, and hostile input.

use crate::Ctx;
use members_tests::{ensure, ensure_eq, http, Reply, TestResult, KEY_CACHE_SECONDS, ROUTES};
use serde_json::json;
use shared::auth::issue_key;
use shared::model::Scope;
use shared::scim::{ERROR as SCIM_ERROR, USER as SCIM_USER};
use std::sync::Arc;
use std::time::Duration;

fn is_write(method: &str) -> bool {
    method != "GET"
}

pub async fn every_route_refuses_bad_credentials_alike(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let (a, b) = (st.tenant(false).await?, st.tenant(false).await?);
    let victim =
        a.create(&json!({"firstName": "V", "email": "victim@example.com", "role": "simple"}))?;
    let role = a
        .call("POST", "/v1/roles", Some(&json!({"name": "Private"})))?
        .json()["id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    // A key of a's, revoked; and the cache's time for it to be forgotten everywhere.
    let revoked = issue_key(
        &a.org,
        "revoked",
        vec![Scope::ReadMembers, Scope::WriteMembers],
    )?;
    st.store
        .put_api_key(&revoked.record)
        .await
        .map_err(|e| format!("{e:?}"))?;
    st.store
        .revoke_api_key(&a.org, &revoked.record.key.id)
        .await
        .map_err(|e| format!("{e:?}"))?;
    tokio::time::sleep(Duration::from_secs(KEY_CACHE_SECONDS) + Duration::from_millis(500)).await;
    // w_members implies r_members (SPEC): a write-only key reads too.
    let write_only = issue_key(&a.org, "write-only", vec![Scope::WriteMembers])?;
    st.store
        .put_api_key(&write_only.record)
        .await
        .map_err(|e| format!("{e:?}"))?;

    // Webhook scopes are apart: w_webhooks implies r_webhooks, and a members key has neither.
    let hooks_only = issue_key(&a.org, "hooks-write-only", vec![Scope::WriteWebhooks])?;
    st.store
        .put_api_key(&hooks_only.record)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let webhook = a
        .call_as(
            &a.hooks_key,
            "POST",
            "/v1/webhooks",
            Some(&json!({"url": "http://127.0.0.1:9/x", "eventTypes": ["role.created"]})),
        )?
        .json()["id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    // A SCIM group of a's.
    let group = a
        .scim(
            "POST",
            "/Groups",
            Some(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Private"})),
            &[],
        )?
        .json()["id"]
        .as_str()
        .unwrap_or("")
        .to_owned();

    let unknown = format!("mapi_{}", "0f".repeat(32));
    let body = br#"{}"#;
    for (method, template) in ROUTES {
        let hooks = template.starts_with("/v1/webhooks");
        // SCIM: its own key, and its refusals are SCIM errors (no `code`: `kind` reads the
        // status a SCIM error carries instead).
        let scim = template.starts_with("/scim/");
        let kind = |r: &Reply, code: &str| {
            if scim {
                let e = r.json();
                let is_error = e["schemas"] == json!([SCIM_ERROR])
                    && e["status"] == json!(r.status.to_string())
                    && r.header("content-type") == Some("application/scim+json");
                (
                    r.status,
                    if is_error {
                        "scim error".to_owned()
                    } else {
                        r.text.clone()
                    },
                )
            } else {
                (
                    r.status,
                    if r.code() == code {
                        code.to_owned()
                    } else {
                        r.text.clone()
                    },
                )
            }
        };
        let want = |status: u16, code: &str| {
            (
                status,
                if scim {
                    "scim error".to_owned()
                } else {
                    code.to_owned()
                },
            )
        };
        let path = template
            .replace(
                "{id}",
                if template.starts_with("/v1/roles") {
                    &role
                } else if hooks {
                    &webhook
                } else if template.starts_with("/scim/v2/Schemas") {
                    SCIM_USER
                } else if template.starts_with("/scim/v2/ResourceTypes") {
                    "User"
                } else if template.starts_with("/scim/v2/Groups") {
                    &group
                } else {
                    &victim
                },
            )
            .replace("{deliveryId}", "dlv_none");
        let url = format!("{}{path}", a.api);
        let send = |auth: Option<String>| {
            let mut headers = vec![("Content-Type", "application/json".to_owned())];
            if let Some(auth) = auth {
                headers.push(("Authorization", auth));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http(method, &url, Some(body), &headers, None)
        };
        let route = format!("{method} {template}");
        let none = send(None)?;
        // Every answer, refusals included: never sniffed, never stored by a cache.
        ensure_eq!(
            (
                none.header("x-content-type-options"),
                none.header("cache-control")
            ),
            (Some("nosniff"), Some("no-store")),
            "{route}: headers"
        );
        ensure_eq!(
            kind(&none, "missing_api_key"),
            want(401, "missing_api_key"),
            "{route}: no key"
        );
        for garbage in [
            "Bearer",
            "Bearer ",
            "Basic YTpi",
            "Bearer mapi_short",
            "bearer  mapi_zz",
            "Token abc",
            &format!("Bearer {unknown}x"),
        ] {
            let r = send(Some(garbage.to_owned()))?;
            ensure_eq!(
                kind(&r, "invalid_api_key"),
                want(401, "invalid_api_key"),
                "{route}: {garbage:?}"
            );
        }
        let unknown_reply = send(Some(format!("Bearer {unknown}")))?;
        let revoked_reply = send(Some(format!("Bearer {}", revoked.secret)))?;
        ensure_eq!(unknown_reply.status, 401, "{route}: unknown key");
        ensure_eq!(
            revoked_reply.text,
            unknown_reply.text,
            "{route}: revoked and unknown keys get the same body"
        );
        ensure_eq!(
            revoked_reply.header("www-authenticate"),
            Some("Bearer"),
            "{route}"
        );
        if scim {
            // A /v1 key never reaches SCIM, whatever its scopes; the SCIM key reads.
            for key in [&a.write_key, &a.hooks_key, &a.read_key] {
                let r = send(Some(format!("Bearer {key}")))?;
                ensure_eq!(kind(&r, ""), want(403, ""), "{route}: a /v1 key on SCIM");
            }
            if !is_write(method) {
                let r = send(Some(format!("Bearer {}", a.scim_key)))?;
                ensure_eq!(
                    (r.status, r.header("cache-control")),
                    (200, Some("no-store")),
                    "{route}: the SCIM key reads: {}",
                    r.text
                );
            }
        } else if is_write(method) {
            let r = send(Some(format!("Bearer {}", a.read_key)))?;
            ensure_eq!(
                (r.status, r.code()),
                (403, "insufficient_scope".to_owned()),
                "{route}: read-only key"
            );
        } else if hooks {
            let r = send(Some(format!("Bearer {}", hooks_only.secret)))?;
            ensure_eq!(
                (r.status, r.header("cache-control")),
                (200, Some("no-store")),
                "{route}: a w_webhooks key reads: {}",
                r.text
            );
            let r = send(Some(format!("Bearer {}", write_only.secret)))?;
            ensure_eq!(
                (r.status, r.code()),
                (403, "insufficient_scope".to_owned()),
                "{route}: a members key has no webhook scope"
            );
        } else {
            let r = send(Some(format!("Bearer {}", write_only.secret)))?;
            ensure_eq!(
                (r.status, r.header("cache-control")),
                (200, Some("no-store")),
                "{route}: a w_members key reads: {}",
                r.text
            );
        }
        // Another organisation's key never sees or touches a's data (for webhook routes, a
        // key with the webhook scope, so that the answer is about the resource).
        let foreign_key = if hooks {
            &b.hooks_key
        } else if scim {
            &b.scim_key
        } else {
            &b.write_key
        };
        let foreign = send(Some(format!("Bearer {foreign_key}")))?;
        ensure!(
            !foreign.text.contains(&victim)
                && !foreign.text.contains(&webhook)
                && !foreign.text.contains(&group)
                && !foreign.text.contains(a.org.as_str()),
            "{route}: a's data leaked to b: {}",
            foreign.text
        );
        // (SCIM's schemas and resource types are the same for everyone.)
        let tenant_resource = !template.starts_with("/scim/v2/Schemas")
            && !template.starts_with("/scim/v2/ResourceTypes");
        if template.contains("{id}") && tenant_resource {
            ensure_eq!(
                foreign.status,
                404,
                "{route}: another organisation's resource is a 404"
            );
        }
    }
    // a's member and role are untouched by all of that.
    ensure_eq!(
        a.get_member(&victim)?.json()["version"],
        json!(1),
        "victim unchanged"
    );
    ensure!(
        a.call("GET", "/v1/roles", None)?.text.contains(&role),
        "role still there"
    );
    ensure_eq!(
        a.scim("GET", &format!("/Groups/{group}"), None, &[])?
            .json()["displayName"],
        json!("Private"),
        "group untouched"
    );
    st.check_invariants(&a.org).await
}

pub async fn mass_assignment_and_hostile_input_are_refused(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let t = st.tenant(false).await?;
    let id = t.create(&json!({"firstName": "M", "email": "m@example.com", "role": "simple"}))?;
    let path = format!("/v1/members/{id}");
    // (case, method, path, body, status, code)
    let long = "x".repeat(60 * 1024);
    let cases: Vec<(&str, &str, String, serde_json::Value, u16, &str)> = vec![
        (
            "id",
            "PATCH",
            path.clone(),
            json!({"id": "mem_other"}),
            422,
            "validation_failed",
        ),
        (
            "version",
            "PATCH",
            path.clone(),
            json!({"version": 99}),
            422,
            "validation_failed",
        ),
        (
            "updatedAt",
            "PATCH",
            path.clone(),
            json!({"updatedAt": "2030-01-01T00:00:00Z"}),
            422,
            "validation_failed",
        ),
        (
            "backgroundCheckRequests",
            "PATCH",
            path.clone(),
            json!({"backgroundCheckRequests": [{"id": "x", "status": "clear", "requestedAt": "2026-01-01T00:00:00Z"}]}),
            422,
            "validation_failed",
        ),
        (
            "user",
            "PATCH",
            path.clone(),
            json!({"user": {"email": "evil@example.com"}}),
            422,
            "validation_failed",
        ),
        (
            "passwordHash",
            "PATCH",
            path.clone(),
            json!({"passwordHash": "$argon2id$v=19$..."}),
            422,
            "validation_failed",
        ),
        (
            "another organisation",
            "PATCH",
            path.clone(),
            json!({"organizationId": "org_01someoneelse"}),
            422,
            "organization_mismatch",
        ),
        (
            "settings.hasPassword",
            "PATCH",
            path.clone(),
            json!({"settings": {"hasPassword": true}}),
            422,
            "validation_failed",
        ),
        (
            "organisation counters",
            "PATCH",
            "/v1/organization".into(),
            json!({"counts": {"activeAdmins": 0}}),
            422,
            "validation_failed",
        ),
        (
            "organisation id",
            "PATCH",
            "/v1/organization".into(),
            json!({"id": "org_x"}),
            422,
            "validation_failed",
        ),
        (
            "role holders",
            "POST",
            "/v1/roles".into(),
            json!({"name": "R", "activeHolders": -5}),
            422,
            "validation_failed",
        ),
        (
            "a very long string",
            "PATCH",
            path.clone(),
            json!({"headline": long}),
            422,
            "validation_failed",
        ),
        (
            "control characters",
            "PATCH",
            path.clone(),
            json!({"jobTitle": "a\u{0000}b\u{001b}[31m"}),
            422,
            "validation_failed",
        ),
        (
            "a huge array",
            "PATCH",
            path.clone(),
            json!({"locations": vec![json!({"locationId": "l", "role": ["viewer"]}); 1000]}),
            422,
            "validation_failed",
        ),
        (
            "a number for a string",
            "PATCH",
            path.clone(),
            json!({"email": 12}),
            422,
            "validation_failed",
        ),
        (
            "an object for a list",
            "PATCH",
            path.clone(),
            json!({"collaborationRules": {"role": "simple"}}),
            422,
            "validation_failed",
        ),
        (
            "a float label",
            "PATCH",
            path.clone(),
            json!({"fleetDmLabelId": 1.5}),
            422,
            "validation_failed",
        ),
        (
            "a huge label",
            "PATCH",
            path.clone(),
            json!({"fleetDmLabelId": 18446744073709551615u64}),
            422,
            "validation_failed",
        ),
        (
            "a negative label",
            "PATCH",
            path.clone(),
            json!({"fleetDmLabelId": -1}),
            422,
            "validation_failed",
        ),
    ];
    for (case, method, path, body, status, code) in cases {
        let r = t.call(method, &path, Some(&body))?;
        ensure_eq!(
            (r.status, r.code()),
            (status, code.to_owned()),
            "{case}: {}",
            r.text.chars().take(300).collect::<String>()
        );
    }
    let bearer = format!("Bearer {}", t.write_key);
    let url = format!("{}{path}", t.api);
    let raw: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "deep nesting",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            413,
        ),
        (
            "deep nesting under 64 KiB",
            format!("{{\"a\":{}{}}}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes(),
            400,
        ),
        (
            "a lone surrogate",
            br#"{"headline":"\ud800"}"#.to_vec(),
            400,
        ),
        ("trailing garbage", br#"{"headline":"x"} {"#.to_vec(), 400),
        (
            "duplicate keys",
            br#"{"headline":"x","headline":"y"}"#.to_vec(),
            200,
        ),
        ("a bare string", br#""hello""#.to_vec(), 422),
        ("null", b"null".to_vec(), 422),
    ];
    for (case, body, status) in raw {
        let r = http(
            "PATCH",
            &url,
            Some(&body),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            None,
        )?;
        ensure_eq!(
            r.status,
            status,
            "{case}: {}",
            r.text.chars().take(300).collect::<String>()
        );
        ensure!(r.status < 500, "{case}: never a 5xx");
    }
    let m = t.get_member(&id)?.json();
    ensure_eq!(
        (m["email"].clone(), m["organizationId"].clone()),
        (json!("m@example.com"), json!(t.org.as_str())),
        "nothing was assigned"
    );
    st.check_invariants(&t.org).await
}

/// What README "What listens where" says: the API (cargo lambda watch) only on 127.0.0.1;
/// DynamoDB Local, which has no option to choose an interface, on all of them, but sending
/// no telemetry and refusing browser pages of other origins.
pub async fn the_local_stack_listens_where_the_readme_says(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let api_port: u16 = st
        .api
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let api = members_tests::listening_addresses(api_port);
    ensure!(
        !api.is_empty() && api.iter().all(|a| a == "127.0.0.1"),
        "the API listens on 127.0.0.1 only: {api:?}"
    );
    let dynamo = members_tests::listening_addresses(st.dynamo.port);
    ensure!(
        !dynamo.is_empty() && dynamo.iter().all(|a| a == "::" || a == "0.0.0.0"),
        "DynamoDB Local listens on every interface, as the README says (update it if this changed): {dynamo:?}"
    );
    // A browser's preflight, sent raw: DynamoDB Local is not the API (no contract record).
    let preflight = {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", st.dynamo.port))
            .map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        write!(
            tcp,
            "OPTIONS / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        answer.to_ascii_lowercase()
    };
    ensure!(
        preflight.starts_with("http/1.1 4") && !preflight.contains("access-control-allow-origin"),
        "a page of another origin may not call DynamoDB Local: {preflight}"
    );
    let log = std::fs::read_to_string(st.dir.join("dynamodb.log")).unwrap_or_default();
    ensure!(
        log.contains("CorsParams:\thttp://127.0.0.1"),
        "DynamoDB Local started with the CORS allow-list: {log}"
    );
    Ok(())
}
