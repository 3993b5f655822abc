//! Rate limit counts (`ratelimit`): per organisation and window, [`SHARDS`] items in a
//! partition of their own (`RATE#<org>`, sort key `<window>#<shard>`: `requests`, and
//! `k_<key id>` for each key, expiring a window after theirs), apart from the organisation's
//! items so that the functions that only read may write these and nothing else
//! (template.yaml, `CountRequests`: `dynamodb:LeadingKeys` `RATE#*`); and the organisation's
//! own limits (`LIMITS#<org>`, `RATE`), which the functions only read and the operator's
//! `membersctl rate-limits` writes.

use super::errors::sdk_error;
use super::DynamoStore;
use crate::error::ApiError;
use crate::model::{ApiKeyId, OrgId};
use crate::ratelimit::{Limits, RateSync, RateTotals, SHARDS, WINDOW_SECONDS};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use std::collections::HashMap;

type Item = HashMap<String, AttributeValue>;

fn shard_key(org: &OrgId, window: i64, shard: u32) -> (String, String) {
    (format!("RATE#{org}"), format!("{window}#{shard}"))
}

/// Apart from the counts (`RATE#…`, which the functions may write): the functions only read
/// an organisation's limits; the operator writes them.
fn limits_key(org: &OrgId) -> (String, String) {
    (format!("LIMITS#{org}"), "RATE".into())
}

fn number(item: &Item, name: &str) -> u64 {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
        _ => 0,
    }
}

/// Adds a shard's counts to `totals`.
fn add(totals: &mut RateTotals, item: &Item) {
    totals.total += number(item, "requests");
    for name in item.keys() {
        if let Some(id) = name.strip_prefix("k_") {
            if let Ok(id) = ApiKeyId::parse(id) {
                *totals.keys.entry(id).or_default() += number(item, name);
            }
        }
    }
}

impl DynamoStore {
    /// The store's side of [`crate::store::Store::rate_sync`]: the UpdateItem of one shard
    /// and the BatchGetItem of the others and the limits, at once.
    pub(super) async fn sync_rates(
        &self,
        org: &OrgId,
        sync: &RateSync,
    ) -> Result<RateTotals, ApiError> {
        let (pk, sk) = shard_key(org, sync.window, sync.shard);
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .expression_attribute_values(":t", AttributeValue::N(sync.total.to_string()))
            .expression_attribute_values(
                ":e",
                AttributeValue::N((sync.window + 2 * WINDOW_SECONDS).to_string()),
            )
            .return_values(ReturnValue::AllNew);
        let mut adds = vec!["requests :t".to_owned()];
        for (i, (key, n)) in sync.keys.iter().enumerate() {
            adds.push(format!("#k{i} :k{i}"));
            update = update
                .expression_attribute_names(format!("#k{i}"), format!("k_{key}"))
                .expression_attribute_values(format!(":k{i}"), AttributeValue::N(n.to_string()));
        }
        let update =
            update.update_expression(format!("ADD {} SET expiresAt = :e", adds.join(", ")));
        // The other shards (every shard when there is nothing to add) and the limits.
        let mut others: Vec<(String, String)> = (0..SHARDS)
            .filter(|s| sync.total == 0 || *s != sync.shard)
            .map(|s| shard_key(org, sync.window, s))
            .collect();
        others.push(limits_key(org));
        // Nothing to add (the first request of an organisation, or none since): read only.
        let (updated, read) = if sync.total == 0 {
            (None, self.batch_get(&others).await)
        } else {
            let (u, r) = tokio::join!(update.send(), self.batch_get(&others));
            (Some(u.map_err(|e| sdk_error("UpdateItem", e))?), r)
        };
        let mut totals = RateTotals::default();
        if let Some(item) = updated.as_ref().and_then(|u| u.attributes()) {
            add(&mut totals, item);
        }
        let items = match read {
            Ok((items, _, _)) => items,
            // The deltas are in: not to be sent again.
            Err(_) if updated.is_some() => {
                totals.partial = true;
                return Ok(totals);
            }
            Err(e) => return Err(e),
        };
        for item in &items {
            match item.get("PK") {
                Some(AttributeValue::S(pk)) if pk.starts_with("LIMITS#") => {
                    let (per_key, per_organization) =
                        (number(item, "perKey"), number(item, "perOrganization"));
                    if per_key > 0 && per_organization > 0 {
                        totals.limits = Some(Limits {
                            per_key,
                            per_organization,
                        });
                    }
                }
                _ => add(&mut totals, item),
            }
        }
        Ok(totals)
    }

    /// Sets an organisation's own limits (`None`: back to the defaults). The operator's.
    pub async fn set_rate_limits(
        &self,
        org: &OrgId,
        limits: Option<Limits>,
    ) -> Result<(), ApiError> {
        let (pk, sk) = limits_key(org);
        match limits {
            Some(l) => self
                .client
                .put_item()
                .table_name(&self.table)
                .item("PK", AttributeValue::S(pk))
                .item("SK", AttributeValue::S(sk))
                .item("perKey", AttributeValue::N(l.per_key.to_string()))
                .item(
                    "perOrganization",
                    AttributeValue::N(l.per_organization.to_string()),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("PutItem", e)),
            None => self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("PK", AttributeValue::S(pk))
                .key("SK", AttributeValue::S(sk))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk_error("DeleteItem", e)),
        }
    }
}
