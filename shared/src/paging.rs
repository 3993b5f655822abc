//! Query strings of the list endpoints: every parameter checked, unknown ones refused, and
//! opaque cursors that hold only a sort position and the query they belong to.

use crate::error::ApiError;
use crate::http::ApiRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const DEFAULT_LIMIT: usize = 25;
pub const MAX_LIMIT: usize = 100;

/// The most bytes the items of one page may take in the function's answer. Lambda lets a
/// synchronous answer be 6 MB at most, body included as a JSON string (every `"` and `\`
/// escaped once more); this leaves room for that, the envelope and the headers.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// What a JSON text costs in the Lambda answer: its bytes, plus one for each character the
/// answer's envelope escapes again (`"` and `\\`).
pub fn answer_bytes(json: &str) -> usize {
    json.len() + json.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
}

/// The items of a page as JSON texts, each serialised once, as many from the front as fit
/// in [`PAGE_BYTES`] (always at least one: no single item comes near it), and whether any
/// were left out.
pub fn fit<T>(items: &[T], to_text: impl Fn(&T) -> String) -> (Vec<String>, bool) {
    let mut out = Vec::with_capacity(items.len());
    let mut used = 0;
    for item in items {
        let json = to_text(item);
        used += answer_bytes(&json) + 1;
        if used > PAGE_BYTES && !out.is_empty() {
            return (out, true);
        }
        out.push(json);
    }
    (out, false)
}

/// JSON text of one of our own types (they always serialise; a failure would be a bug,
/// shown as null rather than a panic).
pub fn text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// A page's body, `{"<field>":[items…],"nextCursor":…}`, from items already serialised.
pub fn page_body(field: &str, items: &[String], next: Option<&str>) -> String {
    let next = serde_json::to_string(&next).unwrap_or_else(|_| "null".into());
    let mut body = String::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 64);
    body.push_str("{\"");
    body.push_str(field);
    body.push_str("\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("],\"nextCursor\":");
    body.push_str(&next);
    body.push('}');
    body
}

pub fn bad_parameter(detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_query_parameter",
        detail: detail.into(),
    }
}

/// The query parameters, refusing any not in `allowed` and any given twice.
pub fn query<'a>(
    req: &'a ApiRequest,
    allowed: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, ApiError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (name, value) in &req.query {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::BadRequest {
                code: "unknown_query_parameter",
                detail: format!(
                    "Unknown query parameter {name:?}; this endpoint takes {}.",
                    allowed.join(", ")
                ),
            });
        }
        if seen.contains(&name.as_str()) {
            return Err(bad_parameter(format!("{name} is given more than once.")));
        }
        seen.push(name);
        out.push((name.as_str(), value.as_str()));
    }
    Ok(out)
}

/// The query of a list that takes only `limit` (default `default`) and `cursor`.
pub fn limit_and_cursor(
    req: &ApiRequest,
    default: usize,
) -> Result<(usize, Option<&str>), ApiError> {
    let (mut limit, mut cursor) = (default, None);
    for (name, value) in query(req, &["limit", "cursor"])? {
        match name {
            "limit" => limit = self::limit(value)?,
            _ => cursor = Some(value),
        }
    }
    Ok((limit, cursor))
}

/// `limit`: 1 to 100.
pub fn limit(value: &str) -> Result<usize, ApiError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(bad_parameter(format!(
            "limit must be a whole number from 1 to {MAX_LIMIT}."
        ))),
    }
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    /// The sort position to continue after.
    p: String,
    /// The query this cursor belongs to.
    q: String,
}

/// A fingerprint of a query's filters: a cursor only continues the query it came from.
pub fn fingerprint(parts: &[&str]) -> String {
    hex::encode(&Sha256::digest(parts.join("\u{1f}").as_bytes())[..8])
}

pub fn encode_cursor(position: &str, fingerprint: &str) -> String {
    let json = serde_json::json!({"p": position, "q": fingerprint}).to_string();
    URL_SAFE_NO_PAD.encode(json)
}

pub fn decode_cursor(cursor: &str, fingerprint: &str) -> Result<String, ApiError> {
    let (position, query) = decode_cursor_parts(cursor)?;
    if query != fingerprint {
        return Err(invalid_cursor(
            "The cursor belongs to a query with other filters; repeat the same filters with it.",
        ));
    }
    Ok(position)
}

/// A cursor's position and the fingerprint it was issued for, for a caller that tells
/// fingerprints apart itself (the feed: another organisation's, an earlier epoch's).
pub fn decode_cursor_parts(cursor: &str) -> Result<(String, String), ApiError> {
    let forged = || invalid_cursor("The cursor is not one this API issued.");
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| forged())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| forged())?;
    if c.p.is_empty() || c.p.len() > 200 {
        return Err(forged());
    }
    Ok((c.p, c.q))
}

pub fn invalid_cursor(detail: &str) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_cursor",
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_other_queries_and_forgeries() {
        let f = fingerprint(&["active", "admin"]);
        let c = encode_cursor("mem_01abc", &f);
        assert_eq!(decode_cursor(&c, &f).ok().as_deref(), Some("mem_01abc"));
        let other = fingerprint(&["inactive", "admin"]);
        assert_eq!(
            decode_cursor(&c, &other).err().map(|e| e.code()),
            Some("invalid_cursor")
        );
        for forged in [
            "",
            "!!!",
            "bm90IGpzb24",
            &URL_SAFE_NO_PAD.encode(r#"{"p":"","q":"x"}"#),
        ] {
            assert_eq!(
                decode_cursor(forged, &f).err().map(|e| e.code()),
                Some("invalid_cursor"),
                "{forged}"
            );
        }
    }

    #[test]
    fn a_page_is_cut_to_its_byte_budget_and_keeps_at_least_one_item() {
        let big = "\"".repeat(PAGE_BYTES / 16);
        let items = vec![big.clone(); 10];
        let (kept, cut) = fit(&items, |s| text(&serde_json::json!({ "x": s })));
        assert!(cut);
        assert_eq!(
            kept.len(),
            3,
            "each item costs a quarter of the budget, escaped twice"
        );
        let body = page_body("items", &kept, Some("c"));
        assert!(answer_bytes(&body) <= PAGE_BYTES);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(parsed["items"].as_array().map(Vec::len), Some(3));
        assert_eq!(parsed["nextCursor"], "c");
        let (one, cut) = fit(&["x".repeat(PAGE_BYTES)], text);
        assert_eq!((one.len(), cut), (1, false));
        let (none, cut) = fit(&Vec::<String>::new(), text);
        assert_eq!((none.len(), cut), (0, false));
        assert_eq!(page_body("e", &none, None), r#"{"e":[],"nextCursor":null}"#);
    }

    #[test]
    fn limits_are_one_to_a_hundred() {
        for bad in ["0", "101", "abc", "-1", "1.5", ""] {
            assert_eq!(
                limit(bad).err().map(|e| e.code()),
                Some("invalid_query_parameter"),
                "{bad}"
            );
        }
        assert_eq!(limit("100").ok(), Some(100));
    }
}
