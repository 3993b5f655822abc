//! The robustness run (part of `make test` = `make verify`; alone: `make robustness`): contract fuzzing with
//! schemathesis, then a bounded mixed load, against one local stack (DynamoDB Local +
//! `cargo lambda watch`), then the invariants re-read from the table, every response the load
//! received checked against openapi.yaml, and the whole log scanned for secrets. Ends with a
//! summary table. Sizes: VERIFY_FUZZ_EXAMPLES (per operation and phase), VERIFY_LOAD_REQUESTS,
//! VERIFY_LOAD_CLIENTS, VERIFY_SEED.

use members_tests::fuzz::{self, FuzzConfig};
use members_tests::load::{self, LoadConfig, Population};
use members_tests::{contract, no_secret_in, Stack};
use std::time::Instant;

struct Check {
    name: &'static str,
    passed: bool,
    requests: usize,
    figures: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    members_tests::local_aws_env();
    // `cargo test -- --list` and filters from `cargo test <name>` that are not ours.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("verify: test");
        return;
    }
    if let Some(filter) = args.iter().find(|a| !a.starts_with('-')) {
        if !"verify".contains(filter.as_str()) {
            return;
        }
    }
    let seed: u64 = env_or("VERIFY_SEED", 20_261_123);
    let fuzz_config = FuzzConfig {
        examples: env_or("VERIFY_FUZZ_EXAMPLES", 50),
        seed,
    };
    let load_config = LoadConfig {
        requests: env_or("VERIFY_LOAD_REQUESTS", 10_000),
        clients: env_or("VERIFY_LOAD_CLIENTS", 16),
        members: 200,
        seed,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let stack = match rt.block_on(Stack::start("verify", false)) {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("could not start the local stack: {e}");
            std::process::exit(2);
        }
    };
    let checks = rt.block_on(run(&stack, &fuzz_config, load_config));
    stack.stop();

    let mut table = String::from("\nverify: summary\n");
    table.push_str(&format!(
        "| {:<38} | {:<6} | {:>8} | {}\n",
        "check", "result", "requests", "figures"
    ));
    table.push_str(&format!(
        "|{:-<40}|{:-<8}|{:->10}|{:-<40}\n",
        "", "", "", ""
    ));
    for c in &checks {
        table.push_str(&format!(
            "| {:<38} | {:<6} | {:>8} | {}\n",
            c.name,
            if c.passed { "pass" } else { "FAIL" },
            c.requests,
            c.figures
        ));
    }
    let passed = checks.iter().filter(|c| c.passed).count();
    let requests: usize = checks.iter().map(|c| c.requests).sum();
    table.push_str(&format!(
        "verify: {passed} of {} checks passed, {requests} requests, {:.0} s (fuzz examples {}, load requests {}, seed {seed})\n",
        checks.len(),
        started.elapsed().as_secs_f64(),
        fuzz_config.examples,
        load_config.requests
    ));
    print!("{table}");
    let _ = std::fs::write(
        members_tests::workspace_root().join("target/verify-summary.txt"),
        &table,
    );
    if passed == checks.len() {
        stack.clean_up();
    } else {
        eprintln!("logs kept in {}", stack.dir.display());
        std::process::exit(101);
    }
}

async fn run(stack: &Stack, fuzz_config: &FuzzConfig, load_config: LoadConfig) -> Vec<Check> {
    let mut checks = Vec::new();

    // 1. Contract fuzzing, in an organisation of its own.
    match stack.tenant(false).await {
        Ok(t) => {
            let started = Instant::now();
            match fuzz::run(
                &stack.api,
                &t.hooks_key,
                &t.scim_key,
                &stack.dir,
                fuzz_config,
            ) {
                Ok(run) => {
                    let statuses: Vec<String> = run
                        .by_status
                        .iter()
                        .map(|(s, n)| format!("{s}×{n}"))
                        .collect();
                    println!("schemathesis: {}", run.summary.join(" | "));
                    for p in run.problems.iter().take(10) {
                        eprintln!("fuzz: {p}");
                    }
                    if !run.passed {
                        eprintln!("schemathesis log: {}", run.log.display());
                    }
                    checks.push(Check {
                        name: "contract fuzzing (schemathesis)",
                        passed: run.passed,
                        requests: run.requests,
                        figures: format!(
                            "{:.0} s; answers {}; gate violations: {}; non-UTF-8 bodies the emulator refused: {}",
                            started.elapsed().as_secs_f64(),
                            statuses.join(" "),
                            run.problems.len(),
                            run.emulator_refused
                        ),
                    });
                }
                Err(e) => checks.push(failed("contract fuzzing (schemathesis)", e)),
            }
            checks.push(invariants("invariants after fuzzing", stack, &t.org).await);
        }
        Err(e) => checks.push(failed("contract fuzzing (schemathesis)", e)),
    }

    // 2. Load, in another organisation.
    let recorded_before = contract::recorded().len();
    match stack.tenant(false).await {
        Ok(t) => {
            let outcome = tokio::task::block_in_place(|| {
                let people = Population::create(&t, load_config.members)?;
                load::run(&t, &people, load_config)
            });
            match outcome {
                Ok(run) => {
                    print!("{}", run.report());
                    let (p50, p99) = run.p50_p99(None);
                    let refused: usize = run
                        .outcomes
                        .iter()
                        .filter(|o| o.status >= 400 && !o.unknown_outcome)
                        .count();
                    checks.push(Check {
                        name: "mixed load (70% reads, 30% updates)",
                        passed: true,
                        requests: run.outcomes.len(),
                        figures: format!(
                            "{:.0} req/s, p50 {p50:.1} ms, p99 {p99:.1} ms, {refused} refused by a rule, {} clients, {} emulator errors",
                            run.throughput(),
                            load_config.clients,
                            run.emulator_errors()
                        ),
                    });
                    let lost = tokio::task::block_in_place(|| run.check(&t));
                    checks.push(Check {
                        name: "no lost update, only allowed answers",
                        passed: lost.is_ok(),
                        requests: 0,
                        figures: lost
                            .err()
                            .unwrap_or_else(|| "versions = 1 per acknowledged update".into()),
                    });
                }
                Err(e) => checks.push(failed("mixed load (70% reads, 30% updates)", e)),
            }
            checks.push(invariants("invariants after load", stack, &t.org).await);
        }
        Err(e) => checks.push(failed("mixed load (70% reads, 30% updates)", e)),
    }

    // 3. Every response of the load is what openapi.yaml documents.
    // (Less the emulator's own error pages: they are no function's answer; counted above.)
    let recorded: Vec<_> = contract::recorded()
        .into_iter()
        .skip(recorded_before)
        .filter(|r| !members_tests::from_emulator(r.status, &r.body))
        .collect();
    let responses = &recorded[..];
    let result = tokio::task::block_in_place(|| contract::check_all(responses));
    checks.push(Check {
        name: "load responses match openapi.yaml",
        passed: result.is_ok(),
        requests: 0,
        figures: match result {
            Ok(n) => format!("{n} responses validated"),
            Err(e) => e,
        },
    });

    // 4. No function answered a 5xx during the whole run (their own log lines).
    let text = std::fs::read_to_string(&stack.watch_log).unwrap_or_default();
    let answered = text
        .lines()
        .filter(|l| l.contains("\"message\":\"request finished\""))
        .count();
    let server_errors = text
        .lines()
        .filter(|l| l.contains("\"message\":\"request finished\"") && l.contains("\"status\":5"))
        .count();
    checks.push(Check {
        name: "no 5xx from any function",
        passed: server_errors == 0 && answered > 0,
        requests: 0,
        figures: format!("{answered} answers logged by the functions, {server_errors} of them 5xx"),
    });

    // 5. Nothing secret in any log line of the whole run.
    let scan = no_secret_in(&stack.watch_log);
    let lines = text.lines().count();
    checks.push(Check {
        name: "log scan (keys, hashes, emails)",
        passed: scan.is_ok(),
        requests: 0,
        figures: scan
            .err()
            .unwrap_or_else(|| format!("{lines} log lines, none with a secret")),
    });
    checks
}

async fn invariants(name: &'static str, stack: &Stack, org: &shared::model::OrgId) -> Check {
    let result = stack.check_invariants(org).await;
    Check {
        name,
        passed: result.is_ok(),
        requests: 0,
        figures: result
            .err()
            .unwrap_or_else(|| "counters = recount, one primary, email guards, locations".into()),
    }
}

fn failed(name: &'static str, why: String) -> Check {
    Check {
        name,
        passed: false,
        requests: 0,
        figures: why,
    }
}
