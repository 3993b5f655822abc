//! The operator's recount (`membersctl recount`): an organisation's counters set from its
//! members, for organisations whose counters predate a counter (`scimMembers` and
//! `activeMembers` came with SCIM, the rule-4 counts with HRIS) or were damaged by hand.
//!
//! Safe while the API serves writes. The counters are read first, then every member with a
//! consistent Scan (the GSIs are eventually consistent on AWS: a member created a moment ago
//! could be missing from them, never from the table), then the new values are written on the
//! condition that no counter moved meanwhile: every counter move also adds one to
//! `counterWrites`, so "moved" is seen even when two moves cancel out. A Scan is not a
//! snapshot, but with no counter moving during it, no member's contribution changed either.
//! If one did, the organisation is counted again, up to `RECOUNT_ATTEMPTS` times.
//!
//! Cost: each attempt reads the whole table (a Scan with a filter reads every item), once for
//! all the organisations asked for; the attempts after the first are per organisation.

use super::errors::sdk_error;
use super::records::{from_item, read_member, OrgRecord};
use super::{keys, DynamoStore, Item};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// The organisation item's stamp: how many writes moved its counters.
pub(super) const COUNTER_WRITES: &str = "counterWrites";
/// Counts of one organisation, tried again while writers keep moving its counters.
pub const RECOUNT_ATTEMPTS: usize = 5;

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
}

impl DynamoStore {
    /// Recounts the counters of `org`, or of every organisation (`None`), and writes those
    /// that are wrong or missing unless `dry_run` (which reports a difference only when no
    /// counter moved while counting). `NotFound` when `org` does not exist.
    pub async fn recount_counters(
        &self,
        org: Option<&OrgId>,
        dry_run: bool,
    ) -> Result<Vec<Recount>, ApiError> {
        let mut reads = match org {
            Some(org) => vec![self.read_for_recount(org).await?],
            None => self.organizations_for_recount().await?,
        };
        let mut counted = self.recount_members(org).await?;
        let mut out = Vec::new();
        for attempt in 1..=RECOUNT_ATTEMPTS {
            let mut again = Vec::new();
            for read in reads {
                let counts = counted.remove(&read.org).unwrap_or_default();
                let mut recount = Recount {
                    org: read.org.clone(),
                    stored: read.stored,
                    missing: read.missing.clone(),
                    counted: counts,
                    outcome: RecountOutcome::Unchanged,
                };
                if recount.differences().is_empty() {
                    out.push(recount);
                    continue;
                }
                recount.outcome = RecountOutcome::Corrected;
                let settled = if dry_run {
                    // Reported only if no counter moved while counting, as if written.
                    self.read_for_recount(&read.org).await?.stamp == read.stamp
                } else {
                    self.write_counts(&read, counts).await?
                };
                if settled {
                    out.push(recount);
                } else if attempt == RECOUNT_ATTEMPTS {
                    recount.outcome = RecountOutcome::Busy;
                    out.push(recount);
                } else {
                    again.push(read.org);
                }
            }
            reads = Vec::new();
            for org in &again {
                reads.push(self.read_for_recount(org).await?);
                counted.extend(self.recount_members(Some(org)).await?);
            }
            if reads.is_empty() {
                break;
            }
        }
        out.sort_by(|a, b| a.org.cmp(&b.org));
        Ok(out)
    }

    async fn read_for_recount(&self, org: &OrgId) -> Result<Read, ApiError> {
        let (pk, sk) = keys::org(org);
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?
            .item
            .ok_or(ApiError::NotFound)?;
        Read::from_org_item(item)
    }

    async fn organizations_for_recount(&self) -> Result<Vec<Read>, ApiError> {
        self.scan_consistently("ORG#", "ORG")
            .await?
            .into_iter()
            .map(Read::from_org_item)
            .collect()
    }

    /// Each organisation's counters from its members (all of them, `None`).
    async fn recount_members(
        &self,
        org: Option<&OrgId>,
    ) -> Result<HashMap<OrgId, Counters>, ApiError> {
        let prefix = match org {
            Some(org) => format!("ORG#{org}#MEMBER#"),
            None => "ORG#".into(),
        };
        let mut out: HashMap<OrgId, Counters> = HashMap::new();
        for item in self.scan_consistently(&prefix, "MEMBER").await? {
            let member = read_member(item)?;
            let sum = out.entry(member.organization_id.clone()).or_default();
            *sum = sum.plus(member.counters());
        }
        Ok(out)
    }

    /// Every item whose PK starts with `prefix` and whose SK is `sk`: a consistent Scan of
    /// the whole table, page by page.
    async fn scan_consistently(&self, prefix: &str, sk: &str) -> Result<Vec<Item>, ApiError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .filter_expression("begins_with(PK, :prefix) AND SK = :sk")
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
                .expression_attribute_values(":sk", AttributeValue::S(sk.to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Scan", e))?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// Sets the counters on the condition that none moved since `read`; false if one did.
    async fn write_counts(&self, read: &Read, counts: Counters) -> Result<bool, ApiError> {
        let (pk, sk) = keys::org(&read.org);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .expression_attribute_names("#stamp", COUNTER_WRITES);
        let mut sets = Vec::new();
        for (name, value) in counts.fields() {
            sets.push(format!("{name} = :{name}"));
            request = request.expression_attribute_values(
                format!(":{name}"),
                AttributeValue::N(value.to_string()),
            );
        }
        let condition = match &read.stamp {
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
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
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
}
