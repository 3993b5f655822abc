//! Errors of the SDK: a call that failed, or a request that could not be built, as the
//! domain's errors. (Refused conditions are `refusals.rs`'s.)

use crate::error::ApiError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

pub(super) fn build_error(what: &str, e: impl std::fmt::Display) -> ApiError {
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
