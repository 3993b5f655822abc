//! Lambda entry point for DELETE /scim/v2/Groups/{id}: wiring only; the logic is `shared::handlers::scim_delete_group`.

use lambda_http::{run_concurrent, service_fn, Error};
use shared::handlers::scim_delete_group;
use shared::scim::serve;
use shared::store::DynamoStore;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::local::apply_concurrency();
    shared::telemetry::init();
    // Built once per instance, reused by every invocation.
    let store = Arc::new(DynamoStore::from_env()?);
    // The TLS connection and a proof that the table and role work, before any request.
    store.connect().await?;
    // Sequential in classic Lambda; concurrent where AWS_LAMBDA_MAX_CONCURRENCY > 1.
    run_concurrent(service_fn(move |req| {
        serve(store.clone(), req, scim_delete_group)
    }))
    .await
}
