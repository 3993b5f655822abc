//! Deliveries: for one event, an attempt of each due delivery to each webhook that wants it,
//! signed, recorded, and retried later or parked. The same on AWS (`deliver-webhooks`, fed by
//! an SQS queue whose visibility timeout is the backoff) and locally (`membersctl events
//! consume`, fed by a queue partition of the table).

use super::sign::signature_header;
use super::target::GuardedResolver;
use super::{retry_delay, Attempt, Delivery, DeliveryStatus, EventRef, KEPT_ATTEMPTS};
use crate::error::ApiError;
use crate::model::*;
use crate::store::DynamoStore;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long one attempt may take, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an event goes to be delivered (later): SQS on AWS, a table partition locally.
pub trait Enqueue: Send + Sync {
    fn enqueue(
        &self,
        event: &EventRef,
        delay: Duration,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// The local queue (`LOCAL#WEBHOOKQUEUE` in the table), drained by `membersctl events
/// consume`.
pub struct TableQueue<'a>(pub &'a DynamoStore);

impl Enqueue for TableQueue<'_> {
    async fn enqueue(&self, event: &EventRef, delay: Duration) -> Result<(), ApiError> {
        self.0.queue_local(event, delay).await
    }
}

/// The HTTP side of deliveries: no redirects (a redirect could lead anywhere), every address
/// checked by [`GuardedResolver`], a short timeout, any status an answer (not an error).
#[derive(Clone)]
pub struct Sender {
    agent: ureq::Agent,
}

/// What one POST got.
struct Outcome {
    status: Option<u16>,
    latency_ms: u64,
    error: Option<String>,
}

impl Sender {
    pub fn new(allow_loopback: bool) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(ATTEMPT_TIMEOUT))
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent("members-api-webhooks/1")
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            GuardedResolver { allow_loopback },
        );
        Sender { agent }
    }

    /// The sender for this environment (`WEBHOOKS_ALLOW_LOOPBACK`, local only).
    pub fn from_env() -> Self {
        Self::new(super::target::loopback_allowed())
    }

    async fn post(&self, url: &str, headers: Vec<(&'static str, String)>, body: String) -> Outcome {
        let (agent, url) = (self.agent.clone(), url.to_owned());
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let mut request = agent.post(&url);
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            request
                .send(body.as_bytes())
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the attempt did not finish: {e}")));
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(status) if (200..300).contains(&status) => Outcome {
                status: Some(status),
                latency_ms,
                error: None,
            },
            Ok(status) => Outcome {
                // Only HTTP's own range is recorded as a status.
                status: (100..600).contains(&status).then_some(status),
                latency_ms,
                error: Some(format!("the receiver answered {status}")),
            },
            Err(e) => Outcome {
                status: None,
                latency_ms,
                error: Some(e),
            },
        }
    }
}

/// Delivers `event` to each webhook of its organisation that wants it (or, for a
/// redelivery, to the one named): an attempt for each delivery that is due. Answers when
/// the event should be looked at again (the soonest retry), or `None` when every delivery
/// of it has succeeded or been parked.
pub async fn deliver_event(
    store: &DynamoStore,
    sender: &Sender,
    event: &EventRef,
) -> Result<Option<Duration>, ApiError> {
    let org = &event.organization_id;
    let webhooks = match &event.only {
        Some((id, _)) => store.webhook(org, id).await?.into_iter().collect(),
        None => {
            let all = store.webhooks(org).await?;
            all.into_iter()
                .filter(|w| w.wants(&event.kind))
                .collect::<Vec<_>>()
        }
    };
    let mut body: Option<String> = None;
    let mut next: Option<Duration> = None;
    for webhook in webhooks {
        let now = Timestamp::now();
        let fresh = Delivery::new(&webhook, event, now);
        let mut delivery = match store.delivery(org, &webhook.id, &fresh.id).await? {
            Some(d) => d,
            None if event.only.is_none() => {
                store.put_delivery_if_absent(&fresh).await?;
                match store.delivery(org, &webhook.id, &fresh.id).await? {
                    Some(d) => d,
                    None => continue,
                }
            }
            None => continue,
        };
        if delivery.status != DeliveryStatus::Pending {
            continue;
        }
        if let Some(due) = delivery.next_attempt_at {
            let wait = due.unix_millis() - now.unix_millis();
            if wait > 500 {
                // Early (a duplicate message, or a retry another worker scheduled).
                let wait = Duration::from_millis(wait as u64);
                next = Some(next.map_or(wait, |n| n.min(wait)));
                continue;
            }
        }
        if body.is_none() {
            body = match store.feed_event(org, event.sequence).await? {
                Some(e) => Some(serde_json::to_string(&e).map_err(|_| ApiError::Internal)?),
                None => None,
            };
        }
        let expected = delivery.attempt_count;
        let outcome = match &body {
            Some(body) => {
                let timestamp = now.unix_seconds();
                let signature =
                    signature_header(&webhook.signing_secrets(now), &event.id, timestamp, body);
                let headers = vec![
                    ("content-type", "application/json".to_owned()),
                    ("webhook-id", event.id.clone()),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ];
                sender.post(&webhook.url, headers, body.clone()).await
            }
            None => Outcome {
                status: None,
                latency_ms: 0,
                error: Some("the event is past the feed's retention".into()),
            },
        };
        delivery.attempt_count += 1;
        delivery.attempts.push(match &outcome.error {
            None => Attempt {
                at: now,
                status_code: outcome.status,
                latency_ms: outcome.latency_ms,
                error: None,
            },
            Some(e) => Attempt::failed(now, outcome.status, outcome.latency_ms, e),
        });
        let excess = delivery.attempts.len().saturating_sub(KEPT_ATTEMPTS);
        delivery.attempts.drain(..excess);
        if outcome.error.is_none() {
            delivery.status = DeliveryStatus::Succeeded;
            delivery.next_attempt_at = None;
        } else {
            delivery.failures += 1;
            let retry = body.as_ref().and(retry_delay(delivery.failures));
            match retry {
                Some(delay) => {
                    delivery.next_attempt_at = Some(now.plus_millis(delay.as_millis() as i64));
                    next = Some(next.map_or(delay, |n| n.min(delay)));
                }
                None => {
                    delivery.status = DeliveryStatus::Parked;
                    delivery.next_attempt_at = None;
                    tracing::warn!(webhook_id = %webhook.id, delivery_id = %delivery.id, "delivery parked");
                }
            }
        }
        if !store.save_delivery(&delivery, expected).await? {
            tracing::info!(delivery_id = %delivery.id, "another worker recorded an attempt first");
        }
        tracing::info!(
            webhook_id = %webhook.id,
            delivery_id = %delivery.id,
            status = ?outcome.status,
            latency_ms = outcome.latency_ms,
            delivered = outcome.error.is_none(),
            "webhook attempt"
        );
    }
    Ok(next)
}
