//! The items of member writes, built without I/O: an update's items (or its dry run's
//! checks), the organisation item, the previous primary's demotion, a custom role's
//! count of holders.

use super::errors::build_error;
use super::records::{audit_record, email_guard, location_records, to_item, MemberRecord};
use super::tx::{check, delete, put, Guarded};
use super::{keys, Item};
use crate::error::ApiError;
use crate::model::*;
use crate::store::UpdateMember;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use std::collections::HashMap;

/// The items of an update, or of its dry run (the same conditions as checks, no writes).
pub(super) fn update_items(
    t: &str,
    w: &UpdateMember,
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
    items.push((
        Guarded::Member,
        if w.dry_run {
            check(t, member_key, member_condition, expected)?
        } else {
            let put = Put::builder()
                .table_name(t)
                .set_item(Some(to_item(&MemberRecord::new(after))?))
                .condition_expression(member_condition)
                .set_expression_attribute_values(Some(expected))
                .build()
                .map_err(|e| build_error("Put", e))?;
            TransactWriteItem::builder().put(put).build()
        },
    ));
    if before.email.normalized() != after.email.normalized() {
        let me = HashMap::from([(":me".to_owned(), AttributeValue::S(after.id.to_string()))]);
        let old = keys::email(org, &before.email);
        items.push((
            Guarded::OldEmailGuard,
            if w.dry_run {
                check(t, old, "memberId = :me", me)?
            } else {
                delete(t, old, Some(("memberId = :me", me)))?
            },
        ));
        items.push((
            Guarded::EmailGuard,
            if w.dry_run {
                check(
                    t,
                    keys::email(org, &after.email),
                    "attribute_not_exists(PK)",
                    HashMap::new(),
                )?
            } else {
                put(t, &email_guard(after))?
            },
        ));
    }
    if let Some(item) = org_item(t, &w.org, Some(before), after, w.dry_run)? {
        items.push((Guarded::Organization, item));
    }
    if let Some((previous, audit)) = &w.previous_primary {
        items.push((
            Guarded::PreviousPrimary,
            demote_primary(t, org, previous, after.updated_at, w.dry_run)?,
        ));
        if !w.dry_run {
            items.push((Guarded::Audit, put(t, &audit_record(audit))?));
        }
    }
    // Custom roles count their active holders, so that deleting a role and giving it to a
    // member cannot both succeed.
    let held = |m: &Member| match (&m.role, m.is_active) {
        (Role::Custom(r), true) => Some(r.clone()),
        _ => None,
    };
    let (was, now) = (held(before), held(after));
    if was != now {
        if let Some(role) = &now {
            items.push((
                Guarded::CustomRole,
                role_holders(t, org, role, 1, w.dry_run)?,
            ));
        }
        if let (Some(role), false) = (&was, w.dry_run) {
            items.push((
                Guarded::OldCustomRole,
                role_holders(t, org, role, -1, false)?,
            ));
        }
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
    items.push((Guarded::Audit, put(t, &audit_record(&w.audit))?));
    Ok(items)
}

/// The organisation item of a member write (`before` is `None` for a create): counters
/// moved with conditions that keep rules 2 and 3, the primary moved, or only a check of the
/// HRIS state the validation relied on. `None` when an update changes nothing the
/// organisation cares about (the common case: the hot organisation item is not touched).
pub(super) fn org_item(
    t: &str,
    org: &Organization,
    before: Option<&Member>,
    after: &Member,
    dry_run: bool,
) -> Result<Option<TransactWriteItem>, ApiError> {
    let delta = after
        .counters()
        .minus(before.map(Member::counters).unwrap_or_default());
    let takes_primary = after.is_primary && !before.is_some_and(|b| b.is_primary);
    let hris_relevant = before.is_none_or(|b| {
        b.role != after.role || b.hris_role != after.hris_role || b.is_active != after.is_active
    });
    if delta.is_zero() && !takes_primary && !hris_relevant {
        return Ok(None);
    }
    let mut condition = vec![
        "attribute_exists(PK)".to_owned(),
        "hrisEnabled = :hris".to_owned(),
    ];
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
    if takes_primary {
        match &org.primary_member_id {
            Some(previous) => {
                condition.push("primaryMemberId = :previous".into());
                values.insert(":previous".into(), AttributeValue::S(previous.to_string()));
            }
            None => condition.push("attribute_not_exists(primaryMemberId)".into()),
        }
        sets.push("primaryMemberId = :primary");
        values.insert(":primary".into(), AttributeValue::S(after.id.to_string()));
    }
    let condition = condition.join(" AND ");
    let key = keys::org(&org.id);
    if dry_run || (adds.is_empty() && sets.is_empty()) {
        let values: Item = values
            .into_iter()
            .filter(|(k, _)| condition.contains(k.as_str()))
            .collect();
        return check(t, key, &condition, values).map(Some);
    }
    let mut expression = String::new();
    if !sets.is_empty() {
        expression.push_str(&format!("SET {} ", sets.join(", ")));
    }
    if !adds.is_empty() {
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
    Ok(Some(TransactWriteItem::builder().update(update).build()))
}

/// The previous primary member stops being primary (its version moves), while it still is.
pub(super) fn demote_primary(
    t: &str,
    org: &OrgId,
    previous: &MemberId,
    now: Timestamp,
    dry_run: bool,
) -> Result<TransactWriteItem, ApiError> {
    let key = keys::member(org, previous);
    let condition = "isPrimary = :true AND isActive = :true";
    let values = HashMap::from([(":true".to_owned(), AttributeValue::Bool(true))]);
    if dry_run {
        return check(t, key, condition, values);
    }
    let update = Update::builder()
        .table_name(t)
        .key("PK", AttributeValue::S(key.0))
        .key("SK", AttributeValue::S(key.1))
        .update_expression("SET isPrimary = :false, version = version + :one, updatedAt = :now")
        .condition_expression(condition)
        .set_expression_attribute_values(Some(values))
        .expression_attribute_values(":false", AttributeValue::Bool(false))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .expression_attribute_values(":now", AttributeValue::S(now.to_string()))
        .build()
        .map_err(|e| build_error("Update", e))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// Moves a custom role's count of active holders; the role must exist.
pub(super) fn role_holders(
    t: &str,
    org: &OrgId,
    role: &CustomRoleId,
    amount: i64,
    dry_run: bool,
) -> Result<TransactWriteItem, ApiError> {
    let key = keys::role(org, role);
    if dry_run {
        return check(t, key, "attribute_exists(PK)", HashMap::new());
    }
    let update = Update::builder()
        .table_name(t)
        .key("PK", AttributeValue::S(key.0))
        .key("SK", AttributeValue::S(key.1))
        .update_expression("ADD activeHolders :n")
        .condition_expression("attribute_exists(PK)")
        .expression_attribute_values(":n", AttributeValue::N(amount.to_string()))
        .build()
        .map_err(|e| build_error("Update", e))?;
    Ok(TransactWriteItem::builder().update(update).build())
}
