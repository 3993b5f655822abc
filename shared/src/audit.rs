//! Audit events: what changed, before → after, with secrets redacted. Written by the store in
//! the same transaction as the change they describe.

use crate::model::*;
use crate::wire::member_json;
use serde_json::{json, Map, Value};

pub const REDACTED: &str = "[redacted]";

/// Who did it and under which request.
#[derive(Clone, Debug, Default)]
pub struct Actor {
    pub key_id: Option<ApiKeyId>,
    pub request_id: Option<String>,
}

impl Actor {
    /// The caller's key, under the request being served.
    pub fn of(key: &ApiKey, req: &crate::http::ApiRequest) -> Self {
        Actor {
            key_id: Some(key.id.clone()),
            request_id: req.request_id.clone(),
        }
    }
}

/// `{field: {before, after}}` for every wire field that differs, settings flattened as
/// `settings.x`, the password only ever as "[redacted]".
pub fn changes(
    before: Option<&Member>,
    after: &Member,
    password_changed: bool,
) -> Map<String, Value> {
    let flat = |m: Option<&Member>| -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(Value::Object(obj)) = m.map(member_json) {
            for (k, v) in obj {
                match (k.as_str(), v) {
                    // Derived or bookkeeping fields are not changes of their own.
                    ("version" | "updatedAt" | "user" | "deactivated", _) => {}
                    ("settings", Value::Object(settings)) => {
                        for (sk, sv) in settings {
                            out.insert(format!("settings.{sk}"), sv);
                        }
                    }
                    (_, v) => {
                        out.insert(k, v);
                    }
                }
            }
        }
        out
    };
    let (old, new) = (flat(before), flat(Some(after)));
    let mut out = Map::new();
    for (k, after_value) in &new {
        let before_value = old.get(k).cloned().unwrap_or(Value::Null);
        if &before_value != after_value && !(before.is_none() && after_value.is_null()) {
            out.insert(
                k.clone(),
                json!({"before": before_value, "after": after_value}),
            );
        }
    }
    if password_changed {
        let shown = |m: Option<&Member>| {
            if m.is_some_and(|m| m.password_hash.is_some()) {
                json!(REDACTED)
            } else {
                Value::Null
            }
        };
        out.insert(
            "settings.password".into(),
            json!({"before": shown(before), "after": shown(Some(after))}),
        );
    }
    out
}

/// An event for one member write.
pub fn event(
    action: &str,
    actor: &Actor,
    before: Option<&Member>,
    after: &Member,
    password_changed: bool,
    justification: Option<String>,
) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::generate(),
        organization_id: after.organization_id.clone(),
        member_id: Some(after.id.clone()),
        role_id: None,
        webhook_id: None,
        group_id: None,
        actor_key_id: actor.key_id.clone(),
        action: action.to_owned(),
        changes: changes(before, after, password_changed),
        justification,
        request_id: actor.request_id.clone(),
        member_version: after.version,
        occurred_at: after.updated_at,
        resource: Some(member_json(after)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_member_patch;
    use crate::rules;

    #[test]
    fn a_create_event_lists_set_fields_and_never_the_password() {
        let now = Timestamp::now();
        let org = Organization::new("A", false);
        let patch = parse_member_patch(&json!({
            "firstName": "Ada", "email": "ada@example.com", "role": "admin",
            "settings": {"password": "hunter2hunter2"}
        }))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let draft = rules::new_member(patch, &org, now).unwrap_or_else(|e| panic!("{e:?}"));
        let e = event(
            "member.created",
            &Actor::default(),
            None,
            &draft.member,
            true,
            None,
        );
        assert_eq!(e.changes["role"], json!({"before": null, "after": "admin"}));
        assert_eq!(
            e.changes["settings.password"],
            json!({"before": null, "after": "[redacted]"})
        );
        assert!(
            !e.changes.contains_key("headline"),
            "unset fields are not changes"
        );
        let text = serde_json::to_string(&e).unwrap_or_default();
        assert!(!text.contains("hunter2") && !text.contains("argon2"));
    }
}
