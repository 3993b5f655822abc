//! Logging: JSON lines in Lambda (and whenever `LOG_FORMAT=json`), human-readable otherwise.
//! `LOG_LEVEL` (or `RUST_LOG`) sets the filter; default `info`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = std::env::var("LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    // The SDK's own crates are chatty at info; keep them at warn unless asked for.
    let filter = EnvFilter::try_new(format!(
        "{filter},aws_config=warn,aws_smithy_runtime=warn,aws_sdk_dynamodb=warn"
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("LOG_FORMAT") {
        Ok(format) => format.eq_ignore_ascii_case("json"),
        Err(_) => std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}
