//! Items as versions before compact items wrote them (`ITEM_LAYOUT=full`, docs/design.md
//! "What a write costs"): every `null` stored, and a deactivated member still in the
//! `…#inactive` partitions of GSI2–GSI4. This version reads them and lists them exactly once.

use crate::rest::{all_pages, ids};
use crate::Ctx;
use members_tests::{ensure_eq, TestResult, TABLE};
use serde_json::json;
use shared::store::dynamo::{keys, AttributeValue};
use std::sync::Arc;

/// Rewrites a member's item as the older layout had it: `hrisRole` and `lastName` stored as
/// NULL, an empty `locations` list, and GSI2–GSI4 keys whatever its status.
async fn as_older_layout(ctx: &Ctx, org: &shared::model::OrgId, id: &str) -> TestResult {
    let member = shared::model::MemberId::parse(id)?;
    let (pk, sk) = keys::member(org, &member);
    let m = ctx
        .stack
        .member(org, id)
        .await?
        .ok_or_else(|| format!("no member {id}"))?;
    let status = keys::status(m.is_active);
    let index_keys = [
        (
            "GSI2PK",
            format!("ORG#{org}#ROLE#{}#{status}", m.role.as_str()),
        ),
        ("GSI3PK", format!("ORG#{org}#HRIS#none#{status}")),
        (
            "GSI4PK",
            format!("ORG#{org}#DEPARTMENT#{}#{status}", m.department),
        ),
    ];
    let mut update = ctx
        .stack
        .store
        .client()
        .update_item()
        .table_name(TABLE)
        .key("PK", AttributeValue::S(pk))
        .key("SK", AttributeValue::S(sk))
        .update_expression(
            "SET hrisRole = :null, lastName = :null, locations = :empty, \
             GSI2PK = :GSI2PK, GSI2SK = :id, GSI3PK = :GSI3PK, GSI3SK = :id, \
             GSI4PK = :GSI4PK, GSI4SK = :id",
        )
        .expression_attribute_values(":null", AttributeValue::Null(true))
        .expression_attribute_values(":empty", AttributeValue::L(vec![]))
        .expression_attribute_values(":id", AttributeValue::S(id.to_owned()));
    for (name, value) in index_keys {
        update = update.expression_attribute_values(format!(":{name}"), AttributeValue::S(value));
    }
    update
        .send()
        .await
        .map_err(|e| format!("older layout: {e:?}"))?;
    Ok(())
}

pub async fn items_of_the_older_layout_read_and_list_exactly_once(ctx: Arc<Ctx>) -> TestResult {
    let t = ctx.stack.tenant(false).await?;
    let member = |n: &str| json!({"firstName": n, "email": format!("{n}@example.com"), "role": "reviewer", "department": "hr"});
    let gone = t.create(&member("gone"))?;
    let here = t.create(&member("here"))?;
    let fresh = t.create(&member("fresh"))?;
    ensure_eq!(
        t.call("DELETE", &format!("/v1/members/{gone}"), None)?
            .status,
        200,
        "deactivate"
    );
    let shown_before = t.call("GET", &format!("/v1/members/{gone}"), None)?.json();
    as_older_layout(&ctx, &t.org, &gone).await?;
    as_older_layout(&ctx, &t.org, &here).await?;
    // Read back as before: nulls, an empty list.
    let shown = t.call("GET", &format!("/v1/members/{gone}"), None)?.json();
    ensure_eq!(shown, shown_before, "GET of an item of the older layout");
    let mut reviewers = vec![gone.clone(), here.clone(), fresh.clone()];
    reviewers.sort();
    let mut active = vec![here.clone(), fresh.clone()];
    active.sort();
    // Not in GSI3 (no HRIS role): the reviewers (the root admin is an HRIS admin); not in
    // GSI4 (department `none`): the root admin.
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("&hrisRole=none", active.clone()),
        ("&department=none", vec![t.root.to_string()]),
        ("&status=inactive&role=reviewer", vec![gone.clone()]),
        ("&status=all&role=reviewer", reviewers.clone()),
        ("&role=reviewer", active.clone()),
        ("&status=inactive&hrisRole=none", vec![gone.clone()]),
        ("&status=all&hrisRole=none&department=hr", reviewers.clone()),
        ("&status=inactive&department=hr", vec![gone.clone()]),
    ];
    for (query, expected) in cases {
        for limit in [1, 2, 50] {
            let got = ids(&all_pages(&t, query, limit)?);
            ensure_eq!(got, expected, "GET /v1/members?limit={limit}{query}");
        }
    }
    // A write rewrites it in this deployment's layout; it still lists once.
    ensure_eq!(
        t.call("POST", &format!("/v1/members/{gone}/reactivate"), None)?
            .status,
        200,
        "reactivate"
    );
    let got = ids(&all_pages(&t, "&status=all&role=reviewer", 2)?);
    ensure_eq!(got, reviewers, "after the rewrite");
    ctx.stack.check_invariants(&t.org).await
}
