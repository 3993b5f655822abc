//! A bounded load generator: a fixed number of requests from a fixed number of client threads,
//! a mixed workload (70% reads, 30% updates, a share of them fighting over the same members),
//! and the figures a reader asks for: throughput, p50/p99 per kind of request, the error mix.
//! Afterwards [`LoadRun::check`] proves from the table that no update was lost.

use crate::{emulator_retries, from_emulator, http, Tenant};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct LoadConfig {
    pub requests: usize,
    pub clients: usize,
    /// Members the reads and the ordinary updates spread over.
    pub members: usize,
    pub seed: u64,
}

/// What one request did. The shares are out of 100.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// 40%: GET /v1/members/{id}
    Get,
    /// 30%: GET /v1/members with a page size and now and then a filter.
    List,
    /// 18%: PATCH one of the members (two clients rarely pick the same one).
    Update,
    /// 8%: PATCH one of two hot members: updates that conflict by design.
    HotUpdate,
    /// 4%: PATCH the role of one of four admins, the organisation's first admin among
    /// them: the last-admin rule decides between racing demotions.
    RoleChange,
}

impl Kind {
    fn pick(roll: u64) -> Kind {
        match roll % 100 {
            0..40 => Kind::Get,
            40..70 => Kind::List,
            70..88 => Kind::Update,
            88..96 => Kind::HotUpdate,
            _ => Kind::RoleChange,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Get => "get member",
            Kind::List => "list members",
            Kind::Update => "update",
            Kind::HotUpdate => "update (hot member)",
            Kind::RoleChange => "role change",
        }
    }

    /// The answers this kind of request may get; anything else fails the run.
    fn allowed(self, status: u16, code: &str) -> bool {
        match self {
            Kind::Get | Kind::List => status == 200,
            Kind::Update | Kind::HotUpdate => {
                status == 200 || (status == 422 && code == "member_update_in_progress")
            }
            Kind::RoleChange => {
                status == 200
                    || (status == 422 && code == "member_update_in_progress")
                    || (status == 422 && code == "last_admin")
            }
        }
    }
}

/// One answer, as the load run keeps it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub kind: Kind,
    pub member: Option<String>,
    /// The `headline` a PATCH sent: unique per request, so the table shows which write won.
    pub headline: Option<String>,
    pub status: u16,
    pub code: String,
    pub problem_json: bool,
    pub latency: Duration,
    /// `cargo lambda watch` answered with its own 500, not the function's answer: for an
    /// update, whether it was applied is unknown ([`http`] asks a GET again by itself).
    pub unknown_outcome: bool,
}

pub struct LoadRun {
    pub config: LoadConfig,
    pub outcomes: Vec<Outcome>,
    pub elapsed: Duration,
    /// Each member's `version` before the run.
    pub versions_before: HashMap<String, i64>,
    /// GETs [`http`] asked again during the run because the emulator lost their answer.
    pub retried_gets: usize,
}

/// A deterministic 64-bit mix (splitmix64): the same seed gives the same workload.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The members the run works on, made through the API before the clock starts.
pub struct Population {
    pub ordinary: Vec<String>,
    pub hot: Vec<String>,
    /// The organisation's first admin and three more admins.
    pub admins: Vec<String>,
}

impl Population {
    pub fn create(t: &Tenant, members: usize) -> Result<Population, String> {
        let make = |prefix: &str, n: usize, role: &str| -> Result<Vec<String>, String> {
            (0..n)
                .map(|i| {
                    t.create(&json!({
                        "firstName": format!("{prefix}{i}"),
                        "email": format!("{prefix}{i}@load.example.com"),
                        "role": role,
                        "department": if i % 2 == 0 { "hr" } else { "it" },
                    }))
                })
                .collect()
        };
        let ordinary = make("member", members, "simple")?;
        let hot = make("hot", 2, "simple")?;
        let mut admins = vec![t.root.to_string()];
        admins.extend(make("admin", 3, "admin")?);
        Ok(Population {
            ordinary,
            hot,
            admins,
        })
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.ordinary.iter().chain(&self.hot).chain(&self.admins)
    }
}

/// Sends `config.requests` requests from `config.clients` threads, as fast as the API answers.
pub fn run(t: &Tenant, people: &Population, config: LoadConfig) -> Result<LoadRun, String> {
    let versions_before = versions(t, people)?;
    let next = Arc::new(AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(config.requests)));
    let people = Arc::new((
        people.ordinary.clone(),
        people.hot.clone(),
        people.admins.clone(),
    ));
    let retries_before = emulator_retries();
    let started = Instant::now();
    let clients: Vec<_> = (0..config.clients)
        .map(|_| {
            let (t, next, outcomes, people) =
                (t.clone(), next.clone(), outcomes.clone(), people.clone());
            std::thread::spawn(move || -> Result<(), String> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= config.requests {
                        return Ok(());
                    }
                    let outcome = one_request(&t, &people, config.seed, i)?;
                    outcomes
                        .lock()
                        .map_err(|_| "poisoned".to_owned())?
                        .push(outcome);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().map_err(|_| "load client panicked".to_owned())??;
    }
    let elapsed = started.elapsed();
    let outcomes = std::mem::take(&mut *outcomes.lock().map_err(|_| "poisoned".to_owned())?);
    Ok(LoadRun {
        config,
        outcomes,
        elapsed,
        versions_before,
        retried_gets: emulator_retries() - retries_before,
    })
}

type People = (Vec<String>, Vec<String>, Vec<String>);

fn one_request(t: &Tenant, people: &People, seed: u64, i: usize) -> Result<Outcome, String> {
    let (ordinary, hot, admins) = people;
    let roll = mix(seed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let kind = Kind::pick(roll);
    let choose = |list: &Vec<String>| list[(roll >> 8) as usize % list.len()].clone();
    let headline = format!("load {seed}-{i}");
    let (method, path, body, member) = match kind {
        Kind::Get => {
            let id = choose(ordinary);
            ("GET", format!("/v1/members/{id}"), None, Some(id))
        }
        Kind::List => {
            let query = match (roll >> 8) % 4 {
                0 => "?limit=25&department=hr",
                1 => "?limit=10&role=admin",
                _ => "?limit=25",
            };
            ("GET", format!("/v1/members{query}"), None, None)
        }
        Kind::Update | Kind::HotUpdate => {
            let id = choose(if kind == Kind::Update { ordinary } else { hot });
            let body = json!({"headline": headline, "jobTitle": format!("title {}", roll % 7)});
            ("PATCH", format!("/v1/members/{id}"), Some(body), Some(id))
        }
        Kind::RoleChange => {
            let id = choose(admins);
            let role = if (roll >> 16).is_multiple_of(2) {
                "admin"
            } else {
                "simple"
            };
            let body = json!({"role": role, "headline": headline});
            ("PATCH", format!("/v1/members/{id}"), Some(body), Some(id))
        }
    };
    let key = if method == "GET" {
        &t.read_key
    } else {
        &t.write_key
    };
    let bearer = format!("Bearer {key}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let bytes = body.as_ref().map(|b| b.to_string().into_bytes());
    let started = Instant::now();
    let reply = http(
        method,
        &format!("{}{path}", t.api),
        bytes.as_deref(),
        &headers,
        None,
    )?;
    let latency = started.elapsed();
    Ok(Outcome {
        kind,
        member,
        headline: body.map(|_| headline),
        status: reply.status,
        code: reply.code(),
        problem_json: reply.header("content-type") == Some("application/problem+json"),
        latency,
        unknown_outcome: from_emulator(reply.status, &reply.text),
    })
}

/// Every member's `version`, read through the API.
fn versions(t: &Tenant, people: &Population) -> Result<HashMap<String, i64>, String> {
    people
        .all()
        .map(|id| {
            let r = t.get_member(id)?;
            let version = r.json()["version"]
                .as_i64()
                .ok_or_else(|| format!("GET {id}: no version in {}", r.text))?;
            Ok((id.clone(), version))
        })
        .collect()
}

/// The `p`-th percentile (0–100) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl LoadRun {
    pub fn throughput(&self) -> f64 {
        self.outcomes.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn latencies(&self, kind: Option<Kind>) -> Vec<Duration> {
        let mut l: Vec<Duration> = self
            .outcomes
            .iter()
            .filter(|o| kind.is_none_or(|k| o.kind == k))
            .map(|o| o.latency)
            .collect();
        l.sort();
        l
    }

    /// (p50, p99) in milliseconds, of one kind or of all requests.
    pub fn p50_p99(&self, kind: Option<Kind>) -> (f64, f64) {
        let l = self.latencies(kind);
        (ms(percentile(&l, 50.0)), ms(percentile(&l, 99.0)))
    }

    /// "200" / "422 member_update_in_progress" → how many.
    pub fn mix(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for o in &self.outcomes {
            let key = if o.code.is_empty() {
                o.status.to_string()
            } else {
                format!("{} {}", o.status, o.code)
            };
            *m.entry(key).or_insert(0) += 1;
        }
        m
    }

    /// The figures, as a table for a terminal.
    pub fn report(&self) -> String {
        let mut out = format!(
            "load: {} requests from {} clients in {:.1} s = {:.0} requests/s\n",
            self.outcomes.len(),
            self.config.clients,
            self.elapsed.as_secs_f64(),
            self.throughput()
        );
        out.push_str(&format!(
            "  {:<22} {:>7} {:>9} {:>9}\n",
            "request", "count", "p50 ms", "p99 ms"
        ));
        let kinds = [
            Kind::Get,
            Kind::List,
            Kind::Update,
            Kind::HotUpdate,
            Kind::RoleChange,
        ];
        for kind in kinds.into_iter().map(Some).chain([None]) {
            let count = self
                .outcomes
                .iter()
                .filter(|o| kind.is_none_or(|k| o.kind == k))
                .count();
            let (p50, p99) = self.p50_p99(kind);
            out.push_str(&format!(
                "  {:<22} {count:>7} {p50:>9.1} {p99:>9.1}\n",
                kind.map_or("all", Kind::name)
            ));
        }
        out.push_str("  answers:");
        for (answer, count) in self.mix() {
            out.push_str(&format!("  {answer}: {count}"));
        }
        out.push_str(&format!(
            "\n  emulator errors (cargo lambda watch's own 500, GETs asked again): {}\n",
            self.emulator_errors()
        ));
        out
    }

    /// Answers the emulator lost: GETs asked again, and updates whose outcome is unknown.
    pub fn emulator_errors(&self) -> usize {
        self.retried_gets + self.outcomes.iter().filter(|o| o.unknown_outcome).count()
    }

    /// Every answer is one its request may get (never a 5xx of ours), every refusal is
    /// problem+json, and the table lost no update: each member's version grew by exactly the
    /// number of updates acknowledged with 200 (plus at most those whose answer the emulator
    /// lost), and its headline is one such an update sent.
    pub fn check(&self, t: &Tenant) -> Result<(), String> {
        for o in self.outcomes.iter().filter(|o| !o.unknown_outcome) {
            if !o.kind.allowed(o.status, &o.code) {
                return Err(format!(
                    "{} of {:?} answered {} {}",
                    o.kind.name(),
                    o.member,
                    o.status,
                    o.code
                ));
            }
            if o.status >= 400 && !o.problem_json {
                return Err(format!("{} {} is not problem+json", o.status, o.code));
            }
        }
        let mut acknowledged: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut unknown: HashMap<&str, Vec<&str>> = HashMap::new();
        for o in &self.outcomes {
            if let (Some(m), Some(h)) = (&o.member, &o.headline) {
                if o.status == 200 {
                    acknowledged.entry(m).or_default().push(h);
                } else if o.unknown_outcome {
                    unknown.entry(m).or_default().push(h);
                }
            }
        }
        for (id, before) in &self.versions_before {
            let r = t.get_member(id)?;
            let member = r.json();
            let after = member["version"].as_i64().unwrap_or(-1);
            let wins = acknowledged.get(id.as_str()).map_or(0, Vec::len) as i64;
            let maybe = unknown.get(id.as_str()).map_or(0, Vec::len) as i64;
            if after - before < wins || after - before > wins + maybe {
                return Err(format!(
                    "{id}: version {before} → {after}, but {wins} updates were acknowledged ({maybe} unknown)"
                ));
            }
            if let Some(headlines) = acknowledged.get(id.as_str()) {
                let last = member["headline"].as_str().unwrap_or("");
                let possible = unknown.get(id.as_str());
                if !headlines.contains(&last) && !possible.is_some_and(|p| p.contains(&last)) {
                    return Err(format!(
                        "{id}: headline {last:?} is from no acknowledged update"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_seventy_percent_reads() {
        let kinds: Vec<Kind> = (0..10_000u64).map(|i| Kind::pick(mix(i))).collect();
        let reads = kinds
            .iter()
            .filter(|k| matches!(k, Kind::Get | Kind::List))
            .count();
        assert!((6_800..=7_200).contains(&reads), "{reads} reads of 10000");
        assert!(kinds.contains(&Kind::RoleChange) && kinds.contains(&Kind::HotUpdate));
    }

    #[test]
    fn percentiles_pick_ranks() {
        let l: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&l, 50.0), Duration::from_millis(51));
        assert_eq!(percentile(&l, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }

    #[test]
    fn unexpected_answers_fail_the_run() {
        assert!(Kind::Get.allowed(200, ""));
        assert!(!Kind::Get.allowed(500, "internal"));
        assert!(Kind::HotUpdate.allowed(422, "member_update_in_progress"));
        assert!(!Kind::Update.allowed(422, "last_admin"));
        assert!(Kind::RoleChange.allowed(422, "last_admin"));
    }
}
