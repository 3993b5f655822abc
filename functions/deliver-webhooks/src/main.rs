//! Lambda entry point for the webhook queue (SQS: each message an event, from the EventBridge
//! rule or a redelivery): wiring only; the work is `shared::webhooks::deliver::deliver_event`.
//! A message whose deliveries are not all done is reported failed after its visibility
//! timeout is set to the next retry's delay: SQS itself waits, no scheduler of ours.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::store::DynamoStore;
use shared::webhooks::deliver::{deliver_event, Sender};
use shared::webhooks::EventRef;
use std::sync::Arc;

/// SQS keeps a message invisible for at most 12 hours from its receipt: a little less, for
/// the time this call has taken.
const MAX_VISIBILITY_SECONDS: u64 = 12 * 3600 - 300;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let store = Arc::new(DynamoStore::from_env()?);
    store.connect().await?;
    let sender = Arc::new(Sender::from_env());
    let (region, credentials) = shared::store::dynamo::lambda_identity()?;
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .timeout_config(shared::store::dynamo::timeouts())
            .http_client(shared::store::dynamo::https_client())
            .build(),
    );
    let queue_url =
        std::env::var("WEBHOOK_QUEUE_URL").map_err(|_| "WEBHOOK_QUEUE_URL is not set")?;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (store, sender, sqs, queue_url) = (
            store.clone(),
            sender.clone(),
            sqs.clone(),
            queue_url.clone(),
        );
        async move {
            let mut response = SqsBatchResponse::default();
            for message in event.payload.records {
                let id = message.message_id.unwrap_or_default();
                let Some(event) = message
                    .body
                    .as_deref()
                    .and_then(EventRef::from_queue_message)
                else {
                    tracing::error!(message_id = %id, "a queue message that is no event; dropped");
                    continue;
                };
                let delivered = shared::metrics::scoped(
                    "deliver-webhooks",
                    deliver_event(&store, &sender, &event),
                )
                .await;
                shared::metrics::flush();
                let retry = match delivered {
                    Ok(None) => continue,
                    // Rounded up: a message back early finds nothing due and is received again
                    // for nothing.
                    Ok(Some(delay)) => Some(
                        delay
                            .as_millis()
                            .div_ceil(1000)
                            .clamp(1, u128::from(MAX_VISIBILITY_SECONDS))
                            as u64,
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "delivery failed; the message will be retried");
                        None
                    }
                };
                if let (Some(seconds), Some(receipt)) = (retry, message.receipt_handle) {
                    let changed = sqs
                        .change_message_visibility()
                        .queue_url(&queue_url)
                        .receipt_handle(receipt)
                        .visibility_timeout(seconds as i32)
                        .send()
                        .await;
                    if let Err(e) = changed {
                        tracing::warn!(error = %e, "could not set the retry's delay");
                    }
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
            Ok::<_, Error>(response)
        }
    }))
    .await
}
