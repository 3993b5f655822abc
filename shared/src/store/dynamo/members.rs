//! Member writes and their reads: the create and update transactions, a member read
//! together with its organisation, and a create's idempotency record.

use super::guards::guard_of;
use super::holders::move_holders;
use super::idempotency::IdempotencyItem;
use super::member_items::{demote_primary, hashed, holder_deltas, org_items, update_items};
use super::outbox::audit_item;
use super::records::{
    external_id_guard, from_item, identifier_guard, location_records, MemberRecord, OrgRecord,
};
use super::refusals::{refusal, update_refusal, write_conflict};
use super::tx::{put, put_item, put_unless_live, Guarded, TxFailure};
use super::{keys, DynamoStore};
use crate::error::ApiError;
use crate::model::*;
use crate::store::{CreateMember, IdempotencyRecord, UpdateMember};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};

impl DynamoStore {
    pub(super) async fn idempotency(
        &self,
        org: &OrgId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, ApiError> {
        let found = self
            .get::<IdempotencyItem>(keys::idempotency(org, key))
            .await?;
        let now = Timestamp::now().unix_seconds();
        // TTL deletion is lazy: an expired record is treated as gone.
        found
            .filter(|item| item.expires_at > now)
            .map(IdempotencyItem::into_record)
            .transpose()
    }

    /// The organisation and, with a key, the create's idempotency record, in one consistent
    /// BatchGetItem (both decide the create). An expired record reads as absent.
    pub(super) async fn org_with_idempotency(
        &self,
        org: &OrgId,
        key: Option<&str>,
    ) -> Result<(Option<Organization>, Option<IdempotencyRecord>), ApiError> {
        let mut wanted = vec![keys::org(org)];
        wanted.extend(key.map(|k| keys::idempotency(org, k)));
        let (mut organization, mut record) = (None, None);
        for item in self.batch_get(&wanted).await?.0 {
            match item.get("SK") {
                Some(AttributeValue::S(sk)) if sk == "IDEMPOTENCY" => {
                    let found = from_item::<IdempotencyItem>(item)?;
                    let now = Timestamp::now().unix_seconds();
                    if found.expires_at > now {
                        record = Some(found.into_record()?);
                    }
                }
                _ => organization = Some(from_item::<OrgRecord>(item)?.org),
            }
        }
        Ok((organization, record))
    }

    /// The items of a create; the custom roles in `on_item` are counted on their items.
    fn create_items(
        &self,
        w: &CreateMember,
        on_item: &[CustomRoleId],
    ) -> Result<Vec<(Guarded, TransactWriteItem)>, ApiError> {
        let t = &self.table;
        let m = &w.member;
        hashed(m)?;
        let mut items = vec![(Guarded::NewMember, put_item(t, MemberRecord::item(m)?)?)];
        for (value, kind) in m.identifiers() {
            items.push((guard_of(kind), put(t, &identifier_guard(m, &value))?));
        }
        items.push((Guarded::Audit, put_item(t, audit_item(&w.audit)?)?));
        items.extend(org_items(t, &w.org, None, m, false)?);
        if let Some(guard) = external_id_guard(m) {
            items.push((Guarded::ExternalIdGuard, put(t, &guard)?));
        }
        for (role, delta) in holder_deltas(None, m) {
            let legacy = on_item.contains(&role);
            items.push((
                Guarded::CustomRole,
                move_holders(t, &m.organization_id, &role, &m.id, delta, legacy, false)?,
            ));
        }
        if let Some(demotion) = &w.previous_primary {
            items.push((
                Guarded::PreviousPrimary,
                demote_primary(t, demotion, false)?,
            ));
            items.push((Guarded::Audit, put_item(t, audit_item(&demotion.audit)?)?));
        }
        if let Some(record) = &w.idempotency {
            let item = IdempotencyItem::new(record)?;
            // An expired record (TTL deletes lazily, within days) no longer holds its key.
            let now = Timestamp::now().unix_seconds();
            items.push((Guarded::Idempotency, put_unless_live(t, &item, now)?));
        }
        for location in location_records(m) {
            items.push((Guarded::Location, put(t, &location)?));
        }
        Ok(items)
    }

    pub(super) async fn insert_member(&self, w: &CreateMember) -> Result<(), ApiError> {
        let m = &w.member;
        let roles = holder_deltas(None, m);
        self.transact_for_roles(&m.organization_id, &roles, write_conflict, |on_item| {
            self.create_items(w, on_item)
        })
        .await
        .map_err(|failure| match failure {
            TxFailure::Error(e) => e,
            TxFailure::Refused(failed) => {
                // A retry that lost to its own first attempt also fails the email guard: the
                // idempotency record speaks first, so the caller can answer as the first time.
                let first = failed
                    .iter()
                    .find(|(g, _)| *g == Guarded::Idempotency)
                    .or(failed.first());
                first.map_or(ApiError::Internal, |(g, _)| refusal(*g))
            }
        })
    }

    pub(super) async fn member_with_org(
        &self,
        org: &OrgId,
        id: &MemberId,
    ) -> Result<(Option<Member>, Option<Organization>), ApiError> {
        let (mut member, mut organization) = (None, None);
        for item in self
            .batch_get(&[keys::member(org, id), keys::org(org)])
            .await?
            .0
        {
            match item.get("SK") {
                Some(AttributeValue::S(sk)) if sk == "MEMBER" => {
                    member = Some(from_item::<MemberRecord>(item)?.member)
                }
                _ => organization = Some(from_item::<OrgRecord>(item)?.org),
            }
        }
        Ok((member, organization))
    }

    pub(super) async fn write_member(&self, w: &UpdateMember) -> Result<(), ApiError> {
        let roles = holder_deltas(Some(&w.before), &w.after);
        let in_progress = || ApiError::UpdateInProgress;
        self.transact_for_roles(&w.after.organization_id, &roles, in_progress, |on_item| {
            update_items(&self.table, w, on_item)
        })
        .await
        .map_err(|failure| match failure {
            TxFailure::Error(e) => e,
            TxFailure::Refused(failed) => {
                let refusal = update_refusal(w, failed);
                // Tells a race decided by DynamoDB from one decided by the read before it.
                tracing::info!(
                    code = refusal.code(),
                    "write refused by a DynamoDB condition"
                );
                refusal
            }
        })
    }

    /// A member write's transaction (`items` builds it, given the custom roles counted on
    /// their items): written again, once, with the roles of an older version counted on
    /// their items when a refusal shows their holder shard missing.
    async fn transact_for_roles(
        &self,
        org: &OrgId,
        roles: &[(CustomRoleId, (i64, i64))],
        on_conflict: fn() -> ApiError,
        items: impl Fn(&[CustomRoleId]) -> Result<Vec<(Guarded, TransactWriteItem)>, ApiError>,
    ) -> Result<(), TxFailure> {
        let roles: Vec<CustomRoleId> = roles.iter().map(|(r, _)| r.clone()).collect();
        // A role moved into holder shards (`membersctl recount`) between the two writes
        // refuses the second: the write starts again, on the shards. A role moves once.
        for _ in 0..3 {
            let outcome = self
                .transact(items(&[]).map_err(TxFailure::Error)?, on_conflict)
                .await;
            let Err(TxFailure::Refused(failed)) = &outcome else {
                return outcome;
            };
            let on_item = self
                .roles_counted_on_item(org, failed, &roles)
                .await
                .map_err(TxFailure::Error)?;
            if on_item.is_empty() {
                return outcome;
            }
            let outcome = self
                .transact(items(&on_item).map_err(TxFailure::Error)?, on_conflict)
                .await;
            match &outcome {
                Err(TxFailure::Refused(failed)) if moved_into_shards(failed) => continue,
                _ => return outcome,
            }
        }
        // Moved three times under this write: cannot happen (a role moves once); a conflict.
        Err(TxFailure::Error(on_conflict()))
    }

    /// Of `roles`, those of an older version (counted on their items, no holder shards),
    /// when a refusal shows a holder shard missing; empty otherwise (a shard that is not
    /// there for a role that is not there either: the role does not exist).
    async fn roles_counted_on_item(
        &self,
        org: &OrgId,
        failed: &[(Guarded, Option<super::Item>)],
        roles: &[CustomRoleId],
    ) -> Result<Vec<CustomRoleId>, ApiError> {
        let missing_shard = failed.iter().any(|(g, old)| {
            matches!(g, Guarded::CustomRole | Guarded::OldCustomRole) && old.is_none()
        });
        let mut out = Vec::new();
        if !missing_shard {
            return Ok(out);
        }
        for role in roles {
            if self
                .role_item(org, role)
                .await?
                .is_some_and(|r| r.holder_shards == 0)
            {
                out.push(role.clone());
            }
        }
        Ok(out)
    }
}

/// Whether a refusal shows a role item that has holder shards now: moved by the recount
/// after this write read it as a role of an older version.
fn moved_into_shards(failed: &[(Guarded, Option<super::Item>)]) -> bool {
    failed.iter().any(|(g, old)| {
        matches!(g, Guarded::CustomRole | Guarded::OldCustomRole)
            && old.as_ref().is_some_and(
                |item| matches!(item.get("holderShards"), Some(AttributeValue::N(n)) if n != "0"),
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_shows_a_role_moved_into_shards_only_by_its_item() {
        let role_item = |shards: Option<&str>| {
            let mut item = super::super::Item::new();
            item.insert("PK".into(), AttributeValue::S("ORG#o#ROLE#rol_a".into()));
            if let Some(n) = shards {
                item.insert("holderShards".into(), AttributeValue::N(n.into()));
            }
            item
        };
        let moved = [(Guarded::CustomRole, Some(role_item(Some("32"))))];
        assert!(moved_into_shards(&moved));
        let old = [(Guarded::OldCustomRole, Some(role_item(Some("32"))))];
        assert!(moved_into_shards(&old));
        // Still of the older version, deleted, or another item refused: not a move.
        for failed in [
            vec![(Guarded::CustomRole, Some(role_item(None)))],
            vec![(Guarded::CustomRole, Some(role_item(Some("0"))))],
            vec![(Guarded::CustomRole, None)],
            vec![(Guarded::EmailGuard, Some(role_item(Some("32"))))],
        ] {
            assert!(!moved_into_shards(&failed), "{failed:?}");
        }
    }
}
