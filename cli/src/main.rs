//! `membersctl`: the operator's CLI. Creates the table, organisations with their first admin,
//! and API keys (shown once). Works against DynamoDB Local or AWS.

mod consume;
mod metrics;
mod recount;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use shared::admin::{create_organization, FirstAdmin};
use shared::auth::issue_key;
use shared::model::{ApiKeyId, OrgId, Scope, Timestamp};
use shared::store::dynamo::Window;
use shared::store::DynamoStore;
use shared::ApiError;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "membersctl",
    version,
    about = "Operate a Members API deployment: table, organisations, API keys."
)]
struct Cli {
    /// DynamoDB table name.
    #[arg(long, global = true, env = "TABLE_NAME", default_value = "members")]
    table: String,
    /// DynamoDB endpoint, e.g. http://127.0.0.1:8000 for DynamoDB Local. Unset: AWS.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL_DYNAMODB")]
    endpoint_url: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the table and its indexes (does nothing if it exists).
    CreateTable,
    /// Create an organisation and its first admin (active admin + hris_admin, primary).
    CreateOrg(OrgArgs),
    /// Issue, list and revoke API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Change events, locally.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Recount organisations' counters from their members and write those that are wrong
    /// or missing (run once after an upgrade that adds a counter). Safe while the API serves
    /// writes; each run reads the whole table (a consistent Scan).
    Recount {
        /// One organisation (org_…).
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        org: Option<String>,
        /// Every organisation in the table.
        #[arg(long)]
        all: bool,
        /// Report what is wrong, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Set an organisation's own rate limits (requests per minute, counted across every
    /// function instance), or `--default` to go back to the deployment's defaults.
    RateLimits {
        /// The organisation (org_…).
        #[arg(long)]
        org: String,
        /// Requests per minute for each of its keys.
        #[arg(long, required_unless_present = "default", conflicts_with = "default")]
        per_key: Option<u64>,
        /// Requests per minute for the whole organisation.
        #[arg(long, required_unless_present = "default", conflicts_with = "default")]
        per_org: Option<u64>,
        /// Back to the defaults (RATE_LIMIT_PER_KEY, RATE_LIMIT_PER_ORGANIZATION).
        #[arg(long)]
        default: bool,
    },
    /// Sum the functions' metric lines (CloudWatch Embedded Metric Format) per minute, from
    /// log files (`make dev` writes them to .local/metrics.log) or standard input.
    Metrics {
        /// Log files; none: standard input.
        files: Vec<std::path::PathBuf>,
        /// Only the last N whole minutes (UTC); nothing printed when they had no metric.
        #[arg(long)]
        minutes: Option<u32>,
    },
    /// Create the table, a demo organisation, a read/write key, a webhooks key and a SCIM
    /// key; print shell exports.
    Demo {
        /// Base URL the API is served at, for the printed MEMBERS_API_URL.
        #[arg(long, default_value = "http://127.0.0.1:9000")]
        api_url: String,
    },
}

#[derive(Args)]
struct OrgArgs {
    /// Organisation name.
    #[arg(long)]
    name: String,
    /// The first admin's email.
    #[arg(long)]
    admin_email: String,
    /// The first admin's first name.
    #[arg(long)]
    admin_first_name: String,
    /// The first admin's last name.
    #[arg(long)]
    admin_last_name: Option<String>,
    /// Start with the HRIS application enabled.
    #[arg(long)]
    hris: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Issue a key. The key is printed once and never stored; keep it.
    Issue {
        /// The organisation the key belongs to (org_…).
        #[arg(long)]
        org: String,
        /// A label for the key, e.g. who uses it.
        #[arg(long)]
        name: String,
        /// Scopes: r_members (reads), w_members (writes), r_webhooks, w_webhooks (webhooks;
        /// not implied by the members scopes; a webhook of member events also needs
        /// r_members), or scim alone (an identity provider's key for
        /// /scim/v2, which calls nothing else). Repeat or comma-separate.
        #[arg(long, value_delimiter = ',', default_values = ["r_members", "w_members"])]
        scope: Vec<String>,
    },
    /// List an organisation's keys (ids, names, scopes; never the keys).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a key by id (key_…). Requests with it get 401 from then on.
    Revoke {
        #[arg(long)]
        org: String,
        #[arg(long)]
        key_id: String,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Consume the table's stream as `publish-events` does on AWS: place each new event in
    /// its organisation's feed (GET /v1/events) and print it. Runs until stopped; resumes
    /// where it stopped. For DynamoDB Local (on AWS the function does this).
    Consume {
        /// Give up on a batch after this many failed attempts, as Lambda does after its
        /// `MaximumRetryAttempts` (its events are then left to the repair). Unset: never.
        #[arg(long, env = "MEMBERS_CONSUMER_MAX_RETRIES")]
        max_retries: Option<u32>,
        /// Run the repair every so many seconds (entries older than that), as the
        /// `repair-events` function does on AWS every 15 minutes; 0: never.
        #[arg(long, default_value_t = 300)]
        repair_every: u64,
    },
    /// Finish what the stream consumer gave up on: place each outbox entry that has no place,
    /// publish each placed event never published (webhooks locally, the EventBridge bus on
    /// AWS through the `repair-events` function). Exactly once per event after dedup by id.
    Repair {
        /// One organisation (org_…); default: every one.
        #[arg(long)]
        org: Option<String>,
        /// Only entries written since then: an RFC 3339 time or an age such as 6h or 2d.
        #[arg(long)]
        since: Option<String>,
        /// Leave entries younger than this to the live consumer (s, m, h or d).
        #[arg(long, default_value = "10m")]
        older_than: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::telemetry::init_cli();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("membersctl: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<(), String> {
    let client = DynamoStore::client_from_env(cli.endpoint_url.as_deref()).await;
    let store = DynamoStore::new(client, &cli.table);
    let where_ = cli.endpoint_url.clone().unwrap_or_else(|| "AWS".into());
    let failed = |e: ApiError| describe(e, &where_, &cli.table);
    match &cli.command {
        Command::Events(EventsCommand::Repair {
            org,
            since,
            older_than,
        }) => {
            let org = org.as_deref().map(parse_org).transpose()?;
            let now = Timestamp::now();
            let window = Window {
                since: since
                    .as_deref()
                    .map(|s| match age(s) {
                        Ok(age) => Ok(now.plus_millis(-(age.as_millis() as i64))),
                        Err(_) => Timestamp::parse(s)
                            .map_err(|e| format!("--since {e}, or an age such as 6h")),
                    })
                    .transpose()?,
                before: now.plus_millis(
                    -(age(older_than)
                        .map_err(|e| format!("--older-than {e}"))?
                        .as_millis() as i64),
                ),
            };
            let done = consume::repair(&store, org.as_ref(), window)
                .await
                .map_err(failed)?;
            print(
                cli,
                json!({"placed": done.placed, "published": done.published, "failed": done.failed}),
                format!(
                    "repair: {} entries placed and published, {} placed events published, {} failed{}",
                    done.placed,
                    done.published,
                    done.failed,
                    if done.failed > 0 { " (run it again)" } else { "" }
                ),
            );
            if done.failed > 0 {
                return Err(format!("{} could not be finished", done.failed));
            }
        }
        Command::Events(EventsCommand::Consume {
            max_retries,
            repair_every,
        }) => {
            // A long-running worker: patient timeouts (a busy DynamoDB Local can take
            // seconds), and it outlives any call that fails (see consume.rs).
            let config = DynamoStore::sdk_config(cli.endpoint_url.as_deref()).await;
            let patient = consume::patient_timeouts();
            let dynamo = aws_sdk_dynamodb::config::Builder::from(&config)
                .timeout_config(patient.clone())
                // The metrics the functions write on AWS, on stderr every 10 s.
                .interceptor(shared::metrics::DynamoCalls)
                .build();
            shared::metrics::init();
            tokio::spawn(async {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
                loop {
                    every.tick().await;
                    shared::metrics::flush_to(std::io::stderr().lock());
                }
            });
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(dynamo), &cli.table);
            let streams = aws_sdk_dynamodbstreams::config::Builder::from(&config)
                .timeout_config(patient)
                .build();
            let policy = consume::Policy {
                max_retries: *max_retries,
                repair_every: std::time::Duration::from_secs(*repair_every),
            };
            consume::run(
                &store,
                &aws_sdk_dynamodbstreams::Client::from_conf(streams),
                policy,
            )
            .await?;
        }
        Command::CreateTable => {
            let created = store.create_table().await.map_err(failed)?;
            let state = if created { "created" } else { "already exists" };
            print(
                cli,
                json!({"table": cli.table, "created": created}),
                format!("table {} {state}", cli.table),
            );
        }
        Command::CreateOrg(args) => {
            let admin = FirstAdmin {
                first_name: args.admin_first_name.clone(),
                last_name: args.admin_last_name.clone(),
                email: args.admin_email.clone(),
            };
            let (org, member) = create_organization(&store, &args.name, args.hris, &admin)
                .await
                .map_err(failed)?;
            print(
                cli,
                json!({"organizationId": org.id, "adminMemberId": member.id}),
                format!(
                    "organisation {} ({})\nfirst admin   {} <{}>",
                    org.id,
                    org.name,
                    member.id,
                    member.email.as_str()
                ),
            );
        }
        Command::Keys(KeysCommand::Issue { org, name, scope }) => {
            let org = parse_org(org)?;
            let scopes = parse_scopes(scope)?;
            issue(cli, &store, &org, name, scopes)
                .await
                .map_err(failed)?;
        }
        Command::Keys(KeysCommand::List { org }) => {
            let org = parse_org(org)?;
            let keys = store.api_keys(&org).await.map_err(failed)?;
            let rows: Vec<_> = keys.iter().map(|(k, _)| k).collect();
            let text = if rows.is_empty() {
                format!("{org} has no keys")
            } else {
                rows.iter()
                    .map(|k| {
                        let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                        let state = k
                            .revoked_at
                            .map_or("active".to_owned(), |t| format!("revoked {t}"));
                        format!(
                            "{}  {:<20} {:<20} {}",
                            k.id,
                            k.name,
                            scopes.join(","),
                            state
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            print(cli, json!(rows), text);
        }
        Command::Keys(KeysCommand::Revoke { org, key_id }) => {
            let org = parse_org(org)?;
            let id = ApiKeyId::parse(key_id).map_err(|e| format!("--key-id {e}"))?;
            let key = store.revoke_api_key(&org, &id).await.map_err(|e| match e {
                ApiError::NotFound => format!("{org} has no key {id}"),
                e => failed(e),
            })?;
            print(cli, json!(key), format!("revoked {}", key.id));
        }
        Command::Recount { org, dry_run, .. } => {
            let org = org.as_deref().map(parse_org).transpose()?;
            let recounts = store
                .recount_counters(org.as_ref(), *dry_run)
                .await
                .map_err(failed)?;
            let (value, text, failure) = recount::report(&recounts, *dry_run);
            print(cli, value, text);
            if let Some(failure) = failure {
                return Err(failure);
            }
        }
        Command::RateLimits {
            org,
            per_key,
            per_org,
            ..
        } => {
            let org = parse_org(org)?;
            let limits = match (per_key, per_org) {
                (Some(k), Some(o)) if *k > 0 && *o > 0 => Some(shared::ratelimit::Limits {
                    per_key: *k,
                    per_organization: *o,
                }),
                (Some(_), Some(_)) => {
                    return Err("--per-key and --per-org must be at least 1".into())
                }
                _ => None,
            };
            store.set_rate_limits(&org, limits).await.map_err(failed)?;
            // The deployment's defaults are the functions' settings, not this machine's.
            let (value, text) = match limits {
                Some(l) => (
                    json!({"organizationId": org.as_str(), "perKey": l.per_key, "perOrganization": l.per_organization, "windowSeconds": shared::ratelimit::WINDOW_SECONDS}),
                    format!(
                        "{org}: {} requests a minute per key, {} for the organisation; every instance applies them within a few seconds",
                        l.per_key, l.per_organization
                    ),
                ),
                None => (
                    json!({"organizationId": org.as_str(), "perKey": null, "perOrganization": null, "windowSeconds": shared::ratelimit::WINDOW_SECONDS}),
                    format!("{org}: the deployment's defaults (the functions' RATE_LIMIT_PER_KEY and RATE_LIMIT_PER_ORGANIZATION)"),
                ),
            };
            print(cli, value, text);
        }
        // No table: only the log lines.
        Command::Metrics { files, minutes } => {
            print!("{}", metrics::run(files, *minutes)?);
        }
        Command::Demo { api_url } => {
            store.create_table().await.map_err(failed)?;
            let admin = FirstAdmin {
                first_name: "Demo".into(),
                last_name: Some("Admin".into()),
                email: "admin@demo.example".into(),
            };
            let (org, member) = create_organization(&store, "Demo Organisation", false, &admin)
                .await
                .map_err(failed)?;
            let issued = issue_key(
                &org.id,
                "demo",
                vec![Scope::ReadMembers, Scope::WriteMembers],
            )?;
            store.put_api_key(&issued.record).await.map_err(failed)?;
            // Webhooks of member events need a key that may read members (SPEC, "Scopes").
            let hooks = issue_key(
                &org.id,
                "demo webhooks",
                vec![Scope::WriteWebhooks, Scope::ReadMembers],
            )?;
            store.put_api_key(&hooks.record).await.map_err(failed)?;
            let scim = issue_key(&org.id, "demo identity provider", vec![Scope::Scim])?;
            store.put_api_key(&scim.record).await.map_err(failed)?;
            if cli.json {
                println!(
                    "{}",
                    json!({"organizationId": org.id, "adminMemberId": member.id, "apiKey": issued.secret, "webhooksKey": hooks.secret, "scimKey": scim.secret, "apiUrl": api_url})
                );
            } else {
                println!(
                    "# demo organisation {} with admin {} <{}>",
                    org.id,
                    member.id,
                    member.email.as_str()
                );
                println!("export MEMBERS_API_URL={api_url}");
                println!("export MEMBERS_API_KEY={}", issued.secret);
                println!("export MEMBERS_HOOKS_KEY={}", hooks.secret);
                println!("export MEMBERS_SCIM_KEY={}", scim.secret);
                println!("# SCIM for Okta / Entra ID: base URL {api_url}/scim/v2, token $MEMBERS_SCIM_KEY");
            }
        }
    }
    Ok(())
}

async fn issue(
    cli: &Cli,
    store: &DynamoStore,
    org: &OrgId,
    name: &str,
    scopes: Vec<Scope>,
) -> Result<(), ApiError> {
    use shared::store::Store;
    if store.organization(org).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let issued = issue_key(org, name, scopes).map_err(|_| ApiError::Internal)?;
    store.put_api_key(&issued.record).await?;
    let k = &issued.record.key;
    print(
        cli,
        json!({"id": k.id, "organizationId": k.organization_id, "name": k.name, "scopes": k.scopes, "key": issued.secret}),
        format!(
            "key id  {}\nkey     {}\n\nThis is the only time the key is shown. Store it now; only its hash is kept.",
            k.id, issued.secret
        ),
    );
    Ok(())
}

fn parse_org(org: &str) -> Result<OrgId, String> {
    OrgId::parse(org).map_err(|e| format!("--org {e}"))
}

fn parse_scopes(scopes: &[String]) -> Result<Vec<Scope>, String> {
    let mut out = Vec::new();
    for s in scopes {
        let scope = Scope::parse(s.trim())
            .ok_or_else(|| format!("--scope {s:?} is not one of {}", Scope::ALLOWED.join(", ")))?;
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    // An identity provider holds its key in its own console: it gets SCIM and nothing else,
    // and a /v1 key never reaches /scim/v2.
    if out.contains(&Scope::Scim) && out.len() > 1 {
        return Err("--scope scim is a key of its own: issue it without other scopes".into());
    }
    Ok(out)
}

/// An age: a number and a unit, s, m, h or d (`90s`, `10m`, `6h`, `2d`).
fn age(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not an age such as 90s, 10m, 6h or 2d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?} is not an age such as 90s, 10m, 6h or 2d")),
    };
    n.checked_mul(seconds)
        .filter(|&s| s <= 400 * 86_400)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is longer than 400 days"))
}

fn print(cli: &Cli, value: serde_json::Value, text: String) {
    if cli.json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

fn describe(e: ApiError, endpoint: &str, table: &str) -> String {
    match e {
        ApiError::Unavailable { .. } => format!("DynamoDB at {endpoint} is unreachable or throttling; is it running?"),
        ApiError::NotFound => "no such organisation".into(),
        ApiError::Internal => format!("the call to DynamoDB at {endpoint} failed; does table {table} exist (membersctl create-table)?"),
        other => {
            let p = other.problem();
            let mut text = format!("{} ({})", p.body["detail"].as_str().unwrap_or(""), other.code());
            if let Some(errors) = p.body["errors"].as_array() {
                for e in errors {
                    text.push_str(&format!("\n  {}: {}", e["field"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")));
                }
            }
            text
        }
    }
}
