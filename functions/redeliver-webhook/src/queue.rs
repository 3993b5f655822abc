//! Where a redelivery goes: the webhook queue on AWS (`WEBHOOK_QUEUE_URL`, the queue
//! `deliver-webhooks` reads), the table's local queue otherwise (`membersctl events consume`).

use shared::store::DynamoStore;
use shared::webhooks::deliver::{Enqueue, TableQueue};
use shared::webhooks::EventRef;
use shared::ApiError;
use std::sync::Arc;
use std::time::Duration;

pub enum Queue {
    Sqs {
        client: aws_sdk_sqs::Client,
        url: String,
    },
    Table(Arc<DynamoStore>),
}

impl Queue {
    pub fn from_env(store: Arc<DynamoStore>) -> Result<Self, String> {
        let Some(url) = std::env::var("WEBHOOK_QUEUE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            return Ok(Queue::Table(store));
        };
        let (region, credentials) = shared::store::dynamo::lambda_identity()?;
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .timeout_config(shared::store::dynamo::timeouts())
            .http_client(shared::store::dynamo::https_client())
            .build();
        Ok(Queue::Sqs {
            client: aws_sdk_sqs::Client::from_conf(config),
            url,
        })
    }
}

impl Enqueue for Queue {
    async fn enqueue(&self, event: &EventRef, delay: Duration) -> Result<(), ApiError> {
        match self {
            Queue::Table(store) => TableQueue(store).enqueue(event, delay).await,
            Queue::Sqs { client, url } => {
                let body = serde_json::to_string(event).map_err(|_| ApiError::Internal)?;
                client
                    .send_message()
                    .queue_url(url)
                    .message_body(body)
                    .delay_seconds(delay.as_secs().min(900) as i32)
                    .send()
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "SendMessage failed");
                        ApiError::Unavailable {
                            retry_after_seconds: 1,
                        }
                    })?;
                Ok(())
            }
        }
    }
}
