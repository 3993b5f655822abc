//! JSON kept deflated in a binary attribute. An outbox entry holds the member it changed
//! (a create's holds it twice: every field is a change, and the resource), an idempotency
//! record the answer it replays; deflated, a create's writes fit three write units in
//! place of four (docs/design.md, "What a write costs"). DynamoDB's own guidance for large
//! attributes ("compress large attribute values").

use crate::error::ApiError;
use flate2::{read::DeflateDecoder, write::DeflateEncoder, Compression};
use serde::{de::DeserializeOwned, Serialize};
use std::io::{Read, Write};

/// An item is at most 400 KB; its payload never inflates past this, or it is corrupt.
const MAX_INFLATED: u64 = 16 * 1024 * 1024;

/// `value` as deflated JSON.
pub(super) fn deflate<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    deflate_text(&serde_json::to_string(value).map_err(|e| corrupt("serialise", e))?)
}

/// What [`deflate`] wrote.
pub(super) fn inflate<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_str(&inflate_text(bytes)?).map_err(|e| corrupt("parse", e))
}

/// `text`, deflated.
pub(super) fn deflate_text(text: &str) -> Result<Vec<u8>, ApiError> {
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(text.len()), Compression::default());
    encoder
        .write_all(text.as_bytes())
        .and_then(|()| encoder.finish())
        .map_err(|e| corrupt("deflate", e))
}

/// What [`deflate_text`] wrote.
pub(super) fn inflate_text(bytes: &[u8]) -> Result<String, ApiError> {
    let mut text = String::new();
    DeflateDecoder::new(bytes)
        .take(MAX_INFLATED + 1)
        .read_to_string(&mut text)
        .map_err(|e| corrupt("inflate", e))?;
    if text.len() as u64 > MAX_INFLATED {
        return Err(corrupt("inflate", "inflates past 16 MiB"));
    }
    Ok(text)
}

fn corrupt(step: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(step, error = %e, "a deflated attribute could not be read or written");
    ApiError::Internal
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn what_is_deflated_inflates_back_and_garbage_is_an_error() {
        let value = json!({"changes": {"role": {"before": null, "after": "admin"}}, "n": [1, 2]});
        let bytes = deflate(&value).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(inflate::<Value>(&bytes).ok(), Some(value));
        assert!(inflate::<Value>(b"not deflate").is_err());
    }
}
