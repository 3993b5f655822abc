//! Lambda entry point for POST /v1/webhooks/{id}/deliveries/{deliveryId}/redeliver: wiring
//! only; the logic is `shared::handlers::redeliver`, the queue is `queue`.

mod queue;

use lambda_http::{run_concurrent, service_fn, Error};
use shared::handlers::redeliver;
use shared::http::serve;
use shared::store::DynamoStore;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::local::apply_concurrency();
    shared::telemetry::init();
    let store = Arc::new(DynamoStore::from_env()?);
    store.connect().await?;
    let queue = Arc::new(queue::Queue::from_env(store.clone())?);
    run_concurrent(service_fn(move |req| {
        let queue = queue.clone();
        serve(store.clone(), req, move |store, req| {
            let queue = queue.clone();
            async move { redeliver(store, req, queue.as_ref()).await }
        })
    }))
    .await
}
