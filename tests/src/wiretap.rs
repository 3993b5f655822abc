//! A wrapper around the SDK's own HTTP client that counts DynamoDB calls by operation and
//! can play, on the next N `TransactWriteItems`, what real DynamoDB and real networks do and
//! DynamoDB Local never does: a `TransactionConflict` cancellation, a
//! `TransactionInProgressException`, or an answer lost after the transaction committed (a
//! timeout). Everything else goes through to the real client and the real DynamoDB Local.

use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Tap {
    calls: Mutex<BTreeMap<String, usize>>,
    conflicts_to_inject: AtomicUsize,
    in_progress_to_inject: AtomicUsize,
    throttles_to_inject: AtomicUsize,
    answers_to_lose: AtomicUsize,
    /// Asks DynamoDB for `ConsumedCapacity` on every call and adds it up.
    measure_capacity: std::sync::atomic::AtomicBool,
    cost: Mutex<crate::cost::Cost>,
}

impl Tap {
    /// Calls per operation since the last `take_calls`.
    pub fn take_calls(&self) -> BTreeMap<String, usize> {
        self.calls
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// From now on every call asks for `ReturnConsumedCapacity: INDEXES` (added to its body:
    /// DynamoDB Local does not check signatures); its units, by table and index, and the
    /// items its transactions write are added up.
    pub fn measure_capacity(&self) {
        self.measure_capacity.store(true, Ordering::SeqCst);
    }

    /// Capacity units consumed since the last take.
    pub fn take_capacity(&self) -> f64 {
        self.take_cost().units.get("total").copied().unwrap_or(0.0)
    }

    /// Capacity by table and index, and the items written, since the last take.
    pub fn take_cost(&self) -> crate::cost::Cost {
        self.cost
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// The next `n` TransactWriteItems calls are cancelled with `TransactionConflict`.
    pub fn inject_conflicts(&self, n: usize) {
        self.conflicts_to_inject.store(n, Ordering::SeqCst);
    }

    /// The next `n` TransactWriteItems calls are answered `TransactionInProgressException`
    /// (not sent on), as DynamoDB answers while the same client token is still running.
    pub fn inject_in_progress(&self, n: usize) {
        self.in_progress_to_inject.store(n, Ordering::SeqCst);
    }

    /// The next `n` TransactWriteItems calls are refused with `ThrottlingException` (not
    /// sent on), as DynamoDB answers past a partition's or table's throughput.
    pub fn inject_throttling(&self, n: usize) {
        self.throttles_to_inject.store(n, Ordering::SeqCst);
    }

    /// The next `n` TransactWriteItems calls reach DynamoDB and commit, but their answers
    /// are lost: the caller sees a timeout.
    pub fn lose_answers(&self, n: usize) {
        self.answers_to_lose.store(n, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone)]
struct TapClient {
    inner: SharedHttpClient,
    tap: Arc<Tap>,
}

#[derive(Debug)]
struct TapConnector {
    inner: SharedHttpConnector,
    tap: Arc<Tap>,
}

impl HttpClient for TapClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(TapConnector {
            inner: self.inner.http_connector(settings, components),
            tap: self.tap.clone(),
        })
    }
}

impl HttpConnector for TapConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("?")
            .to_owned();
        if let Ok(mut calls) = self.tap.calls.lock() {
            *calls.entry(operation.clone()).or_default() += 1;
        }
        if let Some(body) = request.body().bytes() {
            crate::ledger::record_bytes(&operation, body);
        }
        let take = |counter: &AtomicUsize| {
            operation == "TransactWriteItems"
                && counter
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
        };
        if take(&self.tap.conflicts_to_inject) {
            return HttpConnectorFuture::ready(Ok(conflict()));
        }
        if take(&self.tap.in_progress_to_inject) {
            return HttpConnectorFuture::ready(Ok(refusal(
                "TransactionInProgressException",
                "Transaction with the same client token is in progress",
            )));
        }
        if take(&self.tap.throttles_to_inject) {
            return HttpConnectorFuture::ready(Ok(refusal(
                "ThrottlingException",
                "Rate of requests exceeds the allowed throughput",
            )));
        }
        if take(&self.tap.answers_to_lose) {
            let sent = self.inner.call(request);
            return HttpConnectorFuture::new(async move {
                let answer = sent.await?;
                // Committed (or refused) by DynamoDB; the caller never hears of it.
                drop(answer);
                Err(ConnectorError::timeout(
                    "the answer was lost after the request reached DynamoDB".into(),
                ))
            });
        }
        if self.tap.measure_capacity.load(Ordering::SeqCst) {
            return self.with_capacity(request);
        }
        self.inner.call(request)
    }
}

impl TapConnector {
    /// Sends `request` asking for its consumed capacity, and adds the answer's up.
    fn with_capacity(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        let body = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
        if let Some(mut body) = body {
            if let Ok(mut cost) = self.tap.cost.lock() {
                cost.add_request(&body);
            }
            if let Some(object) = body.as_object_mut() {
                object
                    .entry("ReturnConsumedCapacity")
                    .or_insert_with(|| "INDEXES".into());
                let body = body.to_string().into_bytes();
                request
                    .headers_mut()
                    .insert("content-length", body.len().to_string());
                *request.body_mut() = SdkBody::from(body);
            }
        }
        let sent = self.inner.call(request);
        let tap = self.tap.clone();
        HttpConnectorFuture::new(async move {
            let response = sent.await?;
            let (status, headers) = (response.status(), response.headers().clone());
            let bytes = aws_smithy_types::byte_stream::ByteStream::new(response.into_body())
                .collect()
                .await
                .map_err(|e| ConnectorError::other(e.into(), None))?
                .into_bytes();
            if let (Ok(answer), Ok(mut cost)) = (
                serde_json::from_slice::<serde_json::Value>(&bytes),
                tap.cost.lock(),
            ) {
                cost.add_answer(&answer);
            }
            let mut again = HttpResponse::new(status, SdkBody::from(bytes));
            *again.headers_mut() = headers;
            Ok(again)
        })
    }
}

/// A 400 answer of DynamoDB's JSON protocol with the exception `kind`.
fn refusal(kind: &str, message: &str) -> HttpResponse {
    answer_400(
        serde_json::json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"),
            "Message": message,
        })
        .to_string(),
    )
}

fn conflict() -> HttpResponse {
    answer_400(r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict]","CancellationReasons":[{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}]}"#.to_owned())
}

fn answer_400(body: String) -> HttpResponse {
    let mut response = HttpResponse::new(
        StatusCode::try_from(400u16).unwrap_or_else(|_| unreachable!()),
        SdkBody::from(body),
    );
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    response
}

/// A DynamoDB client for `endpoint` whose calls go through a [`Tap`].
pub async fn tapped_client(endpoint: &str) -> Result<(Client, Arc<Tap>), String> {
    tapped_client_with(endpoint, None).await
}

/// [`tapped_client`] with its own timeouts (the tests' patient ones, say).
pub async fn tapped_client_with(
    endpoint: &str,
    timeouts: Option<aws_sdk_dynamodb::config::timeout::TimeoutConfig>,
) -> Result<(Client, Arc<Tap>), String> {
    if !endpoint.starts_with("http://") {
        return Err(format!(
            "the wiretap speaks plain HTTP to DynamoDB Local, not {endpoint}"
        ));
    }
    let config = shared::store::DynamoStore::sdk_config(Some(endpoint)).await;
    // DynamoDB Local speaks plain HTTP: the SDK's client without TLS.
    let inner = aws_smithy_http_client::Builder::new().build_http();
    let tap = Arc::new(Tap::default());
    let mut conf = aws_sdk_dynamodb::config::Builder::from(&config).http_client(TapClient {
        inner,
        tap: tap.clone(),
    });
    if let Some(timeouts) = timeouts {
        conf = conf.timeout_config(timeouts);
    }
    Ok((Client::from_conf(conf.build()), tap))
}
