//! Lambda entry point on a schedule (template.yaml: every 15 minutes): the repair of the
//! event pipeline, `shared::consumer::repair`, over every organisation, of entries older
//! than 15 minutes (younger ones are the live consumer's), publishing on the same bus as
//! `publish-events`, through the same code.

#[path = "../../publish-events/src/eventbridge.rs"]
mod eventbridge;

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::consumer::repair;
use shared::model::Timestamp;
use shared::store::dynamo::Window;
use shared::store::DynamoStore;
use std::sync::Arc;

/// Entries younger than this are left to the live consumer.
const GRACE_MILLIS: i64 = 15 * 60 * 1000;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let store = Arc::new(DynamoStore::from_env()?);
    store.connect().await?;
    let bus = Arc::new(eventbridge::Bus::from_env()?);
    // Metrics every 30 s during a run too: a repair that runs into its timeout (a long
    // incident's backlog) still reports the age of what it found.
    tokio::spawn(async {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            every.tick().await;
            shared::metrics::flush();
        }
    });
    run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let (store, bus) = (store.clone(), bus.clone());
        async move {
            let window = Window {
                since: None,
                before: Timestamp::now().plus_millis(-GRACE_MILLIS),
            };
            let done = shared::metrics::scoped(
                "repair-events",
                repair(&store, None, window, bus.as_ref()),
            )
            .await;
            shared::metrics::flush();
            let done = done.map_err(|e| Error::from(format!("repair failed: {e}")))?;
            tracing::info!(
                placed = done.placed,
                published = done.published,
                failed = done.failed,
                "repair finished"
            );
            // A failure is an error of the invocation: the function's Errors metric counts it,
            // and the next run tries again.
            match done.failed {
                0 => Ok::<_, Error>(
                    serde_json::json!({"placed": done.placed, "published": done.published}),
                ),
                n => Err(Error::from(format!(
                    "{n} chunks or entries could not be finished"
                ))),
            }
        }
    }))
    .await
}
