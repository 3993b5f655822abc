//! Lambda entry point for the table's stream (template.yaml passes only new outbox entries):
//! wiring only; the work is `shared::consumer::handle`, the bus is `eventbridge`.

mod eventbridge;

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::consumer::{handle, StreamRecord};
use shared::store::DynamoStore;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let store = Arc::new(DynamoStore::from_env()?);
    store.connect().await?;
    let bus = Arc::new(eventbridge::Bus::from_env()?);
    run(service_fn(move |event: LambdaEvent<Event>| {
        let (store, bus) = (store.clone(), bus.clone());
        async move {
            let records: Vec<StreamRecord> = event
                .payload
                .records
                .into_iter()
                .map(|r| StreamRecord {
                    sequence_number: r.change.sequence_number.unwrap_or_default(),
                    event_name: r.event_name,
                    new_image: r.change.new_image.into(),
                })
                .collect();
            // ReportBatchItemFailures: the first record not done; Lambda gives it and every
            // later record of the shard again.
            let failed =
                shared::metrics::scoped("publish-events", handle(&store, &records, bus.as_ref()))
                    .await;
            shared::metrics::flush();
            let mut response = DynamoDbEventResponse::default();
            response.batch_item_failures = failed
                .map(|n| {
                    let mut f = DynamoDbBatchItemFailure::default();
                    f.item_identifier = Some(n);
                    f
                })
                .into_iter()
                .collect();
            Ok::<_, Error>(response)
        }
    }))
    .await
}
