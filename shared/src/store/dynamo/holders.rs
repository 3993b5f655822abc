//! A custom role's holder shards: its counts of holders (`holders`, `activeHolders`) spread
//! over `COUNTER_SHARDS` items, each counting the members whose id hashes to it (as the
//! organisation's counter shards), so that giving one role to many members at once does not
//! queue every grant behind the role item. A shard exists exactly while its role does: a
//! grant updates its shard on `attribute_exists` (the role exists), and deleting the role
//! deletes every shard on the condition that it counts nobody.
//!
//! A role of an older version has no shards (`holderShards` absent): its counts stay on its
//! item, and a member write that finds no shard is written again with the item's counts
//! (`members.rs`), until `membersctl recount` moves them into shards (recount.rs).

use super::errors::build_error;
use super::records::COUNTER_WRITES;
use super::shards::{shard_of, COUNTER_SHARDS};
use super::tx::{check, delete, put_item};
use super::{keys, DynamoStore, Item};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use std::collections::HashMap;

/// The shards of a new role, counting nobody.
pub(super) fn new_holder_shards(
    t: &str,
    role: &CustomRole,
) -> Result<Vec<TransactWriteItem>, ApiError> {
    (0..role.holder_shards)
        .map(|index| {
            let (pk, sk) = keys::role_holders(&role.organization_id, &role.id, index);
            let item: Item = HashMap::from([
                ("PK".to_owned(), AttributeValue::S(pk)),
                ("SK".to_owned(), AttributeValue::S(sk)),
                ("entity".to_owned(), AttributeValue::S("roleHolders".into())),
                ("roleId".to_owned(), AttributeValue::S(role.id.to_string())),
                ("holders".to_owned(), AttributeValue::N("0".into())),
                ("activeHolders".to_owned(), AttributeValue::N("0".into())),
            ]);
            put_item(t, item)
        })
        .collect()
}

/// Moves the counts of holders and active holders of `role` by `delta` for `member`: on the
/// member's holder shard, or (`on_item`, a role of an older version) on the role item; the
/// role must exist. A dry run only checks that it does.
pub(super) fn move_holders(
    t: &str,
    org: &OrgId,
    role: &CustomRoleId,
    member: &MemberId,
    (holders, active): (i64, i64),
    on_item: bool,
    dry_run: bool,
) -> Result<TransactWriteItem, ApiError> {
    let key = if on_item {
        keys::role(org, role)
    } else {
        keys::role_holders(org, role, shard_of(member, COUNTER_SHARDS))
    };
    if dry_run {
        return check(t, key, "attribute_exists(PK)", HashMap::new());
    }
    let mut update = Update::builder()
        .table_name(t)
        .key("PK", AttributeValue::S(key.0))
        .key("SK", AttributeValue::S(key.1))
        .expression_attribute_values(":all", AttributeValue::N(holders.to_string()))
        .expression_attribute_values(":active", AttributeValue::N(active.to_string()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    update = if on_item {
        // Stamped for `membersctl recount`, which moves the counts into holder shards on
        // the condition that the stamp did not move; once it has, this write is refused
        // (the role is no longer of the older version) and written again on the shard.
        update
            .update_expression("ADD holders :all, activeHolders :active, #stamp :one")
            .condition_expression(
                "attribute_exists(PK) AND (attribute_not_exists(holderShards) OR holderShards = :none)",
            )
            .expression_attribute_names("#stamp", COUNTER_WRITES)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":none", AttributeValue::N("0".into()))
    } else {
        update
            .update_expression("ADD holders :all, activeHolders :active")
            .condition_expression("attribute_exists(PK)")
    };
    let update = update.build().map_err(|e| build_error("Update", e))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// Deletes of every shard a role may have, each on the condition that it counts nobody (a
/// shard that is not there, as for a role of an older version, passes and stays absent).
pub(super) fn delete_idle_shards(
    t: &str,
    role: &CustomRole,
) -> Result<Vec<TransactWriteItem>, ApiError> {
    let idle = "(attribute_not_exists(holders) OR holders <= :zero) AND (attribute_not_exists(activeHolders) OR activeHolders <= :zero)";
    (0..COUNTER_SHARDS)
        .map(|index| {
            let zero = HashMap::from([(":zero".to_owned(), AttributeValue::N("0".into()))]);
            delete(
                t,
                keys::role_holders(&role.organization_id, &role.id, index),
                Some((idle, zero)),
            )
        })
        .collect()
}

/// A holder shard as read: its role, its index and its counts (all, active).
pub(super) fn holder_shard(item: &Item) -> Option<(CustomRoleId, u32, (i64, i64))> {
    let sk = match item.get("SK") {
        Some(AttributeValue::S(sk)) => sk,
        _ => return None,
    };
    let (role, index) = sk.rsplit_once('#')?;
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
        _ => Some(0),
    };
    Some((
        CustomRoleId::parse(role).ok()?,
        index.parse().ok()?,
        (number("holders")?, number("activeHolders")?),
    ))
}

impl DynamoStore {
    /// The holder shards of the roles from `first` to `last` (by id), summed per role: one
    /// Query (followed past 1 MB), consistent.
    pub(super) async fn holders_of(
        &self,
        org: &OrgId,
        first: &CustomRoleId,
        last: &CustomRoleId,
    ) -> Result<HashMap<CustomRoleId, (i64, i64)>, ApiError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("PK = :pk AND SK BETWEEN :first AND :last")
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(keys::role_holders_partition(org)),
            )
            .expression_attribute_values(":first", AttributeValue::S(format!("{first}#")))
            // `~` sorts after every digit of a shard's index.
            .expression_attribute_values(":last", AttributeValue::S(format!("{last}#~")));
        let mut out: HashMap<CustomRoleId, (i64, i64)> = HashMap::new();
        for item in self.query_all(query).await? {
            let (role, _, (all, active)) = holder_shard(&item).ok_or(ApiError::Internal)?;
            let sum = out.entry(role).or_default();
            *sum = (sum.0 + all, sum.1 + active);
        }
        Ok(out)
    }

    /// `roles` with their holder shards added to the counts on their items.
    pub(super) async fn with_holders(
        &self,
        org: &OrgId,
        mut roles: Vec<CustomRole>,
    ) -> Result<Vec<CustomRole>, ApiError> {
        let (Some(first), Some(last)) = (
            roles.iter().map(|r| &r.id).min().cloned(),
            roles.iter().map(|r| &r.id).max().cloned(),
        ) else {
            return Ok(roles);
        };
        let sums = self.holders_of(org, &first, &last).await?;
        for role in &mut roles {
            if let Some((all, active)) = sums.get(&role.id) {
                role.holders += all;
                role.active_holders += active;
            }
        }
        Ok(roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_shard_names_its_role_and_index() {
        let org = OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}"));
        let role = CustomRole {
            id: CustomRoleId::parse("rol_a").unwrap_or_else(|e| panic!("{e:?}")),
            organization_id: org,
            name: "R".into(),
            description: None,
            active_holders: 0,
            holders: 0,
            holder_shards: COUNTER_SHARDS,
            created_at: Timestamp::now(),
        };
        let items = new_holder_shards("t", &role).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(items.len(), COUNTER_SHARDS as usize);
        let item = items[7].put().map(|p| p.item().clone()).unwrap_or_default();
        assert_eq!(holder_shard(&item), Some((role.id.clone(), 7, (0, 0))));
    }
}
