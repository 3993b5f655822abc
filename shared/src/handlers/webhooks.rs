//! /v1/webhooks: an organisation's signed webhooks (scopes `w_webhooks`, `r_webhooks`),
//! their deliveries, and redelivery. Served by DynamoDB only (no in-memory double: the
//! integration tests run them).

use super::{no_query, object_body};
use crate::audit::Actor;
use crate::error::ApiError;
use crate::events::read_scope;
use crate::http::{ApiRequest, ApiResponse};
use crate::input::Reader;
use crate::model::*;
use crate::paging::{self, decode_cursor, encode_cursor, fingerprint};
use crate::store::DynamoStore;
use crate::webhooks::deliver::Enqueue;
use crate::webhooks::sign::new_secret;
use crate::webhooks::target::{check_addresses, loopback_allowed};
use crate::webhooks::{
    delivery_json, history, parse_patch, webhook_json, DeliveryStatus, EventRef, Webhook,
    MAX_ROTATION_OVERLAP_SECONDS, ROTATION_OVERLAP_SECONDS,
};
use crate::wire::etag;
use std::sync::Arc;
use std::time::Duration;

/// POST /v1/webhooks `{url, eventTypes, description?, enabled?}`: 201 with the webhook and
/// its signing `secret`, shown this once. Each event type needs the scope that reads its
/// data (`member.*`: `r_members`), and the webhook is bound to the creating key.
pub async fn create_webhook(
    store: Arc<DynamoStore>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteWebhooks).await?;
    no_query(&req)?;
    let patch = parse_patch(&object_body(&req)?, true)?;
    let event_types = patch.event_types.unwrap_or_default();
    may_subscribe(&key, &event_types)?;
    let url = patch.url.unwrap_or_default();
    resolvable(&url).await?;
    let now = Timestamp::now();
    let secret = new_secret().map_err(|e| {
        tracing::error!(error = %e, "no secret");
        ApiError::Internal
    })?;
    let webhook = Webhook {
        id: WebhookId::generate(),
        organization_id: key.organization_id.clone(),
        url,
        event_types,
        description: patch.description.flatten(),
        enabled: patch.enabled.unwrap_or(true),
        secret,
        previous_secret: None,
        previous_secret_expires_at: None,
        subscribed_by: Some(key.id.clone()),
        failing_since: None,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    let audit = history::event(
        "webhook.created",
        &Actor::of(&key, &req),
        None,
        Some(&webhook),
    );
    store.create_webhook(&webhook, &audit).await?;
    tracing::info!(webhook_id = %webhook.id, "webhook created");
    Ok(with_secret(201, &webhook).with_header("Location", format!("/v1/webhooks/{}", webhook.id)))
}

/// GET /v1/webhooks: `{"webhooks": […]}`, oldest first (at most 20: no pages).
pub async fn list_webhooks(
    store: Arc<DynamoStore>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::ReadWebhooks).await?;
    no_query(&req)?;
    let all = store.webhooks(&key.organization_id).await?;
    let items: Vec<serde_json::Value> = all.iter().map(webhook_json).collect();
    Ok(ApiResponse::json(
        200,
        &serde_json::json!({ "webhooks": items }),
    ))
}

/// GET /v1/webhooks/{id}.
pub async fn get_webhook(
    store: Arc<DynamoStore>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::ReadWebhooks).await?;
    no_query(&req)?;
    let w = webhook(store, &key.organization_id, &req).await?;
    Ok(ApiResponse::json(200, &webhook_json(&w)).with_header("ETag", etag(w.version)))
}

/// PATCH /v1/webhooks/{id} `{url?, eventTypes?, description?, enabled?}`, `If-Match`
/// honoured; conditioned on the version read either way. Sending `url` or `eventTypes`
/// chooses where events go: it needs the scopes that read every type the webhook then
/// subscribes, and binds the webhook to this key.
pub async fn update_webhook(
    store: Arc<DynamoStore>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteWebhooks).await?;
    no_query(&req)?;
    let patch = parse_patch(&object_body(&req)?, false)?;
    let before = webhook(store, &key.organization_id, &req).await?;
    if req
        .header("if-match")
        .is_some_and(|h| !crate::http::etag_matches(h, &etag(before.version)))
    {
        return Err(ApiError::PreconditionFailed);
    }
    let mut after = before.clone();
    let rebinding = patch.url.is_some() || patch.event_types.is_some();
    after.event_types = patch.event_types.unwrap_or(after.event_types);
    if rebinding {
        may_subscribe(&key, &after.event_types)?;
        after.subscribed_by = Some(key.id.clone());
    }
    if let Some(url) = patch.url {
        resolvable(&url).await?;
        after.url = url;
    }
    after.description = patch.description.unwrap_or(after.description);
    after.enabled = patch.enabled.unwrap_or(after.enabled);
    if patch.enabled == Some(true) && !before.enabled {
        // Enabled again: a fresh start (the service's reason and the failing spell go).
        after.disabled_reason = None;
        after.failing_since = None;
    }
    if after != before {
        after.version += 1;
        after.updated_at = Timestamp::now();
        let audit = history::event(
            "webhook.updated",
            &Actor::of(&key, &req),
            Some(&before),
            Some(&after),
        );
        store.update_webhook(&after, before.version, &audit).await?;
    }
    Ok(ApiResponse::json(200, &webhook_json(&after)).with_header("ETag", etag(after.version)))
}

/// DELETE /v1/webhooks/{id}: 204; its deliveries stop (and expire with their TTL).
pub async fn delete_webhook(
    store: Arc<DynamoStore>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteWebhooks).await?;
    no_query(&req)?;
    // Deleted as read, so its history entry shows what was deleted; a change in between
    // is read again.
    for _ in 0..3 {
        let w = webhook(store, &key.organization_id, &req).await?;
        let audit = history::event("webhook.deleted", &Actor::of(&key, &req), Some(&w), None);
        if store.delete_webhook(&w, &audit).await? {
            tracing::info!(webhook_id = %w.id, "webhook deleted");
            return Ok(ApiResponse::empty(204));
        }
    }
    Err(ApiError::Conflict {
        code: "webhook_update_in_progress",
        detail: "The webhook kept changing while it was being deleted; retry.".into(),
        field: None,
    })
}

/// POST /v1/webhooks/{id}/rotate-secret `{overlapSeconds?}`: a new secret, shown once; the
/// old one stays valid for `overlapSeconds` (default 24 hours, at most 7 days, 0: not at
/// all), and deliveries meanwhile carry both signatures. The key needs the scopes that read
/// every type the webhook subscribes (with the secret, it could sign them).
pub async fn rotate_webhook_secret(
    store: Arc<DynamoStore>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteWebhooks).await?;
    no_query(&req)?;
    let overlap = rotation_overlap(&req)?;
    let before = webhook(store, &key.organization_id, &req).await?;
    // Whoever holds the secret can sign the webhook's events: only a key that may read
    // them gets it.
    may_subscribe(&key, &before.event_types)?;
    let now = Timestamp::now();
    // With an overlap, a second rotation now would end the first old secret's overlap at
    // once; without one (a leaked secret), both old secrets stop now, as asked.
    if let Some(until) = before
        .previous_secret_expires_at
        .filter(|u| *u > now && overlap > 0)
    {
        return Err(ApiError::Conflict {
            code: "rotation_in_progress",
            detail: format!(
                "The previous secret still signs until {until}; rotate again after that."
            ),
            field: None,
        });
    }
    let mut after = before.clone();
    (after.previous_secret, after.previous_secret_expires_at) = match overlap {
        0 => (None, None),
        seconds => (Some(before.secret.clone()), Some(now.plus_seconds(seconds))),
    };
    after.secret = new_secret().map_err(|_| ApiError::Internal)?;
    after.version += 1;
    after.updated_at = now;
    let audit = history::event(
        "webhook.secret_rotated",
        &Actor::of(&key, &req),
        Some(&before),
        Some(&after),
    );
    store.update_webhook(&after, before.version, &audit).await?;
    tracing::info!(webhook_id = %after.id, "webhook secret rotated");
    Ok(with_secret(200, &after))
}

/// A rotation's `overlapSeconds`: no body (or `{}`) is 24 hours.
fn rotation_overlap(req: &ApiRequest) -> Result<i64, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ROTATION_OVERLAP_SECONDS);
    }
    let body = object_body(req)?;
    let mut r = Reader::new(&body, "");
    r.check_keys(&["overlapSeconds"], &[]);
    let overlap = r.integer("overlapSeconds", 0, MAX_ROTATION_OVERLAP_SECONDS);
    if !r.errors.is_empty() {
        return Err(ApiError::Validation(r.errors));
    }
    Ok(overlap.unwrap_or(ROTATION_OVERLAP_SECONDS))
}

/// GET /v1/webhooks/{id}/deliveries?limit=&cursor=: newest first, each with its attempts.
pub async fn list_webhook_deliveries(
    store: Arc<DynamoStore>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::ReadWebhooks).await?;
    let (limit, cursor) = paging::limit_and_cursor(&req, paging::DEFAULT_LIMIT)?;
    let w = webhook(store, &key.organization_id, &req).await?;
    let print = fingerprint(&["deliveries", w.id.as_str()]);
    let before = cursor.map(|c| decode_cursor(c, &print)).transpose()?;
    let (items, next) = store
        .deliveries(&key.organization_id, &w.id, limit, before.as_deref())
        .await?;
    let (kept, cut) = paging::fit(&items, |d| paging::text(&delivery_json(d)));
    let next = match cut {
        true => items
            .get(kept.len().wrapping_sub(1))
            .map(|d| d.id.to_string()),
        false => next,
    };
    let next = next.map(|p| encode_cursor(&p, &print));
    Ok(ApiResponse::raw_json(
        200,
        paging::page_body("deliveries", &kept, next.as_deref()),
    ))
}

/// POST /v1/webhooks/{id}/deliveries/{deliveryId}/redeliver: 202; the delivery is tried
/// again now, with a fresh series of retries: a succeeded or parked one, or a pending one
/// whose next attempt is overdue (its retry was lost). The key needs the scope that reads
/// the event (as a subscription does), and the webhook must still want it. Its record is
/// kept 30 days from now.
pub async fn redeliver<Q: Enqueue>(
    store: Arc<DynamoStore>,
    req: ApiRequest,
    queue: &Q,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteWebhooks).await?;
    no_query(&req)?;
    let w = webhook(store, &key.organization_id, &req).await?;
    let id = req
        .path
        .split('/')
        .nth(5)
        .and_then(|s| DeliveryId::parse(s).ok())
        .ok_or(ApiError::NotFound)?;
    let mut d = store
        .delivery(&key.organization_id, &w.id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    may_subscribe(&key, [&d.event_type])?;
    if !w.enabled {
        return Err(ApiError::Conflict {
            code: "webhook_disabled",
            detail: "The webhook is disabled; enable it (PATCH enabled: true) first.".into(),
            field: None,
        });
    }
    if !w.event_types.contains(&d.event_type) {
        return Err(ApiError::Conflict {
            code: "event_type_not_subscribed",
            detail: format!(
                "The webhook no longer subscribes to {}; add it to eventTypes first.",
                d.event_type
            ),
            field: None,
        });
    }
    let now = Timestamp::now();
    let overdue = d.next_attempt_at.is_none_or(|at| at <= now);
    if d.status == DeliveryStatus::Pending && !overdue {
        // Its own retry is scheduled; a second message would only be a duplicate.
        return Err(ApiError::Conflict {
            code: "delivery_pending",
            detail: format!(
                "The delivery is still being retried (next attempt at {}); redeliver it once it has succeeded or been parked, or once that time has passed.",
                d.next_attempt_at.map_or_else(|| "once due".to_owned(), |t| t.to_string())
            ),
            field: None,
        });
    }
    let expected = d.revision;
    let was = d.status;
    d.status = DeliveryStatus::Pending;
    d.failures = 0;
    d.next_attempt_at = Some(now);
    d.redelivered_at = Some(now);
    let audit = history::redelivered(&Actor::of(&key, &req), &w, &d, was);
    if !store.redeliver(&mut d, expected, &audit).await? {
        return Err(ApiError::Conflict {
            code: "delivery_in_progress",
            detail: "An attempt of this delivery was just recorded; read it and retry.".into(),
            field: None,
        });
    }
    let event = EventRef {
        organization_id: key.organization_id.clone(),
        id: d.event_id.clone(),
        kind: d.event_type.clone(),
        sequence: d.sequence,
        only: Some((w.id.clone(), d.id.clone())),
    };
    queue.enqueue(&event, Duration::ZERO).await?;
    Ok(ApiResponse::json(202, &delivery_json(&d)))
}

/// Refuses a key that may not read every one of `types` (403 naming the scope and the
/// types): it would learn through the webhook what it may not read directly.
fn may_subscribe<'a>(
    key: &ApiKey,
    types: impl IntoIterator<Item = &'a String>,
) -> Result<(), ApiError> {
    let refused: Vec<&str> = types
        .into_iter()
        .filter(|t| !key.allows(read_scope(t)))
        .map(String::as_str)
        .collect();
    let Some(first) = refused.first() else {
        return Ok(());
    };
    let scope = read_scope(first).as_str();
    Err(ApiError::ScopeNeeded {
        scope,
        detail: format!(
            "Events of type {} carry data that only a key with the scope {scope} may read, and this request would let the key see or sign them: use a key with that scope.",
            refused.join(", "),
        ),
    })
}

fn webhook_id(req: &ApiRequest) -> Result<WebhookId, ApiError> {
    req.path_id
        .as_deref()
        .and_then(|s| WebhookId::parse(s).ok())
        .ok_or(ApiError::NotFound)
}

async fn webhook(store: &DynamoStore, org: &OrgId, req: &ApiRequest) -> Result<Webhook, ApiError> {
    let id = webhook_id(req)?;
    store.webhook(org, &id).await?.ok_or(ApiError::NotFound)
}

fn with_secret(status: u16, w: &Webhook) -> ApiResponse {
    let mut body = webhook_json(w);
    body["secret"] = serde_json::Value::String(w.secret.clone());
    ApiResponse::json(status, &body).with_header("ETag", etag(w.version))
}

/// The URL's host must resolve, to public addresses only (checked again at each delivery).
async fn resolvable(url: &str) -> Result<(), ApiError> {
    let refuse = |why: String| {
        ApiError::Validation(vec![crate::error::FieldError::new(
            "url",
            "url_refused",
            format!("url is refused: {why}"),
        )])
    };
    let parsed = url::Url::parse(url).map_err(|e| refuse(e.to_string()))?;
    let host = parsed
        .host_str()
        .unwrap_or("")
        .trim_matches(['[', ']'])
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<std::net::SocketAddr> = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    .map_err(|_| refuse("its host did not resolve in time".into()))?
    .map_err(|_| refuse("its host does not resolve".into()))?
    .collect();
    check_addresses(&addrs, loopback_allowed()).map_err(refuse)
}
