//! Every key written to DynamoDB Local by this test process: by the functions (through the
//! proxy, src/stale.rs) and by the tests' own clients (the wiretap, src/wiretap.rs). The
//! invariant checks read an organisation's items by these keys, so no test scans data it
//! did not write: a Scan reads the whole shared table, and grows with every test before it.
//!
//! What bypasses both (the stream consumer, `membersctl recount`) writes only partitions the
//! checks read by Query: the feed, deliveries, the organisation's counter shards.

use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

/// The operations that write, and so are recorded.
pub const WRITES: &[&str] = &[
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];

fn ledger() -> &'static Mutex<BTreeSet<(String, String)>> {
    static LEDGER: OnceLock<Mutex<BTreeSet<(String, String)>>> = OnceLock::new();
    LEDGER.get_or_init(Default::default)
}

/// Records the keys `request` (of `operation`) writes; reads are ignored.
pub fn record(operation: &str, request: &Value) {
    let keys = written_keys(operation, request);
    if keys.is_empty() {
        return;
    }
    if let Ok(mut ledger) = ledger().lock() {
        ledger.extend(keys);
    }
}

/// Records a write request given as its body's bytes.
pub fn record_bytes(operation: &str, body: &[u8]) {
    if WRITES.contains(&operation) {
        if let Ok(request) = serde_json::from_slice::<Value>(body) {
            record(operation, &request);
        }
    }
}

/// The keys ever written whose partition key starts with `prefix`, in order. A key whose
/// item was deleted since stays here: reading it finds nothing.
pub fn keys(prefix: &str) -> Vec<(String, String)> {
    let Ok(ledger) = ledger().lock() else {
        return Vec::new();
    };
    ledger
        .range((prefix.to_owned(), String::new())..)
        .take_while(|(pk, _)| pk.starts_with(prefix))
        .cloned()
        .collect()
}

pub(crate) fn key_of(item: &Value) -> Option<(String, String)> {
    Some((
        item["PK"]["S"].as_str()?.to_owned(),
        item["SK"]["S"].as_str()?.to_owned(),
    ))
}

/// The keys a write request writes.
pub(crate) fn written_keys(operation: &str, request: &Value) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    match operation {
        "PutItem" => keys.extend(key_of(&request["Item"])),
        "UpdateItem" | "DeleteItem" => keys.extend(key_of(&request["Key"])),
        "TransactWriteItems" => {
            for t in request["TransactItems"].as_array().into_iter().flatten() {
                keys.extend(key_of(&t["Put"]["Item"]));
                keys.extend(key_of(&t["Update"]["Key"]));
                keys.extend(key_of(&t["Delete"]["Key"]));
            }
        }
        "BatchWriteItem" => {
            for requests in request["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|o| o.values())
            {
                for r in requests.as_array().into_iter().flatten() {
                    keys.extend(key_of(&r["PutRequest"]["Item"]));
                    keys.extend(key_of(&r["DeleteRequest"]["Key"]));
                }
            }
        }
        _ => {}
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_are_found_by_prefix_and_reads_are_not_recorded() {
        let key = |pk: &str, sk: &str| json!({"PK": {"S": pk}, "SK": {"S": sk}});
        record(
            "TransactWriteItems",
            &json!({"TransactItems": [
                {"Put": {"Item": key("ORG#ledger1#MEMBER#a", "MEMBER")}},
                {"Update": {"Key": key("ORG#ledger1", "COUNTS#03")}},
                {"ConditionCheck": {"Key": key("ORG#ledger1#ROLE#x", "ROLE")}},
            ]}),
        );
        record(
            "PutItem",
            &json!({"Item": key("ORG#ledger10#MEMBER#b", "MEMBER")}),
        );
        record(
            "GetItem",
            &json!({"Key": key("ORG#ledger1#EMAIL#e", "EMAIL")}),
        );
        record_bytes(
            "DeleteItem",
            json!({"Key": key("ORG#ledger1#EMAIL#f", "EMAIL")})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(
            keys("ORG#ledger1#"),
            vec![
                ("ORG#ledger1#EMAIL#f".into(), "EMAIL".into()),
                ("ORG#ledger1#MEMBER#a".into(), "MEMBER".into()),
            ]
        );
        assert_eq!(keys("ORG#ledger10#").len(), 1);
    }
}
