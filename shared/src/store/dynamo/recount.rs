//! The operator's recount (`membersctl recount`): an organisation's counters set from its
//! members, for organisations whose counters predate a counter (`scimMembers` and
//! `activeMembers` came with SCIM, the rule-4 counts with HRIS) or were damaged by hand,
//! and the upgrade of an organisation of an older version: its counts, all on its item,
//! are counted into counter shards (`shards.rs`), each shard its own members', and the item
//! is marked (`counterShards`) so that writes take the sharded path from then on.
//!
//! Safe while the API serves writes. The counters are read first (the organisation item and
//! its shards), each with the `counterWrites` stamp that every counter move on it also adds
//! one to; then every member is counted with a
//! consistent Scan (the GSIs are eventually consistent on AWS: a member created a moment ago
//! could be missing from them, never from the table); then the counts are written on the
//! condition that no stamp has moved, in one transaction. The stamp, not the counters, is compared: two
//! moves that cancel out leave the counters as read, yet the Scan, which is not a snapshot,
//! may have seen one move and not the other. With no move during the Scan, no member's
//! contribution changed either, so the count is exact when written. An organisation whose
//! stamp moved is counted again, up to `RECOUNT_ATTEMPTS` times.
//!
//! Cost: each attempt reads the whole table (a Scan with a filter reads every item): for
//! `--all`, one Scan for the organisation items and one for all their members; each retry
//! scans again for its organisation.

use super::errors::{build_error, sdk_error};
use super::records::{from_item, OrgRecord, COUNTER_WRITES};
use super::recount_roles::LegacyRole;
use super::shards::{shard_item, shard_of, Shard, COUNTER_SHARDS};
use super::{keys, DynamoStore, Item};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// Counts of one organisation, tried again while writers keep moving its counters.
pub const RECOUNT_ATTEMPTS: usize = 5;
/// Between reading the stamps and scanning. A Scan is only read-committed: a transaction
/// whose organisation item is already visible may still be applying its member item, for
/// milliseconds. Waiting lets every transaction the stamps show finish.
const BEFORE_SCAN: Duration = Duration::from_secs(1);

/// What the recount found for one organisation.
#[derive(Clone, Debug, PartialEq)]
pub struct Recount {
    pub org: OrgId,
    /// As stored (the organisation item's and its shards' summed); a counter the
    /// organisation lacks reads 0 here and is named in `missing`.
    pub stored: Counters,
    pub missing: Vec<&'static str>,
    /// From the members.
    pub counted: Counters,
    /// Why the counter shards are (or would be) written anew even where the sums agree:
    /// the organisation had none (an older version: its counts move into shards), or a
    /// shard counted other members than its own.
    pub shards: Option<&'static str>,
    /// Custom roles of an older version (their counts on their items) whose counts are (or
    /// would be) moved into holder shards, each shard its own holders'.
    pub roles: Vec<CustomRoleId>,
    pub outcome: RecountOutcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecountOutcome {
    /// The stored counters were right (and all present): nothing written.
    Unchanged,
    /// Written (or, with `dry_run`, would have been).
    Corrected,
    /// Writers moved the counters during every attempt: nothing written; run it again.
    Busy,
}

impl Recount {
    /// The counters that differ, or are missing: (attribute, stored, counted).
    pub fn differences(&self) -> Vec<(&'static str, Option<i64>, i64)> {
        self.stored
            .fields()
            .into_iter()
            .zip(self.counted.fields())
            .filter(|((name, stored), (_, counted))| {
                stored != counted || self.missing.contains(name)
            })
            .map(|((name, stored), (_, counted))| {
                let stored = (!self.missing.contains(&name)).then_some(stored);
                (name, stored, counted)
            })
            .collect()
    }
}

/// One organisation counted: what `settle_tally` writes, on the stamps read before counting.
#[derive(Clone, Debug)]
pub struct Tally {
    pub recount: Recount,
    read: Read,
    /// Per shard, from the members.
    counted: Vec<Counters>,
    /// Per role of an older version, its holders per holder shard (all, active).
    role_counts: HashMap<CustomRoleId, Vec<(i64, i64)>>,
    /// Whether `settle_tally` wrote part of it (the counters, a role) before a stamp that
    /// had moved refused the rest.
    wrote: bool,
}

/// What the members give one organisation: its counters and its custom roles' holders, per
/// shard.
struct Members {
    counters: Vec<Counters>,
    roles: HashMap<CustomRoleId, Vec<(i64, i64)>>,
}

impl Members {
    fn none() -> Members {
        Members {
            counters: vec![Counters::default(); COUNTER_SHARDS as usize],
            roles: HashMap::new(),
        }
    }
}

/// An organisation as read before counting: its item and its shards, with their stamps.
#[derive(Clone, Debug)]
struct Read {
    org: OrgId,
    hris_enabled: bool,
    /// The organisation item's counts: the guarded ones and, from an older version,
    /// the others.
    on_item: Counters,
    /// The counts of an older version present on the item (removed when written).
    legacy: Vec<&'static str>,
    missing: Vec<&'static str>,
    stamp: Option<String>,
    sharded: bool,
    shards: Vec<Shard>,
    /// Its custom roles of an older version (no holder shards).
    roles: Vec<LegacyRole>,
}

impl Read {
    fn from_org_item(item: Item) -> Result<Read, ApiError> {
        let present = |name: &str| item.contains_key(name);
        let record: OrgRecord = from_item(item.clone())?;
        let sharded = record.org.counter_shards > 0;
        let names = Counters::default().fields().map(|(name, _)| name);
        let missing = names
            .into_iter()
            .filter(|name| !present(name) && (Counters::is_guarded(name) || !sharded))
            .collect();
        let legacy = names
            .into_iter()
            .filter(|name| present(name) && !Counters::is_guarded(name))
            .collect();
        let stamp = match item.get(COUNTER_WRITES) {
            Some(AttributeValue::N(n)) => Some(n.clone()),
            _ => None,
        };
        Ok(Read {
            org: record.org.id,
            hris_enabled: record.org.hris_enabled,
            on_item: record.org.counters,
            legacy,
            missing,
            stamp,
            sharded,
            shards: Vec::new(),
            roles: Vec::new(),
        })
    }

    fn stored(&self) -> Counters {
        self.shards
            .iter()
            .fold(self.on_item, |sum, shard| sum.plus(shard.counts))
    }

    /// The stamps: the organisation item's, each shard's, then each role's of an older
    /// version.
    fn stamps(&self) -> Vec<Option<String>> {
        std::iter::once(self.stamp.clone())
            .chain(self.shards.iter().map(|s| s.stamp.clone()))
            .chain(self.roles.iter().map(|r| r.stamp.clone()))
            .collect()
    }

    fn tally(self, members: Members) -> Tally {
        let Members {
            counters: counted,
            roles: mut role_counts,
        } = members;
        role_counts.retain(|id, _| self.roles.iter().any(|r| &r.id == id));
        for role in &self.roles {
            role_counts
                .entry(role.id.clone())
                .or_insert_with(|| vec![(0, 0); COUNTER_SHARDS as usize]);
        }
        let sum = counted.iter().fold(Counters::default(), |a, c| a.plus(*c));
        let mut layout = vec![Counters::default(); COUNTER_SHARDS as usize];
        for shard in &self.shards {
            if let Some(slot) = layout.get_mut(shard.index as usize) {
                *slot = shard.counts;
            }
        }
        let shards = if !self.sharded {
            Some("moved into counter shards")
        } else if self.shards.len() != COUNTER_SHARDS as usize
            || self
                .shards
                .iter()
                .any(|s| !s.complete || s.hris_enabled != Some(self.hris_enabled))
        {
            Some("a shard was missing, incomplete or mirrored the HRIS switch wrongly")
        } else if layout
            .iter()
            .zip(&counted)
            .any(|(stored, counted)| *stored != counted.sharded())
        {
            Some("a shard counted other members than its own")
        } else {
            None
        };
        Tally {
            recount: Recount {
                org: self.org.clone(),
                stored: self.stored(),
                missing: self.missing.clone(),
                counted: sum,
                shards,
                roles: self.roles.iter().map(|r| r.id.clone()).collect(),
                outcome: RecountOutcome::Unchanged,
            },
            read: self,
            counted,
            role_counts,
            wrote: false,
        }
    }
}

/// The attributes of a member item that the counters count (`Counters::of_member`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Counted {
    id: MemberId,
    organization_id: OrgId,
    is_active: bool,
    role: Role,
    hris_role: Option<HrisRole>,
    #[serde(default)]
    scim_deprovisioned: bool,
}

impl DynamoStore {
    /// Recounts the counters of `org`, or of every organisation (`None`), and writes those
    /// that are wrong or missing unless `dry_run`. Every outcome, `Unchanged` and dry runs
    /// included, holds only if no counter moved while counting. `NotFound` when `org` does
    /// not exist.
    pub async fn recount_counters(
        &self,
        org: Option<&OrgId>,
        dry_run: bool,
    ) -> Result<Vec<Recount>, ApiError> {
        let tallies = match org {
            Some(org) => vec![self.tally_counters(org).await?],
            // One Scan for every organisation's members, after reading them all.
            None => {
                let reads = self.organizations_for_recount().await?;
                tokio::time::sleep(BEFORE_SCAN).await;
                let mut counted = self.recount_members(None).await?;
                reads
                    .into_iter()
                    .map(|read| {
                        let members = counted.remove(&read.org).unwrap_or_else(Members::none);
                        read.tally(members)
                    })
                    .collect()
            }
        };
        let mut out = Vec::new();
        for mut tally in tallies {
            let mut attempt = 1;
            // What an attempt wrote before a moved stamp refused the rest stays written:
            // the organisation is reported corrected even if the last count finds nothing.
            let mut wrote = false;
            while !self.settle_tally(&mut tally, dry_run).await? {
                wrote |= tally.wrote;
                if attempt == RECOUNT_ATTEMPTS {
                    tally.recount.outcome = RecountOutcome::Busy;
                    break;
                }
                attempt += 1;
                tally = self.tally_counters(&tally.recount.org).await?;
            }
            if wrote && tally.recount.outcome == RecountOutcome::Unchanged {
                tally.recount.outcome = RecountOutcome::Corrected;
            }
            out.push(tally.recount);
        }
        out.sort_by(|a, b| a.org.cmp(&b.org));
        Ok(out)
    }

    /// The first steps of a recount of one organisation: its counters and stamp read, then
    /// its members counted. `recount_counters` is these and [`settle_tally`]; they are
    /// public so that a test can put a write between them.
    ///
    /// [`settle_tally`]: DynamoStore::settle_tally
    #[doc(hidden)]
    pub async fn tally_counters(&self, org: &OrgId) -> Result<Tally, ApiError> {
        let read = self.read_for_recount(org).await?;
        tokio::time::sleep(BEFORE_SCAN).await;
        let mut counted = self.recount_members(Some(org)).await?;
        let members = counted.remove(org).unwrap_or_else(Members::none);
        Ok(read.tally(members))
    }

    /// The last step: writes the counts (unless `dry_run`, or nothing differs) on the
    /// condition that the stamp has not moved since the tally; false, writing nothing, if it
    /// has. Sets the tally's outcome.
    #[doc(hidden)]
    pub async fn settle_tally(&self, tally: &mut Tally, dry_run: bool) -> Result<bool, ApiError> {
        let differs = !tally.recount.differences().is_empty()
            || tally.recount.shards.is_some()
            || !tally.recount.roles.is_empty();
        tally.recount.outcome = if differs {
            RecountOutcome::Corrected
        } else {
            RecountOutcome::Unchanged
        };
        if dry_run || !differs {
            // Reported only if no counter moved while counting, as if written.
            let now = self.read_for_recount(&tally.recount.org).await?;
            return Ok(now.stamps() == tally.read.stamps());
        }
        let counters_differ =
            !tally.recount.differences().is_empty() || tally.recount.shards.is_some();
        if counters_differ {
            if !self.write_counts(tally).await? {
                return Ok(false);
            }
            tally.wrote = true;
        }
        // Each role of an older version in a transaction of its own (33 items): one whose
        // stamp moved is counted again with the organisation (its counters then read
        // unchanged, or are written again on their own stamps).
        for role in &tally.read.roles {
            let counts = tally.role_counts.get(&role.id).map(Vec::as_slice);
            if !self
                .move_role_into_shards(&tally.read.org, role, counts.unwrap_or(&[]))
                .await?
            {
                return Ok(false);
            }
            tally.wrote = true;
        }
        Ok(true)
    }

    async fn read_for_recount(&self, org: &OrgId) -> Result<Read, ApiError> {
        let item = self
            .get_raw(keys::org(org))
            .await?
            .ok_or(ApiError::NotFound)?;
        let mut read = Read::from_org_item(item)?;
        read.shards = self.shards(org).await?;
        read.roles = self.legacy_roles(org).await?;
        Ok(read)
    }

    async fn organizations_for_recount(&self) -> Result<Vec<Read>, ApiError> {
        let mut out = Vec::new();
        self.scan_consistently("ORG#", "ORG", None, |item| {
            out.push(Read::from_org_item(item)?);
            Ok(())
        })
        .await?;
        for read in &mut out {
            read.shards = self.shards(&read.org).await?;
            read.roles = self.legacy_roles(&read.org).await?;
        }
        Ok(out)
    }

    /// Each organisation's counters from its members (all organisations', `None`), folded
    /// page by page from the counted attributes only.
    async fn recount_members(
        &self,
        org: Option<&OrgId>,
    ) -> Result<HashMap<OrgId, Members>, ApiError> {
        let prefix = match org {
            Some(org) => format!("ORG#{org}#MEMBER#"),
            None => "ORG#".into(),
        };
        let mut out: HashMap<OrgId, Members> = HashMap::new();
        let attributes = "#id, organizationId, isActive, #role, hrisRole, scimDeprovisioned";
        self.scan_consistently(&prefix, "MEMBER", Some(attributes), |item| {
            let m: Counted = from_item(item)?;
            let counters =
                Counters::of_member(m.is_active, &m.role, m.hris_role, m.scim_deprovisioned);
            let members = out.entry(m.organization_id).or_insert_with(Members::none);
            let index = shard_of(&m.id, COUNTER_SHARDS) as usize;
            members.counters[index] = members.counters[index].plus(counters);
            if let Role::Custom(role) = &m.role {
                let shards = members
                    .roles
                    .entry(role.clone())
                    .or_insert_with(|| vec![(0, 0); COUNTER_SHARDS as usize]);
                shards[index].0 += 1;
                shards[index].1 += m.is_active as i64;
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Every item whose PK starts with `prefix` and whose SK is `sk` (with only
    /// `attributes`, where `role` is spelled `#role`), given to `each`: a consistent Scan of
    /// the whole table, page by page.
    async fn scan_consistently(
        &self,
        prefix: &str,
        sk: &str,
        attributes: Option<&str>,
        mut each: impl FnMut(Item) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut start: Option<Item> = None;
        loop {
            let mut request = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .filter_expression("begins_with(PK, :prefix) AND SK = :sk")
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
                .expression_attribute_values(":sk", AttributeValue::S(sk.to_owned()))
                .set_exclusive_start_key(start);
            if let Some(attributes) = attributes {
                request = request
                    .projection_expression(attributes)
                    .expression_attribute_names("#role", "role")
                    .expression_attribute_names("#id", "id");
            }
            let page = request.send().await.map_err(|e| sdk_error("Scan", e))?;
            for item in page.items.unwrap_or_default() {
                each(item)?;
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(());
            }
        }
    }

    /// Writes the counts in one transaction, each item on the condition that its stamp has
    /// not moved since the tally: the guarded ones on the organisation item (which is marked
    /// as sharded, and loses the counts of an older version), every shard whole with its
    /// members' counts and the HRIS state as read. False if a stamp moved, or a transaction
    /// on one of the items was under way (a counter is moving, so this is a move too).
    async fn write_counts(&self, tally: &Tally) -> Result<bool, ApiError> {
        let read = &tally.read;
        let t = &self.table;
        let (pk, sk) = keys::org(&read.org);
        let mut values: Item = HashMap::from([
            (":hris".to_owned(), AttributeValue::Bool(read.hris_enabled)),
            (
                ":shards".to_owned(),
                AttributeValue::N(COUNTER_SHARDS.to_string()),
            ),
        ]);
        let mut sets = vec!["counterShards = :shards".to_owned()];
        for (name, value) in tally.recount.counted.guarded().fields() {
            if Counters::is_guarded(name) {
                sets.push(format!("{name} = :{name}"));
                values.insert(format!(":{name}"), AttributeValue::N(value.to_string()));
            }
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !read.legacy.is_empty() {
            expression.push_str(&format!(" REMOVE {}", read.legacy.join(", ")));
        }
        let condition = match &read.stamp {
            Some(stamp) => {
                values.insert(":stamp".into(), AttributeValue::N(stamp.clone()));
                "attribute_exists(PK) AND hrisEnabled = :hris AND #stamp = :stamp"
            }
            None => "attribute_exists(PK) AND hrisEnabled = :hris AND attribute_not_exists(#stamp)",
        };
        let org = Update::builder()
            .table_name(t)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .update_expression(expression)
            .condition_expression(condition)
            .expression_attribute_names("#stamp", COUNTER_WRITES)
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| build_error("Update", e))?;
        let mut items = vec![TransactWriteItem::builder().update(org).build()];
        for (index, counts) in tally.counted.iter().enumerate() {
            let before = read.shards.iter().find(|s| s.index as usize == index);
            let next = before
                .and_then(|s| s.stamp.as_deref())
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0)
                + 1;
            let item = shard_item(&read.org, index as u32, read.hris_enabled, *counts, next);
            let mut put = Put::builder().table_name(t).set_item(Some(item));
            put = match before.map(|s| s.stamp.clone()) {
                Some(Some(stamp)) => put
                    .condition_expression("#stamp = :stamp")
                    .expression_attribute_names("#stamp", COUNTER_WRITES)
                    .expression_attribute_values(":stamp", AttributeValue::N(stamp)),
                Some(None) => put
                    .condition_expression("attribute_not_exists(#stamp)")
                    .expression_attribute_names("#stamp", COUNTER_WRITES),
                None => put.condition_expression("attribute_not_exists(PK)"),
            };
            let put = put.build().map_err(|e| build_error("Put", e))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        self.transact_counts(items).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_wrong_and_the_missing_counters() {
        let recount = Recount {
            org: OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}")),
            stored: Counters {
                active_admins: 3,
                active_members: 0,
                ..Counters::default()
            },
            missing: vec!["activeMembers", "scimMembers"],
            counted: Counters {
                active_admins: 2,
                active_members: 5,
                scim_members: 0,
                ..Counters::default()
            },
            shards: None,
            roles: Vec::new(),
            outcome: RecountOutcome::Corrected,
        };
        assert_eq!(
            recount.differences(),
            vec![
                ("activeAdmins", Some(3), 2),
                ("scimMembers", None, 0),
                ("activeMembers", None, 5),
            ]
        );
    }

    #[test]
    fn the_counted_attributes_of_a_member_item_give_its_counters() {
        let item = HashMap::from([
            (
                "organizationId".to_owned(),
                AttributeValue::S("org_a".into()),
            ),
            ("id".to_owned(), AttributeValue::S("mem_1".into())),
            ("isActive".to_owned(), AttributeValue::Bool(true)),
            ("role".to_owned(), AttributeValue::S("admin".into())),
        ]);
        let m: Counted = from_item(item).unwrap_or_else(|e| panic!("{e:?}"));
        let role = Role::parse("admin").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            Counters::of_member(m.is_active, &m.role, m.hris_role, m.scim_deprovisioned),
            Counters::of_member(true, &role, None, false)
        );
        assert_eq!(m.organization_id.to_string(), "org_a");
    }
}
