//! Refusals: the items whose conditions failed in a cancelled transaction, mapped to the
//! domain's errors (a conflict answer too).

use super::records::{from_item, OrgRecord};
use super::tx::Guarded;
use super::Item;
use crate::error::ApiError;
use crate::rules::counter_violation;
use crate::store::UpdateMember;

pub fn write_conflict() -> ApiError {
    ApiError::Conflict {
        code: "write_conflict",
        detail: "Another request was writing the same data; nothing was written. Retry.".into(),
        field: None,
    }
}

/// The domain error for a failed condition on one item of a member write.
pub(super) fn refusal(guard: Guarded) -> ApiError {
    match guard {
        Guarded::EmailGuard => ApiError::Conflict {
            code: "email_taken",
            detail: "Another member of this organisation already has this email address, as its \
                     email or as its SCIM userName."
                .into(),
            field: Some("email"),
        },
        Guarded::UserNameGuard => ApiError::Conflict {
            code: "user_name_taken",
            detail: "Another member of this organisation already has this userName, as its \
                     userName or its email address."
                .into(),
            field: Some("scimUserName"),
        },
        Guarded::ExternalIdGuard => ApiError::Conflict {
            code: "external_id_taken",
            detail: "Another member of this organisation already has this externalId.".into(),
            field: Some("externalId"),
        },
        Guarded::CustomRole => ApiError::rule(
            "unknown_role",
            Some("role"),
            "role is not a built-in role nor a custom role of this organisation",
        ),
        Guarded::Organization | Guarded::CounterShard | Guarded::PreviousPrimary => {
            ApiError::Conflict {
            code: "organization_changed",
            detail: "The organisation's settings or primary member changed during this request; nothing was written. Retry.".into(),
            field: None,
        }
        }
        Guarded::Idempotency => ApiError::Conflict {
            code: "idempotency_conflict",
            detail: "Another request with the same Idempotency-Key is being processed.".into(),
            field: None,
        },
        Guarded::Member | Guarded::OldEmailGuard | Guarded::OldExternalIdGuard => {
            ApiError::UpdateInProgress
        }
        Guarded::NewMember
        | Guarded::Audit
        | Guarded::Location
        | Guarded::OldCustomRole
        | Guarded::Role
        | Guarded::RoleName
        | Guarded::RoleHolders
        | Guarded::FeedSequence
        | Guarded::Outbox(_)
        | Guarded::FeedEvent
        | Guarded::Webhook
        | Guarded::WebhookCount
        | Guarded::Group
        | Guarded::GroupName
        | Guarded::OldGroupName
        | Guarded::Membership => {
            tracing::error!(?guard, "a freshly generated id already exists");
            ApiError::Internal
        }
    }
}

/// The domain error of a refused update: the member's version first (everything else may
/// be a consequence of a concurrent change), then the organisation's rules.
pub(super) fn update_refusal(w: &UpdateMember, failed: Vec<(Guarded, Option<Item>)>) -> ApiError {
    let has = |g: Guarded| failed.iter().any(|(f, _)| *f == g);
    if has(Guarded::Member) || has(Guarded::OldEmailGuard) || has(Guarded::OldExternalIdGuard) {
        return if w.if_match {
            ApiError::PreconditionFailed
        } else {
            ApiError::UpdateInProgress
        };
    }
    for guard in [
        Guarded::EmailGuard,
        Guarded::UserNameGuard,
        Guarded::ExternalIdGuard,
    ] {
        if has(guard) {
            return refusal(guard);
        }
    }
    if let Some((_, old)) = failed.iter().find(|(g, _)| *g == Guarded::Organization) {
        let current = old
            .clone()
            .and_then(|item| from_item::<OrgRecord>(item).ok())
            .map(|r| r.org);
        let delta = w.after.counters().minus(w.before.counters());
        return match current {
            Some(org) if org.hris_enabled == w.org.hris_enabled => {
                counter_violation(org.counters, delta, org.hris_enabled)
                    .unwrap_or_else(|| refusal(Guarded::Organization))
            }
            _ => refusal(Guarded::Organization),
        };
    }
    // The shard checks only the HRIS state (its counts guard nothing); a shard that is not
    // there is damage no retry mends.
    if let Some((_, old)) = failed.iter().find(|(g, _)| *g == Guarded::CounterShard) {
        if old.is_none() {
            tracing::error!("a counter shard is missing: run membersctl recount");
            return ApiError::Internal;
        }
        return refusal(Guarded::Organization);
    }
    failed
        .first()
        .map_or(ApiError::Internal, |(g, _)| refusal(*g))
}
