//! Group memberships and the roles groups decide, as member writes.
//!
//! A membership lives with its member: the member's `scimGroups` and one membership item,
//! written in the member's own transaction with the role the organisation's mapping then
//! decides (`rules::apply`), its counters and its `member.updated` event. So a change of
//! many members is many transactions, one per member, none sharing an item unless a rule
//! needs it (an admin count). What makes it safe:
//!
//! - **Checked whole first.** Every member named must be a user SCIM shows, else 400
//!   naming it and nothing is written. Every member's write is then built and checked
//!   against the rules, and the counts of the whole change against rules 2 and 3, before
//!   the first write: a change that would break a rule is refused whole.
//! - **Each write atomic, each kept by DynamoDB's conditions.** A race (a `/v1` demotion, a
//!   SCIM call) that makes one write break a rule after the check refuses that write by its
//!   condition: no reader ever sees a rule broken. The answer then says how many writes
//!   were made; the same request sent again converges (joining a group twice or leaving one
//!   not joined writes nothing).
//! - The writes that raise a guarded count (admins, HRIS admins, admins who are HRIS
//!   admins) are made first, then those that move none (16 at once), then those that lower
//!   one: a change that moves admins between groups or roles never passes through fewer
//!   admins than it ends with. A write that moves a guarded count touches the
//!   organisation's item, so those run one at a time (on AWS, two at once would cancel
//!   each other: `TransactionConflict`).
//! - At most [`MAX_MOVES`] member writes a request, so that it answers within API
//!   Gateway's 30 s.

use super::scim::update;
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::input::MemberPatch;
use crate::model::*;
use crate::rules;
use crate::scim::id::ScimId;
use crate::scim::invalid;
use crate::store::Store;
use futures_util::stream::{self, StreamExt};

/// Member writes a change runs at once.
const IN_FLIGHT: usize = 16;

/// A member joining or leaving one group.
pub(super) struct Move {
    pub member: Member,
    pub join: bool,
    /// What the write does to the counts rules 2 and 3 guard (set by [`check_whole`]).
    pub effect: Effect,
}

impl Move {
    pub fn new(member: Member, join: bool) -> Self {
        Move {
            member,
            join,
            effect: Effect::Neutral,
        }
    }
}

/// What a member write does to the guarded counts, in the order such writes are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Effect {
    Raises,
    Neutral,
    Lowers,
}

impl Effect {
    fn of(delta: Counters) -> Effect {
        let g = delta.guarded();
        let counts = [g.active_admins, g.active_hris_admins, g.active_dual_admins];
        if counts.iter().any(|c| *c < 0) {
            Effect::Lowers
        } else if counts.iter().any(|c| *c > 0) {
            Effect::Raises
        } else {
            Effect::Neutral
        }
    }

    /// Writes that move a guarded count touch the organisation's item: one at a time.
    fn in_flight(self) -> usize {
        match self {
            Effect::Neutral => IN_FLIGHT,
            Effect::Raises | Effect::Lowers => 1,
        }
    }
}

/// Runs `write` on every item, those that raise a guarded count first, then the neutral
/// ones, then those that lower one (each group at its [`Effect::in_flight`]), stopping
/// after the first group with a refusal. Answers how many writes were made, and the first
/// refusal.
async fn run_writes<T, F, Fut>(items: Vec<(T, Effect)>, write: F) -> (usize, Option<ApiError>)
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    let mut items = items;
    items.sort_by_key(|(_, e)| *e);
    let mut done = 0;
    let mut batches: Vec<(Effect, Vec<T>)> = Vec::new();
    for (item, effect) in items {
        match batches.last_mut() {
            Some((e, batch)) if *e == effect => batch.push(item),
            _ => batches.push((effect, vec![item])),
        }
    }
    for (effect, batch) in batches {
        let results: Vec<Result<(), ApiError>> = stream::iter(batch)
            .map(&write)
            .buffer_unordered(effect.in_flight())
            .collect()
            .await;
        let mut first = None;
        for r in results {
            match r {
                Ok(()) => done += 1,
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        if first.is_some() {
            return (done, first);
        }
    }
    (done, None)
}

/// The members a request names (SCIM ids), read; each must be a user SCIM shows. An id that
/// names none is a 400 naming it (the first ten), with nothing written.
pub(super) async fn resolve(
    store: &impl Store,
    org: &OrgId,
    named: &[&str],
) -> Result<Vec<(String, Member)>, ApiError> {
    let mut parsed = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for id in named {
        match ScimId::parse(id) {
            Some(scim_id) => parsed.push((id.to_string(), scim_id)),
            None => unknown.push(id),
        }
    }
    let ids: Vec<MemberId> = parsed.iter().map(|(_, s)| s.member.clone()).collect();
    let found = store.members_by_ids(org, &ids).await?;
    let mut out = Vec::new();
    for (text, scim_id) in &parsed {
        match found.iter().find(|m| scim_id.names(m)) {
            Some(m) => out.push((text.clone(), m.clone())),
            None => unknown.push(text),
        }
    }
    if !unknown.is_empty() {
        let shown: Vec<String> = unknown.iter().take(10).map(|u| format!("{u:?}")).collect();
        return Err(invalid(
            "invalidValue",
            format!(
                "No user has the id {}{}: nothing of this request was applied.",
                shown.join(", "),
                if unknown.len() > 10 {
                    " (and more)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(out)
}

/// The member's groups after joining or leaving `group`.
fn groups_after(m: &Member, group: &GroupId, join: bool) -> Vec<GroupId> {
    let mut groups = m.scim_groups.clone();
    groups.retain(|g| g != group);
    if join {
        groups.push(group.clone());
    }
    groups
}

/// Every move built and checked as a write before any is made: the rules of each member,
/// then the counts of them all (rules 2 and 3). A refusal names the member and the rule.
pub(super) fn check_whole(
    moves: &mut [Move],
    group: &GroupId,
    org: &Organization,
) -> Result<(), ApiError> {
    if moves.len() > MAX_MOVES {
        return Err(invalid(
            "tooMany",
            format!(
                "This change moves {} members into or out of the group; one request moves at \
                 most {MAX_MOVES}. Send it in parts (PATCH remove or add members in batches). \
                 Nothing of this request was applied.",
                moves.len()
            ),
        ));
    }
    let now = Timestamp::now();
    let mut delta = Counters::default();
    for mv in moves.iter_mut() {
        let m = &mv.member;
        if mv.join && !m.scim_groups.contains(group) && m.scim_groups.len() >= MAX_GROUPS_PER_MEMBER
        {
            return Err(invalid(
                "invalidValue",
                format!(
                    "User {} is already in {MAX_GROUPS_PER_MEMBER} groups, the most a user \
                     joins: nothing of this request was applied.",
                    ScimId::of(m)
                ),
            ));
        }
        let patch = MemberPatch {
            scim_groups: Some(groups_after(m, group, mv.join)),
            ..MemberPatch::default()
        };
        let draft = rules::apply(patch, m, org, now).map_err(|e| partial(about(m, e), 0, 0))?;
        let own = draft.member.counters().minus(m.counters());
        mv.effect = Effect::of(own);
        delta = delta.plus(own);
    }
    if let Some(violation) = rules::counter_violation(org.counters, delta, org.hris_enabled) {
        return Err(whole(violation));
    }
    Ok(())
}

/// Makes the moves in [`run_writes`]'s order, each a member write run again on a lost
/// race. A member that left SCIM meanwhile is skipped when leaving (it is out of every
/// group), refused when joining. The first refusal is answered, saying how many writes were
/// made.
pub(super) async fn apply(
    store: &impl Store,
    key: &ApiKey,
    req: &ApiRequest,
    group: &GroupId,
    moves: Vec<Move>,
) -> Result<(), ApiError> {
    // The request's If-Match was about the group, not its members.
    let mut req = req.clone();
    req.headers.remove("if-match");
    let req = &req;
    let total = moves.len();
    let items = moves.into_iter().map(|m| {
        let effect = m.effect;
        (m, effect)
    });
    let (done, refused) = run_writes(items.collect(), |mv: Move| async move {
        let shown = ScimId::of(&mv.member);
        let outcome = update(store, key, req, &mv.member.id, Some(&shown), |before, _| {
            Ok(MemberPatch {
                scim_groups: Some(groups_after(before, group, mv.join)),
                ..MemberPatch::default()
            })
        })
        .await;
        match outcome {
            Ok(_) => Ok(()),
            Err(ApiError::NotFound) if !mv.join => Ok(()),
            Err(ApiError::NotFound) => Err(invalid(
                "invalidValue",
                format!("User {shown} was deleted during this request: it cannot join the group."),
            )),
            Err(e) => Err(about(&mv.member, e)),
        }
    })
    .await;
    match refused {
        None => Ok(()),
        Some(first) => {
            tracing::warn!(done, total, "a group change was refused part-way by a race");
            Err(partial(first, done, total))
        }
    }
}

/// A member's refusal as SCIM says it: the member and the rule.
fn about(m: &Member, err: ApiError) -> ApiError {
    match err {
        ApiError::Rule { code, detail, .. } => invalid(
            "invalidValue",
            format!("User {}: {detail} ({code}).", ScimId::of(m)),
        ),
        ApiError::Conflict {
            code: "role_managed_by_idp",
            detail,
            ..
        } => invalid("invalidValue", format!("User {}: {detail}", ScimId::of(m))),
        ApiError::Validation(errors) => invalid(
            "invalidValue",
            format!(
                "User {}: {}.",
                ScimId::of(m),
                errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        other => other,
    }
}

/// A refusal of the change's counts, which no single member decides.
fn whole(err: ApiError) -> ApiError {
    match err {
        ApiError::Rule { code, detail, .. } => invalid(
            "invalidValue",
            format!("This change of memberships would break a rule: {detail} ({code}). Nothing of this request was applied."),
        ),
        other => other,
    }
}

/// A refusal after `done` of `total` member writes were made: says so.
fn partial(err: ApiError, done: usize, total: usize) -> ApiError {
    let note = match done {
        0 => " Nothing of this request was applied.".to_owned(),
        done => format!(
            " {done} of the {total} membership changes were made before another request \
             changed the organisation; send the same request again to finish it (what is done \
             is not done twice)."
        ),
    };
    match err {
        ApiError::Scim { scim_type, detail } => ApiError::Scim {
            scim_type,
            detail: detail + &note,
        },
        other => other,
    }
}

/// The moves that take a group from `current` (its members' SCIM ids) to `wanted`:
/// `joining` are the members the request named, read by [`resolve`]; those leaving are
/// read here (a member no longer in SCIM has left every group already: no move).
pub(super) async fn moves_between(
    store: &impl Store,
    org: &OrgId,
    current: &[String],
    wanted: &[String],
    named: Vec<(String, Member)>,
) -> Result<Vec<Move>, ApiError> {
    let mut moves: Vec<Move> = named
        .into_iter()
        .filter(|(id, _)| wanted.contains(id) && !current.contains(id))
        .map(|(_, member)| Move::new(member, true))
        .collect();
    let leaving: Vec<ScimId> = current
        .iter()
        .filter(|id| !wanted.contains(id))
        .filter_map(|id| ScimId::parse(id))
        .collect();
    let ids: Vec<MemberId> = leaving.iter().map(|s| s.member.clone()).collect();
    for member in store.members_by_ids(org, &ids).await? {
        if leaving.iter().any(|s| s.names(&member)) {
            moves.push(Move::new(member, false));
        }
    }
    Ok(moves)
}

/// Every member under the identity provider (provisioned through SCIM, or in a group):
/// those a group → role mapping decides. Read page by page, active or not.
pub(super) async fn under_idp(store: &impl Store, org: &OrgId) -> Result<Vec<Member>, ApiError> {
    let mut q = ListQuery::new(crate::paging::MAX_LIMIT);
    q.status = StatusFilter::All;
    let mut out = Vec::new();
    loop {
        let page = store.list_members(org, &q).await?;
        out.extend(
            page.members
                .into_iter()
                .filter(|m| m.scim_user_name.is_some() || !m.scim_groups.is_empty()),
        );
        match page.next {
            Some(next) => q.after = Some(next),
            None => return Ok(out),
        }
    }
}

/// A new mapping (or default role) checked whole before it is written: each member's write
/// under it, then the counts of them all. A refusal names the member and the rule.
pub(super) fn check_roles(members: &[Member], org: &Organization) -> Result<(), ApiError> {
    let changing = members
        .iter()
        .filter(|m| org.decided_role(m).is_some_and(|r| r != m.role))
        .count();
    if changing > MAX_MOVES {
        return Err(ApiError::rule(
            "too_many_role_changes",
            Some("scim.groupRoles"),
            format!(
                "this mapping would change the role of {changing} members; one request changes \
                 at most {MAX_MOVES}: change the mapping in steps"
            ),
        ));
    }
    let now = Timestamp::now();
    let mut delta = Counters::default();
    for m in members {
        let draft = rules::apply(MemberPatch::default(), m, org, now).map_err(|e| match e {
            ApiError::Rule {
                code,
                detail,
                field,
            } => ApiError::Rule {
                code,
                detail: format!(
                    "member {} would get role {}: {detail}",
                    m.id,
                    draft_role(m, org)
                ),
                field,
            },
            other => other,
        })?;
        delta = delta.plus(draft.member.counters().minus(m.counters()));
    }
    match rules::counter_violation(org.counters, delta, org.hris_enabled) {
        Some(ApiError::Rule { code, detail, .. }) => Err(ApiError::Rule {
            code,
            detail: format!("with this scim.groupRoles, {detail}"),
            field: Some("scim.groupRoles"),
        }),
        Some(other) => Err(other),
        None => Ok(()),
    }
}

fn draft_role(m: &Member, org: &Organization) -> String {
    org.decided_role(m)
        .map_or_else(|| m.role.as_str().to_owned(), |r| r.as_str().to_owned())
}

/// Gives each member the role `org`'s mapping decides, where it differs: each member read
/// again (consistently: the list it came from is an index, and may lag), then written in
/// [`run_writes`]'s order; each write re-reads the organisation, so a later mapping wins.
pub(super) async fn decide_roles(
    store: &impl Store,
    key: &ApiKey,
    req: &ApiRequest,
    members: Vec<Member>,
    org: &Organization,
) -> Result<(), ApiError> {
    let mut req = req.clone();
    req.headers.remove("if-match");
    let req = &req;
    let now = Timestamp::now();
    let mut changing: Vec<(MemberId, Effect)> = Vec::new();
    for chunk in members.chunks(100) {
        let ids: Vec<MemberId> = chunk.iter().map(|m| m.id.clone()).collect();
        for m in store.members_by_ids(&org.id, &ids).await? {
            if org.decided_role(&m).is_some_and(|r| r != m.role) {
                let effect = rules::apply(MemberPatch::default(), &m, org, now)
                    .map_or(Effect::Lowers, |d| {
                        Effect::of(d.member.counters().minus(m.counters()))
                    });
                changing.push((m.id, effect));
            }
        }
    }
    let total = changing.len();
    let (done, refused) = run_writes(changing, |id: MemberId| async move {
        update(
            store,
            key,
            req,
            &id,
            None,
            |_, _| Ok(MemberPatch::default()),
        )
        .await
        .map(|_| ())
    })
    .await;
    match refused {
        None => Ok(()),
        Some(first) => {
            let failed = total - done;
            tracing::warn!(
                failed,
                total,
                "members kept their role: a race refused the write"
            );
            Err(ApiError::Conflict {
                code: "group_roles_incomplete",
                detail: format!(
                    "The mapping is saved, but {failed} of {total} members could not get the role \
                     it decides ({}): another request changed them meanwhile. Send the same \
                     scim.groupRoles again to finish.",
                    first.code()
                ),
                field: Some("scim.groupRoles"),
            })
        }
    }
}
