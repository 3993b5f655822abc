//! The DynamoDB client: HTTPS, short timeouts, and its configuration from the environment
//! (the SDK's full loader for the operator, or only what Lambda provides for the functions).

use super::errors::sdk_error;
use super::DynamoStore;
use crate::error::ApiError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::time::Duration;

impl DynamoStore {
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
        use aws_sdk_dynamodb::config::BehaviorVersion;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (region, credentials) = lambda_identity()?;
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .timeout_config(timeouts())
            .http_client(https_client())
            // Each call and its consumed capacity, counted for the operation (metrics).
            .interceptor(crate::metrics::DynamoCalls);
        if let Some(url) = var("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| var("AWS_ENDPOINT_URL")) {
            config = config.endpoint_url(url);
        }
        Ok(Client::from_conf(config.build()))
    }
}

/// The region and the execution role's credentials, as Lambda puts them in the environment
/// (the same types for every AWS SDK crate: the other functions' clients use them too).
pub fn lambda_identity() -> Result<
    (
        aws_sdk_dynamodb::config::Region,
        aws_sdk_dynamodb::config::Credentials,
    ),
    String,
> {
    use aws_sdk_dynamodb::config::{Credentials, Region};
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .ok_or("AWS_REGION is not set")?;
    let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) else {
        return Err("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set".into());
    };
    let credentials = Credentials::new(key, secret, var("AWS_SESSION_TOKEN"), None, "environment");
    Ok((Region::new(region), credentials))
}

impl DynamoStore {
    /// Opens the connection to DynamoDB during init, where Lambda gives a full vCPU and no
    /// request waits on it: on AWS the first call of an instance pays the TLS handshake
    /// (hundreds of milliseconds at 128–256 MB). The call is one GetItem of a key that never
    /// exists, so it also proves the table, the region and the credentials: a missing table
    /// or a denied role fails init loudly instead of every request. DynamoDB being briefly
    /// unreachable or throttling does not fail init (the requests answer 503 then).
    /// `DYNAMODB_CONNECT_AT_INIT=false` skips it (the cold-start benchmark's baseline).
    pub async fn connect(&self) -> Result<(), String> {
        if std::env::var("DYNAMODB_CONNECT_AT_INIT").is_ok_and(|v| v == "false") {
            return Ok(());
        }
        let probe = self
            .client()
            .get_item()
            .table_name(self.table())
            // Under the tenants' ORG# prefix, never a real item (organisation ids are org_…).
            .key("PK", AttributeValue::S("ORG#init-probe".into()))
            .key("SK", AttributeValue::S("PROBE".into()))
            .projection_expression("PK")
            .send()
            .await;
        match probe {
            Ok(_) => Ok(()),
            Err(e) => match sdk_error("GetItem", e) {
                ApiError::Unavailable { .. } => {
                    tracing::warn!("DynamoDB did not answer during init; requests will retry");
                    Ok(())
                }
                _ => Err(format!(
                    "DynamoDB refused the init probe of table {}: check TABLE_NAME, the region and the function's role",
                    self.table()
                )),
            },
        }
    }
}

/// Short timeouts, so that an unreachable store becomes a 503 within seconds rather than a
/// Lambda timeout: an attempt 2 s, a call with its retries 5 s. DynamoDB answers in
/// milliseconds; DynamoDB Local on a busy two-core machine can take seconds, so a local
/// stack may set `DYNAMODB_ATTEMPT_TIMEOUT_MS` (the call's timeout scales with it; the
/// template never sets it).
pub fn timeouts() -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
    let attempt = std::env::var("DYNAMODB_ATTEMPT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| (100..=120_000).contains(ms))
        .map_or(Duration::from_secs(2), Duration::from_millis);
    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt.mul_f64(2.5))
        .build()
}

/// rustls on ring: the same TLS as the SDK's default client, a smaller binary.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}
