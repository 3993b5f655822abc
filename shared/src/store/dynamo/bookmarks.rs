//! Where a SCIM list stepped by `startIndex` continues. DynamoDB has no offset: a page at
//! index N would read the N − 1 users before it, and an identity provider that imports by
//! stepping `startIndex` up to `totalResults` (Okta) would read the organisation
//! quadratically. Each page that has more after it leaves a bookmark (the sort position of
//! its last user, at the index that follows it), kept a day; the next page starts there.

use super::errors::sdk_error;
use super::{keys, DynamoStore};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::types::AttributeValue;

/// How long a bookmark is kept (the table's TTL attribute `expiresAt`): longer than any
/// import, short enough that few pile up.
pub(super) const BOOKMARK_TTL_SECONDS: i64 = 24 * 3600;

impl DynamoStore {
    /// The bookmark of the query `fingerprint` nearest at or below `index` that has not
    /// expired: (its index, the position to continue after). One Query of a few items.
    pub(super) async fn nearest_bookmark(
        &self,
        org: &OrgId,
        fingerprint: &str,
        index: usize,
    ) -> Result<Option<(usize, String)>, ApiError> {
        let (pk, highest) = keys::scim_bookmark(org, fingerprint, index);
        let (_, lowest) = keys::scim_bookmark(org, fingerprint, 0);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .expression_attribute_values(":lo", AttributeValue::S(lowest))
            .expression_attribute_values(":hi", AttributeValue::S(highest))
            .scan_index_forward(false)
            // TTL deletes late: the nearest may have expired, a few below it not.
            .limit(8)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        let now = Timestamp::now().unix_seconds();
        Ok(out.items().iter().find_map(|item| {
            let number = |name: &str| match item.get(name) {
                Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
                _ => None,
            };
            // TTL deletes late: an expired bookmark is not used.
            if number("expiresAt").is_none_or(|at| at <= now) {
                return None;
            }
            let at = usize::try_from(number("index")?).ok()?;
            match item.get("position") {
                Some(AttributeValue::S(p)) => Some((at, p.clone())),
                _ => None,
            }
        }))
    }

    /// Leaves a bookmark: users from `index` on follow `position`.
    pub(super) async fn put_bookmark(
        &self,
        org: &OrgId,
        fingerprint: &str,
        index: usize,
        position: &str,
    ) -> Result<(), ApiError> {
        let (pk, sk) = keys::scim_bookmark(org, fingerprint, index);
        let expires = Timestamp::now().unix_seconds() + BOOKMARK_TTL_SECONDS;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("PK", AttributeValue::S(pk))
            .item("SK", AttributeValue::S(sk))
            .item("entity", AttributeValue::S("scimBookmark".into()))
            .item("index", AttributeValue::N(index.to_string()))
            .item("position", AttributeValue::S(position.to_owned()))
            .item("expiresAt", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }
}
