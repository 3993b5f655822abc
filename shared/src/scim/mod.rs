//! SCIM 2.0 (RFC 7643, RFC 7644) over the same members, for identity providers (Okta,
//! Microsoft Entra ID): the wire format only. A SCIM write becomes a [`MemberPatch`]
//! (`user`, `patch`) and goes through the same rules, conditional transactions, audit
//! history and change events as a `/v1` write (`handlers/scim.rs`).
//!
//! - [`user`]: a member as a SCIM User, and a User body back to a member patch; [`values`]:
//!   each value of a body checked; [`id`]: a User's id, never served again once deleted
//! - [`filter`]: the filters identity providers send, each served by a key
//! - [`patch`]: PATCH operations applied to the User document
//! - [`discovery`]: ServiceProviderConfig, ResourceTypes, Schemas: exactly what is served
//!
//! [`MemberPatch`]: crate::input::MemberPatch

pub mod attributes;
pub mod discovery;
pub mod filter;
pub mod group;
pub mod id;
pub mod patch;
pub mod user;
pub mod values;

use crate::error::{ApiError, FieldError};
use crate::http::{ApiRequest, ApiResponse};
use serde_json::{json, Value};

pub const CONTENT_TYPE: &str = "application/scim+json";
pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Our extension: what an identity provider's attribute mapping may set beyond RFC 7643.
pub const MEMBER: &str = "urn:members-api:params:scim:schemas:extension:member:2.0:User";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// Where SCIM is served.
pub const BASE: &str = "/scim/v2";

/// An attribute path split after its schema's URN, when it has one (`urn:…:User:department`
/// → the enterprise extension and `department`; the URN alone → the extension and ``):
/// `None` is the core schema (its URN is optional). URNs compare case-insensitively.
pub fn split_schema(path: &str) -> (Option<&'static str>, &str) {
    [
        (None, USER),
        (None, GROUP),
        (Some(ENTERPRISE), ENTERPRISE),
        (Some(MEMBER), MEMBER),
    ]
    .into_iter()
    .find_map(|(schema, urn)| {
        let head = path.get(..urn.len())?;
        if !head.eq_ignore_ascii_case(urn) {
            return None;
        }
        match &path[urn.len()..] {
            "" => Some((schema, "")),
            tail => tail.strip_prefix(':').map(|t| (schema, t)),
        }
    })
    .unwrap_or((None, path))
}

/// The key an attribute has in a SCIM object (attribute names compare case-insensitively).
pub fn key_of(map: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Whether a request path is SCIM's (its answers, errors included, are SCIM documents).
pub fn is_scim_path(path: &str) -> bool {
    path.contains("/scim/v2/") || path.ends_with("/scim/v2")
}

/// Runs a SCIM handler: its errors are SCIM documents (RFC 7644 §3.12), never problem+json.
pub async fn serve<S, F, Fut>(
    store: std::sync::Arc<S>,
    req: lambda_http::Request,
    handler: F,
) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error>
where
    S: Send + Sync + 'static,
    F: Fn(std::sync::Arc<S>, ApiRequest) -> Fut,
    Fut: std::future::Future<Output = Result<ApiResponse, ApiError>> + Send + 'static,
{
    crate::http::serve_with(store, req, handler, error_response).await
}

/// A SCIM document.
pub fn json(status: u16, body: &Value) -> ApiResponse {
    ApiResponse {
        content_type: CONTENT_TYPE,
        ..ApiResponse::json(status, body)
    }
}

/// A ListResponse (RFC 7644 §3.4.2): `total` in all, this page's `resources` from the
/// 1-based `start`.
pub fn list_response(total: usize, start: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// The weak entity tag of a member version (SCIM's `meta.version`, and the `ETag` header).
pub fn version_tag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// The absolute URL of a SCIM resource as the client reached the API (scheme from
/// `X-Forwarded-Proto` as API Gateway sets it, host from `Host`, and any stage prefix).
pub fn location(req: &ApiRequest, resource: &str) -> String {
    let host = req.header("host").unwrap_or("localhost");
    let local = host.starts_with("127.0.0.1") || host.starts_with("localhost");
    let scheme = req
        .header("x-forwarded-proto")
        .unwrap_or(if local { "http" } else { "https" });
    let prefix = req.path.find(BASE).map_or("", |at| &req.path[..at]);
    format!("{scheme}://{host}{prefix}{BASE}/{resource}")
}

/// An error as RFC 7644 §3.12 has it: `schemas`, `status` as a string, `scimType` where the
/// RFC defines one, and a `detail` that says what to do. Never problem+json on SCIM paths.
pub fn error_response(err: &ApiError) -> ApiResponse {
    let problem = err.problem();
    let detail = || {
        problem.body["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (status, scim_type, detail) = match err {
        ApiError::Scim { scim_type, detail } => (400, Some(*scim_type), detail.clone()),
        ApiError::MalformedJson(_) => (400, Some("invalidSyntax"), detail()),
        ApiError::UnsupportedMediaType => (
            415,
            None,
            "Send the body as JSON with Content-Type: application/scim+json.".into(),
        ),
        ApiError::Validation(errors) => (400, Some("invalidValue"), field_errors(errors)),
        ApiError::Rule { code, detail, .. } => {
            (400, Some("invalidValue"), with_advice(code, detail))
        }
        ApiError::Conflict {
            code: "email_taken",
            ..
        } => (
            409,
            Some("uniqueness"),
            "Another user of this organisation already has this email address (as its email \
             or its userName)."
                .into(),
        ),
        ApiError::Conflict {
            code: "user_name_taken",
            ..
        } => (
            409,
            Some("uniqueness"),
            "Another user of this organisation already has this userName (as its userName or \
             its email address; compared case-insensitively)."
                .into(),
        ),
        ApiError::Conflict {
            code: "email_held_by_deprovisioned",
            detail,
            ..
        } => (409, Some("uniqueness"), detail.clone()),
        ApiError::Conflict {
            code: "external_id_taken",
            ..
        } => (
            409,
            Some("uniqueness"),
            "Another user of this organisation already has this externalId.".into(),
        ),
        ApiError::Conflict {
            code: "group_name_taken",
            ..
        } => (
            409,
            Some("uniqueness"),
            "Another group of this organisation already has this displayName (compared \
             case-insensitively)."
                .into(),
        ),
        ApiError::UpdateInProgress => (
            409,
            None,
            "The user kept changing during this request; nothing was written. Read it again and retry.".into(),
        ),
        ApiError::PreconditionFailed => (
            412,
            None,
            "The resource has changed since the version sent in If-Match; read it again.".into(),
        ),
        _ => (problem.status, None, detail()),
    };
    let mut body = json!({
        "schemas": [ERROR],
        "status": status.to_string(),
        "detail": detail,
    });
    if let Some(scim_type) = scim_type {
        body["scimType"] = json!(scim_type);
    }
    let mut response = json(status, &body);
    if let Some(seconds) = problem.retry_after {
        response = response.with_header("Retry-After", seconds.to_string());
    }
    if problem.www_authenticate {
        response = response.with_header("WWW-Authenticate", "Bearer");
    }
    if let Some(allow) = problem.allow {
        response = response.with_header("Allow", allow);
    }
    response
}

/// A SCIM refusal with its `scimType`.
pub fn invalid(scim_type: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::Scim {
        scim_type,
        detail: detail.into(),
    }
}

/// The members API's field errors, named as SCIM names the attributes.
fn field_errors(errors: &[FieldError]) -> String {
    let shown: Vec<String> = errors
        .iter()
        .take(crate::error::MAX_FIELD_ERRORS)
        .map(|e| format!("{}: {}", attribute_of(&e.field), e.message))
        .collect();
    format!("{}.", shown.join("; "))
}

/// The SCIM attribute a member field is set by.
pub fn attribute_of(field: &str) -> String {
    let (head, rest) = match field.find(['.', '[']) {
        Some(at) => field.split_at(at),
        None => (field, ""),
    };
    let scim = match head {
        "email" => "emails[type eq \"work\"].value".to_owned(),
        "scimUserName" => "userName".to_owned(),
        "firstName" => "name.givenName".to_owned(),
        "lastName" => "name.familyName".to_owned(),
        "name" => "displayName".to_owned(),
        "jobTitle" => "title".to_owned(),
        "isActive" => "active".to_owned(),
        "department" => format!("{ENTERPRISE}:department"),
        "role" | "hrisRole" | "locations" => format!("{MEMBER}:{head}"),
        other => other.to_owned(),
    };
    format!("{scim}{rest}")
}

/// A rule's refusal, with what an identity provider's administrator can do about it.
fn with_advice(code: &str, detail: &str) -> String {
    let advice = match code {
        "last_admin" => {
            "Make another active member an admin first (the role attribute of our extension, \
             or PATCH /v1/members/{id} with {\"role\": \"admin\"}), then retry."
        }
        "last_hris_admin" => {
            "Give another active member the HRIS role hris_admin first (the hrisRole attribute \
             of our extension, or PATCH /v1/members/{id}), then retry."
        }
        "last_admin_hris_admin" => {
            "Make another active member both admin and hris_admin first, then retry."
        }
        "primary_required" | "primary_must_be_active" => {
            "This user is the organisation's primary member: make another active member \
             primary first (PATCH /v1/members/{id} with {\"isPrimary\": true}), then retry."
        }
        "hris_role_required" => {
            "HRIS is enabled: send the hrisRole attribute of our extension (for new users, \
             the organisation's scim.defaultHrisRole applies when it is absent)."
        }
        "unknown_role" => {
            "Send a built-in role (admin, simple, reviewer, no_access) or the id of one of \
             the organisation's custom roles (GET /v1/roles)."
        }
        _ => "",
    };
    let detail = detail.trim_end_matches('.');
    let mut chars = detail.chars();
    let capital: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if advice.is_empty() {
        format!("{capital}.")
    } else {
        format!("{capital}. {advice}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_scim_documents_with_the_rfc_scim_types() {
        let cases: Vec<(ApiError, u16, Option<&str>)> = vec![
            (invalid("invalidFilter", "x"), 400, Some("invalidFilter")),
            (
                ApiError::MalformedJson("eof".into()),
                400,
                Some("invalidSyntax"),
            ),
            (
                ApiError::field("email", "invalid", "bad"),
                400,
                Some("invalidValue"),
            ),
            (
                ApiError::rule("last_admin", Some("role"), "this change would leave none"),
                400,
                Some("invalidValue"),
            ),
            (
                ApiError::Conflict {
                    code: "email_taken",
                    detail: String::new(),
                    field: None,
                },
                409,
                Some("uniqueness"),
            ),
            (ApiError::PreconditionFailed, 412, None),
            (ApiError::NotFound, 404, None),
            (ApiError::MissingApiKey, 401, None),
            (ApiError::MissingScope("scim"), 403, None),
            (ApiError::Internal, 500, None),
        ];
        for (err, status, scim_type) in cases {
            let r = error_response(&err);
            assert_eq!(
                (r.status, r.content_type),
                (status, CONTENT_TYPE),
                "{err:?}"
            );
            let body: Value =
                serde_json::from_str(r.body.as_deref().unwrap_or_default()).unwrap_or_default();
            assert_eq!(body["schemas"], json!([ERROR]));
            assert_eq!(body["status"], json!(status.to_string()));
            assert_eq!(body["scimType"].as_str(), scim_type, "{err:?}");
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
        let r = error_response(&ApiError::MissingApiKey);
        assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    }

    #[test]
    fn rule_refusals_say_what_to_do() {
        let r = error_response(&ApiError::rule(
            "last_admin",
            Some("role"),
            "this change would leave the organisation without an active admin",
        ));
        let body = r.body.unwrap_or_default();
        assert!(body.contains("This change would leave"), "{body}");
        assert!(
            body.contains("Make another active member an admin first"),
            "{body}"
        );
    }

    #[test]
    fn member_fields_are_named_as_scim_attributes() {
        assert_eq!(attribute_of("email"), "emails[type eq \"work\"].value");
        assert_eq!(attribute_of("firstName"), "name.givenName");
        assert_eq!(
            attribute_of("locations[0].role"),
            format!("{MEMBER}:locations[0].role")
        );
        assert_eq!(
            location_for_test("/scim/v2/Users"),
            "https://api.example.com/scim/v2/Users/x"
        );
        assert_eq!(
            location_for_test("/prod/scim/v2/Users"),
            "https://api.example.com/prod/scim/v2/Users/x"
        );
    }

    fn location_for_test(path: &str) -> String {
        let mut req = ApiRequest {
            path: path.into(),
            ..ApiRequest::default()
        };
        req.headers.insert("host".into(), "api.example.com".into());
        location(&req, "Users/x")
    }
}
