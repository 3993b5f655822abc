//! `membersctl metrics [FILE…]`: the functions' Embedded Metric Format lines (in `make dev`'s
//! log, or logs saved from CloudWatch) summed per minute, as CloudWatch would show them:
//! counters summed, latencies as count, p50, p99 and max. Other lines are skipped.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufRead;

/// One metric of one minute, by its name and dimensions (`Service` left out).
#[derive(Default)]
pub struct Series {
    /// Each value recorded (a counter's increments, a histogram's samples).
    values: Vec<f64>,
    /// Whether the values are samples (a histogram) rather than counts.
    samples: bool,
}

/// (minute as `YYYY-MM-DD HH:MM` UTC, metric name, `Dim=value …`) → its values.
pub type Summary = BTreeMap<(String, String, String), Series>;

/// Adds the metric documents of `line` (any text around the JSON is ignored).
pub fn add_line(summary: &mut Summary, line: &str) {
    let Some(start) = line.find('{') else { return };
    let Ok(doc) = serde_json::from_str::<Value>(line[start..].trim_end()) else {
        return;
    };
    let Some(aws) = doc.get("_aws") else { return };
    let minute = aws["Timestamp"]
        .as_i64()
        .and_then(minute_of)
        .unwrap_or_default();
    for namespace in aws["CloudWatchMetrics"].as_array().into_iter().flatten() {
        let dimensions: Vec<&str> = namespace["Dimensions"]
            .as_array()
            .and_then(|sets| sets.first())
            .and_then(Value::as_array)
            .map(|set| set.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let label = dimensions
            .iter()
            .filter(|d| **d != "Service")
            .map(|d| format!("{d}={}", doc[*d].as_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(" ");
        for metric in namespace["Metrics"].as_array().into_iter().flatten() {
            let Some(name) = metric["Name"].as_str() else {
                continue;
            };
            let series = summary
                .entry((minute.clone(), name.to_owned(), label.clone()))
                .or_default();
            match &doc[name] {
                Value::Array(values) => {
                    series.samples = true;
                    series
                        .values
                        .extend(values.iter().filter_map(Value::as_f64));
                }
                value => series.values.extend(value.as_f64()),
            }
        }
    }
}

fn minute_of(millis: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(millis / 1000).ok()?;
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    ))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The summary as a table, one row per minute and series.
pub fn render(summary: &Summary) -> String {
    let mut out = format!(
        "{:<16}  {:<22} {:<56} {:>8} {:>10} {:>10} {:>10}\n",
        "minute (UTC)", "metric", "dimensions", "count", "p50", "p99", "max"
    );
    for ((minute, name, label), series) in summary {
        if series.samples {
            let mut sorted = series.values.clone();
            sorted.sort_by(f64::total_cmp);
            if sorted.is_empty() {
                continue;
            }
            out += &format!(
                "{minute:<16}  {name:<22} {label:<56} {:>8} {:>10.1} {:>10.1} {:>10.1}\n",
                sorted.len(),
                percentile(&sorted, 0.5),
                percentile(&sorted, 0.99),
                sorted[sorted.len() - 1]
            );
        } else {
            let total: f64 = series.values.iter().sum();
            out += &format!("{minute:<16}  {name:<22} {label:<56} {total:>8}\n");
        }
    }
    out
}

/// Keeps the last `n` whole minutes before `now` (the minute under way is left out).
pub fn last_minutes(summary: &mut Summary, n: u32, now: time::OffsetDateTime) {
    let minute = |back: i64| minute_of((now.unix_timestamp() - back * 60) * 1000);
    let wanted: Vec<String> = (1..=i64::from(n)).filter_map(minute).collect();
    summary.retain(|(m, _, _), _| wanted.contains(m));
}

/// Reads `files` (standard input when none) and prints the summary (of the last `minutes`
/// whole minutes only, when given).
pub fn run(files: &[std::path::PathBuf], minutes: Option<u32>) -> Result<String, String> {
    let mut summary = Summary::new();
    let mut read = |reader: &mut dyn BufRead| -> Result<(), String> {
        let mut line = String::new();
        loop {
            line.clear();
            // Lossy: a log may hold bytes that are no UTF-8; those lines are no metrics.
            let mut bytes = Vec::new();
            if reader
                .read_until(b'\n', &mut bytes)
                .map_err(|e| e.to_string())?
                == 0
            {
                return Ok(());
            }
            line.push_str(&String::from_utf8_lossy(&bytes));
            add_line(&mut summary, &line);
        }
    };
    if files.is_empty() {
        read(&mut std::io::stdin().lock())?;
    }
    for file in files {
        let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        read(&mut std::io::BufReader::new(f))?;
    }
    if let Some(n) = minutes {
        last_minutes(&mut summary, n, time::OffsetDateTime::now_utc());
        // A quiet minute is no error: nothing to show.
        return Ok(match summary.is_empty() {
            true => String::new(),
            false => render(&summary),
        });
    }
    if summary.is_empty() {
        return Err("no metric lines found (the functions write them on stdout; `make dev` keeps them in .local/metrics.log)".into());
    }
    Ok(render(&summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_and_latencies_give_percentiles_per_minute() {
        let mut summary = Summary::new();
        let doc = |ts: i64, values: &str| {
            format!(
                r#"[watch] {{"_aws":{{"Timestamp":{ts},"CloudWatchMetrics":[{{"Namespace":"MembersApi","Dimensions":[["Service","Operation"]],"Metrics":[{{"Name":"Latency","Unit":"Milliseconds"}},{{"Name":"DynamoCalls"}}]}}]}},"Service":"local","Operation":"GET /v1/members","Latency":{values},"DynamoCalls":2}}"#
            )
        };
        // 2026-12-04 07:31:10 and :50 UTC: one minute; 07:32:05 the next.
        add_line(&mut summary, &doc(1_796_369_470_000, "[10.0]"));
        add_line(&mut summary, &doc(1_796_369_510_000, "[30.0, 20.0]"));
        add_line(&mut summary, &doc(1_796_369_525_000, "[5.0]"));
        add_line(&mut summary, "request finished status=200");
        let table = render(&summary);
        let rows: Vec<&str> = table.lines().skip(1).collect();
        assert_eq!(rows.len(), 4, "{table}");
        assert!(
            rows[0].starts_with("2026-12-04 07:31  DynamoCalls"),
            "{table}"
        );
        assert!(
            rows[0].trim_end().ends_with(" 4"),
            "two calls twice: {table}"
        );
        let latency: Vec<&str> = rows[1].split_whitespace().collect();
        assert_eq!(
            latency[latency.len() - 4..],
            ["3", "20.0", "30.0", "30.0"],
            "{table}"
        );
        assert!(
            rows[2].starts_with("2026-12-04 07:32  DynamoCalls"),
            "{table}"
        );
        assert!(rows[1].contains("Operation=GET /v1/members"), "{table}");
        // At 07:32:30 the last whole minute is 07:31.
        let now = time::OffsetDateTime::from_unix_timestamp(1_796_369_550).unwrap();
        last_minutes(&mut summary, 1, now);
        assert_eq!(render(&summary).lines().count(), 3, "{}", render(&summary));
    }
}
