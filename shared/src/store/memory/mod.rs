//! An in-process store for unit tests of the handlers. It keeps the same refusals as the
//! DynamoDB store (email guard, idempotency key, HRIS state) under one lock; the real
//! conditions are proven against DynamoDB Local by the integration tests.

use super::{CreateMember, IdempotencyRecord, ListPage, Store, UpdateMember, UpdateOrganization};
use crate::error::ApiError;
use crate::model::*;
use crate::rules::counter_violation;
use std::collections::HashMap;
use std::sync::Mutex;

mod groups;

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
    pub roles: HashMap<(OrgId, CustomRoleId), CustomRole>,
    pub groups: HashMap<(OrgId, GroupId), Group>,
    /// SCIM lists' bookmarks: (organisation, query fingerprint, index) → position.
    pub bookmarks: std::collections::BTreeMap<(OrgId, String, usize), String>,
    /// Rate limit counts by organisation and window; organisations' own limits.
    pub rates: HashMap<(OrgId, i64), crate::ratelimit::RateTotals>,
    pub rate_limits: HashMap<OrgId, crate::ratelimit::Limits>,
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
    async fn rate_sync(
        &self,
        org: &OrgId,
        sync: &crate::ratelimit::RateSync,
    ) -> Result<crate::ratelimit::RateTotals, ApiError> {
        self.with(|s| {
            let counts = s.rates.entry((org.clone(), sync.window)).or_default();
            counts.total += sync.total;
            for (k, n) in &sync.keys {
                *counts.keys.entry(k.clone()).or_default() += n;
            }
            let mut totals = counts.clone();
            totals.limits = s.rate_limits.get(org).copied();
            Ok(totals)
        })
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, ApiError> {
        self.with(|s| Ok(s.keys.get(hash).cloned()))
    }

    async fn organization(&self, id: &OrgId) -> Result<Option<Organization>, ApiError> {
        self.with(|s| Ok(s.orgs.get(id).cloned().map(as_on_its_item)))
    }

    async fn counted_organization(&self, id: &OrgId) -> Result<Option<Organization>, ApiError> {
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
            if let Some(taken) = taken(s, &org_id, None, m) {
                return Err(taken);
            }
            let org = s.orgs.get_mut(&org_id).ok_or(ApiError::Internal)?;
            if org.hris_enabled != w.org.hris_enabled {
                return Err(ApiError::Conflict {
                    code: "organization_changed",
                    detail: String::new(),
                    field: None,
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
            org.counters = org.counters.plus(delta);
            if m.is_primary {
                org.primary_member_id = Some(m.id.clone());
            }
            if let Some(d) = &w.previous_primary {
                demote(s, d)?;
            }
            for (value, _) in m.identifiers() {
                s.emails.insert((org_id.clone(), value), m.id.clone());
            }
            s.members.insert((org_id, m.id.clone()), m.clone());
            s.audit.push(w.audit.clone());
            Ok(())
        })
    }

    async fn organization_and_idempotency(
        &self,
        org: &OrgId,
        key: Option<&str>,
    ) -> Result<(Option<Organization>, Option<IdempotencyRecord>), ApiError> {
        self.with(|s| {
            Ok((
                s.orgs.get(org).cloned().map(as_on_its_item),
                key.and_then(|k| s.idempotency.get(&(org.clone(), k.to_owned())).cloned()),
            ))
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
                s.orgs.get(org).cloned().map(as_on_its_item),
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
            if let Some(taken) = taken(s, &org_id, Some(before), after) {
                return Err(taken);
            }
            let org = s.orgs.get_mut(&org_id).ok_or(ApiError::Internal)?;
            let delta = after.counters().minus(before.counters());
            if let Some(violation) = counter_violation(org.counters, delta, org.hris_enabled) {
                return Err(violation);
            }
            if w.dry_run {
                return Ok(());
            }
            org.counters = org.counters.plus(delta);
            if after.is_primary && !before.is_primary {
                org.primary_member_id = Some(after.id.clone());
            }
            if let Some(d) = &w.previous_primary {
                demote(s, d)?;
            }
            for (value, _) in before.identifiers() {
                s.emails.remove(&(org_id.clone(), value));
            }
            for (value, _) in after.identifiers() {
                s.emails.insert((org_id.clone(), value), after.id.clone());
            }
            s.members.insert(key, after.clone());
            s.audit.push(w.audit.clone());
            Ok(())
        })
    }

    async fn member_by_email(
        &self,
        org: &OrgId,
        email: &Email,
    ) -> Result<Option<Member>, ApiError> {
        self.with(|s| {
            let id = s.emails.get(&(org.clone(), email.normalized())).cloned();
            Ok(id
                .and_then(|id| s.members.get(&(org.clone(), id)).cloned())
                .filter(|m| m.email.normalized() == email.normalized()))
        })
    }

    async fn member_by_user_name(
        &self,
        org: &OrgId,
        user_name: &str,
    ) -> Result<Option<Member>, ApiError> {
        let wanted = normalize_identifier(user_name);
        self.with(|s| {
            let id = s.emails.get(&(org.clone(), wanted.clone())).cloned();
            Ok(id
                .and_then(|id| s.members.get(&(org.clone(), id)).cloned())
                .filter(|m| normalize_identifier(m.user_name()) == wanted))
        })
    }

    async fn scim_bookmark(
        &self,
        org: &OrgId,
        fingerprint: &str,
        index: usize,
    ) -> Result<Option<(usize, String)>, ApiError> {
        self.with(|s| {
            Ok(s.bookmarks
                .range(
                    (org.clone(), fingerprint.to_owned(), 0)
                        ..=(org.clone(), fingerprint.to_owned(), index),
                )
                .next_back()
                .map(|((_, _, at), position)| (*at, position.clone())))
        })
    }

    async fn put_scim_bookmark(
        &self,
        org: &OrgId,
        fingerprint: &str,
        index: usize,
        position: &str,
    ) -> Result<(), ApiError> {
        self.with(|s| {
            s.bookmarks.insert(
                (org.clone(), fingerprint.to_owned(), index),
                position.to_owned(),
            );
            Ok(())
        })
    }

    async fn member_by_external_id(
        &self,
        org: &OrgId,
        external_id: &str,
    ) -> Result<Option<Member>, ApiError> {
        self.with(|s| {
            Ok(s.members
                .values()
                .find(|m| {
                    &m.organization_id == org && m.external_id.as_deref() == Some(external_id)
                })
                .cloned())
        })
    }

    async fn count_members(&self, org: &OrgId, q: &ListQuery) -> Result<Option<u64>, ApiError> {
        self.with(|s| {
            let n = s
                .members
                .values()
                .filter(|m| &m.organization_id == org && q.matches(m))
                .count() as u64;
            Ok((n <= super::COUNT_READ_CAP).then_some(n))
        })
    }

    async fn list_members(&self, org: &OrgId, q: &ListQuery) -> Result<ListPage, ApiError> {
        self.with(|s| {
            let mut members: Vec<Member> = s
                .members
                .values()
                .filter(|m| &m.organization_id == org && q.matches(m))
                .filter(|m| q.after.as_deref().is_none_or(|a| m.id.as_str() > a))
                .cloned()
                .collect();
            members.sort_by(|a, b| a.id.cmp(&b.id));
            let (members, next) = super::cut_page(members, q.limit, |m| m.id.to_string());
            Ok(ListPage {
                items_read: members.len(),
                calls: 1,
                positions: members.iter().map(|m| m.id.to_string()).collect(),
                read_units: 0.0,
                members,
                next,
            })
        })
    }

    async fn audit_events(
        &self,
        org: &OrgId,
        member: Option<&MemberId>,
        limit: usize,
        before: Option<&str>,
    ) -> Result<(Vec<AuditEvent>, Option<String>), ApiError> {
        self.with(|s| {
            let mut events: Vec<AuditEvent> = s
                .audit
                .iter()
                .filter(|e| &e.organization_id == org && e.member_id.as_ref() == member)
                .filter(|e| before.is_none_or(|b| e.id.as_str() < b))
                .cloned()
                .collect();
            events.sort_by(|a, b| b.id.cmp(&a.id));
            Ok(super::cut_page(events, limit, |e| e.id.to_string()))
        })
    }

    /// The organisation's entries in the order written are its feed (places from 1): the
    /// lock makes writing and placing one step here.
    async fn feed(
        &self,
        org: &OrgId,
        after: u64,
        limit: usize,
        types: &[String],
    ) -> Result<(Vec<super::FeedEntry>, bool), ApiError> {
        self.with(|s| {
            let mut out = Vec::new();
            let mut matched = 0;
            let feed = s.audit.iter().filter(|e| &e.organization_id == org);
            for (seq, e) in (1u64..).zip(feed).skip(after as usize) {
                let wanted = types.is_empty() || types.contains(&e.action);
                if matched == limit {
                    return Ok((out, true));
                }
                matched += wanted as usize;
                out.push(super::FeedEntry {
                    seq,
                    expired: false,
                    event: wanted.then(|| e.clone()),
                });
            }
            Ok((out, false))
        })
    }

    async fn feed_head(&self, org: &OrgId) -> Result<super::FeedHead, ApiError> {
        self.with(|s| {
            let last = s.audit.iter().filter(|e| &e.organization_id == org).count() as u64;
            Ok(super::FeedHead {
                last,
                epoch: (last > 0).then(|| format!("memory-{org}")),
            })
        })
    }

    async fn feed_place(&self, org: &OrgId, seq: u64) -> Result<super::PlaceState, ApiError> {
        self.with(|s| {
            let placed = s.audit.iter().filter(|e| &e.organization_id == org).count();
            Ok(match seq as usize <= placed && seq > 0 {
                true => super::PlaceState::Live,
                false => super::PlaceState::NotYet,
            })
        })
    }

    async fn update_organization(&self, w: &UpdateOrganization) -> Result<(), ApiError> {
        self.with(|s| {
            let org = s.orgs.get_mut(&w.after.id).ok_or(ApiError::NotFound)?;
            if org.version != w.before.version {
                return Err(if w.if_match {
                    ApiError::PreconditionFailed
                } else {
                    ApiError::UpdateInProgress
                });
            }
            if w.after.hris_enabled != org.hris_enabled {
                if let Some(refusal) =
                    crate::store::dynamo::hris_switch_refusal(&org.counters, w.after.hris_enabled)
                {
                    return Err(refusal);
                }
            }
            let counters = org.counters;
            *org = w.after.clone();
            org.counters = counters;
            s.audit.push(w.audit.clone());
            Ok(())
        })
    }

    async fn custom_roles(
        &self,
        org: &OrgId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<CustomRole>, Option<String>), ApiError> {
        self.with(|s| {
            let mut roles: Vec<CustomRole> = s
                .roles
                .values()
                .filter(|r| &r.organization_id == org)
                .filter(|r| after.is_none_or(|a| r.id.as_str() > a))
                .cloned()
                .collect();
            roles.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(super::cut_page(roles, limit, |r| r.id.to_string()))
        })
    }

    async fn custom_role(
        &self,
        org: &OrgId,
        id: &CustomRoleId,
    ) -> Result<Option<CustomRole>, ApiError> {
        self.with(|s| Ok(s.roles.get(&(org.clone(), id.clone())).cloned()))
    }

    async fn create_role(&self, role: &CustomRole, audit: &AuditEvent) -> Result<(), ApiError> {
        self.with(|s| {
            let skeleton = crate::text::role_name_skeleton(&role.name);
            let taken = s.roles.values().any(|r| {
                r.organization_id == role.organization_id
                    && crate::text::role_name_skeleton(&r.name) == skeleton
            });
            if taken {
                return Err(ApiError::Conflict {
                    code: "role_name_taken",
                    detail: String::new(),
                    field: Some("name"),
                });
            }
            s.roles.insert(
                (role.organization_id.clone(), role.id.clone()),
                role.clone(),
            );
            s.audit.push(audit.clone());
            Ok(())
        })
    }

    async fn delete_role(&self, role: &CustomRole, audit: &AuditEvent) -> Result<(), ApiError> {
        self.with(|s| {
            let key = (role.organization_id.clone(), role.id.clone());
            if !s.roles.contains_key(&key) {
                return Err(ApiError::NotFound);
            }
            let held = s
                .members
                .values()
                .any(|m| m.role == Role::Custom(role.id.clone()));
            if held {
                return Err(ApiError::Conflict {
                    code: "role_in_use",
                    detail: String::new(),
                    field: None,
                });
            }
            s.roles.remove(&key);
            s.audit.push(audit.clone());
            Ok(())
        })
    }

    async fn group(&self, org: &OrgId, id: &GroupId) -> Result<Option<Group>, ApiError> {
        self.with(|s| Ok(s.groups.get(&(org.clone(), id.clone())).cloned()))
    }

    async fn group_by_name(&self, org: &OrgId, name: &str) -> Result<Option<Group>, ApiError> {
        self.with(|s| Ok(groups::named(s, org, name, None).cloned()))
    }

    async fn groups(&self, org: &OrgId) -> Result<Vec<Group>, ApiError> {
        self.with(|s| Ok(groups::of(s, org)))
    }

    async fn group_members(&self, org: &OrgId, id: &GroupId) -> Result<Vec<Membership>, ApiError> {
        self.with(|s| Ok(groups::members(s, org, id)))
    }

    async fn members_by_ids(&self, org: &OrgId, ids: &[MemberId]) -> Result<Vec<Member>, ApiError> {
        self.with(|s| {
            Ok(ids
                .iter()
                .filter_map(|id| s.members.get(&(org.clone(), id.clone())).cloned())
                .collect())
        })
    }

    async fn create_group(&self, group: &Group, audit: &AuditEvent) -> Result<(), ApiError> {
        self.with(|s| groups::create(s, group, audit))
    }

    async fn update_group(
        &self,
        before: &Group,
        after: &Group,
        audit: &AuditEvent,
    ) -> Result<(), ApiError> {
        self.with(|s| groups::update(s, before, after, audit))
    }

    async fn touch_group(&self, group: &Group) -> Result<Group, ApiError> {
        self.with(|s| {
            let key = (group.organization_id.clone(), group.id.clone());
            let stored = s.groups.get_mut(&key).ok_or(ApiError::NotFound)?;
            stored.version += 1;
            stored.updated_at = group.updated_at;
            Ok(stored.clone())
        })
    }

    async fn delete_group(&self, group: &Group, audit: &AuditEvent) -> Result<(), ApiError> {
        self.with(|s| {
            let key = (group.organization_id.clone(), group.id.clone());
            match s.groups.get(&key) {
                None => return Err(ApiError::NotFound),
                Some(g) if g.version != group.version => return Err(ApiError::PreconditionFailed),
                Some(_) => {}
            }
            s.groups.remove(&key);
            s.audit.push(audit.clone());
            Ok(())
        })
    }
}

/// The previous primary's demotion, on the condition the store puts on it: still as read.
fn demote(s: &mut State, d: &crate::store::Demotion) -> Result<(), ApiError> {
    let key = (d.before.organization_id.clone(), d.before.id.clone());
    if s.members.get(&key) != Some(&d.before) {
        return Err(ApiError::Conflict {
            code: "organization_changed",
            detail: String::new(),
            field: None,
        });
    }
    s.members.insert(key, d.after.clone());
    s.audit.push(d.audit.clone());
    Ok(())
}

/// The organisation as DynamoDB's reads of its item give it: the sharded counts are not on
/// it (only `counted_organization` sums them).
fn as_on_its_item(mut org: Organization) -> Organization {
    org.counters = org.counters.guarded();
    org
}

/// The refusal of an identifier (email, SCIM userName) another member holds.
fn taken(s: &State, org: &OrgId, before: Option<&Member>, after: &Member) -> Option<ApiError> {
    let had = before.map(Member::identifiers).unwrap_or_default();
    after
        .identifiers()
        .into_iter()
        .filter(|(v, _)| !had.iter().any(|(h, _)| h == v))
        .find(|(v, _)| s.emails.contains_key(&(org.clone(), v.clone())))
        .map(|(_, kind)| match kind {
            Identifier::Email => ApiError::Conflict {
                code: "email_taken",
                detail: String::new(),
                field: Some("email"),
            },
            Identifier::UserName => ApiError::Conflict {
                code: "user_name_taken",
                detail: String::new(),
                field: Some("scimUserName"),
            },
        })
}
