//! Reads that return pages: the member list and audit histories.
//!
//! A list is served from the most selective key it has (docs/design.md): the email guard,
//! a location's member list, or one of the member indexes (role, HRIS role, department,
//! updated-since, status). Each has a partition per status; `status=all` merges the two.
//! Other filters become a `FilterExpression`. Pages continue after a sort position, so a
//! cursor holds no key of the table and cannot point into another organisation.

use super::errors::sdk_error;
use super::list_plan::{choose_source, filter_expression, Covered, Source};
use super::outbox::AuditRecord;
use super::records::{from_item, read_member, EmailGuardRecord, MemberRecord};
use super::{keys, DynamoStore, Item};
use crate::error::ApiError;
use crate::model::*;
use crate::store::ListPage;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, KeysAndAttributes, ReturnConsumedCapacity,
};
use std::collections::HashMap;

/// The most items one list request reads when combined filters make matches sparse; the
/// page then comes back short, with a cursor to continue.
pub const READ_CAP: usize = 1000;

/// The most read capacity units one list request consumes, whatever its items weigh: ~8 MB
/// of index reads (0.5 unit per 4 KB) or ~4 MB of consistent ones. Items are counted by
/// [`READ_CAP`], bytes by this: a two-filter list over large non-matching members stops here
/// with a short page and a cursor, instead of reading tens of MB.
pub const READ_UNITS_CAP: f64 = 1024.0;

/// How many items the next Query of a partition evaluates (its `Limit`): `need` more
/// matches at the rate seen so far, so that a sparse filter reads in a few large steps
/// instead of many of a page's size, and a dense one (or none) no more than it needs;
/// never past what the request may still read ([`READ_CAP`]).
fn next_limit(
    need: usize,
    read: usize,
    matched: usize,
    filtered: bool,
    read_in_request: usize,
) -> usize {
    let need = need.max(1);
    if !filtered || read == 0 {
        return need;
    }
    let at_rate = need.saturating_mul(read + 1) / (matched + 1) + 1;
    at_rate.clamp(need, READ_CAP.saturating_sub(read_in_request).max(need))
}

/// What one partition gave.
struct Run {
    /// (sort key, member), ascending.
    found: Vec<(String, Member)>,
    /// The last sort key read when the partition has more.
    more_after: Option<String>,
}

impl DynamoStore {
    pub(super) async fn list(&self, org: &OrgId, q: &ListQuery) -> Result<ListPage, ApiError> {
        let mut page = ListPage::default();
        if let Some(email) = &q.email {
            return self.list_by_email(org, email, q, page).await;
        }
        let statuses: &[bool] = match q.status {
            StatusFilter::Active => &[true],
            StatusFilter::Inactive => &[false],
            StatusFilter::All => &[true, false],
        };
        // One partition: one more than a page tells whether there is a next one. Two: a page
        // from each, merged, reads at most 2 × limit.
        let want = if statuses.len() == 1 {
            q.limit + 1
        } else {
            q.limit
        };
        let mut runs = Vec::new();
        for &active in statuses {
            let source = choose_source(org, q, active);
            runs.push(self.run(&source, active, q, want, &mut page).await?);
        }
        // Everything up to the smallest position a partition stopped at is known: return
        // only that, so no unread item can be skipped.
        let bound = runs.iter().filter_map(|r| r.more_after.clone()).min();
        let mut found: Vec<(String, Member)> = runs
            .into_iter()
            .flat_map(|r| r.found)
            .filter(|(k, _)| bound.as_ref().is_none_or(|b| k <= b))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let full = found.len() > q.limit || (found.len() == q.limit && bound.is_some());
        found.truncate(q.limit);
        page.next = if full {
            found.last().map(|(k, _)| k.clone())
        } else {
            bound
        };
        (page.positions, page.members) = found.into_iter().unzip();
        Ok(page)
    }

    /// Counts what [`Self::list`] would return over all its pages (email, limit and cursor
    /// aside): `Select: COUNT` queries on the same index, key condition and filter, 1 MB at a
    /// time.
    pub(super) async fn count(&self, org: &OrgId, q: &ListQuery) -> Result<Option<u64>, ApiError> {
        use crate::store::COUNT_READ_CAP;
        if q.location_id.is_some() {
            // Locations are not an index: their members are counted by reading them.
            let mut q = q.clone();
            let (mut total, mut read, mut after) = (0, 0, None);
            q.limit = 100;
            loop {
                q.after = after;
                let page = self.list(org, &q).await?;
                total += page.members.len() as u64;
                read += page.items_read as u64;
                match page.next {
                    _ if read > COUNT_READ_CAP => return Ok(None),
                    Some(next) => after = Some(next),
                    None => return Ok(Some(total)),
                }
            }
        }
        let statuses: &[bool] = match q.status {
            StatusFilter::Active => &[true],
            StatusFilter::Inactive => &[false],
            StatusFilter::All => &[true, false],
        };
        let (mut total, mut read) = (0u64, 0u64);
        for &active in statuses {
            let Source::Index {
                index,
                pk,
                sk,
                partition,
                covers,
            } = choose_source(org, q, active)
            else {
                return Err(ApiError::Internal);
            };
            let (filter, names, filter_values) = filter_expression(q, covers);
            let mut values = filter_values.clone();
            let mut condition = format!("{pk} = :pk");
            values.insert(":pk".into(), AttributeValue::S(partition(active)));
            if let (Some(since), "GSI5SK") = (q.updated_since, sk) {
                condition.push_str(&format!(" AND {sk} >= :since"));
                values.insert(":since".into(), AttributeValue::S(since.to_string()));
            }
            let mut start = None;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(index)
                    .key_condition_expression(&condition)
                    .set_filter_expression(filter.clone())
                    .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()))
                    .set_expression_attribute_values(Some(values.clone()))
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| sdk_error("Query", e))?;
                total += out.count().max(0) as u64;
                read += out.scanned_count().max(0) as u64;
                match out.last_evaluated_key {
                    _ if read > COUNT_READ_CAP => return Ok(None),
                    Some(key) => start = Some(key),
                    None => break,
                }
            }
        }
        Ok(Some(total))
    }

    async fn list_by_email(
        &self,
        org: &OrgId,
        email: &Email,
        q: &ListQuery,
        mut page: ListPage,
    ) -> Result<ListPage, ApiError> {
        page.calls += 1;
        page.items_read += 1;
        let Some(guard) = self
            .get::<EmailGuardRecord>(keys::email(org, email))
            .await?
        else {
            return Ok(page);
        };
        page.calls += 1;
        page.items_read += 1;
        let member = self
            .get::<MemberRecord>(keys::member(org, &guard.member_id))
            .await?
            .map(|r| r.member);
        let after = q.after.as_deref();
        page.members = member
            .filter(|m| q.matches(m) && after.is_none_or(|a| m.id.as_str() > a))
            .into_iter()
            .collect();
        page.positions = page.members.iter().map(|m| m.id.to_string()).collect();
        Ok(page)
    }

    /// Reads one status partition of a source until `want` matches, the end, or the cap.
    async fn run(
        &self,
        source: &Source,
        active: bool,
        q: &ListQuery,
        want: usize,
        page: &mut ListPage,
    ) -> Result<Run, ApiError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        let covers = match source {
            Source::Index { covers, .. } => *covers,
            Source::Location { .. } => Covered::Nothing,
        };
        let (filter, names, filter_values) = filter_expression(q, covers);
        // Items this partition's Queries evaluated (a filtered one reads more than it finds).
        let mut read_here = 0;
        loop {
            let (items, last) = match source {
                Source::Index {
                    index,
                    pk,
                    sk,
                    partition,
                    ..
                } => {
                    let mut values = filter_values.clone();
                    // Only a filtered read can run past its page (sparse matches): measure
                    // what those consume; an unfiltered one reads `want` items at most.
                    let measure = filter.is_some().then_some(ReturnConsumedCapacity::Total);
                    let mut condition = format!("{pk} = :pk");
                    values.insert(":pk".into(), AttributeValue::S(partition(active)));
                    if let Some(after) = &q.after {
                        condition.push_str(&format!(" AND {sk} > :after"));
                        values.insert(":after".into(), AttributeValue::S(after.clone()));
                    } else if let (Some(since), "GSI5SK") = (q.updated_since, *sk) {
                        condition.push_str(&format!(" AND {sk} >= :since"));
                        values.insert(":since".into(), AttributeValue::S(since.to_string()));
                    }
                    let out = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .index_name(*index)
                        .key_condition_expression(condition)
                        .set_filter_expression(filter.clone())
                        .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()))
                        .set_expression_attribute_values(Some(values))
                        .limit(next_limit(
                            want.saturating_sub(found.len()),
                            read_here,
                            found.len(),
                            filter.is_some(),
                            page.items_read,
                        ) as i32)
                        .set_exclusive_start_key(start.take())
                        .set_return_consumed_capacity(measure)
                        .send()
                        .await
                        .map_err(|e| sdk_error("Query", e))?;
                    page.calls += 1;
                    page.items_read += out.scanned_count() as usize;
                    read_here += out.scanned_count() as usize;
                    page.read_units += units(out.consumed_capacity());
                    let last = out.last_evaluated_key().cloned();
                    let mut items = Vec::new();
                    for item in out.items.unwrap_or_default() {
                        let key = sort_key(&item, sk)?;
                        items.push((key, read_member(item)?));
                    }
                    (items, last)
                }
                Source::Location { org, location } => {
                    let (condition, values) = table_key_condition(
                        keys::location_partition(org, location, active),
                        q.after.as_deref().map(|after| (">", after)),
                    );
                    let out = self
                        .client
                        .query()
                        .table_name(&self.table)
                        .key_condition_expression(condition)
                        .set_expression_attribute_values(Some(values))
                        .consistent_read(true)
                        .limit(want.max(1) as i32)
                        .set_exclusive_start_key(start.take())
                        .return_consumed_capacity(ReturnConsumedCapacity::Total)
                        .send()
                        .await
                        .map_err(|e| sdk_error("Query", e))?;
                    page.calls += 1;
                    page.items_read += out.scanned_count() as usize;
                    page.read_units += units(out.consumed_capacity());
                    let ids: Vec<String> = out
                        .items()
                        .iter()
                        .map(|i| sort_key(i, "SK"))
                        .collect::<Result<_, _>>()?;
                    let members = self.members_by_id(org, &ids, page).await?;
                    let items = ids
                        .into_iter()
                        .filter_map(|id| members.get(&id).cloned().map(|m| (id, m)))
                        .filter(|(_, m)| q.matches(m))
                        .collect();
                    (items, out.last_evaluated_key().cloned())
                }
            };
            found.extend(items);
            let sk_name = match source {
                Source::Index { sk, .. } => *sk,
                Source::Location { .. } => "SK",
            };
            match last {
                Some(key)
                    if found.len() < want
                        && page.items_read < READ_CAP
                        && page.read_units < READ_UNITS_CAP =>
                {
                    start = Some(key)
                }
                Some(key) => {
                    return Ok(Run {
                        found,
                        more_after: Some(sort_key(&key, sk_name)?),
                    })
                }
                None => {
                    return Ok(Run {
                        found,
                        more_after: None,
                    })
                }
            }
        }
    }

    /// Members by id, in one consistent BatchGetItem per 100.
    async fn members_by_id(
        &self,
        org: &OrgId,
        ids: &[String],
        page: &mut ListPage,
    ) -> Result<HashMap<String, Member>, ApiError> {
        let mut keys = Vec::with_capacity(ids.len());
        for id in ids {
            let member = MemberId::parse(id).map_err(|_| ApiError::Internal)?;
            keys.push(keys::member(org, &member));
        }
        let (items, calls, units) = self.batch_get(&keys).await?;
        page.calls += calls;
        page.read_units += units;
        let mut out = HashMap::new();
        for item in items {
            page.items_read += 1;
            let m = read_member(item)?;
            out.insert(m.id.to_string(), m);
        }
        Ok(out)
    }

    /// Items by key, consistent, 100 keys a BatchGetItem; keys left unprocessed (throttling)
    /// are asked again after a pause, 4 times at most (then 503). Answers the items found (in
    /// no order), the calls made and the read units consumed.
    pub async fn batch_get(
        &self,
        keys: &[(String, String)],
    ) -> Result<(Vec<Item>, usize, f64), ApiError> {
        let (mut items, mut calls, mut units) = (Vec::new(), 0, 0.0);
        for chunk in keys.chunks(100) {
            let mut wanted = KeysAndAttributes::builder().consistent_read(true);
            for (pk, sk) in chunk {
                wanted = wanted.keys(HashMap::from([
                    ("PK".to_owned(), AttributeValue::S(pk.clone())),
                    ("SK".to_owned(), AttributeValue::S(sk.clone())),
                ]));
            }
            let mut wanted = Some(
                wanted
                    .build()
                    .map_err(|e| super::errors::build_error("KeysAndAttributes", e))?,
            );
            let mut attempts = 0;
            while let Some(request) = wanted.take() {
                attempts += 1;
                let result = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", e))?;
                calls += 1;
                units += result
                    .consumed_capacity()
                    .iter()
                    .filter_map(|c| c.capacity_units())
                    .sum::<f64>();
                if let Some(found) = result.responses().and_then(|r| r.get(&self.table)) {
                    items.extend(found.iter().cloned());
                }
                wanted = result
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
                if wanted.is_some() && attempts >= 4 {
                    return Err(ApiError::Unavailable {
                        retry_after_seconds: 1,
                    });
                }
                if wanted.is_some() {
                    // Unprocessed keys mean throttling: back off before asking again.
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempts)).await;
                }
            }
        }
        Ok((items, calls, units))
    }

    /// A history page, newest first: Query pages followed until `limit + 1` events or the
    /// end. A Query stops at 1 MB, and events carry the changed fields before and after, so
    /// one Query can return far fewer than it was asked for while more remain.
    pub(super) async fn audit_page(
        &self,
        org: &OrgId,
        member: Option<&MemberId>,
        limit: usize,
        before: Option<&str>,
    ) -> Result<(Vec<AuditEvent>, Option<String>), ApiError> {
        let (condition, values) = table_key_condition(
            keys::audit_partition(org, member),
            before.map(|before| ("<", before)),
        );
        let mut events: Vec<AuditEvent> = Vec::new();
        let mut start: Option<Item> = None;
        let mut read_units = 0.0;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(&condition)
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit((limit + 1 - events.len()) as i32)
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            read_units += units(out.consumed_capacity());
            start = out.last_evaluated_key().cloned();
            for item in out.items.unwrap_or_default() {
                events.push(from_item::<AuditRecord>(item)?.into_event()?);
            }
            if start.is_none() || events.len() > limit {
                return Ok(crate::store::cut_page(events, limit, |e| e.id.to_string()));
            }
            // Large events (rules before and after): stop at the read budget with a cursor
            // after the last event read, rather than read tens of MB for one page.
            if read_units >= READ_UNITS_CAP && !events.is_empty() {
                let next = events.last().map(|e| e.id.to_string());
                return Ok((events, next));
            }
        }
    }
}

/// The capacity units one call reports having consumed.
fn units(consumed: Option<&ConsumedCapacity>) -> f64 {
    consumed.and_then(|c| c.capacity_units()).unwrap_or(0.0)
}

fn sort_key(item: &Item, name: &str) -> Result<String, ApiError> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Ok(s.clone()),
        _ => {
            tracing::error!(attribute = name, "an index item has no sort key");
            Err(ApiError::Internal)
        }
    }
}

/// `PK = :pk`, narrowed to `SK <op> :bound` when there is a bound: the key condition of a
/// query on the table itself, with its values.
fn table_key_condition(
    partition: String,
    bound: Option<(&str, &str)>,
) -> (String, HashMap<String, AttributeValue>) {
    let mut values = HashMap::from([(":pk".to_owned(), AttributeValue::S(partition))]);
    let mut condition = "PK = :pk".to_owned();
    if let Some((op, value)) = bound {
        condition.push_str(&format!(" AND SK {op} :bound"));
        values.insert(":bound".into(), AttributeValue::S(value.to_owned()));
    }
    (condition, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_filter_reads_in_growing_steps_and_a_dense_one_in_small_ones() {
        // Unfiltered, or the first Query: the page's size.
        assert_eq!(next_limit(26, 0, 0, true, 0), 26);
        assert_eq!(next_limit(26, 26, 0, false, 26), 26);
        // Nothing matched in 26: the next step is large, within the request's cap.
        assert_eq!(next_limit(26, 26, 0, true, 26), 26 * 27 + 1);
        assert_eq!(next_limit(26, 26, 0, true, 900), 100);
        // 25 of 26 matched: one more needed, a couple of items read.
        assert_eq!(next_limit(1, 26, 25, true, 26), 2);
        // A full cap: still at least what is needed.
        assert_eq!(next_limit(5, 1000, 0, true, 1000), 5);
    }
}
