//! The organisation's own settings and its custom roles.

use super::errors::{build_error, sdk_error};
use super::holders::{delete_idle_shards, new_holder_shards};
use super::outbox::audit_item;
use super::records::from_item;
use super::shards::{switch_shards, COUNTER_SHARDS};
use super::tx::{delete, put, put_item, Guarded, TxFailure};
use super::{keys, DynamoStore, Item};
use crate::error::ApiError;
use crate::model::*;
use crate::store::UpdateOrganization;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Serialize, Deserialize)]
pub(super) struct RoleRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(rename = "GSI1PK")]
    gsi1pk: String,
    #[serde(rename = "GSI1SK")]
    gsi1sk: String,
    #[serde(flatten)]
    role: CustomRole,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleNameGuard {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    role_id: CustomRoleId,
}

/// The guard that keeps role names unique: one item per confusable skeleton (hashed, so
/// that any name fits in a key).
fn role_name_key(org: &OrgId, name: &str) -> (String, String) {
    let skeleton = crate::text::role_name_skeleton(name);
    (
        format!("ORG#{org}#ROLENAME#{}", crate::auth::hash_key(&skeleton)),
        "ROLENAME".into(),
    )
}

impl DynamoStore {
    pub(super) async fn write_organization(&self, w: &UpdateOrganization) -> Result<(), ApiError> {
        let (before, after) = (&w.before, &w.after);
        let (pk, sk) = keys::org(&after.id);
        let mut condition = vec!["attribute_exists(PK)", "version = :expected"];
        let mut values: Item = HashMap::from([
            (
                ":expected".to_owned(),
                AttributeValue::N(before.version.to_string()),
            ),
            (
                ":version".to_owned(),
                AttributeValue::N(after.version.to_string()),
            ),
            (":name".to_owned(), AttributeValue::S(after.name.clone())),
            (":hris".to_owned(), AttributeValue::Bool(after.hris_enabled)),
            (
                ":bg".to_owned(),
                AttributeValue::Bool(after.background_check_required),
            ),
            (
                ":now".to_owned(),
                AttributeValue::S(after.updated_at.to_string()),
            ),
        ]);
        let turning_on = after.hris_enabled && !before.hris_enabled;
        let turning_off = !after.hris_enabled && before.hris_enabled;
        if turning_on {
            // Rule 3: someone is admin + hris_admin, every active member has an HRIS role;
            // rule 4: nobody is no_access + hris_no_access.
            condition.push("activeDualAdmins >= :one");
            condition.push(
                "(attribute_not_exists(activeWithoutHrisRole) OR activeWithoutHrisRole = :zero)",
            );
            condition.push("(attribute_not_exists(activeNoAccessHrisNoAccess) OR activeNoAccessHrisNoAccess = :zero)");
        }
        if turning_off {
            // Rule 4: no_access needs HRIS.
            condition.push("(attribute_not_exists(activeNoAccess) OR activeNoAccess = :zero)");
        }
        // The counts above on the organisation item are those of an older version (absent
        // once shards hold them); with shards, each shard is checked, and the switch is
        // refused if a recount moved the counts into shards after this request read them.
        if turning_on || turning_off {
            if before.counter_shards == 0 {
                condition.push("attribute_not_exists(counterShards)");
            } else {
                condition.push("counterShards = :shards");
                values.insert(
                    ":shards".into(),
                    AttributeValue::N(before.counter_shards.to_string()),
                );
            }
        }
        if turning_on {
            values.insert(":one".into(), AttributeValue::N("1".into()));
        }
        if turning_on || turning_off {
            values.insert(":zero".into(), AttributeValue::N("0".into()));
        }
        let mut sets = String::from(
            "SET #name = :name, hrisEnabled = :hris, backgroundCheckRequired = :bg, version = :version, updatedAt = :now",
        );
        if let Some(role) = after.scim_default_role {
            sets.push_str(", scimDefaultRole = :scimRole");
            values.insert(":scimRole".into(), AttributeValue::S(role.as_str().into()));
        }
        if let Some(role) = after.scim_default_hris_role {
            sets.push_str(", scimDefaultHrisRole = :scimHrisRole");
            values.insert(
                ":scimHrisRole".into(),
                AttributeValue::S(role.as_str().into()),
            );
        }
        if after.scim_group_roles.is_empty() {
            sets.push_str(" REMOVE scimGroupRoles");
        } else {
            sets.push_str(", scimGroupRoles = :groupRoles");
            let roles = serde_dynamo::to_attribute_value(&after.scim_group_roles).map_err(|e| {
                tracing::error!(error = %e, "could not serialise scim.groupRoles");
                ApiError::Internal
            })?;
            values.insert(":groupRoles".into(), roles);
        }
        let update = Update::builder()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .update_expression(sets)
            .condition_expression(condition.join(" AND "))
            .expression_attribute_names("#name", "name")
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| build_error("Update", e))?;
        let mut items = vec![
            (
                Guarded::Organization,
                TransactWriteItem::builder().update(update).build(),
            ),
            (
                Guarded::Audit,
                put_item(&self.table, audit_item(&w.audit)?)?,
            ),
        ];
        if turning_on || turning_off {
            for shard in switch_shards(&self.table, before, after.hris_enabled)? {
                items.push((Guarded::CounterShard, shard));
            }
        }
        let outcome = self
            .transact(items, || {
                ApiError::Conflict {
            code: "organization_changed",
            detail:
                "The organisation was being changed by another request; nothing was written. Retry."
                    .into(),
            field: None,
        }
            })
            .await;
        match outcome {
            Ok(()) => Ok(()),
            Err(TxFailure::Error(e)) => Err(e),
            // Which rule broke, from the organisation and its shards as they are now.
            Err(TxFailure::Refused(_)) => Err(organization_refusal(
                w,
                self.organization_with_shards(&after.id).await?,
            )),
        }
    }

    /// A page of custom roles in id (creation) order after `after`: Query pages of GSI1
    /// followed until `limit + 1` roles or the end (a Query stops at 1 MB).
    pub(super) async fn roles(
        &self,
        org: &OrgId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<CustomRole>, Option<String>), ApiError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        let mut condition = "GSI1PK = :pk".to_owned();
        let mut values =
            HashMap::from([(":pk".to_owned(), AttributeValue::S(keys::roles_of(org)))]);
        if let Some(after) = after {
            condition.push_str(" AND GSI1SK > :after");
            values.insert(":after".into(), AttributeValue::S(after.to_owned()));
        }
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("GSI1")
                .key_condition_expression(&condition)
                .set_expression_attribute_values(Some(values.clone()))
                .limit((limit + 1 - out.len()) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in page.items() {
                out.push(from_item::<RoleRecord>(item.clone())?.role);
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() || out.len() > limit {
                let (page, next) = crate::store::cut_page(out, limit, |r| r.id.to_string());
                return Ok((self.with_holders(org, page).await?, next));
            }
        }
    }

    pub(super) async fn counted_role(
        &self,
        org: &OrgId,
        id: &CustomRoleId,
    ) -> Result<Option<CustomRole>, ApiError> {
        match self.role_item(org, id).await? {
            Some(role) => Ok(self.with_holders(org, vec![role]).await?.pop()),
            None => Ok(None),
        }
    }

    /// The role as its item holds it: its holder shards not added (one GetItem).
    pub(super) async fn role_item(
        &self,
        org: &OrgId,
        id: &CustomRoleId,
    ) -> Result<Option<CustomRole>, ApiError> {
        Ok(self
            .get::<RoleRecord>(keys::role(org, id))
            .await?
            .map(|r| r.role))
    }

    pub(super) async fn insert_role(
        &self,
        role: &CustomRole,
        audit: &AuditEvent,
    ) -> Result<(), ApiError> {
        let (pk, sk) = keys::role(&role.organization_id, &role.id);
        let mut role = role.clone();
        role.holder_shards = COUNTER_SHARDS;
        let record = RoleRecord {
            pk,
            sk,
            entity: "customRole".into(),
            gsi1pk: keys::roles_of(&role.organization_id),
            gsi1sk: role.id.to_string(),
            role: role.clone(),
        };
        let (gpk, gsk) = role_name_key(&role.organization_id, &role.name);
        let guard = RoleNameGuard {
            pk: gpk,
            sk: gsk,
            entity: "roleNameGuard".into(),
            role_id: role.id.clone(),
        };
        let mut items = vec![
            (Guarded::Role, put(&self.table, &record)?),
            (Guarded::RoleName, put(&self.table, &guard)?),
            (Guarded::Audit, put_item(&self.table, audit_item(audit)?)?),
        ];
        for shard in new_holder_shards(&self.table, &role)? {
            items.push((Guarded::RoleHolders, shard));
        }
        self.transact(items, super::refusals::write_conflict)
            .await
            .map_err(|failure| match failure {
                TxFailure::Error(e) => e,
                TxFailure::Refused(failed)
                    if failed.iter().any(|(g, _)| *g == Guarded::RoleName) =>
                {
                    ApiError::Conflict {
                        code: "role_name_taken",
                        detail: "The organisation already has a role with this name, or one that looks the same.".into(),
                        field: Some("name"),
                    }
                }
                TxFailure::Refused(_) => ApiError::Internal,
            })
    }

    /// Deletes a role no member holds, active or deactivated (members never hold a role
    /// that does not exist). Refusals: `role_in_use`, or 404 when another request deleted
    /// it first.
    pub(super) async fn remove_role(
        &self,
        role: &CustomRole,
        audit: &AuditEvent,
    ) -> Result<(), ApiError> {
        let key = keys::role(&role.organization_id, &role.id);
        let idle = "attribute_exists(PK) AND (attribute_not_exists(holders) OR holders <= :zero) AND (attribute_not_exists(activeHolders) OR activeHolders <= :zero)";
        let zero = HashMap::from([(":zero".to_owned(), AttributeValue::N("0".into()))]);
        let mut items = vec![
            (Guarded::Role, delete(&self.table, key, Some((idle, zero)))?),
            (
                Guarded::RoleName,
                delete(
                    &self.table,
                    role_name_key(&role.organization_id, &role.name),
                    None,
                )?,
            ),
            (Guarded::Audit, put_item(&self.table, audit_item(audit)?)?),
        ];
        for shard in delete_idle_shards(&self.table, role)? {
            items.push((Guarded::RoleHolders, shard));
        }
        self.transact(items, super::refusals::write_conflict)
            .await
            .map_err(|failure| match failure {
                TxFailure::Error(e) => e,
                // The role as it was when refused: gone (another deletion won) or held (on
                // its item, for a role of an older version, or on a holder shard).
                TxFailure::Refused(failed) => match (
                    failed.iter().find(|(g, _)| *g == Guarded::Role),
                    failed.iter().any(|(g, _)| *g == Guarded::RoleHolders),
                ) {
                    (Some((_, None)), _) => ApiError::NotFound,
                    (Some((_, Some(_))), _) | (None, true) => ApiError::Conflict {
                        code: "role_in_use",
                        detail: "A member (active or deactivated) holds this role; give them another role first."
                            .into(),
                        field: None,
                    },
                    (None, false) => ApiError::Internal,
                },
            })
    }
}

/// Which rule a refused settings change broke, from the organisation as it is now.
fn organization_refusal(w: &UpdateOrganization, current: Option<Organization>) -> ApiError {
    let Some(current) = current else {
        return ApiError::Internal;
    };
    if current.version != w.before.version {
        return if w.if_match {
            ApiError::PreconditionFailed
        } else {
            ApiError::Conflict {
                code: "organization_changed",
                detail: "The organisation changed during this request; nothing was written. Fetch it and retry.".into(),
                field: None,
            }
        };
    }
    let changed = ApiError::Conflict {
        code: "organization_changed",
        detail:
            "The organisation changed during this request; nothing was written. Fetch it and retry."
                .into(),
        field: None,
    };
    if current.counter_shards != w.before.counter_shards {
        // A recount moved the counts into shards after this request read them.
        return changed;
    }
    hris_switch_refusal(&current.counters, w.after.hris_enabled).unwrap_or_else(|| {
        // A blocker that came and went, or a damaged shard (`membersctl recount` repairs it).
        tracing::warn!("an HRIS switch was refused by a condition its counts do not explain");
        changed
    })
}

/// Rules 3 and 4 for switching HRIS to `on`, from the counters.
pub fn hris_switch_refusal(counters: &Counters, on: bool) -> Option<ApiError> {
    if on && counters.active_dual_admins < 1 {
        return Some(ApiError::rule(
            "hris_requires_admin_hris_admin",
            Some("hrisEnabled"),
            "HRIS can be enabled only while an active member is both admin and hris_admin",
        ));
    }
    let blocked = if on {
        counters.active_no_access_hris_no_access + counters.active_without_hris_role
    } else {
        counters.active_no_access
    };
    (blocked > 0).then(|| {
        ApiError::rule(
            "hris_blocked_by_members",
            Some("hrisEnabled"),
            if on {
                "every active member needs an hrisRole (rule 3), and none may be no_access with hris_no_access (rule 4); these block it"
            } else {
                "active members with role no_access need HRIS (rule 4)"
            },
        )
    })
}
