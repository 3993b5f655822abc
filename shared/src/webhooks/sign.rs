//! Standard Webhooks signatures (https://www.standardwebhooks.com): each delivery carries
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a space-separated
//! list of `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per live secret. A
//! secret is `whsec_` + base64 of 32 random bytes; the HMAC key is those bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
}

/// `v1,<signature>` of one message under one secret; `None` for a secret that is not ours.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: one signature per secret, space-separated (during a
/// rotation, the new secret's and the old one's, so a receiver on either verifies).
pub fn signature_header(secrets: &[&str], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|s| signature(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference implementations' own tests.
    #[test]
    fn signs_as_the_reference_implementations_do() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, id, 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(signature("not-ours", id, 1, body), None);
        let both = signature_header(&[secret, secret], id, 1614265330, body);
        assert_eq!(both.split(' ').count(), 2);
    }

    #[test]
    fn new_secrets_are_random_and_well_formed() {
        let (a, b) = (
            new_secret().unwrap_or_default(),
            new_secret().unwrap_or_default(),
        );
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(
            STANDARD
                .decode(&a[SECRET_PREFIX.len()..])
                .map(|k| k.len())
                .ok(),
            Some(32)
        );
    }
}
