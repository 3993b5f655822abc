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
//! - The writes that lower no guarded count (admins, HRIS admins, admins who are HRIS
//!   admins) are made before those that do, so a change that moves admins between groups
//!   or roles never passes through fewer admins than it ends with.

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
    /// Whether the write lowers a count a rule guards (set by [`check_whole`]).
    pub lowers: bool,
}

impl Move {
    pub fn new(member: Member, join: bool) -> Self {
        Move {
            member,
            join,
            lowers: false,
        }
    }
}

/// Whether a change of counts lowers one that rules 2 and 3 guard.
fn lowers_guarded(delta: Counters) -> bool {
    let g = delta.guarded();
    g.active_admins < 0 || g.active_hris_admins < 0 || g.active_dual_admins < 0
}

/// Writes in an order that never passes through fewer guarded members than it ends with:
/// those that lower no guarded count first.
fn raising_first<T>(items: Vec<T>, lowers: impl Fn(&T) -> bool) -> [Vec<T>; 2] {
    let (low, high): (Vec<T>, Vec<T>) = items.into_iter().partition(|i| lowers(i));
    [high, low]
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
        let draft = rules::apply(patch, m, org, now).map_err(|e| about(m, e))?;
        let own = draft.member.counters().minus(m.counters());
        mv.lowers = lowers_guarded(own);
        delta = delta.plus(own);
    }
    if let Some(violation) = rules::counter_violation(org.counters, delta, org.hris_enabled) {
        return Err(whole(violation));
    }
    Ok(())
}

/// Makes the moves (those that lower no guarded count first), each a member write run
/// again on a lost race. A
/// member that left SCIM meanwhile is skipped when leaving (it is out of every group), an
/// error when joining. The first refusal is answered, saying how many writes were made.
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
    let mut done = 0;
    for batch in raising_first(moves, |m| m.lowers) {
        let results: Vec<Result<(), ApiError>> = stream::iter(batch)
            .map(|mv| async move {
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
                    Err(e) => Err(about(&mv.member, e)),
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        done += results.len() - failed;
        if let Some(Err(first)) = results.into_iter().find(Result::is_err) {
            tracing::warn!(done, total, "a group change was refused part-way by a race");
            return Err(partial(first, done, total));
        }
    }
    Ok(())
}

/// A member's refusal as SCIM says it: the member and the rule.
fn about(m: &Member, err: ApiError) -> ApiError {
    match err {
        ApiError::Rule { code, detail, .. } => invalid(
            "invalidValue",
            format!(
                "User {}: {detail} ({code}). Nothing of this request was applied.",
                ScimId::of(m)
            ),
        ),
        ApiError::Conflict {
            code: "role_managed_by_idp",
            detail,
            ..
        } => invalid("invalidValue", format!("User {}: {detail}", ScimId::of(m))),
        ApiError::Validation(errors) => invalid(
            "invalidValue",
            format!(
                "User {}: {}. Nothing of this request was applied.",
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

/// A refusal after `done` of `total` member writes were made.
fn partial(err: ApiError, done: usize, total: usize) -> ApiError {
    if done == 0 {
        return err;
    }
    let note = format!(
        " {done} of the {total} membership changes were made before another request changed \
         the organisation; send the same request again to finish it (what is done is not \
         done twice)."
    );
    match err {
        ApiError::Scim { scim_type, detail } => ApiError::Scim {
            scim_type,
            detail: detail.replace(" Nothing of this request was applied.", "") + &note,
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

/// Gives each member the role `org`'s mapping decides, where it differs: member writes
/// (each re-reads the organisation, so a later mapping wins), run again on a lost race.
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
    let changing: Vec<(Member, bool)> = members
        .into_iter()
        .filter(|m| org.decided_role(m).is_some_and(|r| r != m.role))
        .map(|m| {
            let lowers = rules::apply(MemberPatch::default(), &m, org, now)
                .is_ok_and(|d| lowers_guarded(d.member.counters().minus(m.counters())));
            (m, lowers)
        })
        .collect();
    let total = changing.len();
    let mut results: Vec<Result<(), ApiError>> = Vec::new();
    for batch in raising_first(changing, |(_, lowers)| *lowers) {
        let made: Vec<Result<(), ApiError>> = stream::iter(batch)
            .map(|(m, _)| async move {
                update(store, key, req, &m.id, None, |_, _| {
                    Ok(MemberPatch::default())
                })
                .await
                .map(|_| ())
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        results.extend(made);
    }
    let failed = results.iter().filter(|r| r.is_err()).count();
    match results.into_iter().find(Result::is_err) {
        Some(Err(first)) => {
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
        _ => Ok(()),
    }
}
