//! Settings that only the local stack uses (`make dev`, the tests), never set on AWS.

/// The environment variable that asks a function process to serve this many invocations at
/// once under `cargo lambda watch`.
pub const CONCURRENCY_VAR: &str = "MEMBERS_LOCAL_CONCURRENCY";

/// `cargo lambda watch` gives every function process `AWS_LAMBDA_MAX_CONCURRENCY=1` and
/// serves parallel requests (`--concurrency N`) by starting more processes of a function.
/// Those extra instances are never seen as idle, so a fresh stack keeps spawning them (each a
/// `cargo run` with its own watcher over the workspace), and the churn makes watch answer
/// its own 500 now and then, sometimes after the function already ran. The local stack
/// therefore runs one process per function (watch's default) and lets that process serve
/// `MEMBERS_LOCAL_CONCURRENCY` invocations at once, as Lambda's managed instances do with
/// `AWS_LAMBDA_MAX_CONCURRENCY`. Call it first in `main`, before any request is served.
pub fn apply_concurrency() {
    if let Some(n) = std::env::var(CONCURRENCY_VAR)
        .ok()
        .filter(|n| n.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n)))
    {
        // Read once by the runtime when `run_concurrent` starts; nothing else reads it.
        std::env::set_var("AWS_LAMBDA_MAX_CONCURRENCY", n);
    }
}
