//! The idempotency item: a create's answer, kept a day under its `Idempotency-Key` so that a
//! retry is answered as the first time (its body deflated in the compact layout).

use super::deflated::{deflate_text, inflate_text};
use super::keys;
use super::records::ItemLayout;
use crate::error::ApiError;
use crate::store::IdempotencyRecord;
use serde::{Deserialize, Serialize};

/// How long an idempotency record is kept (the table's TTL attribute is `expiresAt`).
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 3600;

#[derive(Serialize, Deserialize)]
pub(super) struct IdempotencyItem {
    #[serde(rename = "PK")]
    pub(super) pk: String,
    #[serde(rename = "SK")]
    pub(super) sk: String,
    pub(super) entity: String,
    /// DynamoDB TTL attribute (epoch seconds).
    #[serde(rename = "expiresAt")]
    pub(super) expires_at: i64,
    /// The answer's body, deflated ([`ItemLayout::Compact`]; `body` is then empty).
    #[serde(
        rename = "bodyDeflated",
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_bytes"
    )]
    body_deflated: Option<Vec<u8>>,
    /// Read through [`IdempotencyItem::into_record`].
    #[serde(flatten)]
    record: IdempotencyRecord,
}

impl IdempotencyItem {
    pub(super) fn new(record: &IdempotencyRecord) -> Result<Self, ApiError> {
        Self::new_in(record, ItemLayout::current())
    }

    fn new_in(record: &IdempotencyRecord, layout: ItemLayout) -> Result<Self, ApiError> {
        let (pk, sk) = keys::idempotency(&record.organization_id, &record.key);
        let mut record = record.clone();
        let body_deflated = match layout {
            ItemLayout::Compact => Some(deflate_text(&std::mem::take(&mut record.body))?),
            ItemLayout::Full => None,
        };
        Ok(IdempotencyItem {
            pk,
            sk,
            entity: "idempotency".into(),
            expires_at: record.created_at.unix_seconds() + IDEMPOTENCY_TTL_SECONDS,
            body_deflated,
            record,
        })
    }

    /// The record as it was before [`new`](Self::new) deflated its body.
    pub(super) fn into_record(self) -> Result<IdempotencyRecord, ApiError> {
        let mut record = self.record;
        if let Some(bytes) = &self.body_deflated {
            record.body = inflate_text(bytes)?;
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::store::dynamo::records::tests::{member, size};
    use crate::store::dynamo::records::{from_item, to_item};
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn an_idempotency_record_keeps_its_body_deflated_and_reads_back_whole() {
        let m = member();
        let record = IdempotencyRecord {
            organization_id: m.organization_id.clone(),
            key: "retry-1".into(),
            request_hash: "ab".repeat(32),
            status: 201,
            body: crate::wire::member_json(&m).to_string(),
            location: Some(format!("/v1/members/{}", m.id)),
            etag: Some("\"1\"".into()),
            created_at: Timestamp::now(),
        };
        let compact = to_item(
            &IdempotencyItem::new_in(&record, ItemLayout::Compact)
                .unwrap_or_else(|e| panic!("{e:?}")),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(compact.get("body"), Some(&AttributeValue::S(String::new())));
        let full = to_item(
            &IdempotencyItem::new_in(&record, ItemLayout::Full).unwrap_or_else(|e| panic!("{e:?}")),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!full.contains_key("bodyDeflated"));
        assert!(
            size(&compact) < size(&full) - 300,
            "{} vs {}",
            size(&compact),
            size(&full)
        );
        for item in [compact, full] {
            let back = from_item::<IdempotencyItem>(item)
                .and_then(IdempotencyItem::into_record)
                .unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(back, record);
        }
    }
}
