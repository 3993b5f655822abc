//! The recount's custom roles of an older version (recount.rs): found, and moved into
//! holder shards (holders.rs), each shard with its own holders' counts, on the condition
//! that no grant or revocation moved the role's stamp since it was read.

use super::errors::{build_error, sdk_error};
use super::holders::new_holder_shards;
use super::records::COUNTER_WRITES;
use super::shards::COUNTER_SHARDS;
use super::{keys, DynamoStore, Item};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use std::collections::HashMap;

/// A custom role of an older version as read before counting: its stamp (every holder
/// move on its item adds one to `counterWrites`, holders.rs).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct LegacyRole {
    pub(super) id: CustomRoleId,
    pub(super) stamp: Option<String>,
    /// Its counts as read (`holders`, `activeHolders`; `None` if absent): a writer of the
    /// version before stamps nothing during a rolling upgrade, but moves these.
    pub(super) counts: [Option<String>; 2],
}

impl DynamoStore {
    /// The organisation's custom roles of an older version (no holder shards), each with its
    /// stamp read consistently: the index lists the roles, the item says whether it still
    /// is one.
    pub(super) async fn legacy_roles(&self, org: &OrgId) -> Result<Vec<LegacyRole>, ApiError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("GSI1")
            .key_condition_expression("GSI1PK = :pk")
            .filter_expression("attribute_not_exists(holderShards) OR holderShards = :none")
            .expression_attribute_values(":pk", AttributeValue::S(keys::roles_of(org)))
            .expression_attribute_values(":none", AttributeValue::N("0".into()));
        let mut out = Vec::new();
        for listed in self.query_all(query).await? {
            let Some(AttributeValue::S(id)) = listed.get("id") else {
                continue;
            };
            let id = CustomRoleId::parse(id).map_err(|_| ApiError::Internal)?;
            let Some(item) = self.get_raw(keys::role(org, &id)).await? else {
                continue;
            };
            let sharded =
                matches!(item.get("holderShards"), Some(AttributeValue::N(n)) if n != "0");
            if !sharded {
                let stamp = match item.get(COUNTER_WRITES) {
                    Some(AttributeValue::N(n)) => Some(n.clone()),
                    _ => None,
                };
                let count = |name: &str| match item.get(name) {
                    Some(AttributeValue::N(n)) => Some(n.clone()),
                    _ => None,
                };
                let counts = [count("holders"), count("activeHolders")];
                out.push(LegacyRole { id, stamp, counts });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Moves a role of an older version into holder shards: every shard written whole with
    /// the holders that hash to it, and the role item marked sharded with no counts of its
    /// own, on the condition that neither its stamp nor its counts moved since the tally
    /// (false if they have).
    pub(super) async fn move_role_into_shards(
        &self,
        org: &OrgId,
        role: &LegacyRole,
        counts: &[(i64, i64)],
    ) -> Result<bool, ApiError> {
        let t = &self.table;
        let (pk, sk) = keys::role(org, &role.id);
        let mut values: Item = HashMap::from([
            (
                ":shards".to_owned(),
                AttributeValue::N(COUNTER_SHARDS.to_string()),
            ),
            (":none".to_owned(), AttributeValue::N("0".into())),
        ]);
        let stamp = match &role.stamp {
            Some(stamp) => {
                values.insert(":stamp".into(), AttributeValue::N(stamp.clone()));
                "#stamp = :stamp"
            }
            None => "attribute_not_exists(#stamp)",
        };
        let mut conditions = vec![stamp.to_owned()];
        for (name, (value, read)) in ["holders", "activeHolders"]
            .into_iter()
            .zip([":holders", ":active"].into_iter().zip(&role.counts))
        {
            conditions.push(match read {
                Some(n) => {
                    values.insert(value.into(), AttributeValue::N(n.clone()));
                    format!("{name} = {value}")
                }
                None => format!("attribute_not_exists({name})"),
            });
        }
        let update = Update::builder()
            .table_name(t)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .update_expression("SET holderShards = :shards REMOVE holders, activeHolders")
            .condition_expression(format!(
                "attribute_exists(PK) AND (attribute_not_exists(holderShards) OR holderShards = :none) AND {}",
                conditions.join(" AND ")
            ))
            .expression_attribute_names("#stamp", COUNTER_WRITES)
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| build_error("Update", e))?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        let shell = CustomRole {
            id: role.id.clone(),
            organization_id: org.clone(),
            name: String::new(),
            description: None,
            active_holders: 0,
            holders: 0,
            holder_shards: COUNTER_SHARDS,
            created_at: Timestamp::now(),
        };
        for (index, put) in new_holder_shards(t, &shell)?.into_iter().enumerate() {
            let Some(mut put) = put.put else {
                return Err(ApiError::Internal);
            };
            let (all, active) = counts.get(index).copied().unwrap_or((0, 0));
            put.item
                .insert("holders".into(), AttributeValue::N(all.to_string()));
            put.item.insert(
                "activeHolders".into(),
                AttributeValue::N(active.to_string()),
            );
            // Whole, whatever is there: a role without shards has no writer of its shards
            // (the role item's condition decides the move).
            put.condition_expression = None;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        self.transact_counts(items).await
    }

    /// Sends a recount's transaction: false if a condition failed or a transaction on one
    /// of its items was under way (a count is moving, so this is a move too).
    pub(super) async fn transact_counts(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<bool, ApiError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.code(),
                    Some(
                        "TransactionCanceledException"
                            | "TransactionConflictException"
                            | "ConditionalCheckFailedException"
                    )
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("TransactWriteItems", e)),
        }
    }
}
