//! API keys: issued by the operator CLI, shown once, stored as SHA-256, bound to one
//! organisation, scoped, revocable.

use crate::error::ApiError;
use crate::model::{ApiKey, ApiKeyId, OrgId, Scope, Timestamp};
use crate::store::{NewApiKey, Store};
use sha2::{Digest, Sha256};

/// Every key starts with this, so secret scanners can recognise a leaked one.
pub const KEY_PREFIX: &str = "mapi_";
/// 32 random bytes (256 bits), hex-encoded after the prefix.
const KEY_HEX_LEN: usize = 64;

/// A freshly issued key: `secret` is shown to the operator once and never stored.
pub struct IssuedKey {
    pub secret: String,
    pub record: NewApiKey,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("secret", &"[redacted]")
            .field("key", &self.record.key)
            .finish()
    }
}

/// The hash a key is stored and looked up by.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Makes a new random key for an organisation.
pub fn issue_key(org: &OrgId, name: &str, scopes: Vec<Scope>) -> Result<IssuedKey, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness available: {e}"))?;
    let secret = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let key = ApiKey {
        id: ApiKeyId::generate(),
        organization_id: org.clone(),
        name: name.to_owned(),
        scopes,
        created_at: Timestamp::now(),
        revoked_at: None,
    };
    Ok(IssuedKey {
        record: NewApiKey {
            hash: hash_key(&secret),
            key,
        },
        secret,
    })
}

/// Resolves `Authorization: Bearer <key>` to a live key holding `scope`.
/// Unknown and revoked keys get the same answer, so the answer tells an attacker nothing.
pub async fn authenticate(
    store: &impl Store,
    authorization: Option<&str>,
    scope: Scope,
) -> Result<ApiKey, ApiError> {
    authenticate_any(store, authorization, &[scope]).await
}

/// As [`authenticate`], for an endpoint that any of `scopes` may call (it then shows each
/// key only what its own scopes read); a key with none is refused naming the first.
pub async fn authenticate_any(
    store: &impl Store,
    authorization: Option<&str>,
    scopes: &[Scope],
) -> Result<ApiKey, ApiError> {
    let header = authorization
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(ApiError::MissingApiKey)?;
    let (scheme, secret) = header.split_once(' ').ok_or(ApiError::InvalidApiKey)?;
    let secret = secret.trim();
    let well_formed = scheme.eq_ignore_ascii_case("bearer")
        && secret.len() == KEY_PREFIX.len() + KEY_HEX_LEN
        && secret.starts_with(KEY_PREFIX)
        && secret[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err(ApiError::InvalidApiKey);
    }
    let key = store.api_key_by_hash(&hash_key(secret)).await?;
    match key {
        Some(key) if key.revoked_at.is_none() => {
            if scopes.iter().any(|s| key.allows(*s)) {
                crate::ratelimit::admit(store, &key).await?;
                Ok(key)
            } else {
                Err(ApiError::MissingScope(
                    scopes.first().map_or("", |s| s.as_str()),
                ))
            }
        }
        _ => Err(ApiError::InvalidApiKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_only_their_hash_is_kept() {
        let org = OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}"));
        let a = issue_key(&org, "ci", vec![Scope::ReadMembers]).unwrap_or_else(|e| panic!("{e}"));
        let b = issue_key(&org, "ci", vec![Scope::ReadMembers]).unwrap_or_else(|e| panic!("{e}"));
        assert!(a.secret.starts_with("mapi_") && a.secret.len() == 69);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.record.hash, hash_key(&a.secret));
        assert_eq!(a.record.hash.len(), 64);
        assert!(!format!("{a:?}").contains(&a.secret));
    }
}
