//! Signed webhooks: an organisation's endpoints, each subscribed to event types, and the
//! deliveries of events to them.
//!
//! - [`sign`]: Standard Webhooks signatures; [`target`]: where a webhook may point (SSRF).
//! - [`deliver`]: one attempt of each pending delivery of an event, its record, its retry.
//!
//! At least once: a delivery is retried with exponential backoff ([`RETRY_DELAYS`], over
//! 24 hours in all, each wait ±10 %), or when the receiver's `Retry-After` says (429, 503),
//! then parked; the receiver deduplicates by `webhook-id` (the event id) and orders one
//! resource's events by `data.version`. An endpoint that answers 410 Gone, or fails without
//! a success for [`failing_limit`] (5 days), is disabled, with a `webhook.disabled` event.

pub mod deliver;
pub mod history;
pub mod sign;
pub mod target;

use crate::events;
use crate::input::Reader;
use crate::model::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The most webhooks an organisation may have.
pub const MAX_WEBHOOKS: u64 = 20;
/// How long an old secret stays valid after a rotation (both signatures are sent), unless
/// the rotation says otherwise (`overlapSeconds`, at most [`MAX_ROTATION_OVERLAP_SECONDS`]).
pub const ROTATION_OVERLAP_SECONDS: i64 = 24 * 3600;
pub const MAX_ROTATION_OVERLAP_SECONDS: i64 = 7 * 24 * 3600;
/// An endpoint failing this long without a success is disabled (Svix's and Stripe's rule).
const FAILING_LIMIT_SECONDS: i64 = 5 * 24 * 3600;
/// How long deliveries are kept (TTL), as the feed keeps events.
pub const DELIVERY_RETENTION_SECONDS: i64 = events::RETENTION_SECONDS;
/// The attempts a delivery's record keeps (the newest).
pub const KEPT_ATTEMPTS: usize = 30;
/// The most characters of an error kept in an attempt's record.
const MAX_ERROR_CHARS: usize = 300;

/// The wait after each failed attempt; after the last, the delivery is parked. In all
/// 31.7 hours, so an endpoint down for a day still gets every event.
pub const RETRY_DELAYS: [Duration; 10] = [
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(4 * 3600),
    Duration::from_secs(8 * 3600),
    Duration::from_secs(8 * 3600),
    Duration::from_secs(8 * 3600),
];

/// How long an endpoint may fail without a success before it is disabled: 5 days, or
/// `WEBHOOK_DISABLE_AFTER_SECONDS` (a local setting for tests; never set on AWS).
pub fn failing_limit() -> Duration {
    let seconds = std::env::var("WEBHOOK_DISABLE_AFTER_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(FAILING_LIMIT_SECONDS as u64);
    Duration::from_secs(seconds)
}

/// SQS keeps a message invisible for at most 12 hours: no wait is longer.
pub const MAX_WAIT: Duration = Duration::from_secs(12 * 3600);

/// `delay` spread by ±10 % (`unit` uniform in [0, 1)), so that the retries of many
/// deliveries that failed together do not return together.
pub fn jittered(delay: Duration, unit: f64) -> Duration {
    delay
        .mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
        .min(MAX_WAIT)
}

/// A uniform number in [0, 1) from the system's randomness (0.5 if it has none).
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

/// A `Retry-After` header's wait from `now`: delay-seconds or an HTTP-date (RFC 9110
/// §10.2.3); at least a second, at most [`MAX_WAIT`]; `None` if it is neither.
pub fn retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    let seconds = match value.parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) => {
            let at =
                time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822)
                    .ok()?;
            let millis = at.unix_timestamp() * 1000 - now.unix_millis();
            u64::try_from(millis.max(0)).ok()?.div_ceil(1000)
        }
    };
    Some(Duration::from_secs(seconds.max(1)).min(MAX_WAIT))
}

/// The delay after failed attempt `n` (1-based), scaled by `WEBHOOK_RETRY_SCALE` (a local
/// setting for tests, e.g. 0.01; 1 on AWS); `None` when the delivery is to be parked.
pub fn retry_delay(failed_attempts: usize) -> Option<Duration> {
    let scale = std::env::var("WEBHOOK_RETRY_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s <= 1.0)
        .unwrap_or(1.0);
    RETRY_DELAYS
        .get(failed_attempts.checked_sub(1)?)
        .map(|d| d.mul_f64(scale))
}

/// A webhook endpoint of an organisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: WebhookId,
    pub organization_id: OrgId,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// The signing secret (never in an answer after the creation or rotation that made it,
    /// never in a log).
    pub secret: String,
    /// The secret before the last rotation, valid until `previous_secret_expires_at`.
    #[serde(default)]
    pub previous_secret: Option<String>,
    #[serde(default)]
    pub previous_secret_expires_at: Option<Timestamp>,
    /// The key that last chose where this webhook sends and what (its create, or the last
    /// PATCH of `url` or `eventTypes`): every delivery needs it still live and allowed to
    /// read the event ([`crate::events::read_scope`]). `None` only for webhooks made before
    /// the binding existed; they deliver nothing until a PATCH binds them.
    #[serde(default)]
    pub subscribed_by: Option<ApiKeyId>,
    /// The first failed attempt since the last success; `None` while it succeeds. Written
    /// by the deliverer alone (not a change of the webhook: its version stays).
    #[serde(default)]
    pub failing_since: Option<Timestamp>,
    /// Why the service disabled it (410 Gone, failing for 5 days); cleared when it is
    /// enabled again.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

impl Webhook {
    /// The secrets a delivery at `now` is signed with: the current one, and the previous
    /// one while it is still valid.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let (Some(old), Some(until)) = (&self.previous_secret, self.previous_secret_expires_at) {
            if until > now {
                out.push(old.as_str());
            }
        }
        out
    }

    pub fn wants(&self, event_type: &str) -> bool {
        self.enabled && self.event_types.iter().any(|t| t == event_type)
    }

    /// Until when the previous secret still signs; `None` once that has passed.
    pub fn rotated_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.previous_secret_expires_at.filter(|until| *until > now)
    }
}

/// A webhook as the API shows it: never its secrets.
pub fn webhook_json(w: &Webhook) -> Value {
    json!({
        "id": w.id,
        "url": w.url,
        "eventTypes": w.event_types,
        "description": w.description,
        "enabled": w.enabled,
        "secretRotatedUntil": w.rotated_until(Timestamp::now()),
        "subscribedByKeyId": w.subscribed_by,
        "failingSince": w.failing_since,
        "disabledReason": w.disabled_reason,
        "createdAt": w.created_at,
        "updatedAt": w.updated_at,
        "version": w.version,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet: an attempt is due at `next_attempt_at`.
    Pending,
    Succeeded,
    /// Every retry failed; only a redelivery tries again.
    Parked,
}

/// One attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub at: Timestamp,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// Why the attempt failed (no answer, a non-2xx status, a refused address).
    pub error: Option<String>,
}

impl Attempt {
    pub fn failed(at: Timestamp, status_code: Option<u16>, latency_ms: u64, error: &str) -> Self {
        Attempt {
            at,
            status_code,
            latency_ms,
            error: Some(error.chars().take(MAX_ERROR_CHARS).collect()),
        }
    }
}

/// One event to one webhook, and its attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub organization_id: OrgId,
    pub event_id: String,
    pub event_type: String,
    /// The event's place in the feed (it is read from there at every attempt).
    pub sequence: u64,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    /// Failed attempts since the delivery was created or last redelivered.
    #[serde(default)]
    pub failures: usize,
    /// Every attempt ever made (`attempts` keeps the last [`KEPT_ATTEMPTS`]).
    #[serde(default)]
    pub attempt_count: u64,
    /// Moved by every save, which is conditioned on it: two workers never both record an
    /// attempt, and a redelivery is never overwritten by an attempt that read before it.
    #[serde(default)]
    pub revision: u64,
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// The last redelivery: the record is kept 30 days from it (or from its creation).
    #[serde(default)]
    pub redelivered_at: Option<Timestamp>,
}

impl Delivery {
    /// The delivery of an event to a webhook: its id is the event's, so the stream
    /// delivering an event twice makes one delivery.
    pub fn new(webhook: &Webhook, event: &EventRef, now: Timestamp) -> Self {
        let suffix = event.id.trim_start_matches(AuditEventId::PREFIX);
        let id = DeliveryId::parse(&format!("{}{suffix}", DeliveryId::PREFIX))
            .unwrap_or_else(|_| DeliveryId::generate());
        Delivery {
            id,
            webhook_id: webhook.id.clone(),
            organization_id: webhook.organization_id.clone(),
            event_id: event.id.clone(),
            event_type: event.kind.clone(),
            sequence: event.sequence,
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            failures: 0,
            attempt_count: 0,
            revision: 0,
            next_attempt_at: Some(now),
            created_at: now,
            redelivered_at: None,
        }
    }

    /// When its record expires (TTL): 30 days after its creation or its last redelivery.
    pub fn expires_at(&self) -> i64 {
        self.redelivered_at
            .unwrap_or(self.created_at)
            .unix_seconds()
            + DELIVERY_RETENTION_SECONDS
    }
}

pub fn delivery_json(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "webhookId": d.webhook_id,
        "eventId": d.event_id,
        "eventType": d.event_type,
        "sequence": events::sequence_text(d.sequence),
        "status": d.status,
        "attempts": d.attempts,
        "attemptCount": d.attempt_count,
        "nextAttemptAt": d.next_attempt_at,
        "createdAt": d.created_at,
    })
}

/// An event as queued for delivery: enough to find it in the feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRef {
    pub organization_id: OrgId,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sequence: u64,
    /// A redelivery: only this webhook's delivery, tried again even if it succeeded or was
    /// parked.
    #[serde(default)]
    pub only: Option<(WebhookId, DeliveryId)>,
}

impl EventRef {
    pub fn of(e: &events::CloudEvent) -> Self {
        EventRef {
            organization_id: e.data.organization_id.clone(),
            id: e.id.clone(),
            kind: e.kind.clone(),
            sequence: e.sequence.parse().unwrap_or(0),
            only: None,
        }
    }
}

impl EventRef {
    /// The event of a webhook queue message: the EventBridge rule's (the CloudEvent in
    /// `detail`, whose `source` names the organisation) or a redelivery's (an `EventRef`).
    pub fn from_queue_message(body: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(body).ok()?;
        let Some(detail) = v.get("detail") else {
            return serde_json::from_value(v).ok();
        };
        let org = detail["source"]
            .as_str()?
            .strip_prefix(&format!("{}/organizations/", events::SOURCE))?;
        Some(EventRef {
            organization_id: OrgId::parse(org).ok()?,
            id: detail["id"].as_str()?.to_owned(),
            kind: detail["type"].as_str()?.to_owned(),
            sequence: detail["sequence"].as_str()?.parse().ok()?,
            only: None,
        })
    }
}

/// The fields of a webhook a request may set.
#[derive(Debug, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// Reads a create (`creating`: `url` and `eventTypes` required) or PATCH body.
pub fn parse_patch(
    obj: &Map<String, Value>,
    creating: bool,
) -> Result<WebhookPatch, crate::ApiError> {
    let mut r = Reader::new(obj, "");
    r.check_keys(
        &["url", "eventTypes", "description", "enabled"],
        &[
            "id",
            "secret",
            "secretRotatedUntil",
            "subscribedByKeyId",
            "createdAt",
            "updatedAt",
            "version",
        ],
    );
    let allow_loopback = target::loopback_allowed();
    let url = match r.not_null("url", |s| Ok::<_, String>(s.to_owned())) {
        Some(raw) => match target::check_url(&raw, allow_loopback) {
            Ok(u) => Some(u.to_string()),
            Err(why) => {
                r.push("url", "url_refused", format!("url is refused: it {why}"));
                None
            }
        },
        None => None,
    };
    let event_types = r.array("eventTypes", events::TYPES.len(), |r, field, v| {
        match v.as_str() {
            Some(t) if events::TYPES.contains(&t) => Some(t.to_owned()),
            _ => {
                r.push(
                    field,
                    "invalid_value",
                    format!("{field} must be one of {}", events::TYPES.join(", ")),
                );
                None
            }
        }
    });
    let description = r.nullable("description", crate::input::text(500));
    let enabled = r.boolean("enabled");
    if creating {
        for (field, given) in [
            ("url", url.is_some()),
            ("eventTypes", event_types.is_some()),
        ] {
            if !given && !obj.contains_key(field) {
                r.push(field, "required", format!("{field} is required"));
            }
        }
    }
    if let Some(types) = &event_types {
        if types.is_empty() {
            r.push(
                "eventTypes",
                "too_short",
                "eventTypes must list at least one type",
            );
        }
    }
    if !r.errors.is_empty() {
        return Err(crate::ApiError::Validation(r.errors));
    }
    Ok(WebhookPatch {
        url,
        // Each type once, in the order first given (`dedup` alone keeps a/b/a).
        event_types: event_types.map(|types| {
            let mut once: Vec<String> = Vec::with_capacity(types.len());
            for t in types {
                if !once.contains(&t) {
                    once.push(t);
                }
            }
            once
        }),
        description,
        enabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_last_over_a_day_then_park() {
        let total: Duration = (1..=RETRY_DELAYS.len()).filter_map(retry_delay).sum();
        assert!(total >= Duration::from_secs(24 * 3600), "{total:?}");
        assert!(RETRY_DELAYS.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(retry_delay(RETRY_DELAYS.len() + 1), None);
        assert_eq!(retry_delay(0), None);
        assert!(
            RETRY_DELAYS
                .iter()
                .all(|d| *d <= Duration::from_secs(12 * 3600)),
            "SQS visibility timeouts stop at 12 hours"
        );
    }

    #[test]
    fn queue_messages_name_their_event() {
        let bridge = json!({"version": "0", "source": "members-api", "detail-type": "member.created",
            "detail": {"id": "evt_1", "type": "member.created", "sequence": "00000000000000000007",
                       "source": "members-api/organizations/org_a"}});
        let r = EventRef::from_queue_message(&bridge.to_string());
        assert_eq!(
            r.as_ref().map(|r| (r.sequence, r.organization_id.as_str())),
            Some((7, "org_a"))
        );
        let again = serde_json::to_string(&r).unwrap_or_default();
        assert_eq!(EventRef::from_queue_message(&again), r);
        assert_eq!(EventRef::from_queue_message("{}"), None);
        assert_eq!(EventRef::from_queue_message("not json"), None);
    }

    #[test]
    fn bodies_are_checked() {
        let parse =
            |v: Value, creating| parse_patch(v.as_object().unwrap_or(&Map::new()), creating);
        assert!(parse(
            json!({"url": "https://example.com/h", "eventTypes": ["member.created"]}),
            true
        )
        .is_ok());
        for bad in [
            json!({"url": "https://example.com/h"}),
            json!({"eventTypes": ["member.created"]}),
            json!({"url": "http://example.com/h", "eventTypes": ["member.created"]}),
            json!({"url": "https://10.0.0.1/h", "eventTypes": ["member.created"]}),
            json!({"url": "https://example.com/h", "eventTypes": []}),
            json!({"url": "https://example.com/h", "eventTypes": ["member.exploded"]}),
            json!({"url": "https://example.com/h", "eventTypes": ["member.created"], "secret": "x"}),
        ] {
            let e = parse(bad.clone(), true).err().map(|e| e.code());
            assert_eq!(e, Some("validation_failed"), "{bad}");
        }
        assert!(parse(json!({"enabled": false}), false).is_ok());
        let repeated = parse(
            json!({"eventTypes": ["role.created", "role.deleted", "role.created"]}),
            false,
        );
        assert_eq!(
            repeated.ok().and_then(|p| p.event_types),
            Some(vec!["role.created".to_owned(), "role.deleted".to_owned()])
        );
    }

    #[test]
    fn a_rotated_secret_signs_for_a_day() {
        let now = Timestamp::now();
        let mut w = Webhook {
            id: WebhookId::generate(),
            organization_id: OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}")),
            url: "https://example.com".into(),
            event_types: vec!["member.created".into()],
            description: None,
            enabled: true,
            secret: "whsec_new".into(),
            previous_secret: Some("whsec_old".into()),
            previous_secret_expires_at: Some(now.plus_seconds(10)),
            subscribed_by: None,
            failing_since: None,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
            version: 2,
        };
        assert_eq!(w.signing_secrets(now), vec!["whsec_new", "whsec_old"]);
        w.previous_secret_expires_at = Some(now);
        assert_eq!(w.signing_secrets(now), vec!["whsec_new"]);
        assert!(!webhook_json(&w).to_string().contains("whsec"));
        assert_eq!(
            webhook_json(&w)["secretRotatedUntil"],
            Value::Null,
            "passed"
        );
    }

    #[test]
    fn retries_spread_and_honour_retry_after() {
        let d = Duration::from_secs(100);
        assert_eq!(jittered(d, 0.0), Duration::from_secs(90));
        assert_eq!(jittered(d, 1.0), Duration::from_secs(110));
        assert_eq!(jittered(Duration::from_secs(12 * 3600), 1.0), MAX_WAIT);
        let u = random_unit();
        assert!((0.0..1.0).contains(&u), "{u}");
        // Even the shortest spread of the schedule lasts over a day.
        let shortest: Duration = (1..=RETRY_DELAYS.len())
            .filter_map(retry_delay)
            .map(|d| jittered(d, 0.0))
            .sum();
        assert!(shortest >= Duration::from_secs(24 * 3600), "{shortest:?}");

        let now = Timestamp::parse("2026-12-04T10:00:00Z").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::from_secs(1)));
        assert_eq!(retry_after("99999999", now), Some(MAX_WAIT));
        assert_eq!(
            retry_after("Fri, 04 Dec 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Fri, 04 Dec 2026 09:00:00 GMT", now),
            Some(Duration::from_secs(1)),
            "a date passed: soon"
        );
        for bad in ["", "soon", "-5", "1.5", "Friday"] {
            assert_eq!(retry_after(bad, now), None, "{bad}");
        }
    }
}
