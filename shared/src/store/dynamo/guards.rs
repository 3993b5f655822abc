//! The guards of a member's identifiers, moved by its writes: its email and SCIM userName
//! (one namespace, `Member::identifiers`) and its SCIM `externalId`. A value the member
//! gives up is deleted while it is still this member's; one it takes is put only where
//! none is (or, in a dry run, both checked).

use super::keys;
use super::records::{external_id_guard, identifier_guard};
use super::tx::{check, delete, put, Guarded};
use crate::error::ApiError;
use crate::model::*;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use std::collections::HashMap;

/// The identifiers (email, SCIM userName) an update gives up, and those it takes.
pub(super) fn identifier_items(
    t: &str,
    before: &Member,
    after: &Member,
    dry_run: bool,
) -> Result<Vec<(Guarded, TransactWriteItem)>, ApiError> {
    let org = &after.organization_id;
    let mut items = Vec::new();
    let (had, has) = (before.identifiers(), after.identifiers());
    for (value, _) in had.iter().filter(|(v, _)| !has.iter().any(|(h, _)| h == v)) {
        let old = keys::identifier(org, value);
        items.push((Guarded::OldEmailGuard, give_up(t, old, &after.id, dry_run)?));
    }
    for (value, kind) in has.iter().filter(|(v, _)| !had.iter().any(|(h, _)| h == v)) {
        let guard = identifier_guard(after, value);
        let new = keys::identifier(org, value);
        items.push((guard_of(*kind), take(t, new, &guard, dry_run)?));
    }
    Ok(items)
}

/// The item a new identifier's guard is, by the attribute that brought it.
pub(super) fn guard_of(kind: Identifier) -> Guarded {
    match kind {
        Identifier::Email => Guarded::EmailGuard,
        Identifier::UserName => Guarded::UserNameGuard,
    }
}

/// A changed `externalId` moves its guard.
pub(super) fn external_id_items(
    t: &str,
    before: &Member,
    after: &Member,
    dry_run: bool,
) -> Result<Vec<(Guarded, TransactWriteItem)>, ApiError> {
    let org = &after.organization_id;
    let mut items = Vec::new();
    if let Some(old) = &before.external_id {
        let old = keys::external_id(org, old);
        items.push((
            Guarded::OldExternalIdGuard,
            give_up(t, old, &after.id, dry_run)?,
        ));
    }
    if let (Some(new), Some(guard)) = (&after.external_id, external_id_guard(after)) {
        let new = keys::external_id(org, new);
        items.push((Guarded::ExternalIdGuard, take(t, new, &guard, dry_run)?));
    }
    Ok(items)
}

/// A guard the member gives up: deleted while it is still this member's (in a dry run,
/// that checked).
fn give_up(
    t: &str,
    key: (String, String),
    me: &MemberId,
    dry_run: bool,
) -> Result<TransactWriteItem, ApiError> {
    let me = HashMap::from([(":me".to_owned(), AttributeValue::S(me.to_string()))]);
    match dry_run {
        true => check(t, key, "memberId = :me", me),
        false => delete(t, key, Some(("memberId = :me", me))),
    }
}

/// A guard the member takes: written only where none is (in a dry run, that checked).
fn take<T: serde::Serialize>(
    t: &str,
    key: (String, String),
    guard: &T,
    dry_run: bool,
) -> Result<TransactWriteItem, ApiError> {
    match dry_run {
        true => check(t, key, "attribute_not_exists(PK)", HashMap::new()),
        false => put(t, guard),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Member {
        let body =
            serde_json::json!({"firstName": "A", "email": "a@example.com", "role": "simple"});
        let patch = crate::input::parse_member_patch(&body).unwrap_or_else(|e| panic!("{e:?}"));
        let org = Organization::new("A", false);
        crate::rules::new_member(patch, &org, Timestamp::now())
            .unwrap_or_else(|e| panic!("{e:?}"))
            .member
    }

    /// (the guarded value, what happens to its guard) of an update.
    fn moves(before: &Member, after: &Member) -> Vec<(String, &'static str)> {
        let items = identifier_items("t", before, after, false).unwrap_or_else(|e| panic!("{e:?}"));
        let value = |k: Option<&HashMap<String, AttributeValue>>| match k.and_then(|k| k.get("PK"))
        {
            Some(AttributeValue::S(pk)) => pk.rsplit('#').next().unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        let mut out: Vec<(String, &str)> = items
            .iter()
            .map(|(g, i)| match (g, i.put(), i.delete()) {
                (Guarded::OldEmailGuard, _, Some(d)) => (value(Some(d.key())), "deleted"),
                (Guarded::UserNameGuard, Some(p), _) => (value(Some(p.item())), "put as userName"),
                (Guarded::EmailGuard, Some(p), _) => (value(Some(p.item())), "put as email"),
                _ => (String::new(), "?"),
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn identifier_guards_move_with_the_email_and_the_user_name() {
        let plain = member();
        let mut scim = plain.clone();
        scim.scim_user_name = Some("A@Example.com".into());
        // The same value as the email, in another case: one guard, nothing moves.
        assert_eq!(moves(&plain, &scim), vec![]);
        // A userName of its own (Entra's UPN): its guard is put.
        let mut upn = plain.clone();
        upn.scim_user_name = Some("AdeleV@corp.example".into());
        assert_eq!(
            moves(&plain, &upn),
            vec![("adelev@corp.example".into(), "put as userName")]
        );
        // Its email changes through /v1: the email's guards move, the userName's stays.
        let mut moved = upn.clone();
        moved.email = Email::parse("b@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            moves(&upn, &moved),
            vec![
                ("a@example.com".into(), "deleted"),
                ("b@example.com".into(), "put as email")
            ]
        );
        // The email becomes the userName: that guard is kept, the old email's deleted.
        let mut same = upn.clone();
        same.email = Email::parse("adelev@corp.example").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            moves(&upn, &same),
            vec![("a@example.com".into(), "deleted")]
        );
        // The userName given up: its guard deleted.
        assert_eq!(
            moves(&upn, &plain),
            vec![("adelev@corp.example".into(), "deleted")]
        );
    }
}
