//! The items of member writes, built without I/O: an update's items (or its dry run's
//! checks), the organisation item, the previous primary's demotion, a custom role's
//! count of holders. The guards of its identifiers are `guards.rs`'s.

use super::errors::build_error;
use super::groups::membership_items;
use super::guards::{external_id_items, identifier_items};
use super::holders::move_holders;
use super::outbox::audit_item;
use super::records::{location_records, to_item, MemberRecord, COUNTER_WRITES};
use super::shards::member_shard;
use super::tx::{check, delete, put_item, Guarded};
use super::{keys, Item};
use crate::error::ApiError;
use crate::model::*;
use crate::store::{Demotion, UpdateMember};
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use std::collections::HashMap;

/// The items of an update, or of its dry run (the same conditions as checks, no writes).
/// The custom roles in `on_item` are of an older version: counted on their items.
pub(super) fn update_items(
    t: &str,
    w: &UpdateMember,
    on_item: &[CustomRoleId],
) -> Result<Vec<(Guarded, TransactWriteItem)>, ApiError> {
    let (before, after) = (&w.before, &w.after);
    let org = &after.organization_id;
    let mut items = Vec::new();
    let member_key = keys::member(org, &after.id);
    let expected = HashMap::from([(
        ":expected".to_owned(),
        AttributeValue::N(before.version.to_string()),
    )]);
    let member_condition = "attribute_exists(PK) AND version = :expected";
    if !w.dry_run {
        hashed(after)?;
    }
    items.push((
        Guarded::Member,
        if w.dry_run {
            check(t, member_key, member_condition, expected)?
        } else {
            let put = Put::builder()
                .table_name(t)
                .set_item(Some(MemberRecord::item(after)?))
                .condition_expression(member_condition)
                .set_expression_attribute_values(Some(expected))
                .build()
                .map_err(|e| build_error("Put", e))?;
            TransactWriteItem::builder().put(put).build()
        },
    ));
    items.extend(identifier_items(t, before, after, w.dry_run)?);
    if before.external_id != after.external_id {
        items.extend(external_id_items(t, before, after, w.dry_run)?);
    }
    items.extend(org_items(t, &w.org, Some(before), after, w.dry_run)?);
    if let Some(demotion) = &w.previous_primary {
        items.push((
            Guarded::PreviousPrimary,
            demote_primary(t, demotion, w.dry_run)?,
        ));
        if !w.dry_run {
            items.push((Guarded::Audit, put_item(t, audit_item(&demotion.audit)?)?));
        }
    }
    // Custom roles count their holders (and, apart, the active ones), so that deleting a
    // role and giving it to a member, active or not, cannot both succeed.
    for (role, delta) in holder_deltas(Some(before), after) {
        if w.dry_run && delta.0 <= 0 && delta.1 <= 0 {
            continue;
        }
        let guard = if delta.0 > 0 || delta.1 > 0 {
            Guarded::CustomRole
        } else {
            Guarded::OldCustomRole
        };
        let legacy = on_item.contains(&role);
        items.push((
            guard,
            move_holders(t, org, &role, &after.id, delta, legacy, w.dry_run)?,
        ));
    }
    if w.dry_run {
        return Ok(items);
    }
    // Location items live in a partition per status: a status change moves them all.
    let status_changed = before.is_active != after.is_active;
    let kept = |l: &MemberLocation, among: &[MemberLocation]| {
        among.iter().any(|o| o.location_id == l.location_id)
    };
    for location in location_records(after) {
        let unchanged = before
            .locations
            .iter()
            .any(|l| l.location_id == location.location_id && l.role == location.role);
        if status_changed || !unchanged {
            let put = Put::builder()
                .table_name(t)
                .set_item(Some(to_item(&location)?))
                .build()
                .map_err(|e| build_error("Put", e))?;
            items.push((
                Guarded::Location,
                TransactWriteItem::builder().put(put).build(),
            ));
        }
    }
    for gone in before
        .locations
        .iter()
        .filter(|l| status_changed || !kept(l, &after.locations))
    {
        let key = keys::location(org, &gone.location_id, before.is_active, &after.id);
        items.push((Guarded::Location, delete(t, key, None)?));
    }
    items.extend(membership_items(t, before, after)?);
    items.push((Guarded::Audit, put_item(t, audit_item(&w.audit)?)?));
    Ok(items)
}

/// Refuses to write a member whose new password was never hashed (a handler bug, caught here
/// rather than stored).
pub(super) fn hashed(m: &Member) -> Result<(), ApiError> {
    if m.password_hash
        .as_ref()
        .is_some_and(PasswordHash::is_pending)
    {
        tracing::error!("a member with an unhashed password reached the store");
        return Err(ApiError::Internal);
    }
    Ok(())
}

/// The organisation's items of a member write (`before` is `None` for a create).
///
/// In an organisation with counter shards: the organisation item only when a guarded count
/// moves (with conditions that keep rules 2 and 3) or the primary moves, and the member's
/// shard when another count moves or the write relied on the HRIS state. In one of an older
/// version, every count on the organisation item, as before shards. Empty when an update
/// changes nothing the organisation cares about (the common case).
pub(super) fn org_items(
    t: &str,
    org: &Organization,
    before: Option<&Member>,
    after: &Member,
    dry_run: bool,
) -> Result<Vec<(Guarded, TransactWriteItem)>, ApiError> {
    let delta = after
        .counters()
        .minus(before.map(Member::counters).unwrap_or_default());
    let takes_primary = after.is_primary && !before.is_some_and(|b| b.is_primary);
    let primary = takes_primary.then_some(&after.id);
    let hris_relevant = before.is_none_or(|b| {
        b.role != after.role || b.hris_role != after.hris_role || b.is_active != after.is_active
    });
    let mut items = Vec::new();
    if org.counter_shards == 0 {
        items.extend(org_item(t, org, delta, primary, hris_relevant, dry_run)?);
    } else {
        items.extend(org_item(t, org, delta.guarded(), primary, false, dry_run)?);
        if let Some(shard) = member_shard(t, org, &after.id, delta, hris_relevant, dry_run)? {
            items.push((Guarded::CounterShard, shard));
        }
    }
    Ok(items)
}

/// The organisation item: `delta` added to its counters with conditions that keep rules 2
/// and 3, the primary moved to `primary`, or (`check_hris`) only a check of the HRIS state the validation
/// relied on. `None` when none of these is needed.
fn org_item(
    t: &str,
    org: &Organization,
    delta: Counters,
    primary: Option<&MemberId>,
    check_hris: bool,
    dry_run: bool,
) -> Result<Option<(Guarded, TransactWriteItem)>, ApiError> {
    if delta.is_zero() && primary.is_none() && !check_hris {
        return Ok(None);
    }
    let mut condition = vec![
        "attribute_exists(PK)".to_owned(),
        "hrisEnabled = :hris".to_owned(),
    ];
    if org.counter_shards == 0 {
        // Counted as before shards: refused if a recount moved the counts to shards since.
        condition.push("attribute_not_exists(counterShards)".to_owned());
    }
    let mut values: Item =
        HashMap::from([(":hris".into(), AttributeValue::Bool(org.hris_enabled))]);
    let mut adds = Vec::new();
    // Rules 2 and 3 guard the admin counts; the rule-4 counts only follow the members.
    let guarded = |attribute: &str| match attribute {
        "activeAdmins" => true,
        "activeHrisAdmins" | "activeDualAdmins" => org.hris_enabled,
        _ => false,
    };
    for (attribute, amount) in delta.fields() {
        if amount == 0 {
            continue;
        }
        adds.push(format!("{attribute} :{attribute}"));
        values.insert(
            format!(":{attribute}"),
            AttributeValue::N(amount.to_string()),
        );
        if amount < 0 && guarded(attribute) {
            // At least one must remain: the count now must be ≥ 1 - amount.
            condition.push(format!("{attribute} >= :min{attribute}"));
            values.insert(
                format!(":min{attribute}"),
                AttributeValue::N((1 - amount).to_string()),
            );
        }
    }
    let mut sets = Vec::new();
    if let Some(primary) = primary {
        match &org.primary_member_id {
            Some(previous) => {
                condition.push("primaryMemberId = :previous".into());
                values.insert(":previous".into(), AttributeValue::S(previous.to_string()));
            }
            None => condition.push("attribute_not_exists(primaryMemberId)".into()),
        }
        sets.push("primaryMemberId = :primary");
        values.insert(":primary".into(), AttributeValue::S(primary.to_string()));
    }
    let condition = condition.join(" AND ");
    let key = keys::org(&org.id);
    if dry_run || (adds.is_empty() && sets.is_empty()) {
        let values: Item = values
            .into_iter()
            .filter(|(k, _)| condition.contains(k.as_str()))
            .collect();
        return Ok(Some((
            Guarded::Organization,
            check(t, key, &condition, values)?,
        )));
    }
    let mut expression = String::new();
    if !sets.is_empty() {
        expression.push_str(&format!("SET {} ", sets.join(", ")));
    }
    if !adds.is_empty() {
        // Every change of a counter also moves the stamp, so that `membersctl recount` can
        // tell "no counter moved while I counted" even when two moves cancel out.
        adds.push(format!("{COUNTER_WRITES} :one"));
        values.insert(":one".into(), AttributeValue::N("1".into()));
        expression.push_str(&format!("ADD {}", adds.join(", ")));
    }
    let update = Update::builder()
        .table_name(t)
        .key("PK", AttributeValue::S(key.0))
        .key("SK", AttributeValue::S(key.1))
        .update_expression(expression.trim())
        .condition_expression(condition)
        .set_expression_attribute_values(Some(values))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| build_error("Update", e))?;
    Ok(Some((
        Guarded::Organization,
        TransactWriteItem::builder().update(update).build(),
    )))
}

/// The previous primary member stops being primary: the whole member is written (index keys
/// included, so `?updatedSince=` sees the change) on the condition that it is still the
/// version read, active and primary. Its locations do not change.
pub(super) fn demote_primary(
    t: &str,
    d: &Demotion,
    dry_run: bool,
) -> Result<TransactWriteItem, ApiError> {
    let key = keys::member(&d.before.organization_id, &d.before.id);
    let condition = "version = :expected AND isPrimary = :true AND isActive = :true";
    let values = HashMap::from([
        (
            ":expected".to_owned(),
            AttributeValue::N(d.before.version.to_string()),
        ),
        (":true".to_owned(), AttributeValue::Bool(true)),
    ]);
    if dry_run {
        return check(t, key, condition, values);
    }
    let put = Put::builder()
        .table_name(t)
        .set_item(Some(MemberRecord::item(&d.after)?))
        .condition_expression(condition)
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(|e| build_error("Put", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// How a member write moves the counts of custom roles: for each role, (holders, active
/// holders). A role the member keeps, in the same status, is not touched.
pub(super) fn holder_deltas(
    before: Option<&Member>,
    after: &Member,
) -> Vec<(CustomRoleId, (i64, i64))> {
    let mut out: Vec<(CustomRoleId, (i64, i64))> = Vec::new();
    let mut add = |m: &Member, sign: i64| {
        if let Role::Custom(role) = &m.role {
            let delta = (sign, sign * m.is_active as i64);
            match out.iter_mut().find(|(r, _)| r == role) {
                Some((_, d)) => *d = (d.0 + delta.0, d.1 + delta.1),
                None => out.push((role.clone(), delta)),
            }
        }
    };
    if let Some(before) = before {
        add(before, -1);
    }
    add(after, 1);
    out.retain(|(_, d)| *d != (0, 0));
    out
}

#[cfg(test)]
mod tests {
    use super::super::shards::shard_of;
    use super::*;

    fn member(role: &str, active: bool) -> Member {
        let body =
            serde_json::json!({"firstName": "A", "email": "a@example.com", "role": "simple"});
        let patch = crate::input::parse_member_patch(&body).unwrap_or_else(|e| panic!("{e:?}"));
        let org = Organization::new("A", false);
        let mut m = crate::rules::new_member(patch, &org, Timestamp::now())
            .unwrap_or_else(|e| panic!("{e:?}"))
            .member;
        m.role = Role::parse(role).unwrap_or_else(|e| panic!("{e:?}"));
        m.is_active = active;
        m
    }

    /// The (PK, SK) of each item of a transaction.
    fn touched(items: &[(Guarded, TransactWriteItem)]) -> Vec<(String, String)> {
        let key = |k: Option<&HashMap<String, AttributeValue>>| {
            let s = |name: &str| match k.and_then(|k| k.get(name)) {
                Some(AttributeValue::S(v)) => v.clone(),
                _ => String::new(),
            };
            (s("PK"), s("SK"))
        };
        items
            .iter()
            .map(
                |(_, i)| match (i.put(), i.update(), i.condition_check(), i.delete()) {
                    (Some(p), ..) => key(Some(p.item())),
                    (_, Some(u), ..) => key(Some(u.key())),
                    (_, _, Some(c), _) => key(Some(c.key())),
                    (.., Some(d)) => key(Some(d.key())),
                    _ => key(None),
                },
            )
            .collect()
    }

    #[test]
    fn no_common_member_write_touches_the_organisation_item() {
        let mut org = Organization::new("A", false);
        org.counter_shards = super::super::shards::COUNTER_SHARDS;
        let org_key = keys::org(&org.id);
        let items = |before: Option<&Member>, after: &Member| {
            let mut after = after.clone();
            after.organization_id = org.id.clone();
            let before = before.cloned().map(|mut b| {
                b.organization_id = org.id.clone();
                b.id = after.id.clone();
                b
            });
            org_items("t", &org, before.as_ref(), &after, false)
                .map(|items| touched(&items))
                .unwrap_or_else(|e| panic!("{e:?}"))
        };
        let simple = member("simple", true);
        let shard = |m: &Member| keys::counter_shard(&org.id, shard_of(&m.id, org.counter_shards));
        // A create, a deactivation, a reactivation, a change of role or HRIS role between
        // roles no rule guards: the member's own shard, never the organisation item.
        assert_eq!(items(None, &simple), vec![shard(&simple)]);
        let mut inactive = simple.clone();
        inactive.is_active = false;
        assert_eq!(items(Some(&simple), &inactive), vec![shard(&simple)]);
        assert_eq!(items(Some(&inactive), &simple), vec![shard(&simple)]);
        let mut reviewer = simple.clone();
        reviewer.role = Role::parse("reviewer").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(items(Some(&simple), &reviewer), vec![shard(&simple)]);
        let mut hris = simple.clone();
        hris.hris_role = Some(HrisRole::HrisEmployee);
        assert_eq!(items(Some(&simple), &hris), vec![shard(&simple)]);
        // Any other change of a member: neither.
        let mut renamed = simple.clone();
        renamed.first_name = Some("B".into());
        assert_eq!(items(Some(&simple), &renamed), vec![]);
        // A guarded count (rule 2) or the primary: the organisation item too.
        let admin = member("admin", true);
        assert_eq!(items(None, &admin), vec![org_key.clone(), shard(&admin)]);
        let mut primary = simple.clone();
        primary.is_primary = true;
        assert_eq!(items(Some(&simple), &primary), vec![org_key.clone()]);
        // An organisation of an older version: all on its item, as before shards.
        org.counter_shards = 0;
        assert_eq!(
            org_items("t", &org, None, &simple, false)
                .map(|i| touched(&i))
                .unwrap_or_else(|e| panic!("{e:?}")),
            vec![org_key]
        );
    }

    #[test]
    fn every_holder_of_a_custom_role_is_counted_active_or_not() {
        let (a, b) = ("rol_a", "rol_b");
        let id = |r: &str| CustomRoleId::parse(r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            holder_deltas(None, &member(a, false)),
            vec![(id(a), (1, 0))]
        );
        assert_eq!(holder_deltas(None, &member(a, true)), vec![(id(a), (1, 1))]);
        assert_eq!(holder_deltas(None, &member("simple", true)), vec![]);
        // Deactivating keeps the holder, not the active one.
        assert_eq!(
            holder_deltas(Some(&member(a, true)), &member(a, false)),
            vec![(id(a), (0, -1))]
        );
        assert_eq!(
            holder_deltas(Some(&member(a, true)), &member(a, true)),
            vec![]
        );
        assert_eq!(
            holder_deltas(Some(&member(a, false)), &member(b, false)),
            vec![(id(a), (-1, 0)), (id(b), (1, 0))]
        );
        assert_eq!(
            holder_deltas(Some(&member(a, true)), &member("admin", true)),
            vec![(id(a), (-1, -1))]
        );
    }
}
