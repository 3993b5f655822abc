//! The DynamoDB single-table store: the only module that uses `aws_sdk_dynamodb`.
//! Key design and access patterns: docs/design.md.
//!
//! By responsibility: `client` builds the SDK client, `keys` spells keys and index names,
//! `records` lays out the stored items, `tx` runs transactions, `errors` maps failures and
//! refused conditions to domain errors, `members` and `member_items` write members,
//! `queries` reads pages, `settings` writes organisation settings and custom roles, and
//! `admin` holds the operator's and the tests' operations, `recount` the operator's recount
//! of an organisation's counters.

mod admin;
mod bookmarks;
mod client;
mod deflated;
mod errors;
mod feed;
mod groups;
mod guards;
mod holders;
mod idempotency;
pub mod keys;
mod list_plan;
mod member_items;
mod members;
mod outbox;
mod queries;
mod rates;
mod records;
mod recount;
mod recount_roles;
mod refusals;
mod repair;
#[cfg(test)]
mod roundtrip;
mod settings;
mod shards;
mod tx;
mod webhooks;

pub use aws_sdk_dynamodb::types::AttributeValue;
pub use client::{https_client, lambda_identity, timeouts};
pub use errors::sdk_error;
pub use feed::FEED_SCAN_CAP;
pub use feed::{Chunk, Placing};
pub use idempotency::IDEMPOTENCY_TTL_SECONDS;
pub use keys::INDEXES;
pub use queries::READ_CAP;
pub use recount::{Recount, RecountOutcome, RECOUNT_ATTEMPTS};
pub use refusals::write_conflict;
pub use repair::{Outbox, Window};
pub use settings::hris_switch_refusal;
pub use shards::{shard_of, COUNTER_SHARDS};

use super::{CreateMember, IdempotencyRecord, Store, UpdateMember};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::Client;
use records::{from_item, ApiKeyRecord, MemberRecord, OrgRecord};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Item = HashMap<String, AttributeValue>;

/// The real store.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    key_cache: Option<KeyCache>,
}

/// Live API keys seen by this instance, kept for at most `ttl` (so a revoked key may work on
/// a warm instance for up to that long; unknown keys are never cached).
#[derive(Clone, Debug)]
struct KeyCache {
    ttl: Duration,
    keys: Arc<Mutex<HashMap<String, (ApiKey, Instant)>>>,
}

/// The longest an instance may keep using a key without looking it up again.
pub const MAX_KEY_CACHE: Duration = Duration::from_secs(60);

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            key_cache: None,
        }
    }

    /// Caches live API keys for `ttl` (at most [`MAX_KEY_CACHE`]; zero turns caching off).
    pub fn with_key_cache(mut self, ttl: Duration) -> Self {
        let ttl = ttl.min(MAX_KEY_CACHE);
        self.key_cache = (!ttl.is_zero()).then(|| KeyCache {
            ttl,
            keys: Arc::default(),
        });
        self
    }

    /// The store for `TABLE_NAME` (default `members`), caching API keys for
    /// `API_KEY_CACHE_SECONDS` (default and maximum 60; 0 turns the cache off).
    pub fn from_env() -> Result<Self, String> {
        let table = std::env::var("TABLE_NAME").unwrap_or_else(|_| "members".into());
        let ttl = std::env::var("API_KEY_CACHE_SECONDS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(MAX_KEY_CACHE, Duration::from_secs);
        Ok(DynamoStore::new(Self::lambda_client()?, table).with_key_cache(ttl))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An API key by the hash of its secret: from the cache while it is fresh, else read
    /// (and cached if live).
    async fn cached_api_key(&self, hash: &str) -> Result<Option<ApiKey>, ApiError> {
        if let Some(cache) = &self.key_cache {
            if let Ok(keys) = cache.keys.lock() {
                if let Some((key, at)) = keys.get(hash) {
                    if at.elapsed() < cache.ttl {
                        return Ok(Some(key.clone()));
                    }
                }
            }
        }
        let key = self
            .get::<ApiKeyRecord>(keys::api_key(hash))
            .await?
            .map(|r| r.key);
        if let (Some(cache), Some(key)) = (&self.key_cache, &key) {
            if key.revoked_at.is_none() {
                if let Ok(mut keys) = cache.keys.lock() {
                    keys.retain(|_, (_, at)| at.elapsed() < cache.ttl);
                    keys.insert(hash.to_owned(), (key.clone(), Instant::now()));
                }
            }
        }
        Ok(key)
    }

    /// The member a guard item points at, when it still holds what the guard guards (the
    /// guard and the member are written together, but a write can land between the two
    /// reads): two consistent GetItems.
    async fn member_by_guard(
        &self,
        org: &OrgId,
        guard: (String, String),
        holds: impl Fn(&Member) -> bool,
    ) -> Result<Option<Member>, ApiError> {
        let Some(guard) = self.get::<records::EmailGuardRecord>(guard).await? else {
            return Ok(None);
        };
        Ok(self
            .get::<MemberRecord>(keys::member(org, &guard.member_id))
            .await?
            .map(|r| r.member)
            .filter(|m| holds(m)))
    }

    /// One item, read consistently: DynamoDB's GetItem is eventually consistent unless
    /// asked, and these reads decide writes (the idempotency replay, the old primary, the
    /// organisation's version and HRIS state) or answer right after one (read your writes).
    /// Every item a Query gives, its pages (1 MB each) followed.
    async fn query_all(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, ApiError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = query
                .clone()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, key: (String, String)) -> Result<Option<T>, ApiError> {
        self.get_raw(key).await?.map(from_item).transpose()
    }

    /// [`get`](Self::get) as the item itself (its attributes as stored).
    async fn get_raw(&self, (pk, sk): (String, String)) -> Result<Option<Item>, ApiError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item)
    }
}

impl Store for DynamoStore {
    async fn rate_sync(
        &self,
        org: &OrgId,
        sync: &crate::ratelimit::RateSync,
    ) -> Result<crate::ratelimit::RateTotals, ApiError> {
        self.sync_rates(org, sync).await
    }

    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, ApiError> {
        self.cached_api_key(hash).await
    }

    async fn organization(&self, id: &OrgId) -> Result<Option<Organization>, ApiError> {
        Ok(self.get::<OrgRecord>(keys::org(id)).await?.map(|r| r.org))
    }

    async fn counted_organization(&self, id: &OrgId) -> Result<Option<Organization>, ApiError> {
        self.organization_with_shards(id).await
    }

    async fn member(&self, org: &OrgId, id: &MemberId) -> Result<Option<Member>, ApiError> {
        Ok(self
            .get::<MemberRecord>(keys::member(org, id))
            .await?
            .map(|r| r.member))
    }

    async fn idempotency_record(
        &self,
        org: &OrgId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, ApiError> {
        self.idempotency(org, key).await
    }

    async fn create_member(&self, w: &CreateMember) -> Result<(), ApiError> {
        self.insert_member(w).await
    }

    async fn list_members(
        &self,
        org: &OrgId,
        query: &ListQuery,
    ) -> Result<crate::store::ListPage, ApiError> {
        self.list(org, query).await
    }

    async fn member_by_email(
        &self,
        org: &OrgId,
        email: &Email,
    ) -> Result<Option<Member>, ApiError> {
        self.member_by_guard(org, keys::email(org, email), |m| {
            m.email.normalized() == email.normalized()
        })
        .await
    }

    async fn member_by_user_name(
        &self,
        org: &OrgId,
        user_name: &str,
    ) -> Result<Option<Member>, ApiError> {
        let wanted = normalize_identifier(user_name);
        self.member_by_guard(org, keys::identifier(org, &wanted), |m| {
            normalize_identifier(m.user_name()) == wanted
        })
        .await
    }

    async fn scim_bookmark(
        &self,
        org: &OrgId,
        fingerprint: &str,
        index: usize,
    ) -> Result<Option<(usize, String)>, ApiError> {
        self.nearest_bookmark(org, fingerprint, index).await
    }

    async fn put_scim_bookmark(
        &self,
        org: &OrgId,
        fingerprint: &str,
        index: usize,
        position: &str,
    ) -> Result<(), ApiError> {
        self.put_bookmark(org, fingerprint, index, position).await
    }

    async fn member_by_external_id(
        &self,
        org: &OrgId,
        external_id: &str,
    ) -> Result<Option<Member>, ApiError> {
        self.member_by_guard(org, keys::external_id(org, external_id), |m| {
            m.external_id.as_deref() == Some(external_id)
        })
        .await
    }

    async fn count_members(&self, org: &OrgId, query: &ListQuery) -> Result<Option<u64>, ApiError> {
        self.count(org, query).await
    }

    async fn audit_events(
        &self,
        org: &OrgId,
        member: Option<&MemberId>,
        limit: usize,
        before: Option<&str>,
    ) -> Result<(Vec<AuditEvent>, Option<String>), ApiError> {
        self.audit_page(org, member, limit, before).await
    }

    async fn feed(
        &self,
        org: &OrgId,
        after: u64,
        limit: usize,
        types: &[String],
    ) -> Result<(Vec<crate::store::FeedEntry>, bool), ApiError> {
        self.feed_page(org, after, limit, types).await
    }

    async fn feed_head(&self, org: &OrgId) -> Result<crate::store::FeedHead, ApiError> {
        self.head(org).await
    }

    async fn feed_place(
        &self,
        org: &OrgId,
        seq: u64,
    ) -> Result<crate::store::PlaceState, ApiError> {
        self.place_state(org, seq).await
    }

    async fn update_organization(
        &self,
        write: &crate::store::UpdateOrganization,
    ) -> Result<(), ApiError> {
        self.write_organization(write).await
    }

    async fn custom_roles(
        &self,
        org: &OrgId,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<CustomRole>, Option<String>), ApiError> {
        self.roles(org, limit, after).await
    }

    async fn custom_role(
        &self,
        org: &OrgId,
        id: &CustomRoleId,
    ) -> Result<Option<CustomRole>, ApiError> {
        self.counted_role(org, id).await
    }

    async fn create_role(&self, role: &CustomRole, audit: &AuditEvent) -> Result<(), ApiError> {
        self.insert_role(role, audit).await
    }

    async fn delete_role(&self, role: &CustomRole, audit: &AuditEvent) -> Result<(), ApiError> {
        self.remove_role(role, audit).await
    }

    async fn organization_and_idempotency(
        &self,
        org: &OrgId,
        key: Option<&str>,
    ) -> Result<(Option<Organization>, Option<IdempotencyRecord>), ApiError> {
        self.org_with_idempotency(org, key).await
    }

    async fn member_and_org(
        &self,
        org: &OrgId,
        id: &MemberId,
    ) -> Result<(Option<Member>, Option<Organization>), ApiError> {
        self.member_with_org(org, id).await
    }

    async fn update_member(&self, w: &UpdateMember) -> Result<(), ApiError> {
        self.write_member(w).await
    }

    async fn group(&self, org: &OrgId, id: &GroupId) -> Result<Option<Group>, ApiError> {
        self.group_item(org, id).await
    }

    async fn group_by_name(&self, org: &OrgId, name: &str) -> Result<Option<Group>, ApiError> {
        self.group_named(org, name).await
    }

    async fn groups(&self, org: &OrgId) -> Result<Vec<Group>, ApiError> {
        self.all_groups(org).await
    }

    async fn group_members(&self, org: &OrgId, id: &GroupId) -> Result<Vec<Membership>, ApiError> {
        self.memberships(org, id).await
    }

    async fn members_by_ids(&self, org: &OrgId, ids: &[MemberId]) -> Result<Vec<Member>, ApiError> {
        self.members_of_ids(org, ids).await
    }

    async fn create_group(&self, group: &Group, audit: &AuditEvent) -> Result<(), ApiError> {
        self.insert_group(group, audit).await
    }

    async fn update_group(
        &self,
        before: &Group,
        after: &Group,
        audit: &AuditEvent,
    ) -> Result<(), ApiError> {
        self.write_group(before, after, audit).await
    }

    async fn touch_group(&self, group: &Group) -> Result<Group, ApiError> {
        self.touch_group_item(group).await
    }

    async fn delete_group(&self, group: &Group, audit: &AuditEvent) -> Result<(), ApiError> {
        self.remove_group(group, audit).await
    }
}
