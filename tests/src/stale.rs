//! Stale-read mode: a proxy between the functions and DynamoDB Local that plays real
//! DynamoDB's eventual consistency, which DynamoDB Local (always consistent) hides; it also
//! plays transaction conflicts (src/conflicts.rs), which DynamoDB Local hides too.
//!
//! Every write that passes through it (PutItem, UpdateItem, DeleteItem, BatchWriteItem,
//! TransactWriteItems) marks the keys it wrote. A read of the table that does not ask for
//! `ConsistentRead` (GetItem, BatchGetItem, Query or Scan without an index) is then served
//! from a view that lags the table by [`LAG`]: an item written within the lag is left out of
//! the answer, as if the read had reached a replica the write had not reached yet. Index
//! queries (which cannot be consistent on DynamoDB) go through unchanged: no read of the
//! service may decide from an index, and lists read from them are documented as such.
//!
//! So a suite that passes through this proxy has no read of the table that depends on
//! consistency without asking for it. What it does not play: an item updated or deleted
//! within the lag is left out rather than shown as it was (a stricter view for reads that
//! decide, a looser one for a read right after a delete), index queries are never lagged,
//! and a write whose answer was lost (the wiretap's) is not marked. The proxy speaks just enough HTTP/1.1 for the SDK: one request at
//! a time per connection, bodies by `Content-Length`; it talks HTTP/1.0 upstream, so DynamoDB
//! Local answers unchunked and closes, and reframes the answer with its own length.

use crate::conflicts::{Admission, ConflictTable};
use crate::ledger::{key_of, written_keys, WRITES};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How far the eventually consistent view lags behind the table.
pub const LAG: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct StaleView {
    written: Mutex<HashMap<(String, String), Instant>>,
    /// Items left out of an answer because they were written within the lag.
    pub lagged_items: AtomicUsize,
    /// Reads that asked for consistency (served as the table is).
    pub consistent_reads: AtomicUsize,
    /// Reads that did not (of the table: served from the lagging view; of an index: as is).
    pub eventual_reads: AtomicUsize,
}

impl StaleView {
    fn mark(&self, keys: Vec<(String, String)>) {
        let now = Instant::now();
        if let Ok(mut w) = self.written.lock() {
            w.retain(|_, at| now.duration_since(*at) < LAG);
            for k in keys {
                w.insert(k, now);
            }
        }
    }

    fn is_recent(&self, item: &Value) -> bool {
        let Some(key) = key_of(item) else {
            return false;
        };
        self.written
            .lock()
            .map(|w| w.get(&key).is_some_and(|at| at.elapsed() < LAG))
            .unwrap_or(false)
    }

    /// Leaves recently written items out of `items`; counts them.
    fn lag(&self, items: &mut Vec<Value>) -> usize {
        let before = items.len();
        items.retain(|i| !self.is_recent(i));
        let dropped = before - items.len();
        self.lagged_items.fetch_add(dropped, Ordering::Relaxed);
        dropped
    }

    /// What the reader sees of one answer `body` to `request` of `operation`; `None` when
    /// it is the answer as DynamoDB Local gave it.
    fn serve(&self, operation: &str, request: &Value, body: &[u8]) -> Option<Vec<u8>> {
        if WRITES.contains(&operation) {
            self.mark(written_keys(operation, request));
            return None;
        }
        let consistent = |r: &Value| r["ConsistentRead"].as_bool() == Some(true);
        // Which reads the lagging view serves; the rest go through unread (and uncounted
        // but for the tallies below), so the proxy costs next to nothing on them.
        let lagging = match operation {
            "GetItem" => !consistent(request),
            "BatchGetItem" => request["RequestItems"]
                .as_object()
                .is_some_and(|t| !t.values().all(consistent)),
            "Query" | "Scan" => !consistent(request) && request.get("IndexName").is_none(),
            _ => return None,
        };
        let tally = match operation {
            "Query" | "Scan" if request.get("IndexName").is_some() => &self.eventual_reads,
            _ if lagging => &self.eventual_reads,
            _ => &self.consistent_reads,
        };
        tally.fetch_add(1, Ordering::Relaxed);
        if !lagging {
            return None;
        }
        let mut answer: Value = serde_json::from_slice(body).ok()?;
        let changed = match operation {
            "GetItem" => {
                let stale = answer.get("Item").is_some_and(|i| self.is_recent(i));
                if stale {
                    self.lagged_items.fetch_add(1, Ordering::Relaxed);
                    answer.as_object_mut().map(|o| o.remove("Item"));
                }
                stale
            }
            "BatchGetItem" => {
                let mut dropped = 0;
                let tables = request["RequestItems"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                for (table, wanted) in tables {
                    if consistent(&wanted) {
                        continue;
                    }
                    if let Some(Value::Array(items)) = answer["Responses"].get_mut(&table) {
                        dropped += self.lag(items);
                    }
                }
                dropped > 0
            }
            "Query" | "Scan" => match answer.get_mut("Items") {
                Some(Value::Array(items)) => {
                    let dropped = self.lag(items);
                    if dropped > 0 {
                        let n = items.len();
                        answer["Count"] = n.into();
                    }
                    dropped > 0
                }
                _ => false,
            },
            _ => return None,
        };
        changed.then(|| answer.to_string().into_bytes())
    }
}

/// The proxy: listens on 127.0.0.1 (a free port) and forwards to `upstream`.
pub struct StaleProxy {
    pub port: u16,
    pub view: Arc<StaleView>,
    /// Transaction conflicts played (src/conflicts.rs).
    pub conflicts: Arc<ConflictTable>,
    /// Failures played on request ([`Faults`]).
    pub faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

/// Requests the proxy refuses while told to: an operation whose body holds a text (e.g.
/// `TransactWriteItems` naming `#SEQUENCE`: placing events), answered 400
/// `ValidationException` as if DynamoDB had refused it, so a test can hold one step of a
/// worker down for longer than its retries.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<(String, String)>>,
    /// Requests refused.
    pub played: AtomicUsize,
}

impl Faults {
    /// From now on, refuse `operation` requests whose body contains `needle`.
    pub fn fail(&self, operation: &str, needle: &str) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.push((operation.to_owned(), needle.to_owned()));
        }
    }

    /// Refuse nothing any more.
    pub fn heal(&self) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.clear();
        }
    }

    fn refuses(&self, operation: &str, body: &[u8]) -> bool {
        let body = String::from_utf8_lossy(body);
        let hit = self.rules.lock().is_ok_and(|rules| {
            rules
                .iter()
                .any(|(op, needle)| op == operation && body.contains(needle.as_str()))
        });
        if hit {
            self.played.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }
}

impl StaleProxy {
    /// Starts it on the current tokio runtime, transactions held for
    /// [`crate::conflicts::hold`].
    pub async fn start(upstream: SocketAddr) -> Result<StaleProxy, String> {
        Self::start_holding(upstream, crate::conflicts::hold()).await
    }

    /// Starts it with transactions held for `hold` (zero: no conflicts played).
    pub async fn start_holding(upstream: SocketAddr, hold: Duration) -> Result<StaleProxy, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("stale-read proxy: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let view = Arc::new(StaleView::default());
        let conflicts = Arc::new(ConflictTable::new(hold));
        let faults = Arc::new(Faults::default());
        let (shared, table, failing) = (view.clone(), conflicts.clone(), faults.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (view, table, faults) = (shared.clone(), table.clone(), failing.clone());
                tokio::spawn(async move {
                    let _ = serve_connection(client, upstream, view, table, faults).await;
                });
            }
        });
        Ok(StaleProxy {
            port,
            view,
            conflicts,
            faults,
            task,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StaleProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(
    client: TcpStream,
    upstream: SocketAddr,
    view: Arc<StaleView>,
    conflicts: Arc<ConflictTable>,
    faults: Arc<Faults>,
) -> std::io::Result<()> {
    let (read, mut write) = client.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some((head, body)) = read_request(&mut reader).await? else {
            return Ok(());
        };
        let operation = header(&head, "x-amz-target")
            .and_then(|t| t.rsplit('.').next().map(str::to_owned))
            .unwrap_or_default();
        if faults.refuses(&operation, &body) {
            let error = r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"a failure played by the test proxy"}"#;
            let out = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{error}",
                error.len()
            );
            write.write_all(out.as_bytes()).await?;
            write.flush().await?;
            continue;
        }
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let hold = match conflicts.admit(&operation, &request) {
            Admission::Refuse(error) => {
                let out = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{error}",
                    error.len()
                );
                write.write_all(out.as_bytes()).await?;
                write.flush().await?;
                continue;
            }
            Admission::Pass(hold) => hold,
        };
        // A transaction holds its items as long as on AWS (`hold` from its arrival), however
        // long DynamoDB Local takes: an emulator slowed by load would otherwise hold them for
        // hundreds of milliseconds and play conflicts AWS would not. It answers no sooner.
        // Released by whichever comes first: the timer, or the answer (never after it).
        let done = hold.as_ref().map(|h| h.since + conflicts.hold);
        let held = Arc::new(std::sync::Mutex::new(hold));
        let release = |held: &std::sync::Mutex<Option<crate::conflicts::Hold>>| {
            if let Some(hold) = held.lock().ok().and_then(|mut h| h.take()) {
                conflicts.release(hold);
            }
        };
        if let Some(done) = done {
            let (held, conflicts) = (held.clone(), conflicts.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(done.into()).await;
                if let Some(hold) = held.lock().ok().and_then(|mut h| h.take()) {
                    conflicts.release(hold);
                }
            });
        }
        // Recorded before it is sent: a write that commits but whose answer is lost is in the
        // ledger all the same (a key never written reads as nothing).
        crate::ledger::record(&operation, &request);
        let forwarded = forward(upstream, &head, &body).await;
        if let Some(done) = done {
            tokio::time::sleep_until(done.into()).await;
        }
        release(&held);
        let (status_line, headers, answer) = forwarded?;
        let ok = status_line.split(' ').nth(1) == Some("200");
        let changed = if ok {
            view.serve(&operation, &request, &answer)
        } else {
            None
        };
        let mut out = format!(
            "HTTP/1.1{}\r\n",
            status_line.trim_start_matches(|c| c != ' ')
        );
        for (name, value) in &headers {
            let drop = ["content-length", "transfer-encoding", "connection"]
                .contains(&name.as_str())
                || (changed.is_some() && name == "x-amz-crc32");
            if !drop {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        let answer = changed.unwrap_or(answer);
        out.push_str(&format!("content-length: {}\r\n\r\n", answer.len()));
        write.write_all(out.as_bytes()).await?;
        write.write_all(&answer).await?;
        write.flush().await?;
    }
}

/// One request: its head (request line and headers, as sent) and body.
async fn read_request(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let length = header(&head, "content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(Some((head, body)))
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Sends one request upstream as HTTP/1.0 and reads the whole answer.
async fn forward(
    upstream: SocketAddr,
    head: &str,
    body: &[u8],
) -> std::io::Result<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let request_line = match request_line.rsplit_once(' ') {
        Some((start, _)) => format!("{start} HTTP/1.0"),
        None => request_line.to_owned(),
    };
    let mut out = format!("{request_line}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if name != "connection" && name != "expect" {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(out.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no answer head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let mut answer = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        answer = dechunk(&answer)?;
    }
    Ok((status_line, headers, answer))
}

fn dechunk(mut raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| std::io::Error::other("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&raw[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(
            raw.get(..size)
                .ok_or_else(|| std::io::Error::other("short chunk"))?,
        );
        raw = raw.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_read_without_consistency_misses_what_was_just_written() {
        let view = StaleView::default();
        let key = json!({"PK": {"S": "ORG#o#IDEMPOTENCY#k"}, "SK": {"S": "IDEMPOTENCY"}});
        let put = json!({"TransactItems": [{"Put": {"Item": key.clone()}}, {"ConditionCheck": {"Key": {"PK": {"S": "x"}, "SK": {"S": "y"}}}}]});
        assert_eq!(view.serve("TransactWriteItems", &put, b"{}"), None);
        let found = json!({"Item": key.clone()}).to_string();
        let eventual = view.serve("GetItem", &json!({"Key": key.clone()}), found.as_bytes());
        assert_eq!(eventual, Some(b"{}".to_vec()), "absent in the lagging view");
        let consistent = json!({"Key": key.clone(), "ConsistentRead": true});
        assert_eq!(view.serve("GetItem", &consistent, found.as_bytes()), None);
        let query =
            json!({"Items": [key.clone(), {"PK": {"S": "x"}, "SK": {"S": "y"}}], "Count": 2})
                .to_string();
        let lagged = view.serve("Query", &json!({}), query.as_bytes());
        let lagged: Value =
            serde_json::from_slice(&lagged.unwrap_or_default()).unwrap_or(Value::Null);
        assert_eq!(
            lagged["Count"], 1,
            "the condition-checked item was not written"
        );
        assert_eq!(
            view.serve("Query", &json!({"IndexName": "GSI1"}), query.as_bytes()),
            None
        );
        let batch = json!({"RequestItems": {"t": {"Keys": [key.clone()]}}});
        let got = json!({"Responses": {"t": [key]}}).to_string();
        let lagged = view.serve("BatchGetItem", &batch, got.as_bytes());
        assert_eq!(
            lagged.map(|b| String::from_utf8_lossy(&b).into_owned()),
            Some(r#"{"Responses":{"t":[]}}"#.to_owned())
        );
        assert_eq!(view.lagged_items.load(Ordering::Relaxed), 3);
    }
}
