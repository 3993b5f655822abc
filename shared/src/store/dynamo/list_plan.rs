//! Which index serves a list, and which of its filters DynamoDB applies as a
//! `FilterExpression` (docs/design.md, the member indexes and `GET /v1/members`).

use super::{keys, Item};
use crate::model::*;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// Where a list reads from.
pub(super) enum Source {
    /// A member index: its name, key attribute names, and the partition for a status.
    Index {
        index: &'static str,
        pk: &'static str,
        sk: &'static str,
        partition: Box<dyn Fn(bool) -> String + Send + Sync>,
        /// The filter its partition applies (the others become a FilterExpression).
        covers: Covered,
    },
    /// A location's member list (main table): ids, then the members.
    Location { org: OrgId, location: String },
}

/// Which of the list's filters a source applies by its key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Covered {
    Role,
    Hris,
    Department,
    UpdatedSince,
    /// None: the status index (GSI1), or a location's list.
    Nothing,
}

/// The most selective key the query has for one status (email is handled before this).
/// GSI2–GSI4 hold active members only (records.rs): inactive members filtered by role, HRIS
/// role or department are read from the status index (GSI1), the filters applied by
/// DynamoDB. GSI3 and GSI4 also leave out the common value (no HRIS role, department
/// `none`): `hrisRole=none` and `department=none` are read from GSI1 (or GSI2, with a role)
/// the same way.
pub(super) fn choose_source(org: &OrgId, q: &ListQuery, active: bool) -> Source {
    let org = org.clone();
    let index = |index, pk, sk, partition: Box<dyn Fn(bool) -> String + Send + Sync>, covers| {
        Source::Index {
            index,
            pk,
            sk,
            partition,
            covers,
        }
    };
    if let Some(location) = &q.location_id {
        return Source::Location {
            org,
            location: location.clone(),
        };
    }
    if active {
        if let Some(role) = q.role.clone() {
            let org = org.clone();
            return index(
                "GSI2",
                "GSI2PK",
                "GSI2SK",
                Box::new(move |a| keys::role_partition(&org, &role, a)),
                Covered::Role,
            );
        }
        if let Some(Some(hris)) = q.hris_role {
            let org = org.clone();
            return index(
                "GSI3",
                "GSI3PK",
                "GSI3SK",
                Box::new(move |a| keys::hris_partition(&org, Some(hris), a)),
                Covered::Hris,
            );
        }
        if let Some(department) = q.department.filter(|d| *d != Department::None) {
            let org = org.clone();
            return index(
                "GSI4",
                "GSI4PK",
                "GSI4SK",
                Box::new(move |a| keys::department_partition(&org, department, a)),
                Covered::Department,
            );
        }
    }
    let by_status = move |a| keys::members_partition(&org, a);
    // With a role, HRIS role or department filter, the active partition comes from GSI2–GSI4
    // sorted by member id: the inactive one is read from GSI1 (also by id), not GSI5, so
    // that both share one kind of position, and a cursor means the same on both.
    let filtered = q.role.is_some() || q.hris_role.is_some() || q.department.is_some();
    if q.updated_since.is_some() && !filtered {
        return index(
            "GSI5",
            "GSI5PK",
            "GSI5SK",
            Box::new(by_status),
            Covered::UpdatedSince,
        );
    }
    index(
        "GSI1",
        "GSI1PK",
        "GSI1SK",
        Box::new(by_status),
        Covered::Nothing,
    )
}

/// The filters the source does not already apply, as a FilterExpression (with attribute
/// names, since `role` is a reserved word).
pub(super) fn filter_expression(
    q: &ListQuery,
    covers: Covered,
) -> (Option<String>, HashMap<String, String>, Item) {
    let (mut parts, mut names, mut values) = (Vec::new(), HashMap::new(), Item::new());
    let mut equal = |attribute: &str, value: String| {
        parts.push(format!("#{attribute} = :{attribute}"));
        names.insert(format!("#{attribute}"), attribute.to_owned());
        values.insert(format!(":{attribute}"), AttributeValue::S(value));
    };
    if let (Some(role), false) = (&q.role, covers == Covered::Role) {
        equal("role", role.as_str().to_owned());
    }
    if let (Some(Some(hris)), false) = (q.hris_role, covers == Covered::Hris) {
        equal("hrisRole", hris.as_str().to_owned());
    }
    if let (Some(department), false) = (q.department, covers == Covered::Department) {
        equal("department", department.as_str().to_owned());
    }
    if let (Some(since), false) = (q.updated_since, covers == Covered::UpdatedSince) {
        parts.push("#updatedAt >= :updatedAt".into());
        names.insert("#updatedAt".into(), "updatedAt".into());
        values.insert(":updatedAt".into(), AttributeValue::S(since.to_string()));
    }
    if let (Some(None), false) = (q.hris_role, covers == Covered::Hris) {
        // Members without an HRIS role: the attribute absent, or NULL in items written
        // before empty attributes were left out.
        parts.push("(attribute_not_exists(#hrisRole) OR attribute_type(#hrisRole, :null))".into());
        names.insert("#hrisRole".into(), "hrisRole".into());
        values.insert(":null".into(), AttributeValue::S("NULL".into()));
    }
    if q.scim_only {
        parts.push("attribute_not_exists(scimDeprovisioned)".into());
    }
    let filter = (!parts.is_empty()).then(|| parts.join(" AND "));
    (filter, names, values)
}
