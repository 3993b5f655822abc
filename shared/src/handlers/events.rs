//! GET /v1/events: the organisation's change events, oldest first, followed with a cursor
//! that never skips one (docs/design.md, "The event feed").

use crate::error::ApiError;
use crate::events::{self, FEED_CURSOR_KIND};
use crate::http::{ApiRequest, ApiResponse};
use crate::model::Scope;
use crate::paging::{self, decode_cursor, encode_cursor};
use crate::store::{PlaceState, Store};
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
    fn parse(cursor: &str) -> Result<Self, ApiError> {
        let p = decode_cursor(cursor, FEED_CURSOR_KIND)?;
        let (digits, started) = match p.strip_suffix('~') {
            Some(digits) => (digits, false),
            None => (p.as_str(), true),
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

    fn cursor(self) -> String {
        match self.started {
            true => events::feed_cursor(self.after),
            false => encode_cursor(&format!("{}~", self.after), FEED_CURSOR_KIND),
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
    let mut position = Position {
        after: 0,
        started: false,
    };
    let mut types: Vec<String> = Vec::new();
    for (name, value) in paging::query(&req, &["after", "limit", "types"])? {
        match name {
            "limit" => limit = paging::limit(value)?,
            "after" => position = Position::parse(value)?,
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
    let next = serde_json::to_string(&at.cursor()).unwrap_or_default();
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

    #[test]
    fn positions_round_trip_started_or_not() {
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
            assert_eq!(Position::parse(&p.cursor()).ok(), Some(p));
        }
        // Never issued, and `after + 1` would overflow: refused, not a 500.
        for after in [MAX_PLACE, u64::MAX] {
            for started in [true, false] {
                let p = Position { after, started };
                assert_eq!(
                    Position::parse(&p.cursor()).err().map(|e| e.code()),
                    Some("invalid_cursor")
                );
            }
        }
        let forged = encode_cursor("-1", FEED_CURSOR_KIND);
        assert_eq!(
            Position::parse(&forged).err().map(|e| e.code()),
            Some("invalid_cursor")
        );
        let other = encode_cursor("5", "members");
        assert!(Position::parse(&other).is_err());
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
