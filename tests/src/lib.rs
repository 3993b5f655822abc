//! What the workspace's tests and benchmarks share: the local stack (`stack`: DynamoDB Local
//! and `cargo lambda watch` on free 127.0.0.1 ports, stopped on drop, and table helpers), the
//! HTTP client (`client`), what the local stack hides from AWS played back (`stale`,
//! `wiretap`, `tls`), the contract check, the fuzzing and the load of the robustness run.

pub mod client;
pub mod conflicts;
pub mod consumers;
pub mod contract;
pub mod cost;
pub mod fuzz;
mod invariants;
#[cfg(test)]
mod layout;
pub mod ledger;
pub mod load;
pub mod process;
pub mod receiver;
pub mod stack;
pub mod stale;
pub mod tls;
pub mod wiretap;

pub use client::*;
pub use consumers::{consumer, membersctl};
pub use process::{DynamoLocal, Process};
pub use stack::*;

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
