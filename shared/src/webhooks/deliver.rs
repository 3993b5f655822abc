//! Deliveries: for one event, an attempt of each due delivery to each webhook that wants it,
//! signed, recorded, and retried later or parked. The same on AWS (`deliver-webhooks`, fed by
//! an SQS queue whose visibility timeout is the backoff) and locally (`membersctl events
//! consume`, fed by a queue partition of the table).

use super::sign::signature_header;
use super::target::GuardedResolver;
use super::{
    failing_limit, history, jittered, random_unit, retry_delay, Attempt, Delivery, DeliveryStatus,
    EventRef, Webhook, KEPT_ATTEMPTS,
};
use crate::audit::Actor;
use crate::error::ApiError;
use crate::events::{read_scope, CloudEvent};
use crate::model::*;
use crate::store::DynamoStore;
use futures_util::future::join_all;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OnceCell};

/// How long one attempt may take, connection included (Standard Webhooks recommends 15 s).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

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
    /// The receiver's `Retry-After`, as a wait.
    retry_after: Option<Duration>,
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
                .map(|r| {
                    let retry_after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    (r.status().as_u16(), retry_after)
                })
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the attempt did not finish: {e}")));
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((status, _)) if (200..300).contains(&status) => Outcome {
                status: Some(status),
                latency_ms,
                error: None,
                retry_after: None,
            },
            Ok((status, retry_after)) => Outcome {
                // Only HTTP's own range is recorded as a status.
                status: (100..600).contains(&status).then_some(status),
                latency_ms,
                error: Some(format!("the receiver answered {status}")),
                retry_after: retry_after.and_then(|v| super::retry_after(&v, Timestamp::now())),
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
                    retry_after: None,
                }
            }
        }
    }
}

/// Delivers `event` to each webhook of its organisation that wants it (or, for a
/// redelivery, to the one named), all at once: an endpoint that hangs delays no other. An
/// attempt for each delivery that is due. Answers when the event should be looked at again
/// (the soonest retry), or `None` when every delivery of it has succeeded or been parked.
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
    let shared = Shared {
        store,
        sender,
        event,
        loaded: OnceCell::new(),
        subscribers: Mutex::new(Subscribers::default()),
    };
    let outcomes = join_all(webhooks.into_iter().map(|w| shared.deliver_to(w))).await;
    let mut next: Option<Duration> = None;
    let mut failed = None;
    for outcome in outcomes {
        match outcome {
            Ok(Some(wait)) => next = Some(next.map_or(wait, |n| n.min(wait))),
            Ok(None) => {}
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(next),
    }
}

/// What the deliveries of one event share: the event (read from the feed once, as its
/// body) and the subscribing keys (each read once).
struct Shared<'a> {
    store: &'a DynamoStore,
    sender: &'a Sender,
    event: &'a EventRef,
    loaded: OnceCell<Option<String>>,
    subscribers: Mutex<Subscribers>,
}

impl Shared<'_> {
    /// The event as sent (`None`: past the feed's retention).
    async fn body(&self) -> Result<Option<&String>, ApiError> {
        let body = self
            .loaded
            .get_or_try_init(|| async {
                let event = self
                    .store
                    .feed_event(&self.event.organization_id, self.event.sequence)
                    .await?;
                event
                    .map(|e| serde_json::to_string(&e).map_err(|_| ApiError::Internal))
                    .transpose()
            })
            .await?;
        Ok(body.as_ref())
    }

    /// The event's delivery to `webhook`: created if due to it, attempted if due, recorded.
    /// Answers when it should be looked at again.
    async fn deliver_to(&self, webhook: Webhook) -> Result<Option<Duration>, ApiError> {
        let (store, event) = (self.store, self.event);
        let org = &event.organization_id;
        let now = Timestamp::now();
        let fresh = Delivery::new(&webhook, event, now);
        let existing = store.delivery(org, &webhook.id, &fresh.id).await?;
        let mut delivery = match existing {
            Some(d) => d,
            None if event.only.is_some() || !webhook.wants(&event.kind) => return Ok(None),
            None => {
                // Subscribed after the event: not its to receive (a message still circling
                // for another webhook must not deliver history to a new one).
                let happened = match self.body().await? {
                    Some(body) => serde_json::from_str::<CloudEvent>(body)
                        .ok()
                        .map(|e| e.time),
                    None => None,
                };
                if happened.is_some_and(|t| t < webhook.created_at) {
                    return Ok(None);
                }
                // The first delivery (nearly every one): written already parked or claimed,
                // one write where reading it back and claiming it would take two more calls.
                let mut first = fresh;
                let refusal = self.refusal(&webhook).await?;
                match &refusal {
                    Some(why) => park_record(&mut first, now, why),
                    None => first.next_attempt_at = Some(claim_until()),
                }
                if store.put_delivery_if_absent(&first).await? {
                    if refusal.is_some() {
                        crate::metrics::delivery_parked();
                        tracing::warn!(webhook_id = %webhook.id, delivery_id = %first.id, "delivery parked: its subscriber may not read it");
                        return Ok(None);
                    }
                    return self.attempt(&webhook, first, now).await;
                }
                // Another worker wrote it first (the event came twice): as any existing one.
                match store.delivery(org, &webhook.id, &first.id).await? {
                    Some(d) => d,
                    None => return Ok(None),
                }
            }
        };
        if delivery.status != DeliveryStatus::Pending {
            return Ok(None);
        }
        // A redelivery too: what a first delivery would not send, it does not send.
        if !webhook.wants(&event.kind) {
            park(
                store,
                &mut delivery,
                now,
                "parked: the webhook was disabled or no longer subscribes to this type",
            )
            .await?;
            return Ok(None);
        }
        if let Some(due) = delivery.next_attempt_at {
            let wait = due.unix_millis() - now.unix_millis();
            if wait > 500 {
                // Early (a duplicate message, or a retry another worker scheduled).
                return Ok(Some(Duration::from_millis(wait as u64)));
            }
        }
        if let Some(why) = self.refusal(&webhook).await? {
            // The key that chose this webhook's URL and types may not (or no longer) read
            // this event: nothing is sent, and the log says why.
            park(store, &mut delivery, now, &why).await?;
            tracing::warn!(webhook_id = %webhook.id, delivery_id = %delivery.id, "delivery parked: its subscriber may not read it");
            return Ok(None);
        }
        // Claimed before it is sent: of two workers holding the event (a duplicate message,
        // a redelivery of a delivery whose retry was lost), one sends; the other looks again
        // once the attempt must have ended.
        let expected = delivery.revision;
        delivery.next_attempt_at = Some(claim_until());
        if !store.save_delivery(&mut delivery, expected).await? {
            return Ok(Some(ATTEMPT_TIMEOUT + CLAIM_MARGIN));
        }
        self.attempt(&webhook, delivery, now).await
    }

    /// Why `webhook` may not be sent this event (see [`Subscribers::refusal`]).
    async fn refusal(&self, webhook: &Webhook) -> Result<Option<String>, ApiError> {
        let mut subscribers = self.subscribers.lock().await;
        subscribers
            .refusal(self.store, webhook, &self.event.kind)
            .await
    }

    /// The attempt of a delivery this worker has claimed: sent, recorded, and the
    /// endpoint's health noted. Answers when it should be looked at again.
    async fn attempt(
        &self,
        webhook: &Webhook,
        mut delivery: Delivery,
        now: Timestamp,
    ) -> Result<Option<Duration>, ApiError> {
        let (store, event) = (self.store, self.event);
        let outcome = match self.body().await? {
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
                self.sender.post(&webhook.url, headers, body.clone()).await
            }
            None => Outcome {
                status: None,
                latency_ms: 0,
                error: Some("the event is past the feed's retention".into()),
                retry_after: None,
            },
        };
        let sendable = self.loaded.get().is_some_and(Option::is_some);
        let next = record(&mut delivery, &outcome, now, sendable);
        if sendable {
            // Only what was sent is an attempt (not an event past the feed's retention).
            crate::metrics::webhook_attempt(outcome.error.is_none());
        }
        if delivery.status == DeliveryStatus::Parked {
            crate::metrics::delivery_parked();
        }
        let expected = delivery.revision;
        if !store.save_delivery(&mut delivery, expected).await? {
            tracing::info!(delivery_id = %delivery.id, "a redelivery came in during the attempt");
        }
        tracing::info!(
            webhook_id = %webhook.id,
            delivery_id = %delivery.id,
            status = ?outcome.status,
            latency_ms = outcome.latency_ms,
            delivered = outcome.error.is_none(),
            "webhook attempt"
        );
        if sendable {
            // Only what reached (or tried to reach) the endpoint says how it is.
            health(store, webhook, &outcome, now).await?;
        }
        Ok(next)
    }
}

/// How long past an attempt's timeout its claim lasts (the save after it included).
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

/// Records `outcome` in `delivery` (attempted at `now`; `sendable`: the event is still in
/// the feed): succeeded; or failed, with its retry (the receiver's `Retry-After` on 429 and
/// 503, else the schedule, spread) or parked (after the last retry, or 410 Gone). Answers
/// the wait before the retry.
fn record(
    delivery: &mut Delivery,
    outcome: &Outcome,
    now: Timestamp,
    sendable: bool,
) -> Option<Duration> {
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
        return None;
    }
    delivery.failures += 1;
    let honoured = match outcome.status {
        Some(429 | 503) => outcome.retry_after,
        _ => None,
    };
    // The receiver's Retry-After may ask for more time than the schedule, never less: a
    // short one ("1") answered by a maintenance page must not spend every retry in seconds.
    let retry = match (sendable, outcome.status) {
        (false, _) | (_, Some(410)) => None,
        _ => retry_delay(delivery.failures).map(|d| {
            let scheduled = jittered(d, random_unit());
            honoured.map_or(scheduled, |asked| asked.max(scheduled))
        }),
    };
    match retry {
        Some(delay) => {
            // From the answer (a Retry-After counts from it), not from the attempt's start.
            let answered = Timestamp::now();
            delivery.next_attempt_at = Some(answered.plus_millis(delay.as_millis() as i64));
        }
        None => {
            delivery.status = DeliveryStatus::Parked;
            delivery.next_attempt_at = None;
            tracing::warn!(delivery_id = %delivery.id, "delivery parked");
        }
    }
    retry
}

/// Parks a pending delivery with the reason as its last attempt (nothing sent).
async fn park(
    store: &DynamoStore,
    delivery: &mut Delivery,
    now: Timestamp,
    why: &str,
) -> Result<(), ApiError> {
    let expected = delivery.revision;
    park_record(delivery, now, why);
    if store.save_delivery(delivery, expected).await? {
        crate::metrics::delivery_parked();
    }
    Ok(())
}

/// `delivery` parked with the reason as its last attempt (nothing sent).
fn park_record(delivery: &mut Delivery, now: Timestamp, why: &str) {
    delivery.status = DeliveryStatus::Parked;
    delivery.next_attempt_at = None;
    delivery.attempts.push(Attempt::failed(now, None, 0, why));
}

/// Until when a claim made now holds: past the attempt's timeout (counted from now, not
/// from the start of this turn: the reads before may have been slow), and the save after it.
fn claim_until() -> Timestamp {
    let claim = ATTEMPT_TIMEOUT + CLAIM_MARGIN;
    Timestamp::now().plus_millis(claim.as_millis() as i64)
}

/// The endpoint's health after an attempt: a success ends a failing spell; a failure starts
/// one, and one of 5 days without a success, or a 410 Gone, disables the webhook (a
/// `webhook.disabled` event, no acting key).
async fn health(
    store: &DynamoStore,
    webhook: &Webhook,
    outcome: &Outcome,
    now: Timestamp,
) -> Result<(), ApiError> {
    if outcome.error.is_none() {
        if webhook.failing_since.is_some() {
            store.note_failing(webhook, None).await?;
        }
        return Ok(());
    }
    let reason = match (outcome.status, webhook.failing_since) {
        (Some(410), _) => "the endpoint answered 410 Gone".to_owned(),
        (_, Some(since))
            if now.unix_millis() - since.unix_millis() >= failing_limit().as_millis() as i64 =>
        {
            format!("every attempt failed since {since}, without a success")
        }
        (_, None) => return store.note_failing(webhook, Some(now)).await,
        _ => return Ok(()),
    };
    let mut after = webhook.clone();
    after.enabled = false;
    after.disabled_reason = Some(reason);
    after.version += 1;
    after.updated_at = now;
    let audit = history::event(
        "webhook.disabled",
        &Actor::default(),
        Some(webhook),
        Some(&after),
    );
    match store.update_webhook(&after, webhook.version, &audit).await {
        Ok(()) => {
            tracing::warn!(webhook_id = %webhook.id, "webhook disabled");
            Ok(())
        }
        // Changed or deleted meanwhile: the next failure decides again.
        Err(ApiError::PreconditionFailed | ApiError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
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
