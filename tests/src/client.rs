//! The tests' HTTP client: a tenant's calls, whole answers, the emulator's lost answers
//! asked again, Lambda's 6 MB limit enforced, and the log scan.

use crate::{contract, ensure, TestResult};
use serde_json::Value;
use shared::model::{MemberId, OrgId};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// An organisation of a test, with its keys.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub org: OrgId,
    pub root: MemberId,
    pub write_key: String,
    pub read_key: String,
    /// `w_members` and `w_webhooks`.
    pub hooks_key: String,
    pub hooks_key_id: shared::model::ApiKeyId,
    /// `scim` (an identity provider's key: /scim/v2 only).
    pub scim_key: String,
    pub api: String,
}

impl Tenant {
    pub fn post_member(&self, body: &Value) -> Result<Reply, String> {
        let bearer = format!("Bearer {}", self.write_key);
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        http(
            "POST",
            &format!("{}/v1/members", self.api),
            Some(body.to_string().as_bytes()),
            &headers,
            None,
        )
    }

    pub fn patch_member(&self, id: &str, body: &Value) -> Result<Reply, String> {
        let bearer = format!("Bearer {}", self.write_key);
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        http(
            "PATCH",
            &format!("{}/v1/members/{id}", self.api),
            Some(body.to_string().as_bytes()),
            &headers,
            None,
        )
    }

    /// PATCH /v1/organization with the read/write key.
    pub fn patch_organization(&self, body: &Value) -> Result<Reply, String> {
        self.call("PATCH", "/v1/organization", Some(body))
    }

    /// Creates a member and returns its id.
    pub fn create(&self, body: &Value) -> Result<String, String> {
        let r = self.post_member(body)?;
        if r.status != 201 {
            return Err(format!("create {body}: {} {}", r.status, r.text));
        }
        Ok(r.json()["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Sends all `requests` (method, path, body) at the same instant, one thread each.
    pub fn race(&self, requests: Vec<(&'static str, String, Value)>) -> Result<Vec<Reply>, String> {
        self.race_with(requests, None)
    }

    /// [`race`](Self::race), every request also carrying `Idempotency-Key: idempotency_key`.
    pub fn race_with(
        &self,
        requests: Vec<(&'static str, String, Value)>,
        idempotency_key: Option<&str>,
    ) -> Result<Vec<Reply>, String> {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(requests.len()));
        let handles: Vec<_> = requests
            .into_iter()
            .map(|(method, path, body)| {
                let (barrier, url, bearer) = (
                    barrier.clone(),
                    format!("{}{path}", self.api),
                    format!("Bearer {}", self.write_key),
                );
                let idempotency_key = idempotency_key.map(str::to_owned);
                std::thread::spawn(move || {
                    let mut headers = vec![
                        ("Authorization", bearer.as_str()),
                        ("Content-Type", "application/json"),
                    ];
                    if let Some(k) = &idempotency_key {
                        headers.push(("Idempotency-Key", k.as_str()));
                    }
                    barrier.wait();
                    http(
                        method,
                        &url,
                        Some(body.to_string().as_bytes()),
                        &headers,
                        None,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "client thread panicked".to_owned())?)
            .collect()
    }

    /// Any request with the read/write key and a JSON body (or none).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, String> {
        self.call_as(&self.write_key, method, path, body)
    }

    /// Any request with `key` and a JSON body (or none).
    pub fn call_as(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        let bearer = format!("Bearer {key}");
        let mut headers = vec![("Authorization", bearer.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let body = body.map(|b| b.to_string().into_bytes());
        http(
            method,
            &format!("{}{path}", self.api),
            body.as_deref(),
            &headers,
            None,
        )
    }

    /// A SCIM request with the SCIM key (`path` under /scim/v2), a SCIM body, and
    /// `headers` besides.
    pub fn scim(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let bearer = format!("Bearer {}", self.scim_key);
        let mut all = vec![("Authorization", bearer.as_str())];
        if body.is_some() {
            all.push(("Content-Type", "application/scim+json"));
        }
        all.extend_from_slice(headers);
        let body = body.map(|b| b.to_string().into_bytes());
        http(
            method,
            &format!("{}/scim/v2{path}", self.api),
            body.as_deref(),
            &all,
            None,
        )
    }

    pub fn get_member(&self, id: &str) -> Result<Reply, String> {
        let bearer = format!("Bearer {}", self.read_key);
        http(
            "GET",
            &format!("{}/v1/members/{id}", self.api),
            None,
            &[("Authorization", bearer.as_str())],
            None,
        )
    }
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }
}

/// Whether an answer is `cargo lambda watch`'s own error page rather than a function's: a
/// 5xx that is not one of our problems (their `type` is under members-api.dev). The emulator
/// gives one when it cannot pass a request on (a body that is not UTF-8) or loses track of
/// an invocation.
pub fn from_emulator(status: u16, body: &str) -> bool {
    status >= 500 && !body.contains("members-api.dev/problems/")
}

static EMULATOR_RETRIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many GETs [`http`] has asked again because the emulator lost their answer.
pub fn emulator_retries() -> usize {
    EMULATOR_RETRIES.load(std::sync::atomic::Ordering::Relaxed)
}

/// One request; 4xx and 5xx are answers, not errors. `timeout` defaults to 30 s.
/// `cargo lambda watch` now and then loses an answer its function gave (a timeout, or its
/// own 500 page): a GET is safe to ask again, up to twice, and is counted
/// ([`emulator_retries`]); any other method gets the answer as it came.
pub fn http(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
    timeout: Option<Duration>,
) -> Result<Reply, String> {
    let reply = exchange(method, url, body, headers, timeout)?;
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(url);
    contract::record(contract::Recorded {
        method: method.to_owned(),
        path: path.split('?').next().unwrap_or(path).to_owned(),
        status: reply.status,
        content_type: reply.header("content-type").map(str::to_owned),
        body: reply.text.clone(),
    });
    Ok(reply)
}

/// [`http`] without recording the answer for the contract check: for servers that are not
/// the API (the tests' webhook receiver).
pub fn exchange(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
    timeout: Option<Duration>,
) -> Result<Reply, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout.unwrap_or(Duration::from_secs(30))))
        .build()
        .into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(body.map(<[u8]>::to_vec).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let mut attempt = 0;
    let reply = loop {
        attempt += 1;
        let retry = method == "GET" && attempt < 3;
        match agent.run(request.clone()) {
            Err(ureq::Error::Timeout(_)) if retry => {}
            Err(e) => return Err(format!("{method} {url}: {e}")),
            Ok(mut response) => {
                let headers = response
                    .headers()
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned()))
                    })
                    .collect();
                let text = response
                    .body_mut()
                    .read_to_string()
                    .map_err(|e| e.to_string())?;
                let reply = Reply {
                    status: response.status().as_u16(),
                    headers,
                    text,
                };
                lambda_answer_fits(&reply).map_err(|e| format!("{method} {url}: {e}"))?;
                if !(retry && from_emulator(reply.status, &reply.text)) {
                    break reply;
                }
            }
        }
        EMULATOR_RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    Ok(reply)
}

/// What Lambda lets a synchronous invocation answer: 6 MB (6 MiB), the whole response
/// document API Gateway receives from the function (`statusCode`, headers, the body as a JSON
/// string). Past it, Lambda fails the invocation and API Gateway answers 500.
pub const LAMBDA_ANSWER_LIMIT: usize = 6 * 1024 * 1024;

/// Fails an answer that Lambda would not have let through, as API Gateway on AWS would have
/// failed it: `cargo lambda watch` passes answers of any size on.
pub fn lambda_answer_fits(reply: &Reply) -> TestResult {
    let body = serde_json::to_string(&reply.text).map_or(usize::MAX, |s| s.len());
    let headers: usize = reply
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 6)
        .sum();
    let size = body.saturating_add(headers).saturating_add(64);
    ensure!(
        size <= LAMBDA_ANSWER_LIMIT,
        "the function answered {size} bytes ({} of body): over Lambda's {LAMBDA_ANSWER_LIMIT}-byte \
         limit for a synchronous answer, which API Gateway turns into a 500 on AWS",
        reply.text.len()
    );
    Ok(())
}

/// Scans a log for what must never be logged: API keys, password hashes, passwords and
/// emails the tests sent, request bodies.
pub fn no_secret_in(log: &Path) -> TestResult {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    ensure!(
        text.contains("request finished"),
        "the log has request lines at all ({})",
        log.display()
    );
    for needle in [
        "mapi_",
        "$argon2",
        "never-shown",
        "@example.com",
        "password\":",
        "firstName",
    ] {
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return Err(format!("{needle:?} appears in {}: {line}", log.display()));
        }
    }
    Ok(())
}
