//! Transactions: what each item stands for, running one (with its retries), and the
//! conditional put, check and delete items they are made of.

use super::errors::{build_error, sdk_error};
use super::records::to_item;
use super::{DynamoStore, Item};
use crate::error::ApiError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, WriteRequest,
};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What each item of a transaction stands for, so that a cancellation reason at index `i`
/// becomes the domain error of item `i`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Guarded {
    NewMember,
    /// The member's version as read.
    Member,
    EmailGuard,
    /// A SCIM userName's guard (in the emails' namespace), new.
    UserNameGuard,
    /// An identifier (email or userName) the member gives up.
    OldEmailGuard,
    /// A SCIM `externalId`'s guard, new and old.
    ExternalIdGuard,
    OldExternalIdGuard,
    Organization,
    /// The member's counter shard (its counts, and the HRIS mirror).
    CounterShard,
    Audit,
    CustomRole,
    OldCustomRole,
    PreviousPrimary,
    Idempotency,
    Location,
    /// A custom role item, and its name guard.
    Role,
    RoleName,
    /// A custom role's holder shard, created and deleted with it.
    RoleHolders,
    /// An organisation's feed counter, as read.
    FeedSequence,
    /// The audit item at this index of the chunk being placed, without a place yet.
    Outbox(usize),
    /// A new place in the feed.
    FeedEvent,
    /// A webhook, and the organisation's count of them.
    Webhook,
    WebhookCount,
    /// A SCIM group, its name guard (new and old), a membership.
    Group,
    GroupName,
    OldGroupName,
    Membership,
}

impl Guarded {
    /// Whether the item is the resource the write is about (a conflict on it is a race for
    /// that resource), rather than an item other writes share.
    fn is_the_resource(self) -> bool {
        matches!(
            self,
            Guarded::Member | Guarded::NewMember | Guarded::Webhook | Guarded::Group
        )
    }
}

/// Why a transaction did not happen.
pub(super) enum TxFailure {
    /// Conditions failed: the items, with their old values where DynamoDB returned them.
    Refused(Vec<(Guarded, Option<Item>)>),
    Error(ApiError),
}

impl DynamoStore {
    /// Runs one transaction, mapping a cancellation to the error of the item that failed.
    ///
    /// Every attempt carries a `ClientRequestToken`: DynamoDB applies a TransactWriteItems
    /// at most once per token for 10 minutes and answers a repeat with the first success.
    /// - Cancelled by `TransactionConflict` (real DynamoDB, never DynamoDB Local): the whole
    ///   transaction failed, so it is run again, twice at most, under a new token.
    /// - `TransactionInProgressException` (the same token still running), a timeout, a
    ///   failed or cut connection, or a 5xx: the outcome is unknown, so it is asked again
    ///   under the *same* token, which cannot apply it twice and settles it. What stays
    ///   unsettled is [`ApiError::OutcomeUnknown`], never "nothing was written".
    /// - Throttled: not applied; asked again after a pause, as the SDK would have.
    ///
    /// The SDK's own retries are off for this call, so this loop sees every attempt (an
    /// attempt the SDK retried could otherwise have committed unseen), and the whole loop
    /// stops by [`TX_DEADLINE`], well inside the functions' 10 s Lambda timeout.
    pub(super) async fn transact(
        &self,
        items: Vec<(Guarded, TransactWriteItem)>,
        on_conflict: fn() -> ApiError,
    ) -> Result<(), TxFailure> {
        let (guards, writes): (Vec<Guarded>, Vec<TransactWriteItem>) = items.into_iter().unzip();
        let mut attempt = 0;
        let mut token = client_token();
        // Whether an earlier attempt under `token` may have been applied.
        let mut maybe_applied = false;
        let mut unsettled = 0;
        let mut throttled = 0;
        let mut shared_conflicts: u32 = 0;
        let started = Instant::now();
        loop {
            attempt += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes.clone()))
                .client_request_token(&token)
                .customize()
                .config_override(
                    aws_sdk_dynamodb::config::Builder::default()
                        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()),
                )
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            if is_unsettled(&err) {
                maybe_applied = true;
                unsettled += 1;
                if unsettled <= MAX_UNSETTLED_RETRIES && started.elapsed() < TX_DEADLINE {
                    tracing::warn!(
                        attempt,
                        "transaction outcome unknown; asking again under its token"
                    );
                    tokio::time::sleep(Duration::from_millis(100 * unsettled)).await;
                    continue;
                }
                tracing::error!(attempt, "transaction outcome still unknown");
                return Err(TxFailure::Error(ApiError::OutcomeUnknown {
                    retry_after_seconds: 1,
                }));
            }
            if is_throttled(&err) {
                throttled += 1;
                if throttled <= MAX_THROTTLED_RETRIES && started.elapsed() < TX_DEADLINE {
                    tokio::time::sleep(Duration::from_millis(50 << throttled)).await;
                    continue;
                }
                return Err(TxFailure::Error(if maybe_applied {
                    ApiError::OutcomeUnknown {
                        retry_after_seconds: 1,
                    }
                } else {
                    ApiError::Unavailable {
                        retry_after_seconds: 1,
                    }
                }));
            }
            let reasons: Vec<(Guarded, String, Option<Item>)> = match err.as_service_error() {
                Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => c
                    .cancellation_reasons()
                    .iter()
                    .zip(&guards)
                    .filter_map(|(r, g)| r.code().filter(|c| *c != "None").map(|c| (*g, c.to_owned(), r.item().cloned())))
                    .collect(),
                _ if maybe_applied => {
                    // An earlier attempt may have been applied; this one failed otherwise.
                    let _ = sdk_error("TransactWriteItems", err);
                    return Err(TxFailure::Error(ApiError::OutcomeUnknown {
                        retry_after_seconds: 1,
                    }));
                }
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
            let conflicted: Vec<Guarded> = reasons
                .iter()
                .filter(|(_, code, _)| code == "TransactionConflict")
                .map(|(g, _, _)| *g)
                .collect();
            if !conflicted.is_empty() {
                crate::metrics::conflict_retried();
                // Cancelled as a whole: nothing under the old token was applied.
                token = client_token();
                maybe_applied = false;
                if conflicted.iter().any(|g| g.is_the_resource()) {
                    // Another request is writing this very member (or webhook): it will
                    // most likely move its version, so two more tries, then the caller's
                    // answer for a lost race.
                    if attempt < 3 {
                        tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                        continue;
                    }
                    return Err(TxFailure::Error(on_conflict()));
                }
                // An item another member's write shares (a counter, a role, a guard): it is
                // held for a few milliseconds, and this write has not lost any race. Tried
                // again with jittered backoff until the deadline; then a retryable 503,
                // never an answer that tells a client its write was refused.
                shared_conflicts += 1;
                if started.elapsed() < TX_DEADLINE {
                    tokio::time::sleep(jittered_backoff(shared_conflicts)).await;
                    continue;
                }
                tracing::warn!(
                    attempt,
                    ?conflicted,
                    "transaction kept conflicting on a shared item"
                );
                return Err(TxFailure::Error(ApiError::Unavailable {
                    retry_after_seconds: 1,
                }));
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

/// How often a transaction whose outcome is unknown is asked again under its token.
const MAX_UNSETTLED_RETRIES: u64 = 2;
/// How often a throttled transaction is asked again.
const MAX_THROTTLED_RETRIES: u64 = 2;
/// No retry starts after this long: with one attempt at most 2 s (the client's attempt
/// timeout), a write answers within about 6 s of its first attempt.
const TX_DEADLINE: Duration = Duration::from_secs(4);

/// "Full jitter" (AWS Architecture Blog, "Exponential backoff and jitter"): a random wait
/// up to 20 ms × 2^(n−1), at most 320 ms, so writers that conflicted together do not
/// collide again together.
fn jittered_backoff(n: u32) -> Duration {
    let cap = (20u64 << n.saturating_sub(1).min(4)).min(320);
    let random = (ulid::Ulid::generate().random() % 1_000) as u64;
    Duration::from_millis(1 + cap * random / 1_000)
}

/// A fresh `ClientRequestToken` (1–36 characters).
fn client_token() -> String {
    ulid::Ulid::generate().to_string()
}

/// Whether a failed TransactWriteItems may still have been applied: the same token is still
/// running, the answer was lost (timeout, a connection that failed or was cut: a refused
/// connection cannot be told from one cut after sending), unreadable, or a 5xx (which
/// DynamoDB documents as "may or may not have succeeded").
fn is_unsettled<R>(
    err: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> bool {
    use aws_sdk_dynamodb::error::SdkError;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) | SdkError::DispatchFailure(_) => {
            true
        }
        SdkError::ServiceError(_) => {
            use aws_sdk_dynamodb::error::ProvideErrorMetadata;
            matches!(
                err.code(),
                Some("InternalServerError" | "ServiceUnavailable")
            ) || matches!(
                err.as_service_error(),
                Some(E::TransactionInProgressException(_))
            )
        }
        _ => false,
    }
}

/// Whether DynamoDB refused the transaction for throughput (nothing was applied).
fn is_throttled<R>(
    err: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> bool {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    let by_code = err.code().is_some_and(|c| {
        matches!(
            c,
            "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
        )
    });
    let by_reason = match err.as_service_error() {
        Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
            c.cancellation_reasons().iter().any(|r| {
                matches!(r.code(), Some("ThrottlingError" | "ProvisionedThroughputExceeded"))
            }) && !c
                .cancellation_reasons()
                .iter()
                .any(|r| r.code() == Some("ConditionalCheckFailed"))
        }
        _ => false,
    };
    by_code || by_reason
}

/// A put that never overwrites a live item: only an absent one, or one whose `expiresAt`
/// (TTL, which DynamoDB deletes lazily, within days) has passed by `now`.
pub(super) fn put_unless_live<T: Serialize>(
    table: &str,
    record: &T,
    now: i64,
) -> Result<TransactWriteItem, ApiError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(to_item(record)?))
        .condition_expression("attribute_not_exists(PK) OR expiresAt <= :now")
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .build()
        .map_err(|e| build_error("Put", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// A conditional put that never overwrites.
pub(super) fn put<T: Serialize>(table: &str, record: &T) -> Result<TransactWriteItem, ApiError> {
    put_item(table, to_item(record)?)
}

/// A new item, as built: written only where none is.
pub(super) fn put_item(table: &str, item: Item) -> Result<TransactWriteItem, ApiError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(|e| build_error("Put", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

pub(super) fn check(
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

pub(super) fn delete(
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
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    }
    Ok(TransactWriteItem::builder()
        .delete(delete.build().map_err(|e| build_error("Delete", e))?)
        .build())
}

impl DynamoStore {
    /// One BatchWriteItem (at most 25 writes), its unprocessed items sent again a few times
    /// with a growing pause; 503 if some are still left.
    pub(super) async fn batch_write(&self, writes: Vec<WriteRequest>) -> Result<(), ApiError> {
        let mut pending = Some(writes);
        for attempt in 0..5 {
            let Some(requests) = pending.take().filter(|r| !r.is_empty()) else {
                break;
            };
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| sdk_error("BatchWriteItem", e))?;
            pending = out
                .unprocessed_items()
                .and_then(|u| u.get(&self.table))
                .cloned();
            if pending.as_ref().is_some_and(|p| !p.is_empty()) {
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            }
        }
        match pending.is_some_and(|p| !p.is_empty()) {
            true => Err(ApiError::Unavailable {
                retry_after_seconds: 1,
            }),
            false => Ok(()),
        }
    }
}
