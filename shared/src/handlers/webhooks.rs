//! /v1/webhooks: an organisation's signed webhooks (scopes `w_webhooks`, `r_webhooks`),
//! their deliveries, and redelivery. Served by DynamoDB only (no in-memory double: the
//! integration tests run them).

use super::paging::{self, decode_cursor, encode_cursor, fingerprint};
use super::{no_query, object_body};
use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::model::*;
use crate::store::DynamoStore;
use crate::webhooks::deliver::Enqueue;
use crate::webhooks::sign::new_secret;
use crate::webhooks::target::{check_addresses, loopback_allowed};
use crate::webhooks::{
    delivery_json, parse_patch, webhook_json, DeliveryStatus, EventRef, Webhook,
    ROTATION_OVERLAP_SECONDS,
};
use crate::wire::etag;
use std::sync::Arc;
use std::time::Duration;

/// POST /v1/webhooks `{url, eventTypes, description?, enabled?}`: 201 with the webhook and
/// its signing `secret`, shown this once.
pub async fn create_webhook(
    store: Arc<DynamoStore>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteWebhooks).await?;
    no_query(&req)?;
    let patch = parse_patch(&object_body(&req)?, true)?;
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
        event_types: patch.event_types.unwrap_or_default(),
        description: patch.description.flatten(),
        enabled: patch.enabled.unwrap_or(true),
        secret,
        previous_secret: None,
        previous_secret_expires_at: None,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    store.create_webhook(&webhook).await?;
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
/// honoured; conditioned on the version read either way.
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
    if let Some(url) = patch.url {
        resolvable(&url).await?;
        after.url = url;
    }
    after.event_types = patch.event_types.unwrap_or(after.event_types);
    after.description = patch.description.unwrap_or(after.description);
    after.enabled = patch.enabled.unwrap_or(after.enabled);
    if after != before {
        after.version += 1;
        after.updated_at = Timestamp::now();
        store.update_webhook(&after, before.version).await?;
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
    let id = webhook_id(&req)?;
    match store.delete_webhook(&key.organization_id, &id).await? {
        true => Ok(ApiResponse::empty(204)),
        false => Err(ApiError::NotFound),
    }
}

/// POST /v1/webhooks/{id}/rotate-secret: a new secret, shown once; the old one stays valid
/// for 24 hours, and deliveries meanwhile carry both signatures.
pub async fn rotate_webhook_secret(
    store: Arc<DynamoStore>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteWebhooks).await?;
    no_query(&req)?;
    let before = webhook(store, &key.organization_id, &req).await?;
    let now = Timestamp::now();
    if let Some(until) = before.previous_secret_expires_at.filter(|u| *u > now) {
        // A second rotation now would end the first old secret's day at once.
        return Err(ApiError::Conflict {
            code: "rotation_in_progress",
            detail: format!(
                "The previous secret still signs until {until}; rotate again after that."
            ),
            field: None,
        });
    }
    let mut after = before.clone();
    after.previous_secret = Some(before.secret.clone());
    after.previous_secret_expires_at = Some(now.plus_seconds(ROTATION_OVERLAP_SECONDS));
    after.secret = new_secret().map_err(|_| ApiError::Internal)?;
    after.version += 1;
    after.updated_at = now;
    store.update_webhook(&after, before.version).await?;
    tracing::info!(webhook_id = %after.id, "webhook secret rotated");
    Ok(with_secret(200, &after))
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
/// again now, whatever its state (a parked one too), with a fresh series of retries.
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
    if !w.enabled {
        return Err(ApiError::Conflict {
            code: "webhook_disabled",
            detail: "The webhook is disabled; enable it (PATCH enabled: true) first.".into(),
            field: None,
        });
    }
    if d.status == DeliveryStatus::Pending {
        // Its own retry is scheduled; a second message would send every later retry twice.
        return Err(ApiError::Conflict {
            code: "delivery_pending",
            detail: format!(
                "The delivery is still being retried (next attempt at {}); redeliver it once it has succeeded or been parked.",
                d.next_attempt_at.map_or_else(|| "once due".to_owned(), |t| t.to_string())
            ),
            field: None,
        });
    }
    let expected = d.revision;
    d.status = DeliveryStatus::Pending;
    d.failures = 0;
    d.next_attempt_at = Some(Timestamp::now());
    if !store.save_delivery(&mut d, expected).await? {
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
