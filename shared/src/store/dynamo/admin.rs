//! Operations for the operator's CLI and the tests only: the table, new organisations and
//! API keys. The functions never call them.

use super::errors::{build_error, sdk_error};
use super::keys::OUTBOX_INDEX;
use super::outbox::audit_item;
use super::records::{
    from_item, identifier_guard, location_records, to_item, ApiKeyRecord, MemberRecord, OrgRecord,
};
use super::shards::{new_shards, COUNTER_SHARDS};
use super::tx::{put, put_item};
use super::{keys, DynamoStore, Item, INDEXES};
use crate::error::ApiError;
use crate::model::*;
use crate::store::{NewApiKey, NewOrganization};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CreateGlobalSecondaryIndexAction,
    GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};

/// The outbox index (keys only: the repair reads the items it names).
fn outbox_index() -> Result<GlobalSecondaryIndex, ApiError> {
    let (index, pk, sk) = OUTBOX_INDEX;
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| build_error("KeySchemaElement", e))
    };
    GlobalSecondaryIndex::builder()
        .index_name(index)
        .key_schema(key(pk, KeyType::Hash)?)
        .key_schema(key(sk, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(|e| build_error("GlobalSecondaryIndex", e))
}

impl DynamoStore {
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
            .key_schema(key("SK", KeyType::Range)?)
            // The change events' outbox is read from the stream (template.yaml: the same).
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()
                    .map_err(|e| build_error("StreamSpecification", e))?,
            );
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
        let (index, pk, sk) = OUTBOX_INDEX;
        request = request
            .attribute_definitions(s(pk)?)
            .attribute_definitions(s(sk)?)
            .global_secondary_indexes(outbox_index()?);
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceInUseException") => {
                // A table made before the outbox index (a `make dev` table kept on disk)
                // gets it now, as a stack update adds it on AWS.
                let table = self
                    .client
                    .describe_table()
                    .table_name(&self.table)
                    .send()
                    .await
                    .map_err(|e| sdk_error("DescribeTable", e))?;
                let has = table
                    .table
                    .iter()
                    .flat_map(|t| t.global_secondary_indexes())
                    .any(|i| i.index_name() == Some(index));
                if !has {
                    let create = CreateGlobalSecondaryIndexAction::builder()
                        .index_name(index)
                        .key_schema(key(pk, KeyType::Hash)?)
                        .key_schema(key(sk, KeyType::Range)?)
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::KeysOnly)
                                .build(),
                        )
                        .build()
                        .map_err(|e| build_error("CreateGlobalSecondaryIndexAction", e))?;
                    self.client
                        .update_table()
                        .table_name(&self.table)
                        .attribute_definitions(s(pk)?)
                        .attribute_definitions(s(sk)?)
                        .global_secondary_index_updates(
                            GlobalSecondaryIndexUpdate::builder().create(create).build(),
                        )
                        .send()
                        .await
                        .map_err(|e| sdk_error("UpdateTable", e))?;
                }
                Ok(false)
            }
            Err(e) => Err(sdk_error("CreateTable", e)),
        }
    }

    /// Writes a new organisation and its first admin in one transaction.
    /// A new organisation with its first admin, its counts in counter shards.
    pub async fn create_organization(&self, new: &NewOrganization) -> Result<(), ApiError> {
        let mut org = new.org.clone();
        org.counter_shards = COUNTER_SHARDS;
        org.counters = new.admin.counters().guarded();
        let mut items = vec![
            put(
                &self.table,
                &OrgRecord {
                    pk: keys::org(&org.id).0,
                    sk: keys::org(&org.id).1,
                    entity: "organization".into(),
                    org: org.clone(),
                },
            )?,
            put_item(&self.table, MemberRecord::item(&new.admin)?)?,
            put(
                &self.table,
                &identifier_guard(&new.admin, &new.admin.email.normalized()),
            )?,
            put_item(&self.table, audit_item(&new.audit)?)?,
        ];
        for location in location_records(&new.admin) {
            items.push(put(&self.table, &location)?);
        }
        items.extend(new_shards(&self.table, &org, &[&new.admin])?);
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

    /// The organisation's key `id`, as its index holds it (eventually consistent: a
    /// revocation is seen within about a second; deliveries re-check it at every attempt).
    pub async fn api_key_by_id(
        &self,
        org: &OrgId,
        id: &ApiKeyId,
    ) -> Result<Option<ApiKey>, ApiError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("GSI1")
            .key_condition_expression("GSI1PK = :pk AND GSI1SK = :id")
            .expression_attribute_values(":pk", AttributeValue::S(keys::api_keys_of(org)))
            .expression_attribute_values(":id", AttributeValue::S(id.to_string()))
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        match page.items().first() {
            Some(item) => Ok(Some(from_item::<ApiKeyRecord>(item.clone())?.key)),
            None => Ok(None),
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
}
