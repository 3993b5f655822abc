//! The one error type of the API and its one mapping to RFC 9457 problem+json.

use serde::Serialize;
use serde_json::json;

/// One problem with one input field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// Every way a request can fail. Handlers return it with `?`; [`ApiError::problem`] is the
/// only place that decides status, `code` and wording.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("bad request: {detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("payload too large")]
    PayloadTooLarge { limit: usize },
    #[error("missing API key")]
    MissingApiKey,
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("missing scope {0}")]
    MissingScope(&'static str),
    /// The key may call the endpoint, but not ask for what this request asks: it would
    /// learn through it what `scope` guards (a webhook subscribed to member events).
    #[error("missing scope {scope} for what the request asks")]
    ScopeNeeded { scope: &'static str, detail: String },
    #[error("not found")]
    NotFound,
    /// A known path asked with a method it does not serve; `allow` lists the ones it does.
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A rule of the SPEC (422 unless the rule says otherwise).
    #[error("rule {code} refused the request")]
    Rule {
        code: &'static str,
        detail: String,
        field: Option<&'static str>,
    },
    #[error("conflict: {code}")]
    Conflict {
        code: &'static str,
        detail: String,
        field: Option<&'static str>,
    },
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("the member changed meanwhile")]
    UpdateInProgress,
    #[error("the store is unavailable")]
    Unavailable { retry_after_seconds: u32 },
    /// Over the key's or the organisation's rate limit (`ratelimit`): 429.
    #[error("rate limited")]
    RateLimited { retry_after_seconds: u32 },
    /// A write was sent but its answer never came (timeout, lost connection), and asking
    /// again with the same client token did not settle it: it may have been applied.
    #[error("the outcome of a write is unknown")]
    OutcomeUnknown { retry_after_seconds: u32 },
    /// A SCIM request the SCIM protocol refuses with a `scimType` of RFC 7644 §3.12
    /// (`invalidFilter`, `invalidPath`, `noTarget`, `mutability`, …): 400.
    #[error("SCIM {scim_type}: {detail}")]
    Scim {
        scim_type: &'static str,
        detail: String,
    },
    /// A feature this API does not offer (SCIM's `/.search`, announced as such).
    #[error("not implemented")]
    NotImplemented { detail: String },
    /// A feed cursor older than the feed's retention: events after it were deleted.
    #[error("cursor expired")]
    CursorExpired,
    /// A feed cursor of an earlier epoch of the feed: the feed was re-created since it was
    /// issued, and its places no longer name the same events.
    #[error("feed reset")]
    FeedReset,
    #[error("internal error")]
    Internal,
}

/// An RFC 9457 problem document plus the headers it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: u16,
    pub body: serde_json::Value,
    pub retry_after: Option<u32>,
    pub www_authenticate: bool,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
}

const TYPE_BASE: &str = "https://members-api.dev/problems/";

/// At most this many field errors are listed in a problem; `errorsOmitted` counts the rest.
pub const MAX_FIELD_ERRORS: usize = 50;
/// A field name echoed in an error is cut to this many characters.
pub const MAX_FIELD_NAME: usize = 128;

impl ApiError {
    pub fn field(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, code, message)])
    }

    pub fn rule(
        code: &'static str,
        field: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        ApiError::Rule {
            code,
            detail: detail.into(),
            field,
        }
    }

    /// The stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::BadRequest { code, .. } => code,
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::MissingApiKey => "missing_api_key",
            ApiError::InvalidApiKey => "invalid_api_key",
            ApiError::MissingScope(_) | ApiError::ScopeNeeded { .. } => "insufficient_scope",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Validation(_) => "validation_failed",
            ApiError::Rule { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::PreconditionFailed => "precondition_failed",
            ApiError::UpdateInProgress => "member_update_in_progress",
            ApiError::Unavailable { .. } => "service_unavailable",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::OutcomeUnknown { .. } => "outcome_unknown",
            ApiError::CursorExpired => "cursor_expired",
            ApiError::FeedReset => "feed_reset",
            ApiError::Scim { scim_type, .. } => scim_type,
            ApiError::NotImplemented { .. } => "not_implemented",
            ApiError::Internal => "internal_error",
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, title, detail): (u16, &str, String) = match self {
            ApiError::MalformedJson(why) => (
                400,
                "Malformed JSON",
                format!("The request body is not valid JSON: {why}."),
            ),
            ApiError::BadRequest { detail, .. } | ApiError::Scim { detail, .. } => {
                (400, "Bad request", detail.clone())
            }
            ApiError::UnsupportedMediaType => (
                415,
                "Unsupported media type",
                "Send the body as JSON with the header Content-Type: application/json.".into(),
            ),
            ApiError::PayloadTooLarge { limit } => (
                413,
                "Payload too large",
                format!("The request body is larger than {} KiB.", limit / 1024),
            ),
            ApiError::MissingApiKey => (
                401,
                "Unauthorized",
                "Send an API key in the header Authorization: Bearer <key>.".into(),
            ),
            ApiError::InvalidApiKey => (401, "Unauthorized", "The API key is not valid.".into()),
            ApiError::MissingScope(scope) => (
                403,
                "Forbidden",
                format!("The API key lacks the scope {scope} this request needs."),
            ),
            ApiError::ScopeNeeded { detail, .. } => (403, "Forbidden", detail.clone()),
            ApiError::NotFound => (404, "Not found", "No such resource.".into()),
            ApiError::MethodNotAllowed { allow } => (
                405,
                "Method not allowed",
                format!("This path answers {allow} only (see the Allow header)."),
            ),
            ApiError::Validation(errors) => (
                422,
                "Validation failed",
                format!(
                    "The request has {} invalid field{}.",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                ),
            ),
            ApiError::Rule { detail, .. } => (422, "Rule violated", detail.clone()),
            ApiError::Conflict { detail, .. } => (409, "Conflict", detail.clone()),
            ApiError::PreconditionFailed => (
                412,
                "Precondition failed",
                "The member has changed since the ETag sent in If-Match; fetch it again.".into(),
            ),
            ApiError::UpdateInProgress => (
                422,
                "Member update in progress",
                "The member is being updated by another request; fetch it and try again.".into(),
            ),
            ApiError::Unavailable { .. } => (
                503,
                "Service unavailable",
                "The data store is unavailable or throttling; nothing was written. Retry later."
                    .into(),
            ),
            ApiError::RateLimited {
                retry_after_seconds,
            } => (
                429,
                "Too many requests",
                format!(
                    "This API key or its organisation has used its requests of this minute \
                     (RateLimit-Policy and RateLimit say which and how many); nothing was done. \
                     Retry after {retry_after_seconds} s."
                ),
            ),
            ApiError::OutcomeUnknown { .. } => (
                503,
                "Outcome unknown",
                "The data store did not confirm the write in time: it may or may not have been \
                 applied. Retry the same request: with its If-Match (or Idempotency-Key) a retry \
                 cannot apply it twice; or read the resource first."
                    .into(),
            ),
            ApiError::CursorExpired => (
                410,
                "Gone",
                "Events after this cursor are past the feed's 30-day retention and were \
                 deleted. Resynchronise (GET /v1/members), then follow the feed again from \
                 its start (no `after`)."
                    .into(),
            ),
            ApiError::FeedReset => (
                410,
                "Gone",
                "This cursor belongs to an earlier epoch of the feed: the feed was re-created \
                 since, and its places name other events now. Resynchronise (GET /v1/members), \
                 then follow the feed again from its start (no `after`)."
                    .into(),
            ),
            ApiError::NotImplemented { detail } => (501, "Not implemented", detail.clone()),
            ApiError::Internal => (
                500,
                "Internal server error",
                "Something went wrong on our side; nothing was written.".into(),
            ),
        };
        let code = self.code();
        let mut body = json!({
            "type": format!("{TYPE_BASE}{code}"),
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
        });
        let errors = match self {
            ApiError::Validation(errors) => Some(errors.clone()),
            ApiError::Rule {
                field: Some(field),
                detail,
                code,
            }
            | ApiError::Conflict {
                field: Some(field),
                detail,
                code,
            } => Some(vec![FieldError::new(*field, code, detail.clone())]),
            _ => None,
        };
        if let Some(mut errors) = errors {
            // Bounded in bytes whatever the body held (64 KiB of one-letter unknown keys would
            // otherwise echo ~700 KB): the first MAX_FIELD_ERRORS, each field name cut to
            // MAX_FIELD_NAME characters, and the count of the rest.
            let omitted = errors.len().saturating_sub(MAX_FIELD_ERRORS);
            errors.truncate(MAX_FIELD_ERRORS);
            for e in &mut errors {
                cut(&mut e.field, MAX_FIELD_NAME);
                cut(&mut e.message, 2 * MAX_FIELD_NAME);
            }
            body["errors"] = json!(errors);
            if omitted > 0 {
                body["errorsOmitted"] = json!(omitted);
            }
        }
        Problem {
            status,
            body,
            retry_after: match self {
                ApiError::Unavailable {
                    retry_after_seconds,
                }
                | ApiError::RateLimited {
                    retry_after_seconds,
                }
                | ApiError::OutcomeUnknown {
                    retry_after_seconds,
                } => Some(*retry_after_seconds),
                _ => None,
            },
            www_authenticate: matches!(self, ApiError::MissingApiKey | ApiError::InvalidApiKey),
            allow: match self {
                ApiError::MethodNotAllowed { allow } => Some(allow.clone()),
                _ => None,
            },
        }
    }
}

/// Cuts `s` to `max` characters, marking the cut with an ellipsis.
fn cut(s: &mut String, max: usize) {
    if let Some((at, _)) = s.char_indices().nth(max) {
        s.truncate(at);
        s.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_are_bounded_in_count_and_length() {
        let many: Vec<FieldError> = (0..10_000)
            .map(|i| FieldError::new(format!("k{i}"), "unknown_field", "x"))
            .collect();
        let body = ApiError::Validation(many).problem().body;
        assert_eq!(
            body["errors"].as_array().map(Vec::len),
            Some(MAX_FIELD_ERRORS)
        );
        assert_eq!(body["errorsOmitted"], 10_000 - MAX_FIELD_ERRORS);
        assert!(body["detail"].as_str().is_some_and(|d| d.contains("10000")));
        let long = "é".repeat(60_000);
        let body = ApiError::field(long.clone(), "unknown_field", format!("{long} is bad"))
            .problem()
            .body;
        let field = body["errors"][0]["field"].as_str().unwrap_or_default();
        assert_eq!(field.chars().count(), MAX_FIELD_NAME + 1);
        assert!(
            body.to_string().len() < 2_000,
            "{} bytes",
            body.to_string().len()
        );
        assert!(body.get("errorsOmitted").is_none());
    }

    #[test]
    fn every_problem_has_the_rfc9457_members_and_a_stable_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::MalformedJson("eof".into()), 400, "malformed_json"),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::PayloadTooLarge { limit: 65536 },
                413,
                "payload_too_large",
            ),
            (ApiError::MissingApiKey, 401, "missing_api_key"),
            (ApiError::InvalidApiKey, 401, "invalid_api_key"),
            (
                ApiError::MissingScope("w_members"),
                403,
                "insufficient_scope",
            ),
            (ApiError::NotFound, 404, "not_found"),
            (
                ApiError::MethodNotAllowed {
                    allow: "GET, PATCH".into(),
                },
                405,
                "method_not_allowed",
            ),
            (
                ApiError::field("email", "required", "is required"),
                422,
                "validation_failed",
            ),
            (
                ApiError::rule("last_admin", Some("role"), "x"),
                422,
                "last_admin",
            ),
            (ApiError::PreconditionFailed, 412, "precondition_failed"),
            (ApiError::UpdateInProgress, 422, "member_update_in_progress"),
            (
                ApiError::Unavailable {
                    retry_after_seconds: 1,
                },
                503,
                "service_unavailable",
            ),
            (ApiError::Internal, 500, "internal_error"),
        ];
        for (error, status, code) in cases {
            let p = error.problem();
            assert_eq!(p.status, status, "{code}");
            assert_eq!(p.body["status"], status, "{code}");
            assert_eq!(p.body["code"], code);
            assert!(p.body["type"].as_str().is_some_and(|t| t.ends_with(code)));
            assert!(p.body["title"].is_string() && p.body["detail"].is_string());
        }
    }

    #[test]
    fn validation_and_rule_problems_name_the_field() {
        let p = ApiError::field("role", "invalid_value", "must be one of admin").problem();
        assert_eq!(p.body["errors"][0]["field"], "role");
        assert_eq!(p.body["errors"][0]["code"], "invalid_value");
        let p = ApiError::rule("hris_role_required", Some("hrisRole"), "needed").problem();
        assert_eq!(p.body["errors"][0]["field"], "hrisRole");
    }

    #[test]
    fn only_unavailable_says_when_to_retry_and_only_401_asks_for_auth() {
        assert_eq!(
            ApiError::Unavailable {
                retry_after_seconds: 2
            }
            .problem()
            .retry_after,
            Some(2)
        );
        assert_eq!(ApiError::Internal.problem().retry_after, None);
        assert!(ApiError::InvalidApiKey.problem().www_authenticate);
        assert!(!ApiError::NotFound.problem().www_authenticate);
    }
}
