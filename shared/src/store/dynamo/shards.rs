//! Counter shards: the organisation's counts that no single write's rule guards
//! (`Counters::sharded`: active members, SCIM members, active without an HRIS role, the
//! rule-4 counts) spread over `COUNTER_SHARDS` items beside the organisation item, so that
//! writers of different members do not meet on one item (on DynamoDB two transactions that
//! touch one item at once conflict: one is cancelled).
//!
//! A member's contributions always go to the same shard (`shard_of`, from its id), so every
//! shard counts exactly its own members and is never negative: that keeps the HRIS switch's
//! conditions per item ("this shard counts nobody in the way"), which DynamoDB can check.
//! Each shard also mirrors `hrisEnabled`, so a member write conditions on its own shard
//! instead of the organisation item; the switch sets every mirror in its transaction.
//!
//! An organisation of an older version has `counterShards` absent (0): its counts stay on
//! its item and its writes take the old path, until `membersctl recount` counts its members
//! into shards (`recount.rs`).

use super::errors::build_error;
use super::records::{OrgRecord, COUNTER_WRITES};
use super::tx::{check, put_item};
use super::{keys, DynamoStore, Item};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use std::collections::HashMap;

/// How many shards an organisation's counts are spread over. A transaction holds its items
/// for tens of milliseconds; at the ~100 writes/s one organisation sees from an identity
/// provider's sync, two or three transactions are in flight at once, and with 32 shards a
/// write meets another on its shard a few times in a hundred (then retried after a jittered
/// pause). More shards would cost the HRIS switch and the organisation's creation one item
/// each (a transaction holds at most 100: 32 shards + the organisation item + the audit
/// entry + a member's 40 locations and its guards fit), and every read of the totals
/// a larger Query (32 small items are one read unit).
pub const COUNTER_SHARDS: u32 = 32;

/// The sort key prefix of the shards, in the organisation's partition.
pub(super) const SHARD_PREFIX: &str = "COUNTS#";

/// The shard that counts `member`, out of `shards`: stable for the member's life.
pub fn shard_of(member: &MemberId, shards: u32) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(member.as_str().as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % shards.max(1)
}

/// A shard as read: which one, its counts, its stamp.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Shard {
    pub index: u32,
    pub counts: Counters,
    pub stamp: Option<String>,
    /// Its mirror of the HRIS switch (`None`: absent, a damaged shard).
    pub hris_enabled: Option<bool>,
    /// Whether it has every sharded count (absent ones read 0 above).
    pub complete: bool,
}

impl Shard {
    pub fn from_item(item: &Item) -> Result<Shard, ApiError> {
        let index = match item.get("SK") {
            Some(AttributeValue::S(sk)) => {
                sk.strip_prefix(SHARD_PREFIX).and_then(|n| n.parse().ok())
            }
            _ => None,
        };
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(n)) => n.parse::<i64>().map_err(|_| ApiError::Internal),
            None => Ok(0),
            _ => Err(ApiError::Internal),
        };
        let mut counts = Counters::default();
        let mut complete = true;
        for (name, _) in Counters::default().fields() {
            if !Counters::is_guarded(name) {
                counts = counts.plus(Counters::one(name, number(name)?));
                complete &= item.contains_key(name);
            }
        }
        let hris_enabled = match item.get("hrisEnabled") {
            Some(AttributeValue::Bool(b)) => Some(*b),
            _ => None,
        };
        let stamp = match item.get(COUNTER_WRITES) {
            Some(AttributeValue::N(n)) => Some(n.clone()),
            _ => None,
        };
        Ok(Shard {
            index: index.ok_or(ApiError::Internal)?,
            counts,
            stamp,
            hris_enabled,
            complete,
        })
    }
}

/// A shard's whole item: its counts (the sharded ones), the HRIS mirror and the stamp.
pub(super) fn shard_item(
    org: &OrgId,
    index: u32,
    hris: bool,
    counts: Counters,
    stamp: i64,
) -> Item {
    let (pk, sk) = keys::counter_shard(org, index);
    let mut item: Item = HashMap::from([
        ("PK".to_owned(), AttributeValue::S(pk)),
        ("SK".to_owned(), AttributeValue::S(sk)),
        (
            "entity".to_owned(),
            AttributeValue::S("counterShard".into()),
        ),
        ("hrisEnabled".to_owned(), AttributeValue::Bool(hris)),
        (
            COUNTER_WRITES.to_owned(),
            AttributeValue::N(stamp.to_string()),
        ),
    ]);
    for (name, value) in counts.sharded().fields() {
        if !Counters::is_guarded(name) {
            item.insert(name.to_owned(), AttributeValue::N(value.to_string()));
        }
    }
    item
}

/// The shards of a new organisation, `counts` (its first members') each in its member's.
pub(super) fn new_shards(
    t: &str,
    org: &Organization,
    members: &[&Member],
) -> Result<Vec<TransactWriteItem>, ApiError> {
    let mut counts = vec![Counters::default(); org.counter_shards as usize];
    for m in members {
        let shard = &mut counts[shard_of(&m.id, org.counter_shards) as usize];
        *shard = shard.plus(m.counters().sharded());
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(index, c)| {
            let item = shard_item(&org.id, index as u32, org.hris_enabled, c, 0);
            put_item(t, item)
        })
        .collect()
}

/// A member write's shard: its sharded counts moved by `delta` (and the stamp), on the
/// condition that HRIS is as the write's validation read it (`check_hris`); or, when no
/// count moves, only that check. `None` when neither is needed.
pub(super) fn member_shard(
    t: &str,
    org: &Organization,
    member: &MemberId,
    delta: Counters,
    check_hris: bool,
    dry_run: bool,
) -> Result<Option<TransactWriteItem>, ApiError> {
    let delta = delta.sharded();
    if delta.is_zero() && !check_hris {
        return Ok(None);
    }
    let key = keys::counter_shard(&org.id, shard_of(member, org.counter_shards));
    let mut condition = "attribute_exists(PK)".to_owned();
    let mut values: Item = HashMap::new();
    if check_hris {
        condition.push_str(" AND hrisEnabled = :hris");
        values.insert(":hris".into(), AttributeValue::Bool(org.hris_enabled));
    }
    if dry_run || delta.is_zero() {
        return check(t, key, &condition, values).map(Some);
    }
    let mut adds = vec![format!("{COUNTER_WRITES} :one")];
    values.insert(":one".into(), AttributeValue::N("1".into()));
    for (name, amount) in delta.fields() {
        if amount != 0 {
            adds.push(format!("{name} :{name}"));
            values.insert(format!(":{name}"), AttributeValue::N(amount.to_string()));
        }
    }
    let update = Update::builder()
        .table_name(t)
        .key("PK", AttributeValue::S(key.0))
        .key("SK", AttributeValue::S(key.1))
        .update_expression(format!("ADD {}", adds.join(", ")))
        .condition_expression(condition)
        .set_expression_attribute_values(Some(values))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| build_error("Update", e))?;
    Ok(Some(TransactWriteItem::builder().update(update).build()))
}

/// The HRIS switch's shard items: every mirror set to `on`, each on the condition that its
/// shard counts no member in the way (switching on: none without an HRIS role and none
/// no_access + hris_no_access; off: none no_access).
pub(super) fn switch_shards(
    t: &str,
    org: &Organization,
    on: bool,
) -> Result<Vec<TransactWriteItem>, ApiError> {
    let blockers: &[&str] = if on {
        &["activeWithoutHrisRole", "activeNoAccessHrisNoAccess"]
    } else {
        &["activeNoAccess"]
    };
    let condition = std::iter::once("attribute_exists(PK)".to_owned())
        .chain(
            blockers
                .iter()
                .map(|b| format!("(attribute_not_exists({b}) OR {b} = :zero)")),
        )
        .collect::<Vec<_>>()
        .join(" AND ");
    (0..org.counter_shards)
        .map(|index| {
            let (pk, sk) = keys::counter_shard(&org.id, index);
            let update = Update::builder()
                .table_name(t)
                .key("PK", AttributeValue::S(pk))
                .key("SK", AttributeValue::S(sk))
                .update_expression("SET hrisEnabled = :hris")
                .condition_expression(&condition)
                .expression_attribute_values(":hris", AttributeValue::Bool(on))
                .expression_attribute_values(":zero", AttributeValue::N("0".into()))
                .build()
                .map_err(|e| build_error("Update", e))?;
            Ok(TransactWriteItem::builder().update(update).build())
        })
        .collect()
}

impl DynamoStore {
    /// An organisation's shards, read consistently (one Query: 32 small items).
    pub(super) async fn shards(&self, org: &OrgId) -> Result<Vec<Shard>, ApiError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("PK = :pk AND begins_with(SK, :shard)")
            .expression_attribute_values(":pk", AttributeValue::S(keys::org(org).0))
            .expression_attribute_values(":shard", AttributeValue::S(SHARD_PREFIX.into()));
        let items = self.query_all(query).await?;
        items.iter().map(Shard::from_item).collect()
    }

    /// The organisation with every count: its item's (the guarded ones, and those of an
    /// older version) plus its shards'. Two calls; only the answers that show counts and
    /// the HRIS switch need it.
    pub(super) async fn organization_with_shards(
        &self,
        id: &OrgId,
    ) -> Result<Option<Organization>, ApiError> {
        let Some(mut org) = self.get::<OrgRecord>(keys::org(id)).await?.map(|r| r.org) else {
            return Ok(None);
        };
        if org.counter_shards > 0 {
            for shard in self.shards(id).await? {
                org.counters = org.counters.plus(shard.counts);
            }
        }
        Ok(Some(org))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED: [u32; 3] = [27, 1, 12];

    #[test]
    fn members_spread_over_every_shard_and_keep_theirs() {
        let mut per_shard = vec![0u32; COUNTER_SHARDS as usize];
        for _ in 0..3_200 {
            let id = MemberId::generate();
            let shard = shard_of(&id, COUNTER_SHARDS);
            assert_eq!(shard, shard_of(&id, COUNTER_SHARDS), "stable");
            per_shard[shard as usize] += 1;
        }
        // 100 expected per shard; a uniform spread stays well within 40..180.
        assert!(
            per_shard.iter().all(|n| (40..180).contains(n)),
            "{per_shard:?}"
        );
    }

    #[test]
    fn a_shard_item_holds_only_the_sharded_counts_and_reads_back() {
        let org = OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}"));
        let counts = Counters {
            active_admins: 3,
            active_members: 5,
            scim_members: 6,
            active_without_hris_role: 2,
            ..Counters::default()
        };
        let item = shard_item(&org, 7, true, counts, 4);
        assert!(!item.contains_key("activeAdmins"));
        assert_eq!(item.get("SK"), Some(&AttributeValue::S("COUNTS#07".into())));
        let shard = Shard::from_item(&item).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(shard.index, 7);
        assert_eq!(shard.counts, counts.sharded());
        assert_eq!(shard.stamp.as_deref(), Some("4"));
        assert_eq!(shard.hris_enabled, Some(true));
        assert!(shard.complete);
    }

    #[test]
    fn a_members_shard_never_changes_with_a_release() {
        // Stored counts depend on this mapping: changing it would strand every count.
        let id = |s: &str| MemberId::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let pinned: Vec<u32> = [
            "mem_01JD0000000000000000000000",
            "mem_01JD0000000000000000000001",
            "mem_01KZZZZZZZZZZZZZZZZZZZZZZZ",
        ]
        .iter()
        .map(|s| shard_of(&id(s), COUNTER_SHARDS))
        .collect();
        assert_eq!(pinned, PINNED);
    }
}
