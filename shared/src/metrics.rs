//! Metrics: CloudWatch Embedded Metric Format lines on stdout, which CloudWatch Logs turns
//! into metrics (namespace [`NAMESPACE`]) with no call and no IAM grant. Written through the
//! `metrics` facade and `metrics_cloudwatch_embedded` (docs/operations.md, "Metrics", says
//! why that crate): the code counts, the crate writes the JSON.
//!
//! Every metric carries the dimension `Service` (`METRICS_SERVICE`: the stack's name, `local`
//! on a laptop) and at most one more, from a set fixed by the code: an operation (a route,
//! or a worker's name), an error `code`, a webhook attempt's `Result`. Never an organisation,
//! a key or anything else that grows with tenants.
//!
//! An operation's metrics are flushed when it ends ([`flush`]): after each request, each
//! stream batch, each queue message, each repair.

use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use metrics::Unit;
use metrics_cloudwatch_embedded::Collector;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// The CloudWatch namespace of every custom metric.
pub const NAMESPACE: &str = "MembersApi";

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

tokio::task_local! {
    /// The operation the current task works for (its metrics' `Operation`).
    static OPERATION: &'static str;
}

/// Installs the recorder once per process; later calls do nothing. Without it (unit tests,
/// the operator's CLI) every metric is dropped.
pub fn init() {
    if COLLECTOR.get().is_some() {
        return;
    }
    let service = std::env::var("METRICS_SERVICE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".into());
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension("Service", service)
        .init();
    match collector {
        Ok(collector) => {
            let _ = COLLECTOR.set(collector);
            describe();
        }
        Err(e) => tracing::warn!(error = %e, "metrics are off: the recorder did not install"),
    }
}

fn describe() {
    metrics::describe_histogram!("Latency", Unit::Milliseconds, "time to answer a request");
    metrics::describe_histogram!(
        "PlacingDelay",
        Unit::Milliseconds,
        "an audit entry's write to its place in the feed"
    );
    metrics::describe_histogram!(
        "OldestUnplacedAge",
        Unit::Seconds,
        "age of the oldest unplaced audit entry the repair found"
    );
}

/// Writes what was counted since the last flush on stdout (one line per dimension set),
/// where Lambda's log is, if anything.
pub fn flush() {
    flush_to(std::io::stdout().lock())
}

/// [`flush`] to another writer (the local consumer: stderr, its log).
pub fn flush_to(writer: impl std::io::Write) {
    if let Some(collector) = COLLECTOR.get() {
        if let Err(e) = collector.flush(writer) {
            tracing::warn!(error = %e, "metrics not written");
        }
    }
}

/// Runs `work` as `operation`: what it calls (DynamoDB calls, conflicts) counts for it.
pub async fn scoped<F: Future>(operation: &'static str, work: F) -> F::Output {
    OPERATION.scope(operation, work).await
}

/// The operation of the current task (`background` outside [`scoped`]).
pub fn operation() -> &'static str {
    OPERATION.try_with(|o| *o).unwrap_or("background")
}

/// One answered request: its count by outcome class, its latency, and the error's `code`
/// for a refusal (4xx) or an `outcome_unknown`.
pub fn request(
    operation: &'static str,
    status: u16,
    latency: Duration,
    code: Option<&'static str>,
) {
    let outcome = match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!("Requests", "Operation" => operation, "Outcome" => outcome).increment(1);
    // The service's totals, for the rate-limited share (an alarm's math cannot sum dimensions).
    metrics::counter!("Answered").increment(1);
    if code == Some("rate_limited") {
        metrics::counter!("RateLimited").increment(1);
    }
    metrics::histogram!("Latency", "Operation" => operation).record(latency.as_secs_f64() * 1e3);
    match code {
        Some("outcome_unknown") => metrics::counter!("OutcomeUnknown").increment(1),
        Some(code) if (400..500).contains(&status) => {
            metrics::counter!("Refusals", "Code" => code).increment(1)
        }
        _ => {}
    }
}

/// A transaction cancelled by a conflict and tried again.
pub fn conflict_retried() {
    metrics::counter!("TransactionConflicts", "Operation" => operation()).increment(1);
}

/// Events placed in their feeds, and the delay of the longest-waiting of them.
pub fn placed(events: usize, oldest: Duration) {
    metrics::counter!("EventsPlaced").increment(events as u64);
    metrics::histogram!("PlacingDelay").record(oldest.as_secs_f64() * 1e3);
}

/// The age of the oldest unplaced entry a repair found (zero when none).
pub fn oldest_unplaced(age: Duration) {
    metrics::histogram!("OldestUnplacedAge").record(age.as_secs_f64());
}

/// One webhook attempt, by whether the endpoint took it.
pub fn webhook_attempt(delivered: bool) {
    let result = if delivered { "succeeded" } else { "failed" };
    metrics::counter!("WebhookAttempts", "Result" => result).increment(1);
}

/// A delivery parked (given up, or not for its webhook to receive).
pub fn delivery_parked() {
    metrics::counter!("DeliveriesParked").increment(1);
}

/// The DynamoDB client's interceptor: each call, and the capacity it consumed, counted for
/// the current operation. It asks every call for its consumed capacity (`TOTAL`; free of
/// charge), unless the code asked for more.
#[derive(Debug)]
pub struct DynamoCalls;

macro_rules! each_operation {
    ($m:ident) => {
        $m!(get_item, GetItemInput, GetItemOutput, one);
        $m!(put_item, PutItemInput, PutItemOutput, one);
        $m!(update_item, UpdateItemInput, UpdateItemOutput, one);
        $m!(delete_item, DeleteItemInput, DeleteItemOutput, one);
        $m!(query, QueryInput, QueryOutput, one);
        $m!(scan, ScanInput, ScanOutput, one);
        $m!(batch_get_item, BatchGetItemInput, BatchGetItemOutput, many);
        $m!(
            batch_write_item,
            BatchWriteItemInput,
            BatchWriteItemOutput,
            many
        );
        $m!(
            transact_write_items,
            TransactWriteItemsInput,
            TransactWriteItemsOutput,
            many
        );
        $m!(
            transact_get_items,
            TransactGetItemsInput,
            TransactGetItemsOutput,
            many
        );
    };
}

fn units_of_one(c: Option<&ConsumedCapacity>) -> f64 {
    c.and_then(ConsumedCapacity::capacity_units).unwrap_or(0.0)
}

fn units_of_many(c: &[ConsumedCapacity]) -> f64 {
    c.iter().filter_map(ConsumedCapacity::capacity_units).sum()
}

impl Intercept for DynamoCalls {
    fn name(&self) -> &'static str {
        "MetricsDynamoCalls"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        macro_rules! ask {
            ($op:ident, $input:ident, $output:ident, $kind:ident) => {
                if let Some(i) = input.downcast_mut::<aws_sdk_dynamodb::operation::$op::$input>() {
                    if i.return_consumed_capacity.is_none() {
                        i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
                    }
                    return Ok(());
                }
            };
        }
        each_operation!(ask);
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = operation();
        metrics::counter!("DynamoCalls", "Operation" => operation).increment(1);
        let Some(Ok(output)) = context.output_or_error() else {
            return Ok(());
        };
        let mut units = 0.0;
        macro_rules! read {
            ($op:ident, $input:ident, $output:ident, one) => {
                if let Some(o) = output.downcast_ref::<aws_sdk_dynamodb::operation::$op::$output>()
                {
                    units = units_of_one(o.consumed_capacity());
                }
            };
            ($op:ident, $input:ident, $output:ident, many) => {
                if let Some(o) = output.downcast_ref::<aws_sdk_dynamodb::operation::$op::$output>()
                {
                    units = units_of_many(o.consumed_capacity());
                }
            };
        }
        each_operation!(read);
        if units > 0.0 {
            // A counter, not a histogram (which keeps 100 values a flush): thousandths of a
            // unit, summed (the dashboard divides by 1000).
            metrics::counter!("CapacityMilliUnits", "Operation" => operation)
                .increment((units * 1000.0).round() as u64);
        }
        Ok(())
    }
}
