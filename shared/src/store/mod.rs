//! The storage port. Handlers take `&impl Store`; `dynamo` is the real implementation (the
//! only module that speaks DynamoDB), `memory` an in-process one for unit tests.

pub mod dynamo;
#[cfg(test)]
pub mod memory;

use crate::error::ApiError;
use crate::model::*;
use serde::{Deserialize, Serialize};
use std::future::Future;

pub use dynamo::DynamoStore;

/// Another request was writing the same data: 409 `write_conflict`, nothing written.
pub fn write_conflict() -> ApiError {
    dynamo::write_conflict()
}

/// The previous primary member stops being primary: written like any member update (the
/// whole member with its index keys, conditioned on the version read, and while it is still
/// the active primary), with its event built from what is written.
#[derive(Debug, Clone)]
pub struct Demotion {
    pub before: Member,
    /// `before` with `isPrimary` false, `version + 1`, `updatedAt` now.
    pub after: Member,
    pub audit: AuditEvent,
}

/// A create, as one all-or-nothing write: the member, its email guard, the organisation's
/// counters, the audit event and, optionally, the primary handover and the idempotency record.
#[derive(Debug, Clone)]
pub struct CreateMember {
    pub member: Member,
    pub audit: AuditEvent,
    /// The organisation as read before the write: the write is conditional on its HRIS state
    /// and its current primary member.
    pub org: Organization,
    /// Set when the new member takes over as primary from this one.
    pub previous_primary: Option<Demotion>,
    pub idempotency: Option<IdempotencyRecord>,
}

/// An update of one member, as one all-or-nothing write conditioned on the version read:
/// the member, its email guard (moved on an email change), the organisation's counters
/// (conditioned so that no rule breaks), the primary handover, locations and the audit event.
#[derive(Debug, Clone)]
pub struct UpdateMember {
    pub before: Member,
    /// `version` is `before.version + 1`.
    pub after: Member,
    /// The organisation as read with the member.
    pub org: Organization,
    pub audit: AuditEvent,
    pub previous_primary: Option<Demotion>,
    /// The client sent `If-Match`: losing the version race is then 412, not 422.
    pub if_match: bool,
    /// Evaluate every condition in one transaction of condition checks; write nothing.
    pub dry_run: bool,
}

/// The most members a count reads (about 40 Query calls of 1 MB): past it, a count would
/// not fit in a request's time, and the caller narrows its query.
pub const COUNT_READ_CAP: u64 = 20_000;

/// One page of a member list, with what it cost (for benchmarks and logs).
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub members: Vec<Member>,
    /// Each member's sort position, in the same order: what a cursor continues after.
    pub positions: Vec<String>,
    /// The sort position to continue after, when there is more.
    pub next: Option<String>,
    /// Items DynamoDB read (scanned count) to make this page.
    pub items_read: usize,
    /// DynamoDB calls made.
    pub calls: usize,
    /// Read capacity units those calls consumed (as DynamoDB reports them).
    pub read_units: f64,
}

impl ListPage {
    /// Keeps the first `n` members; when that leaves any out, the page continues after the
    /// last one kept.
    pub fn keep(&mut self, n: usize) {
        if n < self.members.len() {
            self.members.truncate(n);
            self.positions.truncate(n);
            self.next = self.positions.last().cloned().or(self.next.take());
        }
    }
}

/// A page of items read one past `limit`: the first `limit`, and when there were more, the
/// cursor to continue after (the last kept item's `cursor`).
pub(crate) fn cut_page<T>(
    mut items: Vec<T>,
    limit: usize,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more { items.last().map(cursor) } else { None };
    (items, next)
}

/// A change of the organisation's settings, with its audit event.
#[derive(Debug, Clone)]
pub struct UpdateOrganization {
    pub before: Organization,
    /// `version` is `before.version + 1`.
    pub after: Organization,
    pub audit: AuditEvent,
    pub if_match: bool,
}

/// A stored response to a create with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    pub organization_id: OrgId,
    pub key: String,
    /// SHA-256 of the request body: a retry must send the same one.
    pub request_hash: String,
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub created_at: Timestamp,
}

/// What a new organisation starts with: itself, its first admin and that admin's audit event.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub org: Organization,
    pub admin: Member,
    pub audit: AuditEvent,
}

/// An API key with the SHA-256 it is found by.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key: ApiKey,
    pub hash: String,
}

/// Everything the handlers need from storage. Every write is conditional; every method that
/// can be refused by a rule returns the matching [`ApiError`].
/// One place of an organisation's event feed, as a read found it.
#[derive(Clone, Debug)]
pub struct FeedEntry {
    pub seq: u64,
    /// Past its retention (TTL deletes lazily, so a read may still find it).
    pub expired: bool,
    /// The event's outbox entry when it is live and of a type asked for.
    pub event: Option<AuditEvent>,
}

/// Where an organisation's feed stands: its last place, and its epoch (set with its
/// counter: a re-created feed has another; `None` while the feed has no counter).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedHead {
    pub last: u64,
    pub epoch: Option<String>,
}

/// A feed place a read did not see, looked up on its own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PlaceState {
    /// Not given yet.
    NotYet,
    /// There and live (a read that missed it ran while its transaction committed).
    Live,
    /// Given, then expired or deleted by the retention.
    Gone,
}

pub trait Store: Send + Sync {
    /// Adds `sync`'s requests to the organisation's counts of its window (one shard), and
    /// answers the window's counts, every shard summed, with the organisation's own limits
    /// (`ratelimit`).
    fn rate_sync(
        &self,
        org: &OrgId,
        sync: &crate::ratelimit::RateSync,
    ) -> impl Future<Output = Result<crate::ratelimit::RateTotals, ApiError>> + Send;
    fn api_key_by_hash(
        &self,
        hash: &str,
    ) -> impl Future<Output = Result<Option<ApiKey>, ApiError>> + Send;
    /// The organisation, with only the counts a member write's rules guard (admins, HRIS
    /// admins, dual admins); the others read 0 here (see `counted_organization`).
    fn organization(
        &self,
        id: &OrgId,
    ) -> impl Future<Output = Result<Option<Organization>, ApiError>> + Send;
    /// The organisation with every count (in DynamoDB, its counter shards summed: one call
    /// more), for the answers that show counts and the HRIS switch's rules.
    fn counted_organization(
        &self,
        id: &OrgId,
    ) -> impl Future<Output = Result<Option<Organization>, ApiError>> + Send;
    fn member(
        &self,
        org: &OrgId,
        id: &MemberId,
    ) -> impl Future<Output = Result<Option<Member>, ApiError>> + Send;
    fn idempotency_record(
        &self,
        org: &OrgId,
        key: &str,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, ApiError>> + Send;
    /// The organisation and, when `key` is given, the live idempotency record of a create
    /// under that key, in one consistent read.
    fn organization_and_idempotency(
        &self,
        org: &OrgId,
        key: Option<&str>,
    ) -> impl Future<Output = Result<(Option<Organization>, Option<IdempotencyRecord>), ApiError>> + Send;
    /// The member and its organisation, in one consistent read.
    fn member_and_org(
        &self,
        org: &OrgId,
        id: &MemberId,
    ) -> impl Future<Output = Result<(Option<Member>, Option<Organization>), ApiError>> + Send;
    /// Writes an update atomically (or, with `dry_run`, only checks it). Refusals:
    /// `member_update_in_progress`, `precondition_failed`, `email_taken`, `last_admin`,
    /// `last_hris_admin`, `last_admin_hris_admin`, `organization_changed`, `unknown_role`.
    fn update_member(
        &self,
        write: &UpdateMember,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// One page of the organisation's members matching the query, in a stable order.
    fn list_members(
        &self,
        org: &OrgId,
        query: &ListQuery,
    ) -> impl Future<Output = Result<ListPage, ApiError>> + Send;
    /// The member holding an email address (its guard, then the member; consistent).
    fn member_by_email(
        &self,
        org: &OrgId,
        email: &Email,
    ) -> impl Future<Output = Result<Option<Member>, ApiError>> + Send;
    /// The member whose SCIM `userName` this is, case-insensitively (the identifier guard,
    /// then the member; consistent). A member without one answers to its email.
    fn member_by_user_name(
        &self,
        org: &OrgId,
        user_name: &str,
    ) -> impl Future<Output = Result<Option<Member>, ApiError>> + Send;
    /// The bookmark of a SCIM list (`fingerprint`: its query) nearest at or below the
    /// 1-based `index`: (its index, the sort position users from there follow).
    fn scim_bookmark(
        &self,
        org: &OrgId,
        fingerprint: &str,
        index: usize,
    ) -> impl Future<Output = Result<Option<(usize, String)>, ApiError>> + Send;
    /// Leaves a bookmark: the users of a SCIM list from `index` on follow `position`.
    fn put_scim_bookmark(
        &self,
        org: &OrgId,
        fingerprint: &str,
        index: usize,
        position: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// The member holding a SCIM `externalId` (its guard, then the member; consistent).
    fn member_by_external_id(
        &self,
        org: &OrgId,
        external_id: &str,
    ) -> impl Future<Output = Result<Option<Member>, ApiError>> + Send;
    /// How many members match `query` (its `email`, `limit` and `after` aside), counted by
    /// the index `list_members` would read: for SCIM's `totalResults` where no counter of
    /// the organisation gives it (`meta.lastModified`). Costs one read unit per 4 KB of
    /// members read (DynamoDB counts what it reads), in 1 MB steps; `None` when that would
    /// mean reading more than [`COUNT_READ_CAP`] members.
    fn count_members(
        &self,
        org: &OrgId,
        query: &ListQuery,
    ) -> impl Future<Output = Result<Option<u64>, ApiError>> + Send;
    /// A member's (or, with `None`, the organisation's) history, newest first: at most
    /// `limit` events older than the event id `before`, and the id to continue from.
    fn audit_events(
        &self,
        org: &OrgId,
        member: Option<&MemberId>,
        limit: usize,
        before: Option<&str>,
    ) -> impl Future<Output = Result<(Vec<AuditEvent>, Option<String>), ApiError>> + Send;
    /// The organisation's event feed after place `after`, oldest first: each place read
    /// (matching `types` or not; empty: all), with at most `limit` live matches, and
    /// whether the feed goes on.
    fn feed(
        &self,
        org: &OrgId,
        after: u64,
        limit: usize,
        types: &[String],
    ) -> impl Future<Output = Result<(Vec<FeedEntry>, bool), ApiError>> + Send;
    /// The feed's last place and epoch (one consistent read of its counter).
    fn feed_head(&self, org: &OrgId) -> impl Future<Output = Result<FeedHead, ApiError>> + Send;
    /// Whether place `seq` of the organisation's feed is live, gone, or not given yet.
    fn feed_place(
        &self,
        org: &OrgId,
        seq: u64,
    ) -> impl Future<Output = Result<PlaceState, ApiError>> + Send;
    /// Writes new settings, conditioned on the version read and, when HRIS is switched, on
    /// the counters rule 3 and 4 need. Refusals: `precondition_failed`,
    /// `organization_changed`, `hris_requires_admin_hris_admin`, `hris_blocked_by_members`.
    fn update_organization(
        &self,
        write: &UpdateOrganization,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// At most `limit` of the organisation's custom roles after the role id `after`, oldest
    /// first, and the id to continue after when there are more.
    fn custom_roles(
        &self,
        org: &OrgId,
        limit: usize,
        after: Option<&str>,
    ) -> impl Future<Output = Result<(Vec<CustomRole>, Option<String>), ApiError>> + Send;
    fn custom_role(
        &self,
        org: &OrgId,
        id: &CustomRoleId,
    ) -> impl Future<Output = Result<Option<CustomRole>, ApiError>> + Send;
    /// Writes the role with its audit event. Refusal: `role_name_taken` (names are unique
    /// per organisation by confusable skeleton).
    fn create_role(
        &self,
        role: &CustomRole,
        audit: &AuditEvent,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Deletes the role with its audit event. Refusals: `role_in_use` while a member, active
    /// or not, holds it (race-proof: see design.md); 404 when it is already gone.
    fn delete_role(
        &self,
        role: &CustomRole,
        audit: &AuditEvent,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// A SCIM group (consistent).
    fn group(
        &self,
        org: &OrgId,
        id: &GroupId,
    ) -> impl Future<Output = Result<Option<Group>, ApiError>> + Send;
    /// The group with this `displayName`, case-insensitively (its guard, then the group).
    fn group_by_name(
        &self,
        org: &OrgId,
        name: &str,
    ) -> impl Future<Output = Result<Option<Group>, ApiError>> + Send;
    /// Every group of the organisation, oldest first.
    fn groups(&self, org: &OrgId) -> impl Future<Output = Result<Vec<Group>, ApiError>> + Send;
    /// A group's members, by member id (consistent).
    fn group_members(
        &self,
        org: &OrgId,
        id: &GroupId,
    ) -> impl Future<Output = Result<Vec<Membership>, ApiError>> + Send;
    /// The members among `ids` that exist, in no order (consistent).
    fn members_by_ids(
        &self,
        org: &OrgId,
        ids: &[MemberId],
    ) -> impl Future<Output = Result<Vec<Member>, ApiError>> + Send;
    /// Writes a new group with its audit event. Refusal: `group_name_taken`.
    fn create_group(
        &self,
        group: &Group,
        audit: &AuditEvent,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Writes a group's new version, conditioned on `before.version`. Refusals:
    /// `group_name_taken`, `precondition_failed`, 404.
    fn update_group(
        &self,
        before: &Group,
        after: &Group,
        audit: &AuditEvent,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// A change of a group's members alone: its version moves by one, `updatedAt` becomes
    /// `group.updated_at` (on no condition but that it exists; 404 otherwise); answers the
    /// group as written. Its members' writes carry the change and its events.
    fn touch_group(&self, group: &Group) -> impl Future<Output = Result<Group, ApiError>> + Send;
    /// Deletes a group and its name guard, conditioned on the version read, with its audit
    /// event; 404 when already gone, `precondition_failed` when changed meanwhile.
    fn delete_group(
        &self,
        group: &Group,
        audit: &AuditEvent,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Writes a new member atomically. Refusals: `email_taken`, `unknown_role`,
    /// `organization_changed`, `idempotency_conflict` (another request with the same key won).
    fn create_member(
        &self,
        write: &CreateMember,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}
