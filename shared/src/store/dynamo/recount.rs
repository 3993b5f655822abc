//! The operator's recount (`membersctl recount`): an organisation's counters set from its
//! members, for organisations whose counters predate a counter (`scimMembers` and
//! `activeMembers` came with SCIM, the rule-4 counts with HRIS) or were damaged by hand.
//!
//! Safe while the API serves writes. The counters are read first, with the `counterWrites`
//! stamp that every counter move also adds one to; then every member is counted with a
//! consistent Scan (the GSIs are eventually consistent on AWS: a member created a moment ago
//! could be missing from them, never from the table); then the counts are written on the
//! condition that the stamp has not moved. The stamp, not the counters, is compared: two
//! moves that cancel out leave the counters as read, yet the Scan, which is not a snapshot,
//! may have seen one move and not the other. With no move during the Scan, no member's
//! contribution changed either, so the count is exact when written. An organisation whose
//! stamp moved is counted again, up to `RECOUNT_ATTEMPTS` times.
//!
//! Cost: each attempt reads the whole table (a Scan with a filter reads every item): for
//! `--all`, one Scan for the organisation items and one for all their members; each retry
//! scans again for its organisation.

use super::errors::sdk_error;
use super::records::{from_item, OrgRecord};
use super::{keys, DynamoStore, Item};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// The organisation item's stamp: how many writes moved its counters.
pub(super) const COUNTER_WRITES: &str = "counterWrites";
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
    /// As stored; a counter the item lacks reads 0 here and is named in `missing`.
    pub stored: Counters,
    pub missing: Vec<&'static str>,
    /// From the members.
    pub counted: Counters,
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

/// One organisation counted: what `settle_tally` writes, on the stamp read before counting.
#[derive(Clone, Debug)]
pub struct Tally {
    pub recount: Recount,
    stamp: Option<String>,
}

/// An organisation item as read before counting.
struct Read {
    org: OrgId,
    stored: Counters,
    missing: Vec<&'static str>,
    stamp: Option<String>,
}

impl Read {
    fn from_org_item(item: Item) -> Result<Read, ApiError> {
        let missing = Counters::default()
            .fields()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !item.contains_key(*name))
            .collect();
        let stamp = match item.get(COUNTER_WRITES) {
            Some(AttributeValue::N(n)) => Some(n.clone()),
            _ => None,
        };
        let record: OrgRecord = from_item(item)?;
        Ok(Read {
            org: record.org.id,
            stored: record.org.counters,
            missing,
            stamp,
        })
    }

    fn tally(self, counted: Counters) -> Tally {
        Tally {
            recount: Recount {
                org: self.org,
                stored: self.stored,
                missing: self.missing,
                counted,
                outcome: RecountOutcome::Unchanged,
            },
            stamp: self.stamp,
        }
    }
}

/// The attributes of a member item that the counters count (`Counters::of_member`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Counted {
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
                        let counts = counted.remove(&read.org).unwrap_or_default();
                        read.tally(counts)
                    })
                    .collect()
            }
        };
        let mut out = Vec::new();
        for mut tally in tallies {
            let mut attempt = 1;
            while !self.settle_tally(&mut tally, dry_run).await? {
                if attempt == RECOUNT_ATTEMPTS {
                    tally.recount.outcome = RecountOutcome::Busy;
                    break;
                }
                attempt += 1;
                tally = self.tally_counters(&tally.recount.org).await?;
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
        let counted = self.recount_members(Some(org)).await?;
        Ok(read.tally(counted.get(org).copied().unwrap_or_default()))
    }

    /// The last step: writes the counts (unless `dry_run`, or nothing differs) on the
    /// condition that the stamp has not moved since the tally; false, writing nothing, if it
    /// has. Sets the tally's outcome.
    #[doc(hidden)]
    pub async fn settle_tally(&self, tally: &mut Tally, dry_run: bool) -> Result<bool, ApiError> {
        let differs = !tally.recount.differences().is_empty();
        tally.recount.outcome = if differs {
            RecountOutcome::Corrected
        } else {
            RecountOutcome::Unchanged
        };
        if dry_run || !differs {
            // Reported only if no counter moved while counting, as if written.
            let now = self.read_for_recount(&tally.recount.org).await?;
            return Ok(now.stamp == tally.stamp);
        }
        self.write_counts(tally).await
    }

    async fn read_for_recount(&self, org: &OrgId) -> Result<Read, ApiError> {
        let item = self
            .get_raw(keys::org(org))
            .await?
            .ok_or(ApiError::NotFound)?;
        Read::from_org_item(item)
    }

    async fn organizations_for_recount(&self) -> Result<Vec<Read>, ApiError> {
        let mut out = Vec::new();
        self.scan_consistently("ORG#", "ORG", None, |item| {
            out.push(Read::from_org_item(item)?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Each organisation's counters from its members (all organisations', `None`), folded
    /// page by page from the counted attributes only.
    async fn recount_members(
        &self,
        org: Option<&OrgId>,
    ) -> Result<HashMap<OrgId, Counters>, ApiError> {
        let prefix = match org {
            Some(org) => format!("ORG#{org}#MEMBER#"),
            None => "ORG#".into(),
        };
        let mut out: HashMap<OrgId, Counters> = HashMap::new();
        let attributes = "organizationId, isActive, #role, hrisRole, scimDeprovisioned";
        self.scan_consistently(&prefix, "MEMBER", Some(attributes), |item| {
            let m: Counted = from_item(item)?;
            let counters =
                Counters::of_member(m.is_active, &m.role, m.hris_role, m.scim_deprovisioned);
            let sum = out.entry(m.organization_id).or_default();
            *sum = sum.plus(counters);
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
                    .expression_attribute_names("#role", "role");
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

    /// Sets the counters on the condition that the stamp has not moved since the tally;
    /// false if it has, or if a transaction on the item was under way (AWS answers that
    /// `TransactionConflictException`; a counter is moving, so this is a move too).
    async fn write_counts(&self, tally: &Tally) -> Result<bool, ApiError> {
        let (pk, sk) = keys::org(&tally.recount.org);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .expression_attribute_names("#stamp", COUNTER_WRITES);
        let mut sets = Vec::new();
        for (name, value) in tally.recount.counted.fields() {
            sets.push(format!("{name} = :{name}"));
            request = request.expression_attribute_values(
                format!(":{name}"),
                AttributeValue::N(value.to_string()),
            );
        }
        let condition = match &tally.stamp {
            Some(stamp) => {
                request =
                    request.expression_attribute_values(":stamp", AttributeValue::N(stamp.clone()));
                "attribute_exists(PK) AND #stamp = :stamp"
            }
            None => "attribute_exists(PK) AND attribute_not_exists(#stamp)",
        };
        match request
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(condition)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.code(),
                    Some("ConditionalCheckFailedException" | "TransactionConflictException")
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
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
