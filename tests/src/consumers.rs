//! The stack's stream consumers (`membersctl events consume`, as `make dev` runs it) and
//! what the event tests do to the feed behind the API's back (retention played).

use crate::{workspace_root, Process, Stack, TestResult, TABLE};
use aws_sdk_dynamodb::types::AttributeValue;
use shared::model::OrgId;
use std::path::{Path, PathBuf};
use std::process::Command;

impl Stack {
    /// Starts the stream consumer (again): it resumes from its checkpoint.
    pub fn start_consumer(&self) -> TestResult {
        let n = self
            .consumer_starts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = self.dir.join(format!("consumer-{n}.log"));
        let process = consumer(&self.dynamo.endpoint(), &log)?;
        let mut slot = self.consumer.lock().map_err(|e| e.to_string())?;
        *slot = Some(process);
        Ok(())
    }

    /// Another consumer of the same stream, as long as the answer lives (a shard split or a
    /// second poller: both place the same records).
    pub fn extra_consumer(&self, name: &str) -> Result<Process, String> {
        consumer(
            &self.dynamo.endpoint(),
            &self.dir.join(format!("consumer-{name}.log")),
        )
    }

    /// Backdates a place of an organisation's feed past its retention (as 30 days would).
    pub async fn expire_feed_place(&self, org: &OrgId, seq: u64) -> TestResult {
        self.store
            .client()
            .update_item()
            .table_name(TABLE)
            .key("PK", AttributeValue::S(format!("ORG#{org}#EVENTS")))
            .key("SK", AttributeValue::S(format!("{seq:020}")))
            .update_expression("SET expiresAt = :past")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":past", AttributeValue::N("1".into()))
            .send()
            .await
            .map_err(|e| format!("expire place {seq}: {e:?}"))?;
        Ok(())
    }

    /// Deletes a place of an organisation's feed (as TTL does, within days of expiry).
    pub async fn delete_feed_place(&self, org: &OrgId, seq: u64) -> TestResult {
        self.store
            .client()
            .delete_item()
            .table_name(TABLE)
            .key("PK", AttributeValue::S(format!("ORG#{org}#EVENTS")))
            .key("SK", AttributeValue::S(format!("{seq:020}")))
            .send()
            .await
            .map_err(|e| format!("delete place {seq}: {e:?}"))?;
        Ok(())
    }

    /// Deletes an organisation's feed, its counter and places `1..=last`, as a table
    /// re-created (or restored from before the feed began) has none: the next event starts
    /// a feed of a new epoch.
    pub async fn reset_feed(&self, org: &OrgId, last: u64) -> TestResult {
        for seq in 1..=last {
            self.delete_feed_place(org, seq).await?;
        }
        self.store
            .client()
            .delete_item()
            .table_name(TABLE)
            .key("PK", AttributeValue::S(format!("ORG#{org}#EVENTS")))
            .key("SK", AttributeValue::S("#SEQUENCE".into()))
            .condition_expression("attribute_exists(PK)")
            .send()
            .await
            .map_err(|e| format!("delete the feed counter: {e:?}"))?;
        Ok(())
    }

    /// Kills the stream consumer at once (SIGKILL: mid-batch, no clean-up).
    pub fn kill_consumer(&self) -> TestResult {
        let mut slot = self.consumer.lock().map_err(|e| e.to_string())?;
        if let Some(process) = slot.take() {
            process.kill();
        }
        Ok(())
    }
}

/// A stream consumer (`membersctl events consume`) of the DynamoDB Local at `endpoint`, as
/// `make dev` runs it, but with webhook retries a hundred times sooner (0.3 s, 1.2 s, 6 s, …:
/// tests wait seconds, not hours).
pub fn consumer(endpoint: &str, log: &Path) -> Result<Process, String> {
    consumer_with(endpoint, log, &[])
}

/// A stream consumer as [`consumer`] with more arguments (`--max-retries 2`: it gives up on
/// a batch as Lambda does after its retries).
pub fn consumer_with(endpoint: &str, log: &Path, args: &[&str]) -> Result<Process, String> {
    let mut command = Command::new(membersctl());
    command
        .args(["events", "consume"])
        .args(args)
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .env("TABLE_NAME", TABLE)
        .env("WEBHOOKS_ALLOW_LOOPBACK", "true")
        .env("WEBHOOK_RETRY_SCALE", "0.01")
        // An endpoint failing this long is disabled (5 days on AWS): delivery.rs waits it out.
        .env("WEBHOOK_DISABLE_AFTER_SECONDS", "30")
        // As the functions (stack.rs): timeouts sized for DynamoDB Local on a busy machine.
        .env("DYNAMODB_ATTEMPT_TIMEOUT_MS", "10000");
    Process::spawn("membersctl events consume", command, log)
}

/// The operator's CLI as `cargo build` left it (`make test` builds the workspace first), or
/// `MEMBERSCTL` when set (`make bench`: the optimised build, as Lambda runs its functions).
pub fn membersctl() -> PathBuf {
    if let Some(path) = std::env::var_os("MEMBERSCTL") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug/membersctl")
}
