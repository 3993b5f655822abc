//! The local stack plays DynamoDB's transaction conflicts (src/conflicts.rs), in the shapes
//! the SDK parses from AWS: proven here with the SDK itself, through a proxy of their own
//! whose transactions hold their items long enough to overlap on any machine.

use crate::Ctx;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use members_tests::stale::StaleProxy;
use members_tests::{ensure, ensure_eq, Stack, TestResult, TABLE};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Long enough that the second request always arrives while the first is held.
const HOLD: Duration = Duration::from_secs(4);

fn key(pk: &str) -> [(String, AttributeValue); 2] {
    [
        ("PK".into(), AttributeValue::S(pk.into())),
        ("SK".into(), AttributeValue::S("CONFLICT".into())),
    ]
}

fn bump(pk: &str) -> Result<TransactWriteItem, String> {
    let [(k1, v1), (k2, v2)] = key(pk);
    let update = Update::builder()
        .table_name(TABLE)
        .key(k1, v1)
        .key(k2, v2)
        .update_expression("ADD n :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(TransactWriteItem::builder().update(update).build())
}

fn fresh(pk: &str) -> Result<TransactWriteItem, String> {
    let put = Put::builder()
        .table_name(TABLE)
        .set_item(Some(key(pk).into_iter().collect()))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Two transactions sharing one item, the second sent while the first is held: exactly one
/// is cancelled, with `TransactionConflict` at the shared item's index and `None` at the
/// other; a PutItem of the held item gets `TransactionConflictException`; a GetItem is
/// served; once the first has answered, the same transaction passes.
pub async fn two_overlapping_transactions_give_exactly_one_conflict(ctx: Arc<Ctx>) -> TestResult {
    let st = &ctx.stack;
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], st.dynamo.port));
    let proxy = StaleProxy::start_holding(upstream, HOLD).await?;
    let client = Stack::harness_client(&proxy.endpoint()).await;
    let shared = format!("CONFLICT#{}", shared::model::AuditEventId::generate());
    let other = format!("{shared}#other");

    let first = {
        let (client, item) = (client.clone(), bump(&shared)?);
        tokio::spawn(async move {
            let sent = Instant::now();
            let r = client
                .transact_write_items()
                .transact_items(item)
                .send()
                .await;
            (r.map(|_| ()).map_err(|e| format!("{e:?}")), sent.elapsed())
        })
    };
    // The first is held for HOLD from its arrival: wait until it is.
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy
        .conflicts
        .transactions
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        ensure!(
            Instant::now() < deadline,
            "the first transaction never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    let second = client
        .transact_write_items()
        .transact_items(fresh(&other)?)
        .transact_items(bump(&shared)?)
        .send()
        .await;
    let single = client
        .put_item()
        .table_name(TABLE)
        .set_item(Some(key(&shared).into_iter().collect()))
        .send()
        .await;
    let read = client
        .get_item()
        .table_name(TABLE)
        .set_key(Some(key(&shared).into_iter().collect()))
        .send()
        .await;
    let answered_within = asked.elapsed();
    let (first, first_took) = first.await.map_err(|e| e.to_string())?;
    // Only meaningful if all three were answered while the first was held.
    ensure!(
        answered_within < HOLD,
        "the machine took {answered_within:?}: the requests did not overlap"
    );
    ensure!(first.is_ok(), "the first transaction passes: {first:?}");
    ensure!(first_took >= HOLD, "held for {first_took:?}");

    match second.as_ref().map_err(|e| e.as_service_error()) {
        Err(Some(TransactWriteItemsError::TransactionCanceledException(c))) => {
            let codes: Vec<Option<&str>> =
                c.cancellation_reasons().iter().map(|r| r.code()).collect();
            ensure_eq!(
                codes,
                vec![Some("None"), Some("TransactionConflict")],
                "{c:?}"
            );
        }
        other => {
            return Err(format!(
                "the second must be cancelled by the conflict: {other:?}"
            ))
        }
    }
    match single.as_ref().map_err(|e| e.as_service_error()) {
        Err(Some(PutItemError::TransactionConflictException(_))) => {}
        other => return Err(format!("a PutItem of the held item conflicts: {other:?}")),
    }
    ensure!(read.is_ok(), "a GetItem is never blocked: {read:?}");
    let c = &proxy.conflicts;
    let load = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::Relaxed);
    ensure_eq!(
        (
            load(&c.write_transactions_cancelled),
            load(&c.single_writes_refused)
        ),
        (1, 1),
        "exactly one of each"
    );

    // Nothing of the cancelled one was written; run again now, it passes.
    let n = |item: Option<&std::collections::HashMap<String, AttributeValue>>| {
        item.and_then(|i| i.get("n"))
            .and_then(|v| v.as_n().ok())
            .cloned()
    };
    let got = st
        .store
        .client()
        .get_item()
        .table_name(TABLE)
        .set_key(Some(key(&shared).into_iter().collect()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    ensure_eq!(
        n(got.item()),
        Some("1".to_owned()),
        "only the first counted"
    );
    let again = client
        .transact_write_items()
        .transact_items(fresh(&other)?)
        .transact_items(bump(&shared)?)
        .send()
        .await;
    ensure!(again.is_ok(), "once released, the item is free: {again:?}");
    Ok(())
}
