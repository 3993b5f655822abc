//! `membersctl recount`: the report of a recount of organisations' counters.

use serde_json::{json, Value};
use shared::store::dynamo::{Recount, RecountOutcome};

/// The report, as JSON and as text; `Err` (after printing) when an organisation stayed busy.
pub fn report(recounts: &[Recount], dry_run: bool) -> (Value, String, Option<String>) {
    let outcome = |r: &Recount| match (r.outcome, dry_run) {
        (RecountOutcome::Unchanged, _) => "unchanged",
        (RecountOutcome::Corrected, false) => "corrected",
        (RecountOutcome::Corrected, true) => "would correct",
        (RecountOutcome::Busy, _) => "busy",
    };
    let rows: Vec<Value> = recounts
        .iter()
        .map(|r| {
            let differences: Vec<Value> = r
                .differences()
                .into_iter()
                .map(|(counter, stored, counted)| {
                    json!({"counter": counter, "stored": stored, "counted": counted})
                })
                .collect();
            let mut row = json!({"organizationId": r.org, "outcome": outcome(r), "differences": differences, "shards": r.shards});
            if !r.roles.is_empty() {
                // Custom roles of an older version, their counts moved into holder shards.
                row["rolesIntoHolderShards"] = json!(r.roles);
            }
            row
        })
        .collect();
    let mut lines: Vec<String> = recounts
        .iter()
        .map(|r| {
            let mut changes: Vec<String> = r
                .differences()
                .into_iter()
                .map(|(counter, stored, counted)| match stored {
                    Some(stored) => format!("{counter} {stored} → {counted}"),
                    None => format!("{counter} missing → {counted}"),
                })
                .collect();
            changes.extend(r.shards.map(|why| format!("shards: {why}")));
            if !r.roles.is_empty() {
                let ids: Vec<String> = r.roles.iter().map(|id| id.to_string()).collect();
                changes.push(format!("roles into holder shards: {}", ids.join(" ")));
            }
            format!("{}  {:<13} {}", r.org, outcome(r), changes.join(", "))
                .trim_end()
                .to_owned()
        })
        .collect();
    let count = |o: RecountOutcome| recounts.iter().filter(|r| r.outcome == o).count();
    let (corrected, busy) = (
        count(RecountOutcome::Corrected),
        count(RecountOutcome::Busy),
    );
    lines.push(format!(
        "{} organisation(s): {corrected} {}, {} unchanged, {busy} busy{}",
        recounts.len(),
        if dry_run { "to correct" } else { "corrected" },
        count(RecountOutcome::Unchanged),
        if dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        },
    ));
    let failure = (busy > 0).then(|| {
        format!(
            "{busy} organisation(s) kept changing during {} attempts and were not written; run the recount again",
            shared::store::dynamo::RECOUNT_ATTEMPTS
        )
    });
    (json!(rows), lines.join("\n"), failure)
}
