//! SCIM groups: the group item (in its organisation's groups partition), the guard that keeps its
//! `displayName` unique, and one membership item per member of the group.
//!
//! A membership is not written here: it is an item of the member's own write
//! (`member_items::update_items`), put or deleted with the member's `scimGroups` in the same
//! transaction, as a member's locations are. So a group item never grows with its members,
//! no two members' writes share an item, and a membership item and the member's
//! `scimGroups` never disagree (docs/design.md, "SCIM /Groups", says how roles follow).

use super::records::{from_item, read_member, to_item};
use super::tx::{delete, put, put_item, Guarded, TxFailure};
use super::{keys, DynamoStore, Item};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Serialize, Deserialize)]
struct GroupRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(flatten)]
    group: Group,
}

impl GroupRecord {
    fn new(group: &Group) -> Self {
        let (pk, sk) = keys::group(&group.organization_id, &group.id);
        GroupRecord {
            pk,
            sk,
            entity: "group".into(),
            group: group.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupNameGuard {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    group_id: GroupId,
}

/// A member's membership of a group, sorted by member id in the group's partition.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MembershipRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(flatten)]
    membership: Membership,
}

/// The key of a group's name guard: case-insensitive, as `displayName` is unique.
fn name_key(org: &OrgId, name: &str) -> (String, String) {
    keys::group_name(org, &name.to_lowercase())
}

/// The membership items of a member write: put for each group joined, deleted for each
/// left (unconditionally: the member's version condition decides the write).
pub(super) fn membership_items(
    t: &str,
    before: &Member,
    after: &Member,
) -> Result<Vec<(Guarded, TransactWriteItem)>, ApiError> {
    let org = &after.organization_id;
    let mut items = Vec::new();
    for group in after
        .scim_groups
        .iter()
        .filter(|g| !before.scim_groups.contains(g))
    {
        let (pk, sk) = keys::membership(org, group, &after.id);
        let record = MembershipRecord {
            pk,
            sk,
            entity: "membership".into(),
            membership: Membership {
                member_id: after.id.clone(),
                scim_generation: after.scim_generation,
            },
        };
        let put = Put::builder()
            .table_name(t)
            .set_item(Some(to_item(&record)?))
            .build()
            .map_err(|e| super::errors::build_error("Put", e))?;
        items.push((
            Guarded::Membership,
            TransactWriteItem::builder().put(put).build(),
        ));
    }
    for group in before
        .scim_groups
        .iter()
        .filter(|g| !after.scim_groups.contains(g))
    {
        let key = keys::membership(org, group, &after.id);
        items.push((Guarded::Membership, delete(t, key, None)?));
    }
    Ok(items)
}

impl DynamoStore {
    pub(super) async fn group_item(
        &self,
        org: &OrgId,
        id: &GroupId,
    ) -> Result<Option<Group>, ApiError> {
        Ok(self
            .get::<GroupRecord>(keys::group(org, id))
            .await?
            .map(|r| r.group))
    }

    pub(super) async fn group_named(
        &self,
        org: &OrgId,
        name: &str,
    ) -> Result<Option<Group>, ApiError> {
        match self.get::<GroupNameGuard>(name_key(org, name)).await? {
            Some(guard) => self.group_item(org, &guard.group_id).await,
            None => Ok(None),
        }
    }

    /// Every group of the organisation, oldest first (one consistent Query of its groups'
    /// partition, its pages followed).
    pub(super) async fn all_groups(&self, org: &OrgId) -> Result<Vec<Group>, ApiError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(keys::groups_of(org)))
            .consistent_read(true);
        self.query_all(query)
            .await?
            .into_iter()
            .map(|item| from_item::<GroupRecord>(item).map(|r| r.group))
            .collect()
    }

    /// A group's members, by member id, read consistently.
    pub(super) async fn memberships(
        &self,
        org: &OrgId,
        id: &GroupId,
    ) -> Result<Vec<Membership>, ApiError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(keys::memberships_partition(org, id)),
            )
            .consistent_read(true);
        self.query_all(query)
            .await?
            .into_iter()
            .map(|item| from_item::<MembershipRecord>(item).map(|r| r.membership))
            .collect()
    }

    /// Members by id (consistent; 100 a call): those that exist, in no order.
    pub(super) async fn members_of_ids(
        &self,
        org: &OrgId,
        ids: &[MemberId],
    ) -> Result<Vec<Member>, ApiError> {
        // BatchGetItem refuses a key asked twice (two SCIM ids of one member, say).
        let mut keys: Vec<(String, String)> = ids.iter().map(|id| keys::member(org, id)).collect();
        keys.sort();
        keys.dedup();
        let (items, _, _) = self.batch_get(&keys).await?;
        items.into_iter().map(read_member).collect()
    }

    /// A new group with its name guard and audit entry. Refusal: `group_name_taken`.
    pub(super) async fn insert_group(
        &self,
        group: &Group,
        audit: &AuditEvent,
    ) -> Result<(), ApiError> {
        let t = &self.table;
        let guard = self.name_guard(group);
        let items = vec![
            (Guarded::Group, put(t, &GroupRecord::new(group))?),
            (Guarded::GroupName, put(t, &guard)?),
            (
                Guarded::Audit,
                put_item(t, super::outbox::audit_item(audit)?)?,
            ),
        ];
        self.group_transaction(items).await
    }

    /// A group's new name, externalId or version, conditioned on the version read; the name
    /// guard moves with a new name. Refusals: `group_name_taken`, `precondition_failed`
    /// (another write changed the group first), 404 (deleted meanwhile).
    pub(super) async fn write_group(
        &self,
        before: &Group,
        after: &Group,
        audit: &AuditEvent,
    ) -> Result<(), ApiError> {
        let t = &self.table;
        let record = to_item(&GroupRecord::new(after))?;
        let versioned = Put::builder()
            .table_name(t)
            .set_item(Some(record))
            .condition_expression("attribute_exists(PK) AND version = :expected")
            .expression_attribute_values(":expected", AttributeValue::N(before.version.to_string()))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .build()
            .map_err(|e| super::errors::build_error("Put", e))?;
        let mut items = vec![(
            Guarded::Group,
            TransactWriteItem::builder().put(versioned).build(),
        )];
        if before.display_name.to_lowercase() != after.display_name.to_lowercase() {
            let org = &after.organization_id;
            items.push((Guarded::GroupName, put(t, &self.name_guard(after))?));
            items.push((
                Guarded::OldGroupName,
                delete(t, name_key(org, &before.display_name), None)?,
            ));
        }
        items.push((
            Guarded::Audit,
            put_item(t, super::outbox::audit_item(audit)?)?,
        ));
        self.group_transaction(items).await
    }

    /// A change of a group's members alone: its version moves by one and `updatedAt` is
    /// set, on no condition but that it exists. One UpdateItem, not a transaction:
    /// concurrent changes of different members commute (each member's own write carries
    /// its change and event), and single-item writes of one item queue rather than cancel
    /// each other. Answers the group as written.
    pub(super) async fn touch_group_item(&self, group: &Group) -> Result<Group, ApiError> {
        let (pk, sk) = keys::group(&group.organization_id, &group.id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("PK", AttributeValue::S(pk.clone()))
                .key("SK", AttributeValue::S(sk.clone()))
                .update_expression("SET updatedAt = :now ADD version :one")
                .condition_expression("attribute_exists(PK)")
                .expression_attribute_values(
                    ":now",
                    AttributeValue::S(group.updated_at.to_string()),
                )
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let item = out.attributes.ok_or(ApiError::Internal)?;
                    return from_item::<GroupRecord>(item).map(|r| r.group);
                }
                Err(e) => {
                    let service = e.as_service_error();
                    if service.is_some_and(|s| s.is_conditional_check_failed_exception()) {
                        return Err(ApiError::NotFound);
                    }
                    // A rename's transaction in flight on the item: wait for it, a few times.
                    if service.is_some_and(|s| s.is_transaction_conflict_exception()) && attempt < 5
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                        continue;
                    }
                    return Err(super::errors::sdk_error("UpdateItem", e));
                }
            }
        }
    }

    /// Deletes a group (no member left in it: the handler takes them out first) and its name
    /// guard, with its audit entry. 404 when another request deleted it first.
    pub(super) async fn remove_group(
        &self,
        group: &Group,
        audit: &AuditEvent,
    ) -> Result<(), ApiError> {
        let t = &self.table;
        let org = &group.organization_id;
        let unchanged = "attribute_exists(PK) AND version = :expected";
        let version = HashMap::from([(
            ":expected".to_owned(),
            AttributeValue::N(group.version.to_string()),
        )]);
        let items = vec![
            (
                Guarded::Group,
                delete(t, keys::group(org, &group.id), Some((unchanged, version)))?,
            ),
            (
                Guarded::OldGroupName,
                delete(t, name_key(org, &group.display_name), None)?,
            ),
            (
                Guarded::Audit,
                put_item(t, super::outbox::audit_item(audit)?)?,
            ),
        ];
        self.group_transaction(items).await
    }

    fn name_guard(&self, group: &Group) -> GroupNameGuard {
        let (pk, sk) = name_key(&group.organization_id, &group.display_name);
        GroupNameGuard {
            pk,
            sk,
            entity: "groupNameGuard".into(),
            group_id: group.id.clone(),
        }
    }

    async fn group_transaction(
        &self,
        items: Vec<(Guarded, TransactWriteItem)>,
    ) -> Result<(), ApiError> {
        self.transact(items, super::refusals::write_conflict)
            .await
            .map_err(|failure| match failure {
                TxFailure::Error(e) => e,
                TxFailure::Refused(failed) => group_refusal(&failed),
            })
    }
}

/// Which condition refused a group write.
fn group_refusal(failed: &[(Guarded, Option<Item>)]) -> ApiError {
    if failed.iter().any(|(g, _)| *g == Guarded::GroupName) {
        return ApiError::Conflict {
            code: "group_name_taken",
            detail: "The organisation already has a group with this displayName.".into(),
            field: Some("displayName"),
        };
    }
    match failed.iter().find(|(g, _)| *g == Guarded::Group) {
        Some((_, None)) => ApiError::NotFound,
        Some((_, Some(_))) => ApiError::PreconditionFailed,
        None => ApiError::Internal,
    }
}
