//! What a write costs, by item and by index: the sizes of the items a `TransactWriteItems`
//! puts (DynamoDB's own size rules), named by what they are, and the capacity DynamoDB
//! reports per table and per index (`ReturnConsumedCapacity: INDEXES`). The benches print
//! these beside the floor: the member item and its audit entry, each written once.

use serde_json::Value;
use std::collections::BTreeMap;

/// Capacity and items seen since the last take.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cost {
    /// Units by where DynamoDB says it spent them: `table`, `GSI1`, … (and `total`).
    pub units: BTreeMap<String, f64>,
    /// Items written in transactions, by kind: (count, bytes).
    pub items: BTreeMap<&'static str, (usize, usize)>,
}

impl Cost {
    /// Adds what one answer reports (`ConsumedCapacity`, one object or a list).
    pub fn add_answer(&mut self, answer: &Value) {
        let all = match &answer["ConsumedCapacity"] {
            Value::Array(all) => all.clone(),
            Value::Null => Vec::new(),
            one => vec![one.clone()],
        };
        for c in all {
            *self.units.entry("total".into()).or_default() +=
                c["CapacityUnits"].as_f64().unwrap_or(0.0);
            if let Some(t) = c["Table"]["CapacityUnits"].as_f64() {
                *self.units.entry("table".into()).or_default() += t;
            }
            if let Some(indexes) = c["GlobalSecondaryIndexes"].as_object() {
                for (name, v) in indexes {
                    *self.units.entry(name.clone()).or_default() +=
                        v["CapacityUnits"].as_f64().unwrap_or(0.0);
                }
            }
        }
    }

    /// Adds the items a `TransactWriteItems` request writes (Puts by their size; an Update,
    /// Delete or ConditionCheck by its key, size unknown until written: counted, 0 bytes).
    pub fn add_request(&mut self, request: &Value) {
        for entry in request["TransactItems"].as_array().into_iter().flatten() {
            let Some((op, body)) = entry.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            let (item, bytes) = match op.as_str() {
                "Put" => (&body["Item"], item_size(&body["Item"])),
                _ => (&body["Key"], 0),
            };
            let kind = kind_of(item, op);
            let slot = self.items.entry(kind).or_default();
            slot.0 += 1;
            slot.1 += bytes;
        }
    }

    /// The units per operation, `n` operations: `total 7.0 = table 5.0 + GSI1 1.0 + …`.
    pub fn units_line(&self, n: usize) -> String {
        let per = |v: f64| v / n.max(1) as f64;
        let mut parts = vec![format!(
            "table {:.1}",
            per(self.units.get("table").copied().unwrap_or(0.0))
        )];
        for (name, units) in &self.units {
            if name.starts_with("GSI") {
                parts.push(format!("{name} {:.1}", per(*units)));
            }
        }
        format!(
            "{:.1} = {}",
            per(self.units.get("total").copied().unwrap_or(0.0)),
            parts.join(" + ")
        )
    }

    /// The items per operation: `member 1×312 B, audit 1×540 B, counter shard 1×(update)`.
    pub fn items_line(&self, n: usize) -> String {
        let n = n.max(1);
        self.items
            .iter()
            .map(|(kind, (count, bytes))| {
                let each = if *count == 0 { 0 } else { bytes / count };
                let count = *count as f64 / n as f64;
                if *bytes == 0 {
                    format!("{kind} {count:.1}×(key)")
                } else {
                    format!("{kind} {count:.1}×{each} B")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The floor of a rule-checked write: the member item and its audit entry, each written
    /// once in a transaction (2 units per started KB each).
    pub fn floor(&self, n: usize) -> f64 {
        let n = n.max(1);
        let units = |kind: &str| {
            self.items.get(kind).map_or(0.0, |(count, bytes)| {
                if *count == 0 {
                    return 0.0;
                }
                let each = bytes / count;
                2.0 * each.div_ceil(1024).max(1) as f64 * (*count as f64 / n as f64).min(1.0)
            })
        };
        units("member") + units("audit entry")
    }
}

/// What an item is, by its key's spelling (keys.rs).
fn kind_of(item: &Value, op: &str) -> &'static str {
    let pk = item["PK"]["S"].as_str().unwrap_or("");
    let sk = item["SK"]["S"].as_str().unwrap_or("");
    let kind = match sk {
        "MEMBER" => "member",
        "EMAIL" => "email guard",
        "EXTERNALID" => "externalId guard",
        "ORG" => "organisation",
        "IDEMPOTENCY" => "idempotency record",
        "ROLE" => "role",
        _ if sk.starts_with("COUNTS#") => "counter shard",
        _ if pk.ends_with("#ROLEHOLDERS") => "holder shard",
        _ if pk.ends_with("#AUDIT") => "audit entry",
        _ if pk.contains("#LOCATION#") => "location entry",
        _ if pk.ends_with("#EVENTS") => "feed",
        _ => "other",
    };
    match op {
        "ConditionCheck" => match kind {
            "member" => "member (check)",
            "organisation" => "organisation (check)",
            "counter shard" => "counter shard (check)",
            _ => "other (check)",
        },
        "Delete" if kind == "location entry" => "location entry (delete)",
        "Delete" if kind == "email guard" => "email guard (delete)",
        _ => kind,
    }
}

/// An item's size as DynamoDB counts it: each attribute's name plus its value (strings and
/// binaries by length, numbers ~1 byte per two digits + 1, lists and maps 3 bytes plus their
/// elements, each 1 byte more).
pub fn item_size(item: &Value) -> usize {
    item.as_object()
        .map(|o| o.iter().map(|(k, v)| k.len() + value_size(v)).sum())
        .unwrap_or(0)
}

fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let number = |n: &str| n.trim_start_matches('-').len().div_ceil(2) + 1;
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "N" => inner.as_str().map_or(0, number),
        "BOOL" | "NULL" => 1,
        "SS" => inner.as_array().map_or(0, |a| {
            a.iter().filter_map(Value::as_str).map(str::len).sum()
        }),
        "NS" => inner
            .as_array()
            .map_or(0, |a| a.iter().filter_map(Value::as_str).map(number).sum()),
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |a| a.iter().map(|e| 1 + value_size(e)).sum())
        }
        "M" => {
            3 + inner.as_object().map_or(0, |o| {
                o.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum()
            })
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_follow_dynamodbs_rules() {
        // "PK" + 5, "n" + (3 digits → 2 + 1), "ok" + 1, "m" + 3 + (1 + "a" + 1).
        let item = json!({"PK": {"S": "ORG#1"}, "n": {"N": "123"}, "ok": {"BOOL": true},
            "m": {"M": {"a": {"S": "x"}}}});
        assert_eq!(item_size(&item), 2 + 5 + 1 + 3 + 2 + 1 + 1 + 3 + 1 + 1 + 1);
    }

    #[test]
    fn items_are_named_by_their_keys_and_answers_split_by_index() {
        let mut cost = Cost::default();
        cost.add_request(&json!({"TransactItems": [
            {"Put": {"Item": {"PK": {"S": "ORG#o#MEMBER#m"}, "SK": {"S": "MEMBER"}}}},
            {"Put": {"Item": {"PK": {"S": "ORG#o#MEMBER#m#AUDIT"}, "SK": {"S": "01J"}}}},
            {"Update": {"Key": {"PK": {"S": "ORG#o"}, "SK": {"S": "COUNTS#07"}}}},
        ]}));
        assert_eq!(cost.items["member"], (1, 2 + 14 + 2 + 6));
        assert_eq!(cost.items["audit entry"].0, 1);
        assert_eq!(cost.items["counter shard"], (1, 0));
        cost.add_answer(&json!({"ConsumedCapacity": [{"TableName": "t", "CapacityUnits": 7.0,
            "Table": {"CapacityUnits": 6.0}, "GlobalSecondaryIndexes": {"GSI1": {"CapacityUnits": 1.0}}}]}));
        assert_eq!(cost.units_line(1), "7.0 = table 6.0 + GSI1 1.0");
        assert_eq!(cost.floor(1), 4.0);
    }
}
