use super::member_id;
use crate::audit::{self, Actor};
use crate::error::ApiError;
use crate::http::{etag_matches, ApiRequest, ApiResponse};
use crate::input::{parse_member_patch, MemberPatch};
use crate::model::{ApiKey, Member, MemberId, Organization, Scope, Timestamp};
use crate::rules;
use crate::store::{Store, UpdateMember};
use crate::wire::{etag, member_json};
use std::sync::Arc;

/// PATCH /v1/members/{id}: absent = unchanged, `null` = cleared. 200 with the whole member
/// and its new `ETag`; `?dryRun=true` checks everything (the counter conditions included)
/// and answers with the member as it would be, writing nothing.
pub async fn update_member<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    let key = super::caller(store, &req, Scope::WriteMembers).await?;
    let id = member_id(&req)?;
    let dry_run = dry_run(&req)?;
    let body = req.json_body()?;
    let patch = parse_member_patch(&body).map_err(ApiError::Validation)?;
    let outcome = apply_update(store, &key, &req, &id, patch, dry_run, false).await?;
    Ok(outcome.response(member_json(&outcome.member)))
}

/// What an update did, for the wire formats to render.
pub(crate) struct Outcome {
    pub member: Member,
    pub dry_run: bool,
}

impl Outcome {
    pub fn response(&self, body: serde_json::Value) -> ApiResponse {
        let response = ApiResponse::json(200, &body);
        if self.dry_run {
            return response.with_header("Dry-Run", "true");
        }
        response.with_header("ETag", etag(self.member.version))
    }
}

/// `?dryRun=true|false`; any other query parameter is refused.
pub(crate) fn dry_run(req: &ApiRequest) -> Result<bool, ApiError> {
    let mut dry_run = false;
    for (name, value) in &req.query {
        match (name.as_str(), value.as_str()) {
            ("dryRun", "true") => dry_run = true,
            ("dryRun", "false") => dry_run = false,
            ("dryRun", _) => {
                return Err(ApiError::BadRequest {
                    code: "invalid_query_parameter",
                    detail: "dryRun must be true or false.".into(),
                })
            }
            (other, _) => {
                return Err(ApiError::BadRequest {
                    code: "unknown_query_parameter",
                    detail: format!(
                        "Unknown query parameter {other:?}; this endpoint takes only dryRun."
                    ),
                })
            }
        }
    }
    Ok(dry_run)
}

/// The one update path under PATCH and PUT: one consistent read of the member and its
/// organisation, the rules, then one conditional transaction (see `store::dynamo`).
/// `hris_role_mandatory`: seed 002's PUT, where `hris_role` must be sent (not null) while
/// HRIS is on.
pub(crate) async fn apply_update(
    store: &impl Store,
    key: &ApiKey,
    req: &ApiRequest,
    id: &MemberId,
    patch: MemberPatch,
    dry_run: bool,
    hris_role_mandatory: bool,
) -> Result<Outcome, ApiError> {
    let (member, org) = store.member_and_org(&key.organization_id, id).await?;
    let before = member.ok_or(ApiError::NotFound)?;
    let org = org.ok_or_else(|| {
        tracing::error!("the API key's organisation does not exist");
        ApiError::Internal
    })?;
    apply_to(
        store,
        key,
        req,
        before,
        org,
        patch,
        dry_run,
        hris_role_mandatory,
    )
    .await
}

/// [`apply_update`] on a member and organisation already read together (SCIM reads them
/// first to build its document).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_to(
    store: &impl Store,
    key: &ApiKey,
    req: &ApiRequest,
    before: Member,
    org: Organization,
    patch: MemberPatch,
    dry_run: bool,
    hris_role_mandatory: bool,
) -> Result<Outcome, ApiError> {
    if hris_role_mandatory && org.hris_enabled && !matches!(patch.hris_role, Some(Some(_))) {
        return Err(ApiError::rule(
            "hris_role_required",
            Some("hrisRole"),
            "hrisRole is mandatory while HRIS is enabled",
        ));
    }
    let if_match = req.header("if-match");
    if if_match.is_some_and(|h| !etag_matches(h, &etag(before.version))) {
        return Err(ApiError::PreconditionFailed);
    }
    // DELETE and reactivate are idempotent: asking for the state the member is already in
    // changes nothing and answers 200 before any rule is checked (a rule may have changed
    // since, e.g. HRIS switched off under a deactivated no_access member).
    let status_only = MemberPatch {
        is_active: patch.is_active,
        ..MemberPatch::default()
    };
    if patch == status_only && patch.is_active == Some(before.is_active) {
        return Ok(Outcome {
            member: before,
            dry_run,
        });
    }
    let now = Timestamp::now();
    let draft = rules::apply(patch, &before, &org, now)?;
    rules::check_primary_kept(&before, &draft.member)?;
    if rules::is_noop(&before, &draft) {
        return Ok(Outcome {
            member: before,
            dry_run,
        });
    }
    let mut after = draft.member;
    after.version = before.version + 1;
    if let Some(violation) = rules::counter_violation(
        org.counters,
        after.counters().minus(before.counters()),
        org.hris_enabled,
    ) {
        return Err(violation);
    }
    let actor = Actor::of(key, req);
    let previous_primary = if after.is_primary && !before.is_primary {
        super::demotion(store, &org, &after.id, &actor, now).await?
    } else {
        None
    };
    let action = match (before.is_active, after.is_active) {
        (true, false) => "member.deactivated",
        (false, true) => "member.reactivated",
        _ => "member.updated",
    };
    if !dry_run {
        // Every check this function can make has passed: only now the password's argon2id.
        rules::hash_password(&mut after, draft.password)?;
    }
    let write = UpdateMember {
        audit: audit::event(
            action,
            &actor,
            Some(&before),
            &after,
            draft.password_changed,
            draft.justification,
        ),
        before,
        after,
        org,
        previous_primary,
        if_match: if_match.is_some(),
        dry_run,
    };
    store.update_member(&write).await?;
    if !dry_run {
        tracing::info!(version = write.after.version, "member updated");
    }
    Ok(Outcome {
        member: write.after,
        dry_run,
    })
}
