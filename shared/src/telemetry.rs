//! Logging: JSON lines in Lambda (and whenever `LOG_FORMAT=json`), human-readable otherwise.
//! `LOG_LEVEL` (or `RUST_LOG`) sets the filter, e.g. `info` or `debug,aws_smithy_runtime=info`
//! (levels per target, no regular expressions); default `info`.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, Layer};

pub fn init() {
    install("info", false);
    crate::metrics::init();
}

/// The operator's CLI: on stderr (its stdout is its answer, often read by a script), `warn`
/// unless `LOG_LEVEL` or `RUST_LOG` says otherwise.
pub fn init_cli() {
    install("warn", true)
}

fn install(default: &str, stderr: bool) {
    let level = std::env::var("LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.into());
    // The SDK's own crates are chatty at info; keep them at warn unless asked for.
    let filter: Targets =
        format!("aws_config=warn,aws_smithy_runtime=warn,aws_sdk_dynamodb=warn,{level}")
            .parse()
            .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let json = match std::env::var("LOG_FORMAT") {
        Ok(format) => format.eq_ignore_ascii_case("json"),
        Err(_) => std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok(),
    };
    let layer = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .with_target(false)
            .boxed()
    } else if stderr {
        fmt::layer()
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        fmt::layer().with_target(false).boxed()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}
