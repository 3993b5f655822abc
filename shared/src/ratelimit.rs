//! Rate limits per API key and per organisation, counted across every function instance.
//!
//! Each organisation's requests are counted per fixed window of [`WINDOW_SECONDS`] in
//! DynamoDB, on [`SHARDS`] items of a partition of its own (`RATE#<org>`, `<window>#<shard>`):
//! an instance adds what it admitted since its last sync to one shard picked at random
//! (UpdateItem `ADD`), and reads the others and the organisation's own limits (BatchGetItem),
//! every [`SYNC_IDLE`] while both limits are less than half used, every [`SYNC_EVERY`] past
//! half, and at once when what it admitted since would cross a tenth of what is left.
//! Between syncs it decides alone, from the last totals it read plus what it admitted since:
//! most requests cost no DynamoDB call, and a refusal never does. The price is precision:
//! all instances together may admit up to what each admits in one sync interval above a
//! limit (docs/operations.md, "Rate limits").
//!
//! The answers carry draft-ietf-httpapi-ratelimit-headers' fields: `RateLimit-Policy` (each
//! policy's quota `q` per window `w`) and `RateLimit` (what remains, `r`, and the seconds
//! until the window resets, `t`). Over a limit: 429 `rate_limited` with `Retry-After`.

use crate::error::ApiError;
use crate::model::{ApiKey, ApiKeyId, OrgId};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The length of a counting window.
pub const WINDOW_SECONDS: i64 = 60;
/// How many items hold an organisation's counts of one window (each sync writes one).
pub const SHARDS: u32 = 4;
/// Organisations an instance keeps before it forgets those of past windows.
const MAX_ORGS: usize = 4096;
/// The longest an instance decides without syncing an organisation it serves once half of
/// one of its limits is used; [`SYNC_IDLE`] before that.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
pub const SYNC_IDLE: Duration = Duration::from_secs(5);

/// Requests per window: for each key, and for the organisation as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub per_key: u64,
    pub per_organization: u64,
}

/// The limits of an organisation that has none of its own: `RATE_LIMIT_PER_KEY` (default
/// 6,000, WorkOS's) and `RATE_LIMIT_PER_ORGANIZATION` (default 30,000) per minute.
pub fn default_limits() -> Limits {
    static DEFAULTS: OnceLock<Limits> = OnceLock::new();
    *DEFAULTS.get_or_init(|| {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        Limits {
            per_key: var("RATE_LIMIT_PER_KEY", 6_000),
            per_organization: var("RATE_LIMIT_PER_ORGANIZATION", 30_000),
        }
    })
}

/// What one sync adds to the organisation's counts of `window` (its start, in seconds),
/// on `shard`.
#[derive(Clone, Debug, PartialEq)]
pub struct RateSync {
    pub window: i64,
    pub shard: u32,
    pub total: u64,
    pub keys: Vec<(ApiKeyId, u64)>,
}

/// The organisation's counts of a window, every shard summed, and its own limits if set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateTotals {
    pub total: u64,
    pub keys: HashMap<ApiKeyId, u64>,
    pub limits: Option<Limits>,
    /// The deltas were added, but the totals could not be read (not to be added again).
    pub partial: bool,
}

/// How a request stands against its limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    pub allowed: bool,
    pub limits: Limits,
    pub key_remaining: u64,
    pub organization_remaining: u64,
    /// Seconds until the window resets.
    pub reset: u64,
}

impl Standing {
    /// `RateLimit-Policy` and `RateLimit`, as draft-ietf-httpapi-ratelimit-headers words them.
    pub fn headers(&self) -> [(&'static str, String); 2] {
        let w = WINDOW_SECONDS;
        [
            (
                "RateLimit-Policy",
                format!(
                    "\"key\";q={};w={w}, \"organization\";q={};w={w}",
                    self.limits.per_key, self.limits.per_organization
                ),
            ),
            (
                "RateLimit",
                format!(
                    "\"key\";r={};t={t}, \"organization\";r={};t={t}",
                    self.key_remaining,
                    self.organization_remaining,
                    t = self.reset
                ),
            ),
        ]
    }
}

/// One organisation's counts as this instance knows them.
#[derive(Default)]
struct OrgState {
    window: i64,
    /// The totals of the last sync (our own additions included).
    known_total: u64,
    known_keys: HashMap<ApiKeyId, u64>,
    /// Admitted since, not yet added to DynamoDB.
    pending_total: u64,
    pending_keys: HashMap<ApiKeyId, u64>,
    limits: Option<Limits>,
    last_sync: Option<Instant>,
    syncing: bool,
}

impl OrgState {
    fn roll(&mut self, window: i64) {
        if self.window != window {
            // A new window: its counts start at zero (what the last one left unsynced is
            // dropped with it). The limits stay until the next sync reads them again.
            *self = OrgState {
                window,
                limits: self.limits,
                last_sync: None,
                ..OrgState::default()
            };
        }
    }
}

/// The instance's view of every organisation it served.
#[derive(Default)]
pub struct Limiter {
    orgs: Mutex<HashMap<OrgId, OrgState>>,
}

impl Limiter {
    /// The sync due for `org` now, if one is (and none is under way), its deltas taken.
    fn due(
        &self,
        org: &OrgId,
        now_ms: i64,
        now: Instant,
        shard: impl FnOnce() -> u32,
        force: bool,
    ) -> Option<RateSync> {
        let mut orgs = self.orgs.lock().ok()?;
        let window = window_of(now_ms);
        if orgs.len() >= MAX_ORGS {
            // A long-lived instance that served many organisations forgets those of past
            // windows (their counts are over; their limits are read again at the next sync).
            orgs.retain(|_, s| s.window >= window || s.syncing);
        }
        let state = orgs.entry(org.clone()).or_default();
        state.roll(window);
        let limits = state.limits.unwrap_or_else(default_limits);
        let left = limits
            .per_organization
            .saturating_sub(state.known_total + state.pending_total);
        // Far from both limits, a staler view costs nothing: sync less often.
        let of_key_max = state.known_keys.values().copied().max().unwrap_or(0);
        let near = 2 * (state.known_total + state.pending_total) >= limits.per_organization
            || 2 * of_key_max >= limits.per_key;
        let every = if near { SYNC_EVERY } else { SYNC_IDLE };
        let stale = state
            .last_sync
            .is_none_or(|at| now.duration_since(at) >= every);
        let crowded = state.pending_total > 0 && state.pending_total * 10 >= left;
        if state.syncing || !(stale || crowded || (force && state.pending_total > 0)) {
            return None;
        }
        state.syncing = true;
        state.last_sync = Some(now);
        let sync = RateSync {
            window: state.window,
            shard: shard(),
            total: std::mem::take(&mut state.pending_total),
            keys: state.pending_keys.drain().collect(),
        };
        state.known_total += sync.total;
        for (k, n) in &sync.keys {
            *state.known_keys.entry(k.clone()).or_default() += n;
        }
        Some(sync)
    }

    /// Takes what a sync read (or, when it failed, puts its deltas back for the next one).
    fn synced(&self, org: &OrgId, sync: &RateSync, read: Result<RateTotals, ApiError>) {
        let Ok(mut orgs) = self.orgs.lock() else {
            return;
        };
        let state = orgs.entry(org.clone()).or_default();
        if state.window != sync.window {
            // A sync of a window since rolled over: its counts are over, and the flag is
            // the new window's (a sync of it may be under way).
            return;
        }
        state.syncing = false;
        match read {
            // The deltas were added, but the other shards not read: what is known stays
            // (it holds the deltas already); the next sync reads them.
            Ok(totals) if totals.partial => {}
            Ok(totals) => {
                state.known_total = totals.total;
                state.known_keys = totals.keys;
                state.limits = totals.limits;
            }
            Err(_) => {
                state.known_total = state.known_total.saturating_sub(sync.total);
                state.pending_total += sync.total;
                for (k, n) in &sync.keys {
                    if let Some(known) = state.known_keys.get_mut(k) {
                        *known = known.saturating_sub(*n);
                    }
                    *state.pending_keys.entry(k.clone()).or_default() += n;
                }
            }
        }
    }

    /// Whether `key` is still within both limits as this instance knows them (nothing counted).
    fn peek(&self, key: &ApiKey, now_ms: i64) -> bool {
        let Ok(orgs) = self.orgs.lock() else {
            return true;
        };
        let Some(state) = orgs.get(&key.organization_id) else {
            return true;
        };
        if state.window != window_of(now_ms) {
            return true;
        }
        let limits = state.limits.unwrap_or_else(default_limits);
        let of_key = |m: &HashMap<ApiKeyId, u64>| m.get(&key.id).copied().unwrap_or(0);
        of_key(&state.known_keys) + of_key(&state.pending_keys) < limits.per_key
            && state.known_total + state.pending_total < limits.per_organization
    }

    /// Counts one request of `key` if both its limits allow it.
    fn admit(&self, key: &ApiKey, now_ms: i64) -> Standing {
        let window = window_of(now_ms);
        let reset = (window + WINDOW_SECONDS - now_ms.div_euclid(1000)).max(1) as u64;
        let Ok(mut orgs) = self.orgs.lock() else {
            // A poisoned lock never refuses a request.
            let limits = default_limits();
            return Standing {
                allowed: true,
                limits,
                key_remaining: limits.per_key,
                organization_remaining: limits.per_organization,
                reset,
            };
        };
        let state = orgs.entry(key.organization_id.clone()).or_default();
        state.roll(window);
        let limits = state.limits.unwrap_or_else(default_limits);
        let of_key = |m: &HashMap<ApiKeyId, u64>| m.get(&key.id).copied().unwrap_or(0);
        let key_count = of_key(&state.known_keys) + of_key(&state.pending_keys);
        let org_count = state.known_total + state.pending_total;
        let allowed = key_count < limits.per_key && org_count < limits.per_organization;
        if allowed {
            state.pending_total += 1;
            *state.pending_keys.entry(key.id.clone()).or_default() += 1;
        }
        let counted = u64::from(allowed);
        Standing {
            allowed,
            limits,
            key_remaining: limits.per_key.saturating_sub(key_count + counted),
            organization_remaining: limits.per_organization.saturating_sub(org_count + counted),
            reset,
        }
    }
}

/// The start (in seconds) of the window holding `ms`.
pub fn window_of(ms: i64) -> i64 {
    let s = ms.div_euclid(1000);
    s - s.rem_euclid(WINDOW_SECONDS)
}

fn limiter() -> &'static Limiter {
    static LIMITER: OnceLock<Limiter> = OnceLock::new();
    LIMITER.get_or_init(Limiter::default)
}

tokio::task_local! {
    /// Where the request's standing is left for its answer's headers.
    static STANDING: Arc<Mutex<Option<Standing>>>;
}

/// Runs a request's handler with a place for its standing; answers it with the handler's
/// result.
pub async fn scoped<F: Future>(work: F) -> (F::Output, Option<Standing>) {
    let cell = Arc::new(Mutex::new(None));
    let out = STANDING.scope(cell.clone(), work).await;
    let standing = cell.lock().ok().and_then(|mut s| s.take());
    (out, standing)
}

/// Counts a request of `key` (authenticated, with its scope) against its limits: syncs
/// the organisation's counts first when due; `Err(RateLimited)` over a limit.
pub async fn admit(store: &impl Store, key: &ApiKey) -> Result<(), ApiError> {
    let org = &key.organization_id;
    // Its log lines name the organisation, a refusal's too.
    crate::http::record_ids(org, None);
    let now_ms = crate::model::Timestamp::now().unix_millis();
    let shard = || (crate::webhooks::random_unit() * f64::from(SHARDS)) as u32 % SHARDS;
    // A request already over a limit is refused from what the instance knows: a refusal
    // costs no DynamoDB call (counts only grow within a window).
    let sync = |force| async move {
        if let Some(sync) = limiter().due(org, now_ms, Instant::now(), shard, force) {
            let read = store.rate_sync(org, &sync).await;
            if let Err(e) = &read {
                // Never a reason to refuse: the instance goes on with what it knows.
                tracing::warn!(error = %e, "rate limit counts not synced; deciding locally");
            }
            limiter().synced(org, &sync, read);
        }
    };
    if limiter().peek(key, now_ms) {
        sync(false).await;
    }
    let standing = limiter().admit(key, now_ms);
    if standing.allowed && (standing.key_remaining == 0 || standing.organization_remaining == 0) {
        // The last request of a limit: counted at once, so that the other instances refuse
        // the next.
        sync(true).await;
    }
    let allowed = standing.allowed;
    let retry_after = standing.reset;
    if !allowed {
        tracing::warn!(
            key_id = %key.id,
            key_remaining = standing.key_remaining,
            organization_remaining = standing.organization_remaining,
            "rate limited"
        );
    }
    let _ = STANDING.try_with(|cell| {
        if let Ok(mut slot) = cell.lock() {
            *slot = Some(standing);
        }
    });
    match allowed {
        true => Ok(()),
        false => Err(ApiError::RateLimited {
            retry_after_seconds: retry_after as u32,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(org: &str, id: &str) -> ApiKey {
        ApiKey {
            id: ApiKeyId::parse(id).unwrap(),
            organization_id: OrgId::parse(org).unwrap(),
            name: "test".into(),
            scopes: vec![],
            created_at: crate::model::Timestamp::now(),
            revoked_at: None,
        }
    }

    /// A fresh limiter, an organisation and one of its keys.
    fn one_key() -> (Limiter, OrgId, ApiKey) {
        let org = OrgId::parse("org_01jz00000000000000000000aa").unwrap();
        let a = key(org.as_str(), "key_01jz00000000000000000000aa");
        (Limiter::default(), org, a)
    }

    #[test]
    fn each_key_and_the_organisation_have_their_own_limit() {
        let (limiter, org, a) = one_key();
        let (a, b) = (a, key(org.as_str(), "key_01jz00000000000000000000bb"));
        let now = 1_796_369_470_000; // 07:31:10: the window ends in 50 s.
        let sync = limiter
            .due(&org, now, Instant::now(), || 0, false)
            .expect("a first sync");
        limiter.synced(
            &org,
            &sync,
            Ok(RateTotals {
                limits: Some(Limits {
                    per_key: 3,
                    per_organization: 5,
                }),
                ..RateTotals::default()
            }),
        );
        let admitted: Vec<bool> = (0..4).map(|_| limiter.admit(&a, now).allowed).collect();
        assert_eq!(admitted, [true, true, true, false], "3 per key");
        let admitted: Vec<bool> = (0..4).map(|_| limiter.admit(&b, now).allowed).collect();
        assert_eq!(
            admitted,
            [true, true, false, false],
            "5 for the organisation"
        );
        let s = limiter.admit(&b, now);
        assert_eq!(
            (s.key_remaining, s.organization_remaining, s.reset),
            (1, 0, 50)
        );
        assert_eq!(
            s.headers(),
            [
                (
                    "RateLimit-Policy",
                    "\"key\";q=3;w=60, \"organization\";q=5;w=60".into()
                ),
                (
                    "RateLimit",
                    "\"key\";r=1;t=50, \"organization\";r=0;t=50".into()
                )
            ]
        );
        // The next window starts from zero.
        assert!(limiter.admit(&a, now + 50_000).allowed);
    }

    #[test]
    fn a_sync_carries_what_was_admitted_and_a_failed_one_gives_it_back() {
        let (limiter, org, a) = one_key();
        let (now, t0) = (1_796_369_470_000, Instant::now());
        let first = limiter
            .due(&org, now, t0, || 2, false)
            .expect("the first request syncs");
        assert_eq!((first.total, first.shard), (0, 2));
        assert!(
            limiter.due(&org, now, t0, || 1, false).is_none(),
            "one sync at a time"
        );
        limiter.synced(
            &org,
            &first,
            Ok(RateTotals {
                total: 100,
                ..RateTotals::default()
            }),
        );
        for _ in 0..7 {
            assert!(limiter.admit(&a, now).allowed);
        }
        assert!(
            limiter
                .due(&org, now, t0 + SYNC_EVERY, || 0, false)
                .is_none(),
            "far from the limits: not before SYNC_IDLE"
        );
        let second = limiter
            .due(&org, now, t0 + SYNC_IDLE, || 1, false)
            .expect("due after SYNC_IDLE");
        assert_eq!(second.total, 7);
        assert_eq!(second.keys, vec![(a.id.clone(), 7)]);
        limiter.synced(&org, &second, Err(ApiError::Internal));
        let t1 = t0 + 2 * SYNC_IDLE;
        let third = limiter.due(&org, now, t1, || 3, false).expect("due again");
        assert_eq!(third.total, 7, "the failed sync's requests are sent again");
        // Another instance's requests arrive with the totals: past half, every second.
        limiter.synced(
            &org,
            &third,
            Ok(RateTotals {
                total: 20_000,
                ..RateTotals::default()
            }),
        );
        assert!(limiter.admit(&a, now).allowed);
        let fourth = limiter
            .due(&org, now, t1 + SYNC_EVERY, || 0, false)
            .expect("near a limit: every second");
        // Its answer is lost after the ADD: the requests are not sent again.
        let partial = RateTotals {
            partial: true,
            ..RateTotals::default()
        };
        limiter.synced(&org, &fourth, Ok(partial));
        let fifth = limiter
            .due(&org, now, t1 + 2 * SYNC_EVERY, || 0, false)
            .expect("due");
        assert_eq!(fifth.total, 0, "nothing sent twice");
        limiter.synced(
            &org,
            &fifth,
            Ok(RateTotals {
                total: 29_999,
                ..RateTotals::default()
            }),
        );
        assert!(limiter.admit(&a, now).allowed);
        assert!(!limiter.admit(&a, now).allowed, "30,000 by default");
        assert!(
            !limiter.peek(&a, now),
            "known to be over: no sync needed to refuse"
        );
    }

    #[test]
    fn a_crowded_window_syncs_before_its_second_is_up() {
        let (limiter, org, a) = one_key();
        let (now, t0) = (1_796_369_470_000, Instant::now());
        let first = limiter.due(&org, now, t0, || 0, false).unwrap();
        limiter.synced(
            &org,
            &first,
            Ok(RateTotals {
                total: 29_900,
                ..RateTotals::default()
            }),
        );
        for _ in 0..9 {
            limiter.admit(&a, now);
        }
        assert!(
            limiter.due(&org, now, t0, || 0, false).is_none(),
            "9 of 100 left"
        );
        limiter.admit(&a, now);
        assert!(
            limiter.due(&org, now, t0, || 0, false).is_some(),
            "10 of the 100 left: a tenth"
        );
    }
}
