use crate::audit::{self, Actor};
use crate::error::ApiError;
use crate::http::{record_ids, ApiRequest, ApiResponse};
use crate::input::parse_member_patch;
use crate::model::{ApiKey, Scope, Timestamp};
use crate::rules;
use crate::store::{CreateMember, IdempotencyRecord, Store};
use crate::wire::{etag, member_json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// POST /v1/members: 201 with `Location` and `ETag`. With an `Idempotency-Key`, a retry
/// with the same body gets the first answer again; another body with that key gets 422.
pub async fn create_member<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteMembers).await?;
    // POST takes no query parameter: one sent (`?dryRun=true`) is refused, never ignored.
    super::no_query(&req)?;
    let idempotency_key = idempotency_key(&req)?;
    let body = req.json_body()?;
    let patch = parse_member_patch(&body).map_err(ApiError::Validation)?;

    let request_hash = request_hash(&body);
    // One consistent read for both: the organisation decides the rules, the record a replay.
    let (org, done) = store
        .organization_and_idempotency(&key.organization_id, idempotency_key.as_deref())
        .await?;
    if let Some(done) = done {
        return replay(&done, &request_hash);
    }
    let org = org.ok_or_else(|| {
        tracing::error!("the API key's organisation does not exist");
        ApiError::Internal
    })?;
    let now = Timestamp::now();
    let draft = rules::new_member(patch, &org, now)?;
    let member = draft.member;
    record_ids(&org.id, Some(&member.id));
    let actor = Actor::of(&key, &req);

    let previous_primary = if member.is_primary {
        super::demotion(store, &org, &member.id, &actor, now).await?
    } else {
        None
    };

    let body = member_json(&member);
    let location = format!("/v1/members/{}", member.id);
    let tag = etag(member.version);
    let response = ApiResponse::json(201, &body)
        .with_header("Location", location.clone())
        .with_header("ETag", tag.clone());
    let idempotency = idempotency_key.as_ref().map(|k| IdempotencyRecord {
        organization_id: org.id.clone(),
        key: k.clone(),
        request_hash: request_hash.clone(),
        status: 201,
        body: body.to_string(),
        location: Some(location),
        etag: Some(tag),
        created_at: now,
    });
    // Every check this function can make has passed: only now the password's argon2id.
    let mut member = member;
    rules::hash_password(&mut member, draft.password)?;
    let write = CreateMember {
        audit: audit::event(
            "member.created",
            &actor,
            None,
            &member,
            draft.password_changed,
            draft.justification,
        ),
        member,
        org,
        previous_primary,
        idempotency,
    };
    match store.create_member(&write).await {
        Ok(()) => {
            tracing::info!("member created");
            Ok(response)
        }
        // Another request with the same key won the race: answer as it was answered.
        Err(err) if err.code() == "idempotency_conflict" => {
            replay_after_race(store, &key, idempotency_key.as_deref(), &request_hash, err).await
        }
        Err(err) => Err(err),
    }
}

/// What a retry must repeat: the SHA-256 of the body, its password left out. A fast hash of
/// a body holding the password would let anyone who reads the table test guesses at
/// SHA-256 speed, around the argon2id that guards the password itself.
fn request_hash(body: &serde_json::Value) -> String {
    let mut body = body.clone();
    if let Some(password) = body
        .get_mut("settings")
        .and_then(|s| s.as_object_mut())
        .and_then(|s| s.get_mut("password"))
    {
        *password = serde_json::Value::String(if password.is_null() {
            "[cleared]".into()
        } else {
            crate::audit::REDACTED.into()
        });
    }
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

/// `Idempotency-Key`: 1–255 visible ASCII characters.
fn idempotency_key(req: &ApiRequest) -> Result<Option<String>, ApiError> {
    let Some(k) = req.header("idempotency-key") else {
        return Ok(None);
    };
    let k = k.trim();
    if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest {
            code: "invalid_idempotency_key",
            detail: "Idempotency-Key must be 1 to 255 visible ASCII characters.".into(),
        });
    }
    Ok(Some(k.to_owned()))
}

fn replay(done: &IdempotencyRecord, request_hash: &str) -> Result<ApiResponse, ApiError> {
    if done.request_hash != request_hash {
        return Err(ApiError::rule(
            "idempotency_key_reused",
            None,
            "This Idempotency-Key was used with a different request body.",
        ));
    }
    let mut response = ApiResponse {
        status: done.status,
        headers: vec![("Idempotent-Replayed".into(), "true".into())],
        body: Some(done.body.clone()),
        content_type: "application/json",
    };
    for (name, value) in [("Location", &done.location), ("ETag", &done.etag)] {
        if let Some(value) = value {
            response = response.with_header(name, value.clone());
        }
    }
    Ok(response)
}

async fn replay_after_race(
    store: &impl Store,
    key: &ApiKey,
    idempotency_key: Option<&str>,
    request_hash: &str,
    err: ApiError,
) -> Result<ApiResponse, ApiError> {
    let Some(k) = idempotency_key else {
        return Err(err);
    };
    match store.idempotency_record(&key.organization_id, k).await? {
        Some(done) => replay(&done, request_hash),
        None => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::request_hash;
    use serde_json::json;

    #[test]
    fn the_request_hash_never_depends_on_the_password() {
        let with = |p: &str| json!({"email": "a@example.com", "settings": {"password": p}});
        assert_eq!(
            request_hash(&with("first-secret")),
            request_hash(&with("other-secret"))
        );
        assert_ne!(
            request_hash(&with("first-secret")),
            request_hash(&json!({"email": "a@example.com"})),
            "a body with a password is still not one without"
        );
        assert_ne!(
            request_hash(&json!({"email": "a@example.com"})),
            request_hash(&json!({"email": "b@example.com"}))
        );
    }
}
