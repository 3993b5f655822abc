//! Lambda entry point for GET /v1/members/{id}: wiring only; the logic is `shared::handlers::get_member`.

use lambda_http::{run, service_fn, Error};
use shared::handlers::get_member;
use shared::http::serve;
use shared::store::DynamoStore;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Built once per instance, reused by every invocation.
    let store = Arc::new(DynamoStore::from_env().await);
    run(service_fn(move |req| serve(store.clone(), req, get_member))).await
}
