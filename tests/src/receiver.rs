//! The tests' webhook receiver (tests/webhooks/receiver.py): a real HTTP server on
//! 127.0.0.1 that verifies every delivery with the `standardwebhooks` package.

use crate::{exchange, Process};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Receiver {
    pub port: u16,
    _process: Process,
}

impl Receiver {
    /// Starts one, its log and port file in `dir`.
    pub fn start(dir: &Path, name: &str) -> Result<Receiver, String> {
        let root = crate::workspace_root();
        let port_file = dir.join(format!("receiver-{name}.port"));
        let _ = std::fs::remove_file(&port_file);
        let mut command = Command::new(root.join(".local/venv/bin/python"));
        command
            .arg(root.join("tests/webhooks/receiver.py"))
            .arg(&port_file);
        let process = Process::spawn(
            "webhook receiver",
            command,
            &dir.join(format!("receiver-{name}.log")),
        )?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok())
            {
                return Ok(Receiver {
                    port,
                    _process: process,
                });
            }
            if Instant::now() > deadline {
                return Err("the webhook receiver did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let r = exchange(
            "POST",
            &self.url(path),
            Some(body.to_string().as_bytes()),
            &[("Content-Type", "application/json")],
            None,
        )?;
        Ok(serde_json::from_str(&r.text).unwrap_or(Value::Null))
    }

    /// Verify with these secrets; answer 500 for the next `fail_for` seconds.
    pub fn control(&self, secrets: &[&str], fail_for: f64) -> Result<(), String> {
        self.post(
            "/control",
            &json!({"secrets": secrets, "fail_for_seconds": fail_for}),
        )
        .map(|_| ())
    }

    /// How it answers from now on (the receiver's `/control` fields: `status` with
    /// `retry_after`, `hang_seconds`; see webhooks/receiver.py).
    pub fn behave(&self, how: &Value) -> Result<(), String> {
        self.post("/control", how).map(|_| ())
    }

    /// Every delivery so far, in arrival order.
    pub fn received(&self) -> Result<Vec<Value>, String> {
        let r = exchange("GET", &self.url("/received"), None, &[], None)?;
        serde_json::from_str(&r.text).map_err(|e| e.to_string())
    }

    /// Whether `standardwebhooks` accepts this message, and why not.
    pub fn verify(&self, headers: &Value, body: &str) -> Result<(bool, String), String> {
        let v = self.post("/verify", &json!({"headers": headers, "body": body}))?;
        Ok((
            v["valid"].as_bool().unwrap_or(false),
            v["error"].as_str().unwrap_or("").to_owned(),
        ))
    }
}
