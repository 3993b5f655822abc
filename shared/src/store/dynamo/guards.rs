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
        let me = HashMap::from([(":me".to_owned(), AttributeValue::S(after.id.to_string()))]);
        let old = keys::identifier(org, value);
        items.push((
            Guarded::OldEmailGuard,
            if dry_run {
                check(t, old, "memberId = :me", me)?
            } else {
                delete(t, old, Some(("memberId = :me", me)))?
            },
        ));
    }
    for (value, kind) in has.iter().filter(|(v, _)| !had.iter().any(|(h, _)| h == v)) {
        items.push((
            guard_of(*kind),
            if dry_run {
                check(
                    t,
                    keys::identifier(org, value),
                    "attribute_not_exists(PK)",
                    HashMap::new(),
                )?
            } else {
                put(t, &identifier_guard(after, value))?
            },
        ));
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

/// A changed `externalId` moves its guard: the old one is deleted while it is still this
/// member's, the new one written only where none is (or, in a dry run, both checked).
pub(super) fn external_id_items(
    t: &str,
    before: &Member,
    after: &Member,
    dry_run: bool,
) -> Result<Vec<(Guarded, TransactWriteItem)>, ApiError> {
    let org = &after.organization_id;
    let mut items = Vec::new();
    if let Some(old) = &before.external_id {
        let me = HashMap::from([(":me".to_owned(), AttributeValue::S(after.id.to_string()))]);
        let key = keys::external_id(org, old);
        items.push((
            Guarded::OldExternalIdGuard,
            if dry_run {
                check(t, key, "memberId = :me", me)?
            } else {
                delete(t, key, Some(("memberId = :me", me)))?
            },
        ));
    }
    if let Some(new) = &after.external_id {
        items.push((
            Guarded::ExternalIdGuard,
            if dry_run {
                check(
                    t,
                    keys::external_id(org, new),
                    "attribute_not_exists(PK)",
                    HashMap::new(),
                )?
            } else {
                match external_id_guard(after) {
                    Some(guard) => put(t, &guard)?,
                    None => return Err(ApiError::Internal),
                }
            },
        ));
    }
    Ok(items)
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
