//! An in-process store for unit tests of the handlers. It keeps the same refusals as the
//! DynamoDB store (email guard, idempotency key, HRIS state) under one lock; the real
//! conditions are proven against DynamoDB Local by the integration tests.

use super::{CreateMember, IdempotencyRecord, Store, UpdateMember};
use crate::error::ApiError;
use crate::model::*;
use crate::rules::counter_violation;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    pub state: Mutex<State>,
}

#[derive(Default)]
pub struct State {
    pub keys: HashMap<String, ApiKey>,
    pub orgs: HashMap<OrgId, Organization>,
    pub members: HashMap<(OrgId, MemberId), Member>,
    pub emails: HashMap<(OrgId, String), MemberId>,
    pub idempotency: HashMap<(OrgId, String), IdempotencyRecord>,
    pub audit: Vec<AuditEvent>,
    /// When set, every call fails as if DynamoDB were unreachable.
    pub unavailable: bool,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut state = self.state.lock().map_err(|_| ApiError::Internal)?;
        if state.unavailable {
            return Err(ApiError::Unavailable {
                retry_after_seconds: 1,
            });
        }
        f(&mut state)
    }
}

impl Store for MemoryStore {
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, ApiError> {
        self.with(|s| Ok(s.keys.get(hash).cloned()))
    }

    async fn organization(&self, id: &OrgId) -> Result<Option<Organization>, ApiError> {
        self.with(|s| Ok(s.orgs.get(id).cloned()))
    }

    async fn member(&self, org: &OrgId, id: &MemberId) -> Result<Option<Member>, ApiError> {
        self.with(|s| Ok(s.members.get(&(org.clone(), id.clone())).cloned()))
    }

    async fn idempotency_record(
        &self,
        org: &OrgId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, ApiError> {
        self.with(|s| Ok(s.idempotency.get(&(org.clone(), key.to_owned())).cloned()))
    }

    async fn create_member(&self, w: &CreateMember) -> Result<(), ApiError> {
        self.with(|s| {
            let m = &w.member;
            let org_id = m.organization_id.clone();
            let org = s.orgs.get_mut(&org_id).ok_or(ApiError::Internal)?;
            if org.hris_enabled != w.org.hris_enabled {
                return Err(ApiError::Conflict {
                    code: "organization_changed",
                    detail: String::new(),
                    field: None,
                });
            }
            let email = (org_id.clone(), m.email.normalized());
            if s.emails.contains_key(&email) {
                return Err(ApiError::Conflict {
                    code: "email_taken",
                    detail: String::new(),
                    field: Some("email"),
                });
            }
            if let Some(record) = &w.idempotency {
                if s.idempotency
                    .contains_key(&(org_id.clone(), record.key.clone()))
                {
                    return Err(ApiError::Conflict {
                        code: "idempotency_conflict",
                        detail: String::new(),
                        field: None,
                    });
                }
                s.idempotency
                    .insert((org_id.clone(), record.key.clone()), record.clone());
            }
            let delta = m.counters();
            org.counters.active_admins += delta.active_admins;
            org.counters.active_hris_admins += delta.active_hris_admins;
            org.counters.active_dual_admins += delta.active_dual_admins;
            if m.is_primary {
                org.primary_member_id = Some(m.id.clone());
            }
            if let Some((previous, event)) = &w.previous_primary {
                if let Some(p) = s.members.get_mut(&(org_id.clone(), previous.clone())) {
                    p.is_primary = false;
                    p.version += 1;
                }
                s.audit.push(event.clone());
            }
            s.emails.insert(email, m.id.clone());
            s.members.insert((org_id, m.id.clone()), m.clone());
            s.audit.push(w.audit.clone());
            Ok(())
        })
    }

    async fn member_and_org(
        &self,
        org: &OrgId,
        id: &MemberId,
    ) -> Result<(Option<Member>, Option<Organization>), ApiError> {
        self.with(|s| {
            Ok((
                s.members.get(&(org.clone(), id.clone())).cloned(),
                s.orgs.get(org).cloned(),
            ))
        })
    }

    async fn update_member(&self, w: &UpdateMember) -> Result<(), ApiError> {
        self.with(|s| {
            let (before, after) = (&w.before, &w.after);
            let org_id = after.organization_id.clone();
            let key = (org_id.clone(), after.id.clone());
            let current = s.members.get(&key).ok_or(ApiError::NotFound)?;
            if current.version != before.version {
                return Err(if w.if_match {
                    ApiError::PreconditionFailed
                } else {
                    ApiError::UpdateInProgress
                });
            }
            let new_email = (org_id.clone(), after.email.normalized());
            if before.email.normalized() != after.email.normalized()
                && s.emails.contains_key(&new_email)
            {
                return Err(ApiError::Conflict {
                    code: "email_taken",
                    detail: String::new(),
                    field: Some("email"),
                });
            }
            let org = s.orgs.get_mut(&org_id).ok_or(ApiError::Internal)?;
            let delta = after.counters().minus(before.counters());
            if let Some(violation) = counter_violation(org.counters, delta, org.hris_enabled) {
                return Err(violation);
            }
            if w.dry_run {
                return Ok(());
            }
            org.counters.active_admins += delta.active_admins;
            org.counters.active_hris_admins += delta.active_hris_admins;
            org.counters.active_dual_admins += delta.active_dual_admins;
            if after.is_primary && !before.is_primary {
                org.primary_member_id = Some(after.id.clone());
            }
            if let Some((previous, event)) = &w.previous_primary {
                if let Some(p) = s.members.get_mut(&(org_id.clone(), previous.clone())) {
                    p.is_primary = false;
                    p.version += 1;
                }
                s.audit.push(event.clone());
            }
            s.emails
                .remove(&(org_id.clone(), before.email.normalized()));
            s.emails.insert(new_email, after.id.clone());
            s.members.insert(key, after.clone());
            s.audit.push(w.audit.clone());
            Ok(())
        })
    }
}
