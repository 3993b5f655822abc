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
    pub previous_primary: Option<(MemberId, AuditEvent)>,
    pub idempotency: Option<IdempotencyRecord>,
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
pub trait Store: Send + Sync {
    fn api_key_by_hash(
        &self,
        hash: &str,
    ) -> impl Future<Output = Result<Option<ApiKey>, ApiError>> + Send;
    fn organization(
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
    /// Writes a new member atomically. Refusals: `email_taken`, `unknown_role`,
    /// `organization_changed`, `idempotency_conflict` (another request with the same key won).
    fn create_member(
        &self,
        write: &CreateMember,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}
