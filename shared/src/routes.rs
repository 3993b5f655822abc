//! Every route of the API, in one list: the fallback function answers from it, and the layout
//! tests hold template.yaml, the watch router and openapi.yaml to it.

/// (method, path template) of every endpoint.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/members"),
    ("GET", "/v1/members"),
    ("PUT", "/v1/members"),
    ("GET", "/v1/members/{id}"),
    ("PATCH", "/v1/members/{id}"),
    ("DELETE", "/v1/members/{id}"),
    ("POST", "/v1/members/{id}/reactivate"),
    ("GET", "/v1/members/{id}/audit-events"),
    ("GET", "/v1/organization"),
    ("PATCH", "/v1/organization"),
    ("GET", "/v1/organization/audit-events"),
    ("GET", "/v1/roles"),
    ("POST", "/v1/roles"),
    ("DELETE", "/v1/roles/{id}"),
    ("GET", "/v1/events"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{id}"),
    ("PATCH", "/v1/webhooks/{id}"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("POST", "/v1/webhooks/{id}/rotate-secret"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    (
        "POST",
        "/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver",
    ),
    ("GET", "/scim/v2/ServiceProviderConfig"),
    ("GET", "/scim/v2/ResourceTypes"),
    ("GET", "/scim/v2/ResourceTypes/{id}"),
    ("GET", "/scim/v2/Schemas"),
    ("GET", "/scim/v2/Schemas/{id}"),
    ("POST", "/scim/v2/Users"),
    ("GET", "/scim/v2/Users"),
    ("GET", "/scim/v2/Users/{id}"),
    ("PUT", "/scim/v2/Users/{id}"),
    ("PATCH", "/scim/v2/Users/{id}"),
    ("DELETE", "/scim/v2/Users/{id}"),
    ("POST", "/scim/v2/Groups"),
    ("GET", "/scim/v2/Groups"),
    ("GET", "/scim/v2/Groups/{id}"),
    ("PUT", "/scim/v2/Groups/{id}"),
    ("PATCH", "/scim/v2/Groups/{id}"),
    ("DELETE", "/scim/v2/Groups/{id}"),
];

/// The route template a request path fits (`/v1/members/{id}`), for logs: an id that is
/// not one, or a path the API does not have, never reaches a log line as sent.
pub fn template_of(path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|(_, template)| matches(template, path))
        .map_or("(no route)", |(_, template)| template)
}

/// The operation a request is (`PATCH /v1/members/{id}`), for metrics: one of [`ROUTES`],
/// or `(no route)` for any other method or path (what a client sends never becomes a new
/// metric dimension).
pub fn operation_of(method: &str, path: &str) -> &'static str {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| ROUTES.iter().map(|(m, t)| format!("{m} {t}")).collect());
    ROUTES
        .iter()
        .position(|(m, t)| m.eq_ignore_ascii_case(method) && matches(t, path))
        .map_or("(no route)", |i| names[i].as_str())
}

/// The methods a request path is served with, in the order of [`ROUTES`]; `None` when no
/// route has the path.
pub fn allowed_methods(path: &str) -> Option<Vec<&'static str>> {
    let methods: Vec<&'static str> = ROUTES
        .iter()
        .filter(|(_, template)| matches(template, path))
        .map(|(method, _)| *method)
        .collect();
    (!methods.is_empty()).then_some(methods)
}

/// Whether `path` fits `template`, where `{name}` stands for one non-empty segment.
fn matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t.starts_with('{') => {
                if p.is_empty() {
                    return false;
                }
            }
            (Some(t), Some(p)) if t == p => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::allowed_methods;

    #[test]
    fn known_paths_list_their_methods() {
        assert_eq!(
            allowed_methods("/v1/members"),
            Some(vec!["POST", "GET", "PUT"])
        );
        assert_eq!(
            allowed_methods("/v1/members/mem_01J"),
            Some(vec!["GET", "PATCH", "DELETE"])
        );
        assert_eq!(
            allowed_methods("/v1/members/x/reactivate"),
            Some(vec!["POST"])
        );
        assert_eq!(allowed_methods("/v1/roles/role_1"), Some(vec!["DELETE"]));
    }

    #[test]
    fn unknown_paths_have_none() {
        for path in [
            "/",
            "/v1",
            "/v1/members/",
            "/v1/members//reactivate",
            "/v1/members/a/b",
            "/v2/members",
            "/v1/organization/x",
        ] {
            assert_eq!(allowed_methods(path), None, "{path}");
        }
    }
}
