//! What the operator does (through `membersctl`): organisations and their first admin.

use crate::audit::{self, Actor};
use crate::error::ApiError;
use crate::input::parse_member_patch;
use crate::model::*;
use crate::rules;
use crate::store::{DynamoStore, NewOrganization};
use serde_json::json;

/// The first admin of a new organisation.
#[derive(Debug, Clone)]
pub struct FirstAdmin {
    pub first_name: String,
    pub last_name: Option<String>,
    pub email: String,
}

/// Creates an organisation with its first member: an active `admin` and `hris_admin`, the
/// primary member, so that every rule holds from the first instant (≥ 1 admin, and HRIS can
/// be switched on later).
pub async fn create_organization(
    store: &DynamoStore,
    name: &str,
    hris_enabled: bool,
    admin: &FirstAdmin,
) -> Result<(Organization, Member), ApiError> {
    let name = crate::input::text(200)(name)
        .map_err(|m| ApiError::field("name", "invalid_format", format!("name {m}")))?;
    let now = Timestamp::now();
    let mut org = Organization::new(name, hris_enabled);
    let body = json!({
        "firstName": admin.first_name,
        "lastName": admin.last_name,
        "email": admin.email,
        "role": "admin",
        "hrisRole": "hris_admin",
        "isPrimary": true,
    });
    let patch = parse_member_patch(&body).map_err(ApiError::Validation)?;
    let draft = rules::new_member(patch, &org, now)?;
    org.counters = draft.member.counters();
    org.primary_member_id = Some(draft.member.id.clone());
    let audit = audit::event(
        "member.created",
        &Actor::default(),
        None,
        &draft.member,
        false,
        None,
    );
    store
        .create_organization(&NewOrganization {
            org: org.clone(),
            admin: draft.member.clone(),
            audit,
        })
        .await?;
    Ok((org, draft.member))
}
