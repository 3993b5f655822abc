//! The DynamoDB single-table store: the only module that uses `aws_sdk_dynamodb`.
//! Key design and access patterns: docs/design.md.

mod queries;
mod settings;

pub use queries::READ_CAP;
pub use settings::hris_switch_refusal;

use super::{CreateMember, IdempotencyRecord, NewApiKey, NewOrganization, Store, UpdateMember};
use crate::error::ApiError;
use crate::model::*;
use crate::rules::counter_violation;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Item = HashMap<String, AttributeValue>;

/// Key builders: the only place that knows how keys are spelled.
pub mod keys {
    use crate::model::*;

    pub fn org(org: &OrgId) -> (String, String) {
        (format!("ORG#{org}"), "ORG".into())
    }
    pub fn member(org: &OrgId, id: &MemberId) -> (String, String) {
        (format!("ORG#{org}#MEMBER#{id}"), "MEMBER".into())
    }
    pub fn email(org: &OrgId, email: &Email) -> (String, String) {
        (
            format!("ORG#{org}#EMAIL#{}", email.normalized()),
            "EMAIL".into(),
        )
    }
    pub fn role(org: &OrgId, id: &CustomRoleId) -> (String, String) {
        (format!("ORG#{org}#ROLE#{id}"), "ROLE".into())
    }
    /// A member's place in a location's list, by status like the member indexes.
    pub fn location(
        org: &OrgId,
        location_id: &str,
        active: bool,
        id: &MemberId,
    ) -> (String, String) {
        (location_partition(org, location_id, active), id.to_string())
    }
    pub fn location_partition(org: &OrgId, location_id: &str, active: bool) -> String {
        format!("ORG#{org}#LOCATION#{location_id}#{}", status(active))
    }
    /// A member's history, or (`None`) the organisation's own.
    pub fn audit(org: &OrgId, member: Option<&MemberId>, id: &AuditEventId) -> (String, String) {
        (audit_partition(org, member), id.to_string())
    }
    pub fn audit_partition(org: &OrgId, member: Option<&MemberId>) -> String {
        match member {
            Some(member) => format!("ORG#{org}#MEMBER#{member}#AUDIT"),
            None => format!("ORG#{org}#AUDIT"),
        }
    }
    pub fn api_key(hash: &str) -> (String, String) {
        (format!("APIKEY#{hash}"), "APIKEY".into())
    }
    pub fn idempotency(org: &OrgId, key: &str) -> (String, String) {
        (format!("ORG#{org}#IDEMPOTENCY#{key}"), "IDEMPOTENCY".into())
    }
    pub fn status(active: bool) -> &'static str {
        if active {
            "active"
        } else {
            "inactive"
        }
    }
    /// GSI partitions of a member: by status, role, HRIS role, department (each with status).
    pub fn member_indexes(m: &Member) -> [String; 4] {
        let (org, active) = (&m.organization_id, m.is_active);
        [
            members_partition(org, active),
            role_partition(org, &m.role, active),
            hris_partition(org, m.hris_role, active),
            department_partition(org, m.department, active),
        ]
    }
    /// GSI1 and GSI5: an organisation's members by status.
    pub fn members_partition(org: &OrgId, active: bool) -> String {
        format!("ORG#{org}#MEMBERS#{}", status(active))
    }
    /// GSI2.
    pub fn role_partition(org: &OrgId, role: &Role, active: bool) -> String {
        format!("ORG#{org}#ROLE#{}#{}", role.as_str(), status(active))
    }
    /// GSI3 (`none` for members without an HRIS role).
    pub fn hris_partition(org: &OrgId, hris: Option<HrisRole>, active: bool) -> String {
        format!(
            "ORG#{org}#HRIS#{}#{}",
            hris.map_or("none", |r| r.as_str()),
            status(active)
        )
    }
    /// GSI4.
    pub fn department_partition(org: &OrgId, department: Department, active: bool) -> String {
        format!("ORG#{org}#DEPARTMENT#{department}#{}", status(active))
    }
    pub fn api_keys_of(org: &OrgId) -> String {
        format!("ORG#{org}#APIKEYS")
    }
}

/// The global secondary indexes, their partition and sort key attribute names.
pub const INDEXES: &[(&str, &str, &str)] = &[
    ("GSI1", "GSI1PK", "GSI1SK"),
    ("GSI2", "GSI2PK", "GSI2SK"),
    ("GSI3", "GSI3PK", "GSI3SK"),
    ("GSI4", "GSI4PK", "GSI4SK"),
    ("GSI5", "GSI5PK", "GSI5SK"),
];

/// How long an idempotency record is kept (the table's TTL attribute is `expiresAt`).
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 3600;

#[derive(Serialize, Deserialize)]
struct MemberRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(rename = "emailNormalized")]
    email_normalized: String,
    #[serde(rename = "GSI1PK")]
    gsi1pk: String,
    #[serde(rename = "GSI1SK")]
    gsi1sk: String,
    #[serde(rename = "GSI2PK")]
    gsi2pk: String,
    #[serde(rename = "GSI2SK")]
    gsi2sk: String,
    #[serde(rename = "GSI3PK")]
    gsi3pk: String,
    #[serde(rename = "GSI3SK")]
    gsi3sk: String,
    #[serde(rename = "GSI4PK")]
    gsi4pk: String,
    #[serde(rename = "GSI4SK")]
    gsi4sk: String,
    #[serde(rename = "GSI5PK")]
    gsi5pk: String,
    #[serde(rename = "GSI5SK")]
    gsi5sk: String,
    #[serde(flatten)]
    member: Member,
}

impl MemberRecord {
    fn new(m: &Member) -> Self {
        let (pk, sk) = keys::member(&m.organization_id, &m.id);
        let [by_status, by_role, by_hris, by_department] = keys::member_indexes(m);
        let id = m.id.to_string();
        MemberRecord {
            pk,
            sk,
            entity: "member".into(),
            email_normalized: m.email.normalized(),
            gsi1pk: by_status.clone(),
            gsi1sk: id.clone(),
            gsi2pk: by_role,
            gsi2sk: id.clone(),
            gsi3pk: by_hris,
            gsi3sk: id.clone(),
            gsi4pk: by_department,
            gsi4sk: id.clone(),
            gsi5pk: by_status,
            gsi5sk: format!("{}#{id}", m.updated_at),
            member: m.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct OrgRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(flatten)]
    org: Organization,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmailGuardRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    member_id: MemberId,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocationRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    location_id: String,
    member_id: MemberId,
    is_active: bool,
    role: Vec<LocationRole>,
}

#[derive(Serialize, Deserialize)]
struct ApiKeyRecord {
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
    key: ApiKey,
}

#[derive(Serialize, Deserialize)]
struct AuditRecord {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    #[serde(flatten)]
    event: AuditEvent,
}

#[derive(Serialize, Deserialize)]
struct IdempotencyItem {
    #[serde(rename = "PK")]
    pk: String,
    #[serde(rename = "SK")]
    sk: String,
    entity: String,
    /// DynamoDB TTL attribute (epoch seconds).
    #[serde(rename = "expiresAt")]
    expires_at: i64,
    #[serde(flatten)]
    record: IdempotencyRecord,
}

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

    /// The operator's client (membersctl, tests): region, credentials (profiles, SSO, …)
    /// and `AWS_ENDPOINT_URL_DYNAMODB` as the AWS SDK's full loader reads them.
    #[cfg(feature = "aws-config")]
    pub async fn client_from_env(endpoint_url: Option<&str>) -> Client {
        Client::new(&Self::sdk_config(endpoint_url).await)
    }

    /// The SDK configuration [`client_from_env`](Self::client_from_env) builds its client from.
    #[cfg(feature = "aws-config")]
    pub async fn sdk_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts())
            .http_client(https_client());
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader.load().await
    }

    /// The functions' client, from what Lambda puts in the environment: `AWS_REGION`, the
    /// execution role's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`,
    /// and `AWS_ENDPOINT_URL_DYNAMODB` (or `AWS_ENDPOINT_URL`) for DynamoDB Local. Built
    /// without the SDK's config loader, which would add a megabyte to every function.
    pub fn lambda_client() -> Result<Client, String> {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .ok_or("AWS_REGION is not set")?;
        let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set".into());
        };
        let credentials =
            Credentials::new(key, secret, var("AWS_SESSION_TOKEN"), None, "environment");
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(credentials)
            .timeout_config(timeouts())
            .http_client(https_client());
        if let Some(url) = var("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| var("AWS_ENDPOINT_URL")) {
            config = config.endpoint_url(url);
        }
        Ok(Client::from_conf(config.build()))
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

    /// Creates the table with its indexes if it does not exist; returns whether it created it.
    /// template.yaml declares the same table for AWS.
    pub async fn create_table(&self) -> Result<bool, ApiError> {
        let s = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| build_error("AttributeDefinition", e))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| build_error("KeySchemaElement", e))
        };
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(s("PK")?)
            .attribute_definitions(s("SK")?)
            .key_schema(key("PK", KeyType::Hash)?)
            .key_schema(key("SK", KeyType::Range)?);
        for (index, pk, sk) in INDEXES {
            request = request
                .attribute_definitions(s(pk)?)
                .attribute_definitions(s(sk)?)
                .global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(*index)
                        .key_schema(key(pk, KeyType::Hash)?)
                        .key_schema(key(sk, KeyType::Range)?)
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .map_err(|e| build_error("GlobalSecondaryIndex", e))?,
                );
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(false),
            Err(e) => Err(sdk_error("CreateTable", e)),
        }
    }

    /// Writes a new organisation and its first admin in one transaction.
    pub async fn create_organization(&self, new: &NewOrganization) -> Result<(), ApiError> {
        let mut items = vec![
            put(
                &self.table,
                &OrgRecord {
                    pk: keys::org(&new.org.id).0,
                    sk: keys::org(&new.org.id).1,
                    entity: "organization".into(),
                    org: new.org.clone(),
                },
            )?,
            put(&self.table, &MemberRecord::new(&new.admin))?,
            put(&self.table, &email_guard(&new.admin))?,
            put(&self.table, &audit_record(&new.audit))?,
        ];
        for location in location_records(&new.admin) {
            items.push(put(&self.table, &location)?);
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(sdk_error("TransactWriteItems", e)),
        }
    }

    pub async fn put_api_key(&self, new: &NewApiKey) -> Result<(), ApiError> {
        let (pk, sk) = keys::api_key(&new.hash);
        let record = ApiKeyRecord {
            pk,
            sk,
            entity: "apiKey".into(),
            gsi1pk: keys::api_keys_of(&new.key.organization_id),
            gsi1sk: new.key.id.to_string(),
            key: new.key.clone(),
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&record)?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        Ok(())
    }

    /// The organisation's keys, oldest first.
    pub async fn api_keys(&self, org: &OrgId) -> Result<Vec<(ApiKey, String)>, ApiError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("GSI1")
                .key_condition_expression("GSI1PK = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(keys::api_keys_of(org)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in page.items() {
                let record: ApiKeyRecord = from_item(item.clone())?;
                out.push((record.key, record.pk));
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// Marks a key revoked; `NotFound` if the organisation has no such key.
    pub async fn revoke_api_key(&self, org: &OrgId, id: &ApiKeyId) -> Result<ApiKey, ApiError> {
        let (mut key, pk) = self
            .api_keys(org)
            .await?
            .into_iter()
            .find(|(k, _)| &k.id == id)
            .ok_or(ApiError::NotFound)?;
        if key.revoked_at.is_some() {
            return Ok(key);
        }
        let now = Timestamp::now();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S("APIKEY".into()))
            .update_expression("SET revokedAt = :now")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":now", AttributeValue::S(now.to_string()))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", e))?;
        key.revoked_at = Some(now);
        Ok(key)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        (pk, sk): (String, String),
    ) -> Result<Option<T>, ApiError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", AttributeValue::S(pk))
            .key("SK", AttributeValue::S(sk))
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.map(from_item).transpose()
    }
}

/// Short timeouts, so that an unreachable store becomes a 503 within seconds rather than a
/// Lambda timeout.
fn timeouts() -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// rustls on ring: the same TLS as the SDK's default client, a smaller binary.
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// What each item of a transaction stands for, so that a cancellation reason at index `i`
/// becomes the domain error of item `i`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Guarded {
    NewMember,
    /// The member's version as read.
    Member,
    EmailGuard,
    OldEmailGuard,
    Organization,
    Audit,
    CustomRole,
    OldCustomRole,
    PreviousPrimary,
    Idempotency,
    Location,
    /// A custom role item, and its name guard.
    Role,
    RoleName,
}

/// Why a transaction did not happen.
enum TxFailure {
    /// Conditions failed: the items, with their old values where DynamoDB returned them.
    Refused(Vec<(Guarded, Option<Item>)>),
    Error(ApiError),
}

impl Store for DynamoStore {
    async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, ApiError> {
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

    async fn organization(&self, id: &OrgId) -> Result<Option<Organization>, ApiError> {
        Ok(self.get::<OrgRecord>(keys::org(id)).await?.map(|r| r.org))
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
        let found = self
            .get::<IdempotencyItem>(keys::idempotency(org, key))
            .await?;
        let now = Timestamp::now().unix_seconds();
        // TTL deletion is lazy: an expired record is treated as gone.
        Ok(found
            .filter(|item| item.expires_at > now)
            .map(|item| item.record))
    }

    async fn create_member(&self, w: &CreateMember) -> Result<(), ApiError> {
        let t = &self.table;
        let m = &w.member;
        let mut items = vec![
            (Guarded::NewMember, put(t, &MemberRecord::new(m))?),
            (Guarded::EmailGuard, put(t, &email_guard(m))?),
            (Guarded::Audit, put(t, &audit_record(&w.audit))?),
            (
                Guarded::Organization,
                org_item(t, &w.org, None, m, false)?.ok_or(ApiError::Internal)?,
            ),
        ];
        if let (Role::Custom(role), true) = (&m.role, m.is_active) {
            items.push((
                Guarded::CustomRole,
                role_holders(t, &m.organization_id, role, 1, false)?,
            ));
        }
        if let Some((previous, audit)) = &w.previous_primary {
            items.push((
                Guarded::PreviousPrimary,
                demote_primary(t, &m.organization_id, previous, m.updated_at, false)?,
            ));
            items.push((Guarded::Audit, put(t, &audit_record(audit))?));
        }
        if let Some(record) = &w.idempotency {
            let (pk, sk) = keys::idempotency(&record.organization_id, &record.key);
            let item = IdempotencyItem {
                pk,
                sk,
                entity: "idempotency".into(),
                expires_at: record.created_at.unix_seconds() + IDEMPOTENCY_TTL_SECONDS,
                record: record.clone(),
            };
            items.push((Guarded::Idempotency, put(t, &item)?));
        }
        for location in location_records(m) {
            items.push((Guarded::Location, put(t, &location)?));
        }
        self.transact(items, write_conflict)
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

    async fn list_members(
        &self,
        org: &OrgId,
        query: &ListQuery,
    ) -> Result<crate::store::ListPage, ApiError> {
        self.list(org, query).await
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

    async fn update_organization(
        &self,
        write: &crate::store::UpdateOrganization,
    ) -> Result<(), ApiError> {
        self.write_organization(write).await
    }

    async fn custom_roles(&self, org: &OrgId) -> Result<Vec<CustomRole>, ApiError> {
        self.roles(org).await
    }

    async fn custom_role(
        &self,
        org: &OrgId,
        id: &CustomRoleId,
    ) -> Result<Option<CustomRole>, ApiError> {
        self.role(org, id).await
    }

    async fn create_role(&self, role: &CustomRole) -> Result<(), ApiError> {
        self.insert_role(role).await
    }

    async fn delete_role(&self, role: &CustomRole) -> Result<(), ApiError> {
        self.remove_role(role).await
    }

    async fn member_and_org(
        &self,
        org: &OrgId,
        id: &MemberId,
    ) -> Result<(Option<Member>, Option<Organization>), ApiError> {
        let key = |(pk, sk): (String, String)| {
            HashMap::from([
                ("PK".to_owned(), AttributeValue::S(pk)),
                ("SK".to_owned(), AttributeValue::S(sk)),
            ])
        };
        let mut wanted = KeysAndAttributes::builder()
            .keys(key(keys::member(org, id)))
            .keys(key(keys::org(org)))
            .consistent_read(true)
            .build()
            .map_err(|e| build_error("KeysAndAttributes", e))?;
        let (mut member, mut organization) = (None, None);
        for attempt in 0..4 {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, wanted.clone())
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem", e))?;
            for item in out
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                match item.get("SK") {
                    Some(AttributeValue::S(sk)) if sk == "MEMBER" => {
                        member = Some(from_item::<MemberRecord>(item.clone())?.member)
                    }
                    _ => organization = Some(from_item::<OrgRecord>(item.clone())?.org),
                }
            }
            match out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                Some(rest) if !rest.keys().is_empty() => {
                    wanted = rest.clone();
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                }
                _ => return Ok((member, organization)),
            }
        }
        Err(ApiError::Unavailable {
            retry_after_seconds: 1,
        })
    }

    async fn update_member(&self, w: &UpdateMember) -> Result<(), ApiError> {
        let items = update_items(&self.table, w)?;
        self.transact(items, || ApiError::UpdateInProgress)
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
}

fn write_conflict() -> ApiError {
    ApiError::Conflict {
        code: "write_conflict",
        detail: "Another request was writing the same data; nothing was written. Retry.".into(),
        field: None,
    }
}

/// The items of an update, or of its dry run (the same conditions as checks, no writes).
fn update_items(t: &str, w: &UpdateMember) -> Result<Vec<(Guarded, TransactWriteItem)>, ApiError> {
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
fn org_item(
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
fn demote_primary(
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

/// The domain error of a refused update: the member's version first (everything else may
/// be a consequence of a concurrent change), then the organisation's rules.
fn update_refusal(w: &UpdateMember, failed: Vec<(Guarded, Option<Item>)>) -> ApiError {
    let has = |g: Guarded| failed.iter().any(|(f, _)| *f == g);
    if has(Guarded::Member) || has(Guarded::OldEmailGuard) {
        return if w.if_match {
            ApiError::PreconditionFailed
        } else {
            ApiError::UpdateInProgress
        };
    }
    if has(Guarded::EmailGuard) {
        return refusal(Guarded::EmailGuard);
    }
    if let Some((_, old)) = failed.iter().find(|(g, _)| *g == Guarded::Organization) {
        let current = old
            .clone()
            .and_then(|item| from_item::<OrgRecord>(item).ok())
            .map(|r| r.org);
        let delta = w.after.counters().minus(w.before.counters());
        return match current {
            Some(org) if org.hris_enabled == w.org.hris_enabled => {
                counter_violation(org.counters, delta, org.hris_enabled)
                    .unwrap_or_else(|| refusal(Guarded::Organization))
            }
            _ => refusal(Guarded::Organization),
        };
    }
    failed
        .first()
        .map_or(ApiError::Internal, |(g, _)| refusal(*g))
}

fn check(
    t: &str,
    (pk, sk): (String, String),
    condition: &str,
    values: Item,
) -> Result<TransactWriteItem, ApiError> {
    let check = ConditionCheck::builder()
        .table_name(t)
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S(sk))
        .condition_expression(condition)
        .set_expression_attribute_values((!values.is_empty()).then_some(values))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| build_error("ConditionCheck", e))?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

fn delete(
    t: &str,
    (pk, sk): (String, String),
    condition: Option<(&str, Item)>,
) -> Result<TransactWriteItem, ApiError> {
    let mut delete = Delete::builder()
        .table_name(t)
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S(sk));
    if let Some((expression, values)) = condition {
        delete = delete
            .condition_expression(expression)
            .set_expression_attribute_values(Some(values));
    }
    Ok(TransactWriteItem::builder()
        .delete(delete.build().map_err(|e| build_error("Delete", e))?)
        .build())
}

/// Moves a custom role's count of active holders; the role must exist.
fn role_holders(
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

impl DynamoStore {
    /// Runs one transaction, mapping a cancellation to the error of the item that failed.
    /// A `TransactionConflict` (real DynamoDB, never DynamoDB Local) is retried twice: the
    /// whole transaction failed, so running it again is safe.
    async fn transact(
        &self,
        items: Vec<(Guarded, TransactWriteItem)>,
        on_conflict: fn() -> ApiError,
    ) -> Result<(), TxFailure> {
        let (guards, writes): (Vec<Guarded>, Vec<TransactWriteItem>) = items.into_iter().unzip();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let reasons: Vec<(Guarded, String, Option<Item>)> = match err.as_service_error() {
                Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => c
                    .cancellation_reasons()
                    .iter()
                    .zip(&guards)
                    .filter_map(|(r, g)| r.code().filter(|c| *c != "None").map(|c| (*g, c.to_owned(), r.item().cloned())))
                    .collect(),
                _ => return Err(TxFailure::Error(sdk_error("TransactWriteItems", err))),
            };
            let refused: Vec<(Guarded, Option<Item>)> = reasons
                .iter()
                .filter(|(_, code, _)| code == "ConditionalCheckFailed")
                .map(|(g, _, item)| (*g, item.clone()))
                .collect();
            if !refused.is_empty() {
                return Err(TxFailure::Refused(refused));
            }
            if reasons
                .iter()
                .any(|(_, code, _)| code == "TransactionConflict")
            {
                if attempt < 3 {
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                    continue;
                }
                return Err(TxFailure::Error(on_conflict()));
            }
            if reasons.iter().any(|(_, code, _)| {
                code == "ThrottlingError" || code == "ProvisionedThroughputExceeded"
            }) {
                return Err(TxFailure::Error(ApiError::Unavailable {
                    retry_after_seconds: 1,
                }));
            }
            let codes: Vec<&str> = reasons.iter().map(|(_, code, _)| code.as_str()).collect();
            tracing::error!(?codes, "transaction cancelled for an unexpected reason");
            return Err(TxFailure::Error(ApiError::Internal));
        }
    }
}
/// The domain error for a failed condition on one item of a member write.
fn refusal(guard: Guarded) -> ApiError {
    match guard {
        Guarded::EmailGuard => ApiError::Conflict {
            code: "email_taken",
            detail: "Another member of this organisation already has this email address.".into(),
            field: Some("email"),
        },
        Guarded::CustomRole => ApiError::rule(
            "unknown_role",
            Some("role"),
            "role is not a built-in role nor a custom role of this organisation",
        ),
        Guarded::Organization | Guarded::PreviousPrimary => ApiError::Conflict {
            code: "organization_changed",
            detail: "The organisation's settings or primary member changed during this request; nothing was written. Retry.".into(),
            field: None,
        },
        Guarded::Idempotency => ApiError::Conflict {
            code: "idempotency_conflict",
            detail: "Another request with the same Idempotency-Key is being processed.".into(),
            field: None,
        },
        Guarded::Member | Guarded::OldEmailGuard => ApiError::UpdateInProgress,
        Guarded::NewMember
        | Guarded::Audit
        | Guarded::Location
        | Guarded::OldCustomRole
        | Guarded::Role
        | Guarded::RoleName => {
            tracing::error!(?guard, "a freshly generated id already exists");
            ApiError::Internal
        }
    }
}

fn email_guard(m: &Member) -> EmailGuardRecord {
    let (pk, sk) = keys::email(&m.organization_id, &m.email);
    EmailGuardRecord {
        pk,
        sk,
        entity: "emailGuard".into(),
        member_id: m.id.clone(),
    }
}

fn location_records(m: &Member) -> Vec<LocationRecord> {
    m.locations
        .iter()
        .map(|l| {
            let (pk, sk) = keys::location(&m.organization_id, &l.location_id, m.is_active, &m.id);
            LocationRecord {
                pk,
                sk,
                entity: "memberLocation".into(),
                location_id: l.location_id.clone(),
                member_id: m.id.clone(),
                is_active: m.is_active,
                role: l.role.clone(),
            }
        })
        .collect()
}

fn audit_record(e: &AuditEvent) -> AuditRecord {
    let (pk, sk) = keys::audit(&e.organization_id, e.member_id.as_ref(), &e.id);
    AuditRecord {
        pk,
        sk,
        entity: "auditEvent".into(),
        event: e.clone(),
    }
}

/// A conditional put that never overwrites.
fn put<T: Serialize>(table: &str, record: &T) -> Result<TransactWriteItem, ApiError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(to_item(record)?))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(|e| build_error("Put", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn to_item<T: Serialize>(record: &T) -> Result<Item, ApiError> {
    serde_dynamo::to_item(record).map_err(|e| {
        tracing::error!(error = %e, "could not serialise a record");
        ApiError::Internal
    })
}

/// Never skips a corrupt item: it is an error, with its key in the log.
fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, ApiError> {
    let key = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => "?".into(),
    };
    let (pk, sk) = (key("PK"), key("SK"));
    serde_dynamo::from_item(item).map_err(|e| {
        tracing::error!(pk = %redact_key(&pk), sk = %sk, error = %e, "corrupt item in the table");
        ApiError::Internal
    })
}

/// Keys of API-key and email-guard items carry a hash or an email: log only their kind.
fn redact_key(pk: &str) -> String {
    if pk.starts_with("APIKEY#") {
        "APIKEY#[redacted]".into()
    } else if let Some(at) = pk.find("#EMAIL#") {
        format!("{}#EMAIL#[redacted]", &pk[..at])
    } else {
        pk.to_owned()
    }
}

fn build_error(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "could not build a DynamoDB {what}");
    ApiError::Internal
}

/// Maps an SDK failure: unreachable, timed out or throttled is a 503 (retry), the rest a 500.
/// Logs the operation and error code only, never the request.
pub fn sdk_error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    operation: &'static str,
    err: SdkError<E, R>,
) -> ApiError {
    const RETRYABLE: &[&str] = &[
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    ];
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            tracing::warn!(operation, kind = "unreachable", "DynamoDB is unreachable");
            ApiError::Unavailable {
                retry_after_seconds: 1,
            }
        }
        SdkError::ServiceError(_) if err.code().is_some_and(|c| RETRYABLE.contains(&c)) => {
            tracing::warn!(
                operation,
                code = err.code(),
                "DynamoDB is throttling or failing"
            );
            ApiError::Unavailable {
                retry_after_seconds: 1,
            }
        }
        _ => {
            // DynamoDB's messages name attributes and placeholders, never their values.
            tracing::error!(
                operation,
                code = err.code(),
                message = err.message(),
                "DynamoDB call failed"
            );
            ApiError::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Member {
        let now = Timestamp::now();
        let org = OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}"));
        Member {
            id: MemberId::parse("mem_1").unwrap_or_else(|e| panic!("{e}")),
            organization_id: org,
            user_id: UserId::generate(),
            first_name: Some("Ada".into()),
            last_name: None,
            name_override: None,
            email: Email::parse("Ada@Example.com").unwrap_or_else(|e| panic!("{e}")),
            headline: None,
            job_title: Some("Engineer".into()),
            role: Role::Builtin(BuiltinRole::Admin),
            hris_role: Some(HrisRole::HrisAdmin),
            department: Department::It,
            locations: vec![MemberLocation {
                location_id: "l1".into(),
                role: vec![LocationRole::Admin],
            }],
            collaboration_rules: vec![],
            is_primary: true,
            is_active: true,
            fleet_dm_label_id: Some(123),
            profile_picture_url: None,
            default_location_id: Some("l1".into()),
            password_hash: None,
            background_check_exempt: false,
            background_check_exempt_reason: None,
            background_check_requests: vec![],
            onboard_date: None,
            offboard_date: None,
            created_at: now,
            updated_at: now,
            version: 7,
        }
    }

    #[test]
    fn a_member_record_round_trips_through_an_item() {
        let m = member();
        let item = to_item(&MemberRecord::new(&m)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            item.get("PK"),
            Some(&AttributeValue::S("ORG#org_a#MEMBER#mem_1".into()))
        );
        assert_eq!(
            item.get("emailNormalized"),
            Some(&AttributeValue::S("ada@example.com".into()))
        );
        assert_eq!(
            item.get("GSI2PK"),
            Some(&AttributeValue::S("ORG#org_a#ROLE#admin#active".into()))
        );
        assert_eq!(item.get("version"), Some(&AttributeValue::N("7".into())));
        let back: MemberRecord = from_item(item).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(back.member, m);
    }

    #[test]
    fn counters_are_top_level_numbers_on_the_organisation_item() {
        let now = Timestamp::now();
        let org = Organization {
            id: OrgId::parse("org_a").unwrap_or_else(|e| panic!("{e}")),
            name: "A".into(),
            hris_enabled: false,
            background_check_required: true,
            counters: Counters {
                active_admins: 2,
                active_hris_admins: 1,
                active_dual_admins: 1,
                ..Counters::default()
            },
            primary_member_id: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let item = to_item(&OrgRecord {
            pk: "ORG#org_a".into(),
            sk: "ORG".into(),
            entity: "organization".into(),
            org: org.clone(),
        })
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            item.get("activeAdmins"),
            Some(&AttributeValue::N("2".into()))
        );
        assert!(
            !item.contains_key("primaryMemberId"),
            "absent, so attribute_not_exists works"
        );
        let back: OrgRecord = from_item(item).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(back.org, org);
    }

    #[test]
    fn a_corrupt_item_is_an_error_not_a_skipped_row() {
        let mut item = to_item(&MemberRecord::new(&member())).unwrap_or_else(|e| panic!("{e:?}"));
        item.insert("role".into(), AttributeValue::S("emperor".into()));
        assert!(matches!(
            from_item::<MemberRecord>(item),
            Err(ApiError::Internal)
        ));
    }

    #[test]
    fn secrets_in_keys_are_redacted_in_logs() {
        assert_eq!(redact_key("APIKEY#abcdef"), "APIKEY#[redacted]");
        assert_eq!(
            redact_key("ORG#org_a#EMAIL#a@b.co"),
            "ORG#org_a#EMAIL#[redacted]"
        );
        assert_eq!(
            redact_key("ORG#org_a#MEMBER#mem_1"),
            "ORG#org_a#MEMBER#mem_1"
        );
    }
}
