//! GET /v1/events: the organisation's change events, oldest first, followed with a cursor
//! that never skips one (docs/design.md, "The event feed").

use crate::error::ApiError;
use crate::events::{self, feed_cursor_kind, FEED_CURSOR_KIND};
use crate::http::{ApiRequest, ApiResponse};
use crate::model::{OrgId, Scope};
use crate::paging::{self, decode_cursor_parts, encode_cursor, invalid_cursor};
use crate::store::{FeedHead, PlaceState, Store};
use std::sync::Arc;

/// Past every place a feed can give.
const MAX_PLACE: u64 = 1_000_000_000_000_000_000;

/// Where a reader is. `started`: it has passed a live place, so every place after `after`
/// must still be there (a gap or an expired place means events were deleted unseen: 410).
/// A reader that has not started (no `after` yet) skips what has expired.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Position {
    after: u64,
    started: bool,
}

impl Position {
    /// A cursor of this organisation's feed as it stands (`head`): another organisation's,
    /// a malformed one or one past the feed's end is 400 `invalid_cursor`; one of an earlier
    /// epoch of the feed (a re-created one) that had seen events is 410 `feed_reset`, and
    /// one that had seen none starts again from the start. A cursor of an earlier version of
    /// this API names no organisation nor epoch: only its place is checked.
    fn parse(cursor: &str, org: &OrgId, head: &FeedHead) -> Result<Self, ApiError> {
        let (p, kind) = decode_cursor_parts(cursor)?;
        let position = Self::parse_place(&p)?;
        let ours = feed_cursor_kind(org.as_str(), None);
        let epoch = match kind.strip_prefix(ours.as_str()) {
            _ if kind == FEED_CURSOR_KIND => None,
            Some("") => None,
            Some(tail) => match tail.strip_prefix(':') {
                Some(epoch) if !epoch.is_empty() => Some(epoch),
                _ => return Err(invalid_cursor("The cursor is not one this API issued.")),
            },
            None if kind.starts_with(FEED_CURSOR_KIND) => {
                return Err(invalid_cursor(
                    "The cursor belongs to another organisation's feed: follow your own from \
                     its start (no `after`).",
                ))
            }
            None => return Err(invalid_cursor("The cursor is not one of the event feed's.")),
        };
        if epoch.is_some_and(|e| Some(e) != head.epoch.as_deref()) {
            // A reader that had seen an event of the earlier feed lost its place; one that
            // had only passed expired places has lost nothing: it starts again.
            return match position.started && position.after > 0 {
                true => Err(ApiError::FeedReset),
                false => Ok(Position {
                    after: 0,
                    started: false,
                }),
            };
        }
        if position.after > head.last {
            return Err(invalid_cursor(
                "The cursor is past the end of the feed: no such place was ever given out. \
                 Follow the feed from its start (no `after`).",
            ));
        }
        Ok(position)
    }

    fn parse_place(p: &str) -> Result<Self, ApiError> {
        let (digits, started) = match p.strip_suffix('~') {
            Some(digits) => (digits, false),
            None => (p, true),
        };
        // No feed reaches 10^18 places (a million events a second for 30,000 years): a
        // larger one was never issued, and bounding it keeps `after + 1` from overflowing.
        let after = digits
            .parse::<u64>()
            .ok()
            .filter(|after| *after < MAX_PLACE)
            .ok_or_else(|| ApiError::BadRequest {
                code: "invalid_cursor",
                detail: "The cursor is not one this API issued.".into(),
            })?;
        Ok(Position { after, started })
    }

    /// The cursor of this place in `org`'s feed, bound to its epoch.
    fn cursor(self, org: &OrgId, epoch: Option<&str>) -> String {
        match self.started {
            true => events::feed_cursor(org.as_str(), epoch, self.after),
            false => encode_cursor(
                &format!("{}~", self.after),
                &feed_cursor_kind(org.as_str(), epoch),
            ),
        }
    }
}

/// `?after=<cursor>&limit=1..100&types=a,b`: `{"events": [CloudEvent…], "nextCursor",
/// "hasMore"}`. `nextCursor` is always there: pass it as `after` to continue, now or later
/// (an empty page keeps the reader's place). 410 `cursor_expired` when events after the
/// cursor were deleted by the 30-day retention.
pub async fn list_events<S: Store>(
    store: Arc<S>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let store = store.as_ref();
    // Any key that reads members or webhooks follows the feed; it is shown only the
    // events its scopes read (the others keep their places, so its cursor never skips
    // one it may see).
    let key = super::caller_any(store, &req, &[Scope::ReadMembers, Scope::ReadWebhooks]).await?;
    let mut limit = paging::DEFAULT_LIMIT;
    let mut after = None;
    let mut types: Vec<String> = Vec::new();
    for (name, value) in paging::query(&req, &["after", "limit", "types"])? {
        match name {
            "limit" => limit = paging::limit(value)?,
            "after" => after = Some(value),
            _ => types = parse_types(value)?,
        }
    }
    // A key is asked about only the types its scopes read: `types` naming another is
    // refused (naming the scope), so no filtered page tells where such events lie. The
    // events it may not read are left out of its pages below; their places are the
    // feed's own, as `sequence` shows anyway. (Passing the readable types to the store
    // instead would make it read up to FEED_SCAN_CAP places a page for every members key.)
    if let Some(scope) = events::missing_read_scope(&key, &types) {
        return Err(ApiError::ScopeNeeded {
            scope: scope.as_str(),
            detail: format!(
                "Events of these types carry data that only a key with the scope {} may read.",
                scope.as_str()
            ),
        });
    }
    let org = &key.organization_id;
    // The feed's end and epoch, read before the page: a cursor is checked against them, and
    // the next one is bound to them.
    let head = store.feed_head(org).await?;
    let position = match after {
        Some(cursor) => Position::parse(cursor, org, &head)?,
        None => Position {
            after: 0,
            started: false,
        },
    };
    let (entries, mut more) = store.feed(org, position.after, limit, &types).await?;
    let mut found = Vec::new();
    let mut at = position;
    let mut stopped = false;
    for entry in entries {
        if entry.seq != at.after + 1 {
            // Places not seen. A Query sees other transactions' items as they commit, one
            // by one (read-committed), so a missing place may be one being committed: a
            // page never goes past a gap it has not looked up on its own.
            if at != position {
                stopped = true;
                break;
            }
            match store.feed_place(org, at.after + 1).await? {
                PlaceState::Gone if at.started => return Err(ApiError::CursorExpired),
                PlaceState::Gone => {}
                PlaceState::Live | PlaceState::NotYet => {
                    stopped = true;
                    break;
                }
            }
        }
        if entry.expired {
            if at.started {
                return Err(ApiError::CursorExpired);
            }
            at.after = entry.seq;
            continue;
        }
        at = Position {
            after: entry.seq,
            started: true,
        };
        if let Some(e) = entry
            .event
            .filter(|e| key.allows(events::read_scope(&e.action)))
        {
            found.push((entry.seq, events::from_audit(&e, entry.seq)));
        }
    }
    if !more && !stopped {
        // At the end of the feed. A reader whose next place was deleted while nothing newer
        // came is told now, not at the next write; one that had not started has now: every
        // place after this one is still to come, and must then be there.
        if at.started
            && at == position
            && store.feed_place(org, at.after + 1).await? == PlaceState::Gone
        {
            return Err(ApiError::CursorExpired);
        }
        // A reader that saw no live place reached the end: every place up to the head read
        // before this page is gone (a live one would be on it), so it starts at the head,
        // not before places the retention deleted (which would be a false 410 next time).
        if !at.started {
            at.after = at.after.max(head.last);
        }
        at.started = true;
    }
    more |= stopped;
    // Events carry a member before and after: the page stops at its byte budget and the
    // cursor continues after its last event.
    let (kept, cut) = paging::fit(&found, |(_, e)| paging::text(e));
    if cut {
        at = Position {
            after: found[kept.len() - 1].0,
            started: true,
        };
    }
    // A feed with no epoch when the head was read may have got one since (its first event
    // placed meanwhile): the cursor is bound to it whenever there is one.
    let head = match head.epoch {
        None if at.after > 0 => store.feed_head(org).await?,
        _ => head,
    };
    let next = serde_json::to_string(&at.cursor(org, head.epoch.as_deref())).unwrap_or_default();
    let mut body = paging::page_body("events", &kept, None);
    body.truncate(body.len() - "null}".len());
    body.push_str(&format!("{next},\"hasMore\":{}}}", more || cut));
    Ok(ApiResponse::raw_json(200, body))
}

/// `types`: a comma-separated list of event types.
fn parse_types(value: &str) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for t in value.split(',').map(str::trim) {
        if !events::TYPES.contains(&t) {
            return Err(paging::bad_parameter(format!(
                "types must list event types separated by commas, each one of {}; got {t:?}.",
                events::TYPES.join(", ")
            )));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn positions_round_trip_started_or_not() {
        let (a, e) = (org("org_a"), Some("01epoch"));
        let head = FeedHead {
            last: u64::MAX,
            epoch: e.map(str::to_owned),
        };
        for p in [
            Position {
                after: 0,
                started: false,
            },
            Position {
                after: 17,
                started: true,
            },
            Position {
                after: MAX_PLACE - 1,
                started: false,
            },
        ] {
            assert_eq!(Position::parse(&p.cursor(&a, e), &a, &head).ok(), Some(p));
        }
        // Never issued, and `after + 1` would overflow: refused, not a 500.
        for after in [MAX_PLACE, u64::MAX] {
            for started in [true, false] {
                let p = Position { after, started };
                assert_eq!(
                    Position::parse(&p.cursor(&a, e), &a, &head)
                        .err()
                        .map(|e| e.code()),
                    Some("invalid_cursor")
                );
            }
        }
        let forged = encode_cursor("-1", &feed_cursor_kind("org_a", e));
        assert_eq!(
            Position::parse(&forged, &a, &head).err().map(|e| e.code()),
            Some("invalid_cursor")
        );
        let other = encode_cursor("5", "members");
        assert!(Position::parse(&other, &a, &head).is_err());
    }

    #[test]
    fn a_cursor_is_bound_to_its_organisation_the_feeds_epoch_and_its_end() {
        let (a, b) = (org("org_a"), org("org_b"));
        let head = FeedHead {
            last: 40,
            epoch: Some("01now".into()),
        };
        let at = |after: u64| Position {
            after,
            started: true,
        };
        let code = |cursor: String| Position::parse(&cursor, &a, &head).err().map(|e| e.code());
        assert_eq!(code(at(40).cursor(&a, Some("01now"))), None);
        assert_eq!(code(at(12).cursor(&a, None)), None, "a dataref: no epoch");
        assert_eq!(
            code(at(12).cursor(&b, Some("01now"))),
            Some("invalid_cursor"),
            "another organisation's"
        );
        assert_eq!(
            code(at(12).cursor(&b, None)),
            Some("invalid_cursor"),
            "another organisation's dataref"
        );
        assert_eq!(
            code(at(12).cursor(&a, Some("01before"))),
            Some("feed_reset"),
            "an earlier epoch"
        );
        assert_eq!(
            code(at(0).cursor(&a, Some("01before"))),
            None,
            "an earlier epoch before any event: nothing to lose"
        );
        let unstarted = Position {
            after: 7,
            started: false,
        };
        assert_eq!(
            Position::parse(&unstarted.cursor(&a, Some("01before")), &a, &head).ok(),
            Some(Position {
                after: 0,
                started: false
            }),
            "an earlier epoch, no event seen: from the start again"
        );
        let empty_epoch = encode_cursor("5", &format!("{}:", feed_cursor_kind("org_a", None)));
        assert_eq!(code(empty_epoch), Some("invalid_cursor"));
        assert_eq!(
            code(at(41).cursor(&a, Some("01now"))),
            Some("invalid_cursor"),
            "past the end"
        );
        assert_eq!(
            code(at(999_999_999_999).cursor(&a, Some("01now"))),
            Some("invalid_cursor"),
            "far past the end"
        );
        // A cursor of an earlier version: its place only.
        let legacy = |after: u64| encode_cursor(&after.to_string(), FEED_CURSOR_KIND);
        assert_eq!(code(legacy(40)), None);
        assert_eq!(code(legacy(41)), Some("invalid_cursor"));
        // A kind that merely starts with ours is no cursor of ours.
        let sly = encode_cursor("5", &format!("{}x", feed_cursor_kind("org_a", None)));
        assert_eq!(code(sly), Some("invalid_cursor"));
    }

    #[test]
    fn types_are_checked_and_deduplicated() {
        assert_eq!(
            parse_types("member.created, member.created,role.deleted").ok(),
            Some(vec!["member.created".into(), "role.deleted".into()])
        );
        for bad in ["", "member", "member.created,", "MEMBER.CREATED"] {
            assert_eq!(
                parse_types(bad).err().map(|e| e.code()),
                Some("invalid_query_parameter"),
                "{bad}"
            );
        }
    }
}
