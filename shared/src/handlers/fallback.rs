use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::routes::allowed_methods;
use std::sync::Arc;

/// Whatever no route serves (API Gateway's `ANY` routes and `$default`, the watch router's
/// catch-all): a known path asked with another method is a 405 with `Allow`, any other path a
/// 404. Both before authentication: which paths exist is public (openapi.yaml).
pub async fn fallback<S>(_store: Arc<S>, req: ApiRequest) -> Result<ApiResponse, ApiError> {
    match allowed_methods(&req.path) {
        Some(methods) => Err(ApiError::MethodNotAllowed {
            allow: methods.join(", "),
        }),
        None => Err(ApiError::NotFound),
    }
}
