//! The local stack: DynamoDB Local and `cargo lambda watch` on free 127.0.0.1 ports, stopped
//! (with everything they spawned) on drop, and table helpers that re-read what the API wrote.

use crate::stale;
use crate::{http, Tenant, TestResult, KEY_CACHE_SECONDS, ROUTES, TABLE};
use crate::{DynamoLocal, Process};
use aws_sdk_dynamodb::types::AttributeValue;
use shared::admin::{create_organization, FirstAdmin};
use shared::auth::issue_key;
use shared::model::{AuditEvent, Member, MemberId, OrgId, Organization, Scope};
use shared::store::{DynamoStore, Store};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

pub(crate) fn wait_for_port(port: u16, within: Duration, what: &str) -> TestResult {
    let deadline = Instant::now() + within;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{what} did not open port {port} within {within:?}"))
}

/// The environment variable that marks the processes of one stack (its directory).
const STACK_MARKER: &str = "MEMBERS_TEST_STACK";

/// Kills every process whose environment holds `marker` (`NAME=value`), from /proc.
fn stop_marked(marker: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let marked = std::fs::read(entry.path().join("environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()));
        if marked && pid != std::process::id() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A whole local stack: DynamoDB Local, the table, and the API through `cargo lambda watch`.
pub struct Stack {
    pub api: String,
    pub store: DynamoStore,
    pub dynamo: DynamoLocal,
    /// Between the functions and DynamoDB Local: eventual consistency played (src/stale.rs).
    pub stale: stale::StaleProxy,
    pub watch_log: PathBuf,
    pub dir: PathBuf,
    watch: Process,
    /// The stream consumer (`membersctl events consume`), as `make dev` runs it (see
    /// consumers.rs).
    pub(crate) consumer: std::sync::Mutex<Option<Process>>,
    pub(crate) consumer_starts: std::sync::atomic::AtomicUsize,
}

impl Stack {
    /// `persistent`: DynamoDB Local keeps its data in a directory (for stop/start tests).
    pub async fn start(name: &str, persistent: bool) -> Result<Stack, String> {
        let dir = std::env::temp_dir().join(format!("members-it-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let dynamo = DynamoLocal::start(
            free_port()?,
            persistent.then_some(data.as_path()),
            &dir.join("dynamodb.log"),
        )?;
        let store = DynamoStore::new(Self::harness_client(&dynamo.endpoint()).await, TABLE);
        store
            .create_table()
            .await
            .map_err(|e| format!("create table: {e:?}"))?;

        // The functions reach DynamoDB Local through the stale-read proxy (src/stale.rs):
        // reads that do not ask for consistency see a view that lags, as on AWS.
        let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], dynamo.port));
        let stale = stale::StaleProxy::start(upstream).await?;

        let port = free_port()?;
        let watch_log = dir.join("watch.log");
        let mut command = Command::new(cargo_lambda());
        // MEMBERS_FUNCTIONS_ROOT: serve another checkout's functions (to show that a test
        // fails on the code before a fix); by default this workspace's.
        let functions = std::env::var_os("MEMBERS_FUNCTIONS_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(workspace_root);
        command
            .current_dir(functions)
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                // API Gateway has no CORS configuration here either: OPTIONS reaches the routes.
                "--disable-cors",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            // One process per function serving up to 32 invocations at once (the race tests
            // send 32 together), not watch's `--concurrency`: see shared::local.
            .env(shared::local::CONCURRENCY_VAR, "32")
            .env("AWS_ENDPOINT_URL_DYNAMODB", stale.endpoint())
            .env("TABLE_NAME", TABLE)
            // DynamoDB Local on CI's two busy cores answers in seconds where AWS answers in
            // milliseconds: a timeout here would be the emulator's, not the service's.
            .env("DYNAMODB_ATTEMPT_TIMEOUT_MS", "10000")
            .env("LOG_FORMAT", "json")
            // Short, so the revocation test sees the cache expire without waiting a minute.
            .env("API_KEY_CACHE_SECONDS", KEY_CACHE_SECONDS.to_string())
            .env("LOG_LEVEL", "info")
            // Far above what the suites send (the load runs 10,000 requests on a few keys):
            // the rate-limit test gives its organisation limits of its own.
            .env("RATE_LIMIT_PER_KEY", "1000000")
            .env("RATE_LIMIT_PER_ORGANIZATION", "1000000")
            // Webhooks may point at the tests' receivers on 127.0.0.1 (never on AWS).
            .env("WEBHOOKS_ALLOW_LOOPBACK", "true")
            // Watch starts each function in a session of its own: this marks them as this
            // stack's, so that stopping the stack stops them too (see `stop_marked`).
            .env(STACK_MARKER, dir.as_os_str());
        let watch = Process::spawn("cargo lambda watch", command, &watch_log)?;
        wait_for_port(port, Duration::from_secs(120), "cargo lambda watch")?;
        let stack = Stack {
            api: format!("http://127.0.0.1:{port}"),
            store,
            dynamo,
            stale,
            watch_log,
            dir,
            watch,
            consumer: std::sync::Mutex::new(None),
            consumer_starts: Default::default(),
        };
        stack.start_consumer()?;
        stack.warm_up()?;
        Ok(stack)
    }

    /// The first request to each function starts it (`cargo run`); do that before timing
    /// anything or racing anything.
    fn warm_up(&self) -> TestResult {
        let deadline = Instant::now() + Duration::from_secs(300);
        // Every endpoint refuses a request without a key; the fallback refuses a method.
        let fallback = [("DELETE", "/v1/organization", 405)];
        let routes = ROUTES.iter().map(|(m, p)| (*m, *p, 401)).chain(fallback);
        for (method, path, expected) in routes {
            let path = path.replace("{id}", "mem_warmup");
            loop {
                match http(method, &format!("{}{path}", self.api), None, &[], None) {
                    Ok(r) if r.status == expected => break,
                    // Another checkout's functions (MEMBERS_FUNCTIONS_ROOT) may predate a route.
                    Ok(r)
                        if r.status == 404
                            && std::env::var_os("MEMBERS_FUNCTIONS_ROOT").is_some() =>
                    {
                        break
                    }
                    _ if Instant::now() > deadline => {
                        return Err(format!(
                            "{method} {path} never answered {expected}; see {}",
                            self.watch_log.display()
                        ))
                    }
                    _ => std::thread::sleep(Duration::from_millis(250)),
                }
            }
        }
        Ok(())
    }

    pub fn stop(&self) {
        if let Ok(mut slot) = self.consumer.lock() {
            slot.take();
        }
        self.watch.stop();
        // Functions whose watch is gone would spin on the dead runtime API, each burning a
        // share of a core for as long as the machine runs.
        stop_marked(&format!("{STACK_MARKER}={}", self.dir.display()));
        self.dynamo.stop();
    }

    /// The tests' own client for re-reading the table: the functions' configuration, but with
    /// patient timeouts, since the invariant checks read large items on a busy machine (the
    /// functions keep their short ones). Its writes are recorded (src/ledger.rs).
    pub async fn harness_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
        let patient = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(60))
            .operation_timeout(Duration::from_secs(180))
            .build();
        match crate::wiretap::tapped_client_with(endpoint, Some(patient.clone())).await {
            Ok((client, _)) => client,
            // Not plain HTTP: no wiretap, so nothing recorded (no test stack does this).
            Err(_) => {
                let config = DynamoStore::sdk_config(Some(endpoint)).await;
                let conf = aws_sdk_dynamodb::config::Builder::from(&config)
                    .timeout_config(patient)
                    .build();
                aws_sdk_dynamodb::Client::from_conf(conf)
            }
        }
    }

    /// A fresh organisation with its first admin and keys, so tests never share data.
    /// `membersctl` against this stack's table, with the stack's patience (a DynamoDB Local
    /// call on two busy cores may take seconds).
    pub fn membersctl(&self) -> std::process::Command {
        let mut command = std::process::Command::new(crate::membersctl());
        command
            .env("AWS_ENDPOINT_URL_DYNAMODB", self.dynamo.endpoint())
            .env("TABLE_NAME", TABLE)
            .env("DYNAMODB_ATTEMPT_TIMEOUT_MS", "10000");
        command
    }

    pub async fn tenant(&self, hris: bool) -> Result<Tenant, String> {
        new_tenant(&self.store, &self.api, hris).await
    }

    /// The organisation with every count (its shards summed).
    pub async fn organization(&self, org: &OrgId) -> Result<Organization, String> {
        self.store
            .counted_organization(org)
            .await
            .map_err(|e| format!("{e:?}"))?
            .ok_or_else(|| "no organisation".into())
    }

    pub async fn member(&self, org: &OrgId, id: &str) -> Result<Option<Member>, String> {
        let id = MemberId::parse(id)?;
        self.store
            .member(org, &id)
            .await
            .map_err(|e| format!("{e:?}"))
    }

    /// Every item this process wrote whose partition key starts with `prefix`, in key order:
    /// the keys from the ledger (src/ledger.rs), read consistently by BatchGetItem, so a
    /// check reads only its own test's data, however much the others wrote.
    pub async fn items(
        &self,
        prefix: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, String> {
        self.items_at(crate::ledger::keys(prefix)).await
    }

    /// A member's audit entries as stored, read as the service reads them (their changes
    /// and resource are deflated in the table: outbox.rs), in key order (oldest first).
    pub async fn audit_events(&self, org: &OrgId, member: &str) -> Result<Vec<AuditEvent>, String> {
        self.items(&format!("ORG#{org}#MEMBER#{member}#AUDIT"))
            .await?
            .into_iter()
            .map(|item| {
                self.store
                    .read_outbox_entry(item)
                    .map_err(|e| format!("an audit entry: {e:?}"))
            })
            .collect()
    }

    /// The items at `keys` (those that exist), in key order: consistent BatchGetItems.
    async fn items_at(
        &self,
        keys: Vec<(String, String)>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, String> {
        let (mut out, _, _) = self
            .store
            .batch_get(&keys)
            .await
            .map_err(|e| format!("batch get: {e:?}"))?;
        out.sort_by_key(|i| (s(i, "PK"), s(i, "SK")));
        Ok(out)
    }

    /// The organisation's members as stored.
    pub async fn members_of(
        &self,
        org: &OrgId,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, String> {
        let keys = crate::ledger::keys(&format!("ORG#{org}#MEMBER#"));
        self.items_at(keys.into_iter().filter(|(_, sk)| sk == "MEMBER").collect())
            .await
    }
}

impl Stack {
    /// Removes the stack's logs and data; call it when everything passed.
    pub fn clean_up(&self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh organisation with its first admin, a read/write key and a read-only key, so
/// tests (and benchmarks) never share data. `api` is where its API is served, if anywhere.
pub async fn new_tenant(store: &DynamoStore, api: &str, hris: bool) -> Result<Tenant, String> {
    let admin = FirstAdmin {
        first_name: "Root".into(),
        last_name: Some("Admin".into()),
        email: "root@example.com".into(),
    };
    let (org, root) = create_organization(store, "Test Org", hris, &admin)
        .await
        .map_err(|e| format!("create org: {e:?}"))?;
    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for scopes in [
        vec![Scope::ReadMembers, Scope::WriteMembers],
        vec![Scope::ReadMembers],
        vec![Scope::WriteMembers, Scope::WriteWebhooks],
        vec![Scope::Scim],
    ] {
        let issued = issue_key(&org.id, "it", scopes)?;
        store
            .put_api_key(&issued.record)
            .await
            .map_err(|e| format!("{e:?}"))?;
        keys.push(issued.secret);
        ids.push(issued.record.key.id);
    }
    Ok(Tenant {
        org: org.id,
        root: root.id,
        write_key: keys[0].clone(),
        read_key: keys[1].clone(),
        hooks_key: keys[2].clone(),
        hooks_key_id: ids[2].clone(),
        scim_key: keys[3].clone(),
        api: api.to_owned(),
    })
}

/// The addresses TCP `port` is listened on, from /proc/net/tcp and tcp6 (Linux): "127.0.0.1",
/// "0.0.0.0", "::", "::1", … Empty when nothing listens, or off Linux.
pub fn listening_addresses(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some("0A")) = (fields.get(1), fields.get(3).copied()) else {
                continue;
            };
            let Some((address, hex_port)) = local.split_once(':') else {
                continue;
            };
            if u16::from_str_radix(hex_port, 16) != Ok(port) {
                continue;
            }
            // Each 32-bit word of the address is in host (little-endian) byte order.
            let bytes: Vec<u8> = (0..address.len() / 8)
                .flat_map(|w| {
                    let word = u32::from_str_radix(&address[w * 8..w * 8 + 8], 16).unwrap_or(0);
                    word.to_le_bytes()
                })
                .collect();
            out.push(if v6 {
                let octets: [u8; 16] = bytes.try_into().unwrap_or([0; 16]);
                std::net::Ipv6Addr::from(octets).to_string()
            } else {
                let octets: [u8; 4] = bytes.try_into().unwrap_or([0; 4]);
                std::net::Ipv4Addr::from(octets).to_string()
            });
        }
    }
    out
}

/// A string attribute ("" when absent).
pub fn s(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    }
}

/// A boolean attribute (false when absent).
pub fn b(item: &HashMap<String, AttributeValue>, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}

fn cargo_lambda() -> PathBuf {
    if let Ok(path) = std::env::var("CARGO_LAMBDA") {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join(".local/venv/bin/cargo-lambda");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("cargo-lambda")
    }
}
