//! Deliveries: for one event, an attempt of each due delivery to each webhook that wants it,
//! signed, recorded, and retried later or parked. The same on AWS (`deliver-webhooks`, fed by
//! an SQS queue whose visibility timeout is the backoff) and locally (`membersctl events
//! consume`, fed by a queue partition of the table).

use super::sign::signature_header;
use super::target::GuardedResolver;
use super::{retry_delay, Attempt, Delivery, DeliveryStatus, EventRef, Webhook, KEPT_ATTEMPTS};
use crate::error::ApiError;
use crate::events::{read_scope, CloudEvent};
use crate::model::*;
use crate::store::DynamoStore;
use std::collections::HashMap;
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
            // No proxy from the environment (HTTPS_PROXY, …): through a proxy, ureq would not
            // resolve the target itself, and the resolver's check would be bypassed.
            .proxy(None)
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
            // What failed is not shown (refused, reset, timed out, which address): the
            // deliveries log must not make a port scanner or a DNS oracle of the service.
            Err(e) => {
                tracing::info!(error = %e, "a webhook attempt got no answer");
                Outcome {
                    status: None,
                    latency_ms,
                    error: Some(match e.contains("non-public") {
                        true => "refused: the host resolves to a non-public address".into(),
                        false => "no answer: the connection failed or timed out".into(),
                    }),
                }
            }
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
    // Every webhook of the organisation (a redelivery: the one named). A webhook that wants
    // the event gets a delivery if it existed when the event happened; one that stopped
    // wanting it (disabled, or the type removed) has its pending delivery parked, so that
    // the event is never left pending with no message to retry it.
    let webhooks = match &event.only {
        Some((id, _)) => store.webhook(org, id).await?.into_iter().collect(),
        None => store.webhooks(org).await?,
    };
    let mut loaded: Option<Option<CloudEvent>> = None;
    let mut body: Option<String> = None;
    let mut next: Option<Duration> = None;
    let mut subscribers = Subscribers::default();
    for webhook in webhooks {
        let now = Timestamp::now();
        let fresh = Delivery::new(&webhook, event, now);
        let existing = store.delivery(org, &webhook.id, &fresh.id).await?;
        let mut delivery = match existing {
            Some(d) => d,
            None if event.only.is_some() || !webhook.wants(&event.kind) => continue,
            None => {
                if loaded.is_none() {
                    loaded = Some(store.feed_event(org, event.sequence).await?);
                }
                // Subscribed after the event: not its to receive (a message still circling
                // for another webhook must not deliver history to a new one).
                let happened = loaded.as_ref().and_then(|e| e.as_ref().map(|e| e.time));
                if happened.is_some_and(|t| t < webhook.created_at) {
                    continue;
                }
                store.put_delivery_if_absent(&fresh).await?;
                match store.delivery(org, &webhook.id, &fresh.id).await? {
                    Some(d) => d,
                    None => continue,
                }
            }
        };
        if delivery.status == DeliveryStatus::Pending
            && event.only.is_none()
            && !webhook.wants(&event.kind)
        {
            let expected = delivery.revision;
            delivery.status = DeliveryStatus::Parked;
            delivery.next_attempt_at = None;
            delivery.attempts.push(Attempt::failed(
                now,
                None,
                0,
                "parked: the webhook was disabled or no longer subscribes to this type",
            ));
            store.save_delivery(&mut delivery, expected).await?;
            continue;
        }
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
        if let Some(why) = subscribers.refusal(store, &webhook, &event.kind).await? {
            // The key that chose this webhook's URL and types may not (or no longer) read
            // this event: nothing is sent, and the log says why.
            let expected = delivery.revision;
            delivery.status = DeliveryStatus::Parked;
            delivery.next_attempt_at = None;
            delivery.attempts.push(Attempt::failed(now, None, 0, &why));
            store.save_delivery(&mut delivery, expected).await?;
            tracing::warn!(webhook_id = %webhook.id, delivery_id = %delivery.id, "delivery parked: its subscriber may not read it");
            continue;
        }
        if loaded.is_none() {
            loaded = Some(store.feed_event(org, event.sequence).await?);
        }
        if body.is_none() {
            body = match loaded.as_ref().and_then(Option::as_ref) {
                Some(e) => Some(serde_json::to_string(e).map_err(|_| ApiError::Internal)?),
                None => None,
            };
        }
        let expected = delivery.revision;
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
        if !store.save_delivery(&mut delivery, expected).await? {
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

/// The keys that webhooks are bound to, each looked up once per event.
#[derive(Default)]
struct Subscribers(HashMap<ApiKeyId, Option<ApiKey>>);

impl Subscribers {
    /// Why `webhook` may not be sent an event of type `kind`: its subscribing key is gone,
    /// revoked, or may not read that type. `None` when it may.
    async fn refusal(
        &mut self,
        store: &DynamoStore,
        webhook: &Webhook,
        kind: &str,
    ) -> Result<Option<String>, ApiError> {
        let Some(id) = &webhook.subscribed_by else {
            return Ok(Some(
                "parked: the webhook is bound to no API key; PATCH its eventTypes with a key that may read them".into(),
            ));
        };
        if !self.0.contains_key(id) {
            let key = store.api_key_by_id(&webhook.organization_id, id).await?;
            self.0.insert(id.clone(), key);
        }
        let scope = read_scope(kind);
        Ok(match self.0.get(id).and_then(Option::as_ref) {
            Some(key) if key.revoked_at.is_none() && key.allows(scope) => None,
            Some(key) if key.revoked_at.is_none() => Some(format!(
                "parked: the API key {id} that subscribed this webhook lacks the scope {} that {kind} events need",
                scope.as_str()
            )),
            Some(_) => Some(format!(
                "parked: the API key {id} that subscribed this webhook was revoked; PATCH its url or eventTypes with a live key that may read them"
            )),
            None => Some(format!(
                "parked: the API key {id} that subscribed this webhook no longer exists; PATCH its url or eventTypes with a live key that may read them"
            )),
        })
    }
}
