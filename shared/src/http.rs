//! HTTP glue: the one place that knows `lambda_http`. A Lambda request becomes a plain
//! [`ApiRequest`]; a handler's [`ApiResponse`] or [`ApiError`] becomes the Lambda response.

use crate::error::ApiError;
use crate::metrics;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tracing::{field::Empty, Instrument};

/// Bodies above this are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request as handlers see it: no framework types.
#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    /// The `{id}` path parameter, under API Gateway and under `cargo lambda watch` alike.
    pub path_id: Option<String>,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub request_id: Option<String>,
}

impl ApiRequest {
    pub fn from_lambda(req: Request) -> Self {
        let path_id = req
            .path_parameters_ref()
            .and_then(|p| p.first("id"))
            .map(str::to_owned);
        let query = req
            .query_string_parameters_ref()
            .map(|q| {
                q.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let request_id = match req.request_context_ref() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
            _ => None,
        }
        .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()));
        let (parts, body) = req.into_parts();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned()))
            })
            .collect();
        let body = match body {
            Body::Empty => Vec::new(),
            Body::Text(t) => t.into_bytes(),
            Body::Binary(b) => b,
            _ => Vec::new(),
        };
        ApiRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            path_id,
            headers,
            query,
            body,
            request_id,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as JSON: 413 when too large, 415 when not declared JSON, 400 when malformed.
    pub fn json_body(&self) -> Result<Value, ApiError> {
        if self.body.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        let content_type = self.header("content-type").unwrap_or("");
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let is_json = media == "application/json"
            || (media.starts_with("application/") && media.ends_with("+json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::MalformedJson("the body is empty".into()));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Eof => "it ends early",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data => "unexpected data",
                serde_json::error::Category::Io => "unreadable",
            };
            ApiError::MalformedJson(format!("{what} at line {} column {}", e.line(), e.column()))
        })
    }
}

/// A handler's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub content_type: &'static str,
}

impl ApiResponse {
    pub fn json(status: u16, body: &Value) -> Self {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: Some(body.to_string()),
            content_type: "application/json",
        }
    }

    /// A JSON answer from text already serialised (pages built item by item).
    pub fn raw_json(status: u16, body: String) -> Self {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: Some(body),
            content_type: "application/json",
        }
    }

    pub fn empty(status: u16) -> Self {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: None,
            content_type: "application/json",
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn problem(err: &ApiError) -> Self {
        let p = err.problem();
        let mut response = ApiResponse {
            status: p.status,
            headers: Vec::new(),
            body: Some(p.body.to_string()),
            content_type: "application/problem+json",
        };
        if let Some(seconds) = p.retry_after {
            response = response.with_header("Retry-After", seconds.to_string());
        }
        if p.www_authenticate {
            response = response.with_header("WWW-Authenticate", "Bearer");
        }
        if let Some(allow) = p.allow {
            response = response.with_header("Allow", allow);
        }
        response
    }

    /// The Lambda answer. Every answer carries `X-Content-Type-Options: nosniff` and
    /// `Cache-Control: no-store`: members, keys' organisations and even refusals are tenant
    /// data that no shared cache may keep (an `ETag` still lets a client ask `If-None-Match`).
    pub fn into_lambda(self) -> Response<Body> {
        let mut builder = Response::builder()
            .status(self.status)
            .header("X-Content-Type-Options", "nosniff")
            .header("Cache-Control", "no-store");
        if self.body.is_some() {
            builder = builder.header("Content-Type", self.content_type);
        }
        for (k, v) in &self.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let body = self.body.map_or(Body::Empty, Body::Text);
        builder.body(body).unwrap_or_else(|_| {
            let mut fallback = Response::new(Body::Empty);
            *fallback.status_mut() = lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        })
    }
}

/// Whether an `If-None-Match` / `If-Match` header value names `etag` (weak comparison, `*`).
pub fn etag_matches(header: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    header.split(',').any(|candidate| {
        let candidate = candidate.trim();
        candidate == "*" || strip(candidate) == strip(etag)
    })
}

/// How a route writes its errors: problem+json ([`ApiResponse::problem`]) or another
/// format a protocol demands (SCIM's, chosen by the SCIM functions).
pub type ErrorRenderer = fn(&ApiError) -> ApiResponse;

/// [`serve_with`] errors as problem+json: every `/v1` route.
pub async fn serve<S, F, Fut>(
    store: Arc<S>,
    req: Request,
    handler: F,
) -> Result<Response<Body>, lambda_http::Error>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, ApiRequest) -> Fut,
    Fut: Future<Output = Result<ApiResponse, ApiError>> + Send + 'static,
{
    serve_with(store, req, handler, ApiResponse::problem).await
}

/// Runs one handler for one Lambda request: a span with the request id (org and member ids
/// are recorded by the handler), errors (a panic: a 500) written by `error`, one log line
/// per request with method, route, status and latency — never a body, a key or a header
/// value.
pub async fn serve_with<S, F, Fut>(
    store: Arc<S>,
    req: Request,
    handler: F,
    error: ErrorRenderer,
) -> Result<Response<Body>, lambda_http::Error>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, ApiRequest) -> Fut,
    Fut: Future<Output = Result<ApiResponse, ApiError>> + Send + 'static,
{
    let request = ApiRequest::from_lambda(req);
    let span = tracing::info_span!(
        "request",
        request_id = request.request_id.as_deref().unwrap_or("-"),
        method = %request.method,
        org_id = Empty,
        member_id = Empty,
    );
    let started = Instant::now();
    let method = request.method.clone();
    let route = route_of(&request);
    let operation = crate::routes::operation_of(&request.method, &request.path);
    let task = tokio::spawn(crate::ratelimit::scoped(metrics::scoped(
        operation,
        handler(store, request).instrument(span.clone()),
    )));
    let (response, code) = match task.await {
        Ok((result, standing)) => {
            let (mut response, code) = match result {
                Ok(response) => (response, None),
                Err(err) => (error(&err), Some(err.code())),
            };
            // Every answer to an authenticated request says where its key stands.
            for (name, value) in standing.iter().flat_map(|s| s.headers()) {
                response = response.with_header(name, value);
            }
            (response, code)
        }
        Err(join) => {
            span.in_scope(|| tracing::error!(panicked = join.is_panic(), "handler failed"));
            (error(&ApiError::Internal), Some(ApiError::Internal.code()))
        }
    };
    metrics::request(operation, response.status, started.elapsed(), code);
    metrics::flush();
    span.in_scope(|| {
        tracing::info!(
            %method,
            route,
            status = response.status,
            latency_ms = started.elapsed().as_millis() as u64,
            "request finished"
        )
    });
    Ok(response.into_lambda())
}

/// The route template of a request, for logs: never the path as sent (it may hold an id
/// that is not one, or anything at all on a path the API does not have).
fn route_of(request: &ApiRequest) -> String {
    crate::routes::template_of(&request.path).to_owned()
}

/// Records the caller's organisation and the member on the current request span.
/// Puts the organisation and member ids on the request's log lines. Only parsed ids: what
/// a client sent in their place (an email, anything) never reaches a log.
pub fn record_ids(org: &crate::model::OrgId, member: Option<&crate::model::MemberId>) {
    let span = tracing::Span::current();
    span.record("org_id", org.as_str());
    if let Some(member) = member {
        span.record("member_id", member.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_is_nosniff_and_no_store() {
        for response in [
            ApiResponse::json(200, &serde_json::json!({"a": 1})),
            ApiResponse::empty(204),
            ApiResponse::problem(&ApiError::NotFound),
        ] {
            let lambda = response.into_lambda();
            let header = |name: &str| lambda.headers().get(name).and_then(|v| v.to_str().ok());
            assert_eq!(header("x-content-type-options"), Some("nosniff"));
            assert_eq!(header("cache-control"), Some("no-store"));
        }
    }

    fn req(content_type: Option<&str>, body: &[u8]) -> ApiRequest {
        let mut r = ApiRequest {
            body: body.to_vec(),
            ..ApiRequest::default()
        };
        if let Some(ct) = content_type {
            r.headers.insert("content-type".into(), ct.into());
        }
        r
    }

    #[test]
    fn bodies_are_checked_in_order_size_type_syntax() {
        let cases: Vec<(&str, Option<&str>, Vec<u8>, Option<&str>)> = vec![
            ("json", Some("application/json"), b"{}".to_vec(), None),
            (
                "json with charset",
                Some("application/json; charset=utf-8"),
                b"{}".to_vec(),
                None,
            ),
            (
                "merge patch",
                Some("application/merge-patch+json"),
                b"{}".to_vec(),
                None,
            ),
            (
                "no content type",
                None,
                b"{}".to_vec(),
                Some("unsupported_media_type"),
            ),
            (
                "text/plain",
                Some("text/plain"),
                b"{}".to_vec(),
                Some("unsupported_media_type"),
            ),
            (
                "malformed",
                Some("application/json"),
                b"{\"a\":".to_vec(),
                Some("malformed_json"),
            ),
            (
                "empty",
                Some("application/json"),
                b"".to_vec(),
                Some("malformed_json"),
            ),
            (
                "invalid utf-8",
                Some("application/json"),
                vec![b'"', 0xff, b'"'],
                Some("malformed_json"),
            ),
            (
                "too large",
                Some("application/json"),
                vec![b' '; MAX_BODY_BYTES + 1],
                Some("payload_too_large"),
            ),
        ];
        for (name, ct, body, expected) in cases {
            let got = req(ct, &body).json_body().err().map(|e| e.code());
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn etags_compare_weakly_and_in_lists() {
        assert!(etag_matches("\"3\"", "\"3\""));
        assert!(etag_matches("W/\"3\"", "\"3\""));
        assert!(etag_matches("\"1\", \"3\"", "\"3\""));
        assert!(etag_matches("*", "\"3\""));
        assert!(!etag_matches("\"4\"", "\"3\""));
    }

    #[test]
    fn problems_carry_their_media_type_and_headers() {
        let r = ApiResponse::problem(&ApiError::Unavailable {
            retry_after_seconds: 1,
        });
        assert_eq!(
            (r.status, r.content_type),
            (503, "application/problem+json")
        );
        assert_eq!(r.header("retry-after"), Some("1"));
        let r = ApiResponse::problem(&ApiError::MissingApiKey);
        assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    }
}
