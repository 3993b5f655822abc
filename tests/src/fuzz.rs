//! Contract fuzzing: schemathesis (from the project venv) against the running local stack and
//! openapi.yaml, with its default checks and its stateful phase (the document's links). Its
//! HAR report is then read back: every request it sent is counted, no answer may be a 5xx and
//! every 4xx must be a complete problem+json, or on a `/scim/v2` path a complete SCIM error.

use crate::workspace_root;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct FuzzConfig {
    /// Test cases per operation and phase (`--max-examples`).
    pub examples: u32,
    pub seed: u64,
}

pub struct FuzzRun {
    pub passed: bool,
    pub requests: usize,
    pub by_status: std::collections::BTreeMap<u16, usize>,
    /// schemathesis's own summary lines (test cases, failures).
    pub summary: Vec<String>,
    pub log: PathBuf,
    /// What the HAR showed that the gate forbids.
    pub problems: Vec<String>,
    /// Requests with a body that is not UTF-8, which `cargo lambda watch` answered with its own
    /// 500 before any function ran (tests/fuzz/hooks.py drops these failures; given such a
    /// body, the function answers 400 `malformed_json`).
    pub emulator_refused: usize,
}

fn schemathesis() -> PathBuf {
    std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".local/venv/bin/schemathesis"))
}

/// Runs schemathesis against `api` with `key`, and with `scim_key` (scope `scim`, which no
/// other key has) for SCIM's operations; reports land in `dir`.
pub fn run(
    api: &str,
    key: &str,
    scim_key: &str,
    dir: &Path,
    config: &FuzzConfig,
) -> Result<FuzzRun, String> {
    let har = dir.join("schemathesis.har");
    let log = dir.join("schemathesis.log");
    let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let status = Command::new(schemathesis())
        .current_dir(workspace_root())
        .args(["run", "openapi.yaml", "--url", api])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--max-examples", &config.examples.to_string()])
        .args(["--seed", &config.seed.to_string()])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        // One worker: hypothesis's lambda-source cache hits a CPython 3.11 AST bug when
        // several threads parse at once ("AST constructor recursion depth mismatch").
        .args(["--request-timeout", "30", "--workers", "1"])
        .args(["--report", "har", "--report-har-path"])
        .arg(&har)
        // The key is a real (local) secret: keep it out of the report and the log.
        .args(["--output-sanitize", "true"])
        .env(
            "SCHEMATHESIS_HOOKS",
            workspace_root().join("tests/fuzz/hooks.py"),
        )
        // schemathesis.toml sends the /scim/v2 operations with this key instead of `key`
        // (an operation's headers win over --header); sanitized out of the report like it.
        .env("MEMBERS_SCIM_KEY", scim_key)
        .env("HYPOTHESIS_STORAGE_DIRECTORY", dir.join("hypothesis"))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("{}: {e} (run `make deps`)", schemathesis().display()))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // The figures of its closing summary: "Test cases:" and the line after it, and the
    // final "===== N passed in 12.3s =====" line.
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut summary: Vec<String> = lines
        .windows(2)
        .filter(|w| w[0] == "Test cases:" || w[0] == "Failures:")
        .map(|w| format!("{} {}", w[0], w[1]))
        .collect();
    if let Some(last) = lines
        .iter()
        .rev()
        .find(|l| l.starts_with('=') && l.contains(" in "))
    {
        summary.push(last.trim_matches(|c| c == '=' || c == ' ').to_owned());
    }
    let entries = har_entries(&har)?;
    let mut by_status = std::collections::BTreeMap::new();
    let mut problems = Vec::new();
    let mut emulator_refused = 0;
    for e in &entries {
        let status = e["response"]["status"].as_u64().unwrap_or(0) as u16;
        *by_status.entry(status).or_insert(0) += 1;
        let what = format!(
            "{} {} → {status}",
            e["request"]["method"].as_str().unwrap_or("?"),
            e["request"]["url"].as_str().unwrap_or("?")
        );
        let emulator_page = crate::from_emulator(
            status,
            e["response"]["content"]["text"].as_str().unwrap_or(""),
        );
        // The HAR writes the bytes of a body that is not UTF-8 as U+FFFD.
        let not_utf8 = e["request"]["postData"]["text"]
            .as_str()
            .is_some_and(|t| t.contains('\u{FFFD}'));
        if emulator_page && not_utf8 {
            emulator_refused += 1;
        } else if status >= 500 || status == 0 {
            problems.push(format!("{what}: a server error"));
        } else if status >= 400 && e["request"]["method"] != "HEAD" {
            let url = e["request"]["url"].as_str().unwrap_or("");
            let refusal = if shared::scim::is_scim_path(url_path(url)) {
                scim_error(&e["response"], status)
            } else {
                problem_json(&e["response"], status)
            };
            if let Err(why) = refusal {
                problems.push(format!("{what}: {why}"));
            }
        }
    }
    Ok(FuzzRun {
        passed: status.success() && problems.is_empty() && !entries.is_empty(),
        requests: entries.len(),
        by_status,
        summary,
        log,
        problems,
        emulator_refused,
    })
}

fn har_entries(har: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(har)
        .map_err(|e| format!("{}: {e} (did schemathesis run?)", har.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", har.display()))?;
    Ok(doc["log"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The path of a HAR request's URL (no scheme, host, query or fragment).
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("", |at| &rest[at..]);
    path.split(['?', '#']).next().unwrap_or("")
}

/// A HAR response's `Content-Type`, as sent.
fn content_type(response: &Value) -> &str {
    response["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| {
            h["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("content-type"))
        })
        .and_then(|h| h["value"].as_str())
        .unwrap_or("")
}

/// A HAR response is RFC 9457 problem+json with our stable `code`.
fn problem_json(response: &Value, status: u16) -> Result<(), String> {
    let content_type = content_type(response);
    if content_type != "application/problem+json" {
        return Err(format!("content-type {content_type:?}"));
    }
    let body: Value = serde_json::from_str(response["content"]["text"].as_str().unwrap_or(""))
        .map_err(|e| format!("body is not JSON: {e}"))?;
    for field in ["type", "title", "detail", "code"] {
        if !body[field].is_string() {
            return Err(format!("problem without {field}: {body}"));
        }
    }
    if body["status"].as_u64() != Some(u64::from(status)) {
        return Err(format!("problem status {} on a {status}", body["status"]));
    }
    Ok(())
}

/// A HAR response on a `/scim/v2` path is an RFC 7644 §3.12 SCIM error: `schemas` the Error
/// URN alone, `status` the HTTP status as a string, a `detail`, and `scimType` (when there is
/// one) a string.
fn scim_error(response: &Value, status: u16) -> Result<(), String> {
    let content_type = content_type(response);
    if content_type != shared::scim::CONTENT_TYPE {
        return Err(format!("content-type {content_type:?}"));
    }
    let body: Value = serde_json::from_str(response["content"]["text"].as_str().unwrap_or(""))
        .map_err(|e| format!("body is not JSON: {e}"))?;
    if body["schemas"] != serde_json::json!([shared::scim::ERROR]) {
        return Err(format!("SCIM error without its schemas: {body}"));
    }
    if body["status"].as_str() != Some(status.to_string().as_str()) {
        return Err(format!(
            "SCIM error status {} on a {status}",
            body["status"]
        ));
    }
    if !body["detail"].is_string() {
        return Err(format!("SCIM error without detail: {body}"));
    }
    match &body["scimType"] {
        Value::Null | Value::String(_) => Ok(()),
        other => Err(format!("SCIM error scimType {other} is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::{problem_json, scim_error, url_path};
    use serde_json::json;

    fn response(content_type: &str, text: &str) -> serde_json::Value {
        json!({"headers": [{"name": "Content-Type", "value": content_type}], "content": {"text": text}})
    }

    #[test]
    fn a_complete_problem_passes() {
        let body = r#"{"type":"about:blank","title":"Not found","status":404,"detail":"x","code":"not_found"}"#;
        assert!(problem_json(&response("application/problem+json", body), 404).is_ok());
    }

    #[test]
    fn plain_json_or_a_missing_code_fails() {
        let body = r#"{"type":"about:blank","title":"Not found","status":404,"detail":"x"}"#;
        assert!(problem_json(&response("application/problem+json", body), 404).is_err());
        assert!(problem_json(&response("application/json", "{}"), 404).is_err());
        let wrong_status = r#"{"type":"t","title":"t","status":400,"detail":"x","code":"c"}"#;
        assert!(problem_json(&response("application/problem+json", wrong_status), 404).is_err());
    }

    #[test]
    fn scim_paths_answer_scim_errors() {
        let scim = "application/scim+json";
        let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"x"}"#;
        assert!(scim_error(&response(scim, body), 409).is_ok());
        let no_type = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"404","detail":"x"}"#;
        assert!(scim_error(&response(scim, no_type), 404).is_ok());
        // A number for status, another status, a problem+json, no detail: refused.
        let numeric = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":404,"detail":"x"}"#;
        assert!(scim_error(&response(scim, numeric), 404).is_err());
        assert!(scim_error(&response(scim, no_type), 400).is_err());
        let problem = r#"{"type":"about:blank","title":"Not found","status":404,"detail":"x","code":"not_found"}"#;
        assert!(scim_error(&response("application/problem+json", problem), 404).is_err());
        let no_detail =
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"404"}"#;
        assert!(scim_error(&response(scim, no_detail), 404).is_err());
        assert_eq!(
            url_path("http://127.0.0.1:9000/scim/v2/Users?filter=x"),
            "/scim/v2/Users"
        );
        assert_eq!(
            url_path("http://127.0.0.1:9000/v1/members/mem_1"),
            "/v1/members/mem_1"
        );
        assert_eq!(url_path("http://127.0.0.1:9000"), "");
    }
}
