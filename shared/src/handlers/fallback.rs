use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse};
use crate::routes::allowed_methods;
use std::sync::Arc;

/// Whatever no route serves (API Gateway's `ANY` routes and `$default`, the watch router's
/// catch-all): a known path asked with another method is a 405 with `Allow`, any other path a
/// 404. Both before authentication: which paths exist is public (openapi.yaml). On SCIM's
/// paths the answer is a SCIM error document, elsewhere problem+json.
pub async fn fallback<S>(_store: Arc<S>, req: ApiRequest) -> Result<ApiResponse, ApiError> {
    let render = if crate::scim::is_scim_path(&req.path) {
        crate::scim::error_response
    } else {
        ApiResponse::problem
    };
    Ok(render(&refusal(&req)))
}

fn refusal(req: &ApiRequest) -> ApiError {
    // SCIM's search by POST (RFC 7644 §3.4.3) is not offered: 501, as the RFC has it for
    // what a service provider does not support (GET /scim/v2/Users?filter= is).
    if crate::scim::is_scim_path(&req.path) && req.path.ends_with("/.search") {
        return ApiError::NotImplemented {
            detail: "Search by POST (/.search) is not supported: use GET /scim/v2/Users?filter=…"
                .into(),
        };
    }
    match allowed_methods(&req.path) {
        Some(methods) => ApiError::MethodNotAllowed {
            allow: methods.join(", "),
        },
        None => ApiError::NotFound,
    }
}
