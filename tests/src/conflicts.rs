//! Transaction conflicts as real DynamoDB has them, which DynamoDB Local (it serialises
//! racing transactions) never shows: played by the proxy of src/stale.rs.
//!
//! The developer guide ("Transaction conflict handling in DynamoDB") says, and this plays:
//! - an item of a `TransactWriteItems` that is part of another transaction in progress
//!   (write or read) cancels it: `TransactionCanceledException` whose `CancellationReasons`
//!   carry `TransactionConflict` at that item's index (`None` elsewhere);
//! - an item of a `TransactGetItems` that is part of a `TransactWriteItems` in progress
//!   cancels it the same way (two reading transactions do not conflict);
//! - a `PutItem`, `UpdateItem` or `DeleteItem` of an item that a `TransactWriteItems` in
//!   progress holds fails with `TransactionConflictException`;
//! - `GetItem`, `BatchGetItem`, `Query` and `Scan` are never blocked.
//!
//! A transaction holds its items for [`hold`] from its arrival (AWS's transactions take tens
//! of milliseconds; DynamoDB Local's one or two when idle, hundreds when a load saturates
//! it, which AWS's do not), and the proxy answers no sooner, so a client's next request
//! never conflicts with its own finished one. The newcomer is the one cancelled.
//!
//! Not played: single-item writes hold nothing (a `TransactGetItems` racing a `PutItem` is not
//! cancelled), `BatchWriteItem` is never refused, and an idempotent repeat of a transaction
//! (same `ClientRequestToken`) conflicts like any other.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a transaction holds its items at least: `MEMBERS_TX_HOLD_MS` (default 20, the
/// range AWS shows for a small transaction; 0 turns conflicts off).
pub fn hold() -> Duration {
    let ms = std::env::var("MEMBERS_TX_HOLD_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(20);
    Duration::from_millis(ms)
}

/// An item: table, partition key, sort key (the tests' table has PK and SK).
type ItemKey = (String, String, String);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Write,
    Read,
}

/// The items of the transactions in progress, and the conflicts played.
#[derive(Debug, Default)]
pub struct ConflictTable {
    /// How long a transaction takes at least ([`hold`]); zero: conflicts are not played.
    pub hold: Duration,
    held: Mutex<HashMap<ItemKey, Vec<(u64, Kind)>>>,
    next: AtomicU64,
    /// Conflicts played, by operation.
    pub write_transactions_cancelled: AtomicUsize,
    pub read_transactions_cancelled: AtomicUsize,
    pub single_writes_refused: AtomicUsize,
    /// Transactions that held their items (the denominator of the figures above).
    pub transactions: AtomicUsize,
    /// The items found held, by kind (`item_kind`): which item writers meet on.
    pub conflicting_items: Mutex<BTreeMap<&'static str, usize>>,
}

/// What the proxy does with a request.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// Forward it; `Some` holds items until [`ConflictTable::release`].
    Pass(Option<Hold>),
    /// Answer this HTTP 400 body instead (DynamoDB's JSON error), without forwarding.
    Refuse(String),
}

/// A transaction's claim on its items.
#[derive(Debug, PartialEq)]
pub struct Hold {
    id: u64,
    keys: Vec<ItemKey>,
    pub since: Instant,
}

impl ConflictTable {
    pub fn new(hold: Duration) -> Self {
        ConflictTable {
            hold,
            ..Default::default()
        }
    }

    /// Decides on one request of `operation` (`x-amz-target`'s last part).
    pub fn admit(&self, operation: &str, request: &Value) -> Admission {
        if self.hold.is_zero() {
            return Admission::Pass(None);
        }
        let (kind, keys) = match operation {
            "TransactWriteItems" => (Kind::Write, transaction_keys(request)),
            "TransactGetItems" => (Kind::Read, transaction_keys(request)),
            "PutItem" | "UpdateItem" | "DeleteItem" => {
                let Some(key) = single_key(operation, request) else {
                    return Admission::Pass(None);
                };
                let held = self.held.lock().map(|h| {
                    h.get(&key)
                        .is_some_and(|owners| owners.iter().any(|(_, k)| *k == Kind::Write))
                });
                if held.unwrap_or(false) {
                    self.single_writes_refused.fetch_add(1, Ordering::Relaxed);
                    return Admission::Refuse(conflict_exception());
                }
                return Admission::Pass(None);
            }
            _ => return Admission::Pass(None),
        };
        let Ok(mut held) = self.held.lock() else {
            return Admission::Pass(None);
        };
        let conflicting: Vec<bool> = keys
            .iter()
            .map(|key| {
                held.get(key).is_some_and(|owners| {
                    owners
                        .iter()
                        .any(|(_, k)| *k == Kind::Write || kind == Kind::Write)
                })
            })
            .collect();
        if conflicting.iter().any(|c| *c) {
            if let Ok(mut kinds) = self.conflicting_items.lock() {
                for (key, _) in keys.iter().zip(&conflicting).filter(|(_, c)| **c) {
                    *kinds.entry(item_kind(key)).or_default() += 1;
                }
            }
            let tally = match kind {
                Kind::Write => &self.write_transactions_cancelled,
                Kind::Read => &self.read_transactions_cancelled,
            };
            tally.fetch_add(1, Ordering::Relaxed);
            return Admission::Refuse(cancelled(&conflicting));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        for key in &keys {
            held.entry(key.clone()).or_default().push((id, kind));
        }
        self.transactions.fetch_add(1, Ordering::Relaxed);
        Admission::Pass(Some(Hold {
            id,
            keys,
            since: Instant::now(),
        }))
    }

    /// The transaction has its answer: its items are free again.
    pub fn release(&self, hold: Hold) {
        if let Ok(mut held) = self.held.lock() {
            for key in hold.keys {
                if let Some(owners) = held.get_mut(&key) {
                    owners.retain(|(id, _)| *id != hold.id);
                    if owners.is_empty() {
                        held.remove(&key);
                    }
                }
            }
        }
    }

    /// One line of tallies, as the suites print them.
    pub fn summary(&self) -> String {
        let load = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        let kinds = self
            .conflicting_items
            .lock()
            .map(|k| {
                k.iter()
                    .map(|(kind, n)| format!("{kind} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        format!(
            "conflict mode ({} ms a transaction): {} transactions, {} TransactWriteItems cancelled (TransactionConflict), {} TransactGetItems cancelled, {} single-item writes refused (TransactionConflictException){}",
            self.hold.as_millis(),
            load(&self.transactions),
            load(&self.write_transactions_cancelled),
            load(&self.read_transactions_cancelled),
            load(&self.single_writes_refused),
            if kinds.is_empty() { String::new() } else { format!("; items met on: {kinds}") }
        )
    }
}

/// What kind of item a key is, from its sort key (the organisation item is `ORG`, a member
/// `MEMBER`, a counter shard `COUNTS#nn`, …; ids, as in audit entries, read as `other`).
fn item_kind((_, _, sk): &ItemKey) -> &'static str {
    const KINDS: &[&str] = &[
        "ORG",
        "MEMBER",
        "EMAIL",
        "EXTERNALID",
        "ROLE",
        "ROLENAME",
        "IDEMPOTENCY",
        "APIKEY",
        "WEBHOOK",
        "#SEQUENCE",
    ];
    if sk.starts_with("COUNTS#") {
        return "counter shard";
    }
    KINDS.iter().find(|k| **k == sk).copied().unwrap_or("other")
}

/// The items of a transaction, in the order of its `TransactItems` (a cancellation reason
/// is matched to its item by index).
fn transaction_keys(request: &Value) -> Vec<ItemKey> {
    request["TransactItems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let op = ["Put", "Update", "Delete", "ConditionCheck", "Get"]
                .iter()
                .find_map(|name| t.get(*name))
                .unwrap_or(&Value::Null);
            let key = if op.get("Item").is_some() {
                &op["Item"]
            } else {
                &op["Key"]
            };
            item_key(op["TableName"].as_str().unwrap_or_default(), key)
        })
        .collect()
}

fn single_key(operation: &str, request: &Value) -> Option<ItemKey> {
    let key = match operation {
        "PutItem" => &request["Item"],
        _ => &request["Key"],
    };
    let table = request["TableName"].as_str()?;
    Some(item_key(table, key))
}

fn item_key(table: &str, key: &Value) -> ItemKey {
    let text = |name: &str| key[name]["S"].as_str().unwrap_or_default().to_owned();
    (table.to_owned(), text("PK"), text("SK"))
}

/// The body DynamoDB answers (HTTP 400) for a transaction cancelled by conflicts: a reason
/// per item, `TransactionConflict` where another transaction holds it.
fn cancelled(conflicting: &[bool]) -> String {
    let reasons: Vec<Value> = conflicting
        .iter()
        .map(|c| match c {
            true => json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}),
            false => json!({"Code": "None"}),
        })
        .collect();
    let codes: Vec<&str> = conflicting
        .iter()
        .map(|c| if *c { "TransactionConflict" } else { "None" })
        .collect();
    json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", codes.join(", ")),
        "CancellationReasons": reasons,
    })
    .to_string()
}

/// The body DynamoDB answers (HTTP 400) for a single-item write of an item a transaction holds.
fn conflict_exception() -> String {
    json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionConflictException",
        "message": "Transaction is ongoing for the item",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pk: &str) -> Value {
        json!({"PK": {"S": pk}, "SK": {"S": "A"}})
    }

    fn write(items: &[&str]) -> Value {
        let items: Vec<Value> = items
            .iter()
            .enumerate()
            .map(|(i, pk)| match i % 3 {
                0 => json!({"Put": {"TableName": "t", "Item": key(pk)}}),
                1 => json!({"Update": {"TableName": "t", "Key": key(pk)}}),
                _ => json!({"ConditionCheck": {"TableName": "t", "Key": key(pk)}}),
            })
            .collect();
        json!({ "TransactItems": items })
    }

    fn read(items: &[&str]) -> Value {
        let items: Vec<Value> = items
            .iter()
            .map(|pk| json!({"Get": {"TableName": "t", "Key": key(pk)}}))
            .collect();
        json!({ "TransactItems": items })
    }

    fn passed(a: Admission) -> Hold {
        match a {
            Admission::Pass(Some(h)) => h,
            other => panic!("expected a hold, got {other:?}"),
        }
    }

    fn reasons(a: &Admission) -> Vec<String> {
        let Admission::Refuse(body) = a else {
            panic!("expected a refusal, got {a:?}");
        };
        let v: Value = serde_json::from_str(body).unwrap_or_default();
        v["CancellationReasons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["Code"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn an_overlapping_transaction_is_cancelled_at_the_shared_item_only() {
        let table = ConflictTable::new(Duration::from_millis(20));
        let first = passed(table.admit("TransactWriteItems", &write(&["org", "m1", "e1"])));
        let second = table.admit("TransactWriteItems", &write(&["m2", "e2", "org"]));
        assert_eq!(reasons(&second), ["None", "None", "TransactionConflict"]);
        // Disjoint items pass meanwhile; once released, the shared item passes too.
        let other = passed(table.admit("TransactWriteItems", &write(&["m3", "e3"])));
        table.release(first);
        let third = passed(table.admit("TransactWriteItems", &write(&["m2", "e2", "org"])));
        table.release(other);
        table.release(third);
        assert_eq!(
            table.write_transactions_cancelled.load(Ordering::Relaxed),
            1
        );
        assert_eq!(table.transactions.load(Ordering::Relaxed), 3);
        assert!(table.held.lock().map(|h| h.is_empty()).unwrap_or(false));
    }

    #[test]
    fn reads_conflict_with_writes_not_with_reads() {
        let table = ConflictTable::new(Duration::from_millis(20));
        let r1 = passed(table.admit("TransactGetItems", &read(&["a", "b"])));
        let r2 = passed(table.admit("TransactGetItems", &read(&["b"])));
        let w = table.admit("TransactWriteItems", &write(&["c", "b"]));
        assert_eq!(reasons(&w), ["None", "TransactionConflict"]);
        table.release(r1);
        table.release(r2);
        let w = passed(table.admit("TransactWriteItems", &write(&["b"])));
        let r = table.admit("TransactGetItems", &read(&["x", "b"]));
        assert_eq!(reasons(&r), ["None", "TransactionConflict"]);
        assert_eq!(table.read_transactions_cancelled.load(Ordering::Relaxed), 1);
        table.release(w);
    }

    #[test]
    fn a_single_write_of_a_held_item_is_refused_and_a_get_never_is() {
        let table = ConflictTable::new(Duration::from_millis(20));
        let w = passed(table.admit("TransactWriteItems", &write(&["org"])));
        for op in ["PutItem", "UpdateItem", "DeleteItem"] {
            let request = match op {
                "PutItem" => json!({"TableName": "t", "Item": key("org")}),
                _ => json!({"TableName": "t", "Key": key("org")}),
            };
            let Admission::Refuse(body) = table.admit(op, &request) else {
                panic!("{op} of a held item must be refused");
            };
            assert!(body.contains("#TransactionConflictException"), "{body}");
            let elsewhere = json!({"TableName": "t", "Key": key("other"), "Item": key("other")});
            assert_eq!(table.admit(op, &elsewhere), Admission::Pass(None));
        }
        let get = json!({"TableName": "t", "Key": key("org")});
        assert_eq!(table.admit("GetItem", &get), Admission::Pass(None));
        assert_eq!(table.admit("Query", &json!({})), Admission::Pass(None));
        // Another table's item of the same key is another item.
        let other_table = json!({"TableName": "u", "Key": key("org")});
        assert_eq!(
            table.admit("UpdateItem", &other_table),
            Admission::Pass(None)
        );
        table.release(w);
        assert_eq!(table.single_writes_refused.load(Ordering::Relaxed), 3);
        let put = json!({"TableName": "t", "Item": key("org")});
        assert_eq!(table.admit("PutItem", &put), Admission::Pass(None));
    }

    #[test]
    fn a_zero_hold_plays_no_conflict() {
        let table = ConflictTable::new(Duration::ZERO);
        assert_eq!(
            table.admit("TransactWriteItems", &write(&["a"])),
            Admission::Pass(None)
        );
        assert_eq!(
            table.admit("TransactWriteItems", &write(&["a"])),
            Admission::Pass(None)
        );
    }
}
