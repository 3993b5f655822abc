//! Lambda entry point for what no route serves (API Gateway's `ANY` routes of every path and
//! `$default`): 405 with `Allow`, or 404. Wiring only; the logic is `shared::handlers::fallback`.

use lambda_http::{run_concurrent, service_fn, Error};
use shared::handlers::fallback;
use shared::http::serve;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::local::apply_concurrency();
    shared::telemetry::init();
    // No store: the answer depends on the path and the method only.
    let nothing = Arc::new(());
    run_concurrent(service_fn(move |req| serve(nothing.clone(), req, fallback))).await
}
