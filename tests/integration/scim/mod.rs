//! SCIM 2.0 over the running stack: the request sequences of Okta's and Microsoft Entra ID's
//! provisioning guides (idp.rs); the rules and errors an identity provider meets, paging and
//! filters, races between SCIM and `/v1`, and scim2-tester's RFC checks (rules.rs).

mod groups;
mod idp;
mod rules;

pub use groups::{
    a_thousand_member_patch, entra_groups_decide_roles, group_membership_races_v1_demotion,
    okta_group_push_sequence,
};
pub use idp::{entra_provisioning_sequence, okta_provisioning_sequence};
pub use rules::{
    scim2_tester_passes, scim_deactivation_races_v1_demotion, scim_rules_errors_and_paging,
    scim_sanity_probe_passes,
};

use members_tests::{ensure, ensure_eq, Reply, Tenant};
use serde_json::{json, Value};
use shared::scim::{ERROR, PATCH_OP};

pub(crate) fn patch_op(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

/// A reply that must have `status`, as a SCIM document when it has a body.
pub(crate) fn expect(r: Reply, status: u16, what: &str) -> Result<Value, String> {
    ensure!(
        r.status == status,
        "{what}: {} (want {status}) {}",
        r.status,
        r.text
    );
    if !r.text.is_empty() {
        ensure_eq!(
            r.header("content-type"),
            Some("application/scim+json"),
            "{what}: media type"
        );
    }
    Ok(r.json())
}

/// A SCIM error with `status` and `scim_type` (RFC 7644 §3.12): its detail is returned.
pub(crate) fn expect_error(
    r: Reply,
    status: u16,
    scim_type: Option<&str>,
    what: &str,
) -> Result<String, String> {
    let e = expect(r, status, what)?;
    ensure_eq!(e["schemas"], json!([ERROR]), "{what}: schemas");
    ensure_eq!(
        e["status"],
        json!(status.to_string()),
        "{what}: status is a string"
    );
    ensure_eq!(e["scimType"].as_str(), scim_type, "{what}: scimType");
    Ok(e["detail"].as_str().unwrap_or_default().to_owned())
}

pub(crate) fn find(t: &Tenant, filter: &str) -> Result<Value, String> {
    let q = urlencoding(filter);
    expect(
        t.scim("GET", &format!("/Users?filter={q}"), None, &[])?,
        200,
        filter,
    )
}

pub(crate) fn urlencoding(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
