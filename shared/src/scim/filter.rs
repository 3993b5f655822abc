//! The filters identity providers send to find users (RFC 7644 §3.4.2.2), and nothing
//! else: each is served by a key, never a scan.
//!
//! - `userName eq "…"`, `emails.value eq "…"`, `emails[type eq "work"].value eq "…"`:
//!   the identifier guard (emails and userNames share it), the member then checked
//! - `externalId eq "…"`: the externalId guard
//! - `active eq true|false`: the status partitions
//! - `meta.lastModified gt|ge "<date-time>"`: the update-time index
//!
//! joined with `and` (parentheses allowed). Attribute names and operators compare
//! case-insensitively, and may carry the core schema's URN. Anything else is 400
//! `invalidFilter` naming what is supported.

use super::{invalid, USER};
use crate::error::ApiError;
use crate::model::{normalize_identifier, Email, Timestamp};

/// What a filter asks for: every condition at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserFilter {
    /// `userName` (all terms the same value, case-insensitively, else nothing matches).
    pub user_name: Option<String>,
    /// `emails` values (likewise).
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub active: Option<bool>,
    /// Modified at or after this instant (`gt` is turned into `ge` one millisecond later).
    pub modified_since: Option<Timestamp>,
    /// Two conditions that no user can meet together.
    pub impossible: bool,
}

impl UserFilter {
    /// The email to look up: `Ok(None)` when the filter names none; a value that is no
    /// email address matches no user (it is not an error to look for one).
    pub fn email(&self) -> Option<Option<Email>> {
        self.email.as_deref().map(|e| Email::parse(e).ok())
    }
}

const SUPPORTED: &str = "Supported filters: userName eq, externalId eq, emails.value eq, \
     emails[type eq \"work\"].value eq, active eq, meta.lastModified gt|ge, joined with and.";

fn unsupported(what: impl std::fmt::Display) -> ApiError {
    invalid("invalidFilter", format!("{what}. {SUPPORTED}"))
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
}

fn tokens(filter: &str) -> Result<Vec<Token>, ApiError> {
    let mut out = Vec::new();
    let mut chars = filter.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' => {
                chars.next();
                out.push(if c == '(' { Token::Open } else { Token::Close });
            }
            '"' => {
                // A JSON string: escapes as JSON has them.
                let rest = &filter[at..];
                let mut de = serde_json::Deserializer::from_str(rest).into_iter::<String>();
                let text = match de.next() {
                    Some(Ok(text)) => text,
                    _ => return Err(unsupported("A quoted value is not a valid string")),
                };
                let end = at + de.byte_offset();
                while chars.peek().is_some_and(|&(i, _)| i < end) {
                    chars.next();
                }
                out.push(Token::Text(text));
            }
            _ => {
                // A word: an attribute path (with a bracketed value filter kept whole),
                // an operator, a keyword or a bare value.
                let mut word = String::new();
                let mut depth = 0;
                while let Some(&(_, c)) = chars.peek() {
                    if depth == 0 && (c.is_whitespace() || c == '(' || c == ')') {
                        break;
                    }
                    match c {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        _ => {}
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

/// Parses a `filter` query parameter.
pub fn parse(filter: &str) -> Result<UserFilter, ApiError> {
    if filter.len() > 4096 {
        return Err(unsupported("The filter is longer than 4096 bytes"));
    }
    let tokens = tokens(filter)?;
    let mut out = UserFilter::default();
    let mut depth = 0usize;
    let mut i = 0;
    let mut expect_term = true;
    while i < tokens.len() {
        match (&tokens[i], expect_term) {
            (Token::Open, true) => {
                depth += 1;
                i += 1;
            }
            (Token::Close, false) if depth > 0 => {
                depth -= 1;
                i += 1;
            }
            (Token::Word(w), false) if w.eq_ignore_ascii_case("and") => {
                expect_term = true;
                i += 1;
            }
            (Token::Word(w), false) if w.eq_ignore_ascii_case("or") => {
                return Err(unsupported("`or` is not supported"))
            }
            (Token::Word(w), true) if w.eq_ignore_ascii_case("not") => {
                return Err(unsupported("`not` is not supported"))
            }
            (Token::Word(path), true) => {
                let op = match tokens.get(i + 1) {
                    Some(Token::Word(op)) => op.to_ascii_lowercase(),
                    _ => return Err(unsupported(format!("{path} needs an operator"))),
                };
                let value = tokens.get(i + 2);
                term(&mut out, path, &op, value)?;
                i += 3;
                expect_term = false;
            }
            _ => return Err(unsupported("The filter is not well formed")),
        }
    }
    if expect_term || depth != 0 {
        return Err(unsupported("The filter is not well formed"));
    }
    Ok(out)
}

fn term(out: &mut UserFilter, path: &str, op: &str, value: Option<&Token>) -> Result<(), ApiError> {
    let attribute = canonical(path);
    let text = |what: &str| match value {
        Some(Token::Text(t)) => Ok(t.clone()),
        _ => Err(unsupported(format!("{what} compares with a quoted string"))),
    };
    match (attribute.as_str(), op) {
        ("username", "eq") => {
            let value = text(path)?;
            match &out.user_name {
                Some(u) if normalize_identifier(u) != normalize_identifier(&value) => {
                    out.impossible = true
                }
                _ => out.user_name = Some(value),
            }
        }
        ("emails.value" | "emails[type eq \"work\"].value", "eq") => {
            let value = text(path)?;
            match &out.email {
                Some(e) if normalize_identifier(e) != normalize_identifier(&value) => {
                    out.impossible = true
                }
                _ => out.email = Some(value),
            }
        }
        ("externalid", "eq") => {
            let value = text(path)?;
            match &out.external_id {
                Some(e) if *e != value => out.impossible = true,
                _ => out.external_id = Some(value),
            }
        }
        ("active", "eq") => {
            let value = match value {
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => true,
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => false,
                Some(Token::Text(w)) if w.eq_ignore_ascii_case("true") => true,
                Some(Token::Text(w)) if w.eq_ignore_ascii_case("false") => false,
                _ => return Err(unsupported("active compares with true or false")),
            };
            match out.active {
                Some(a) if a != value => out.impossible = true,
                _ => out.active = Some(value),
            }
        }
        ("meta.lastmodified", "gt" | "ge") => {
            let at = Timestamp::parse(&text(path)?)
                .map_err(|e| invalid("invalidFilter", format!("meta.lastModified {e}")))?;
            let since = if op == "gt" { at.plus_millis(1) } else { at };
            out.modified_since = Some(out.modified_since.map_or(since, |s| s.max(since)));
        }
        (_, op) if !OPERATORS.contains(&op) => {
            return Err(unsupported(format!("{op} is not a SCIM operator")))
        }
        _ => return Err(unsupported(format!("`{path} {op}` is not supported"))),
    }
    Ok(())
}

const OPERATORS: &[&str] = &["eq", "ne", "co", "sw", "ew", "pr", "gt", "ge", "lt", "le"];

/// An attribute path lower-cased, without the core schema's URN, with the value filter's
/// spacing and quotes normalised (`emails[type eq "work"].value`).
fn canonical(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    let core = format!("{}:", USER.to_ascii_lowercase());
    let path = lower.strip_prefix(&core).unwrap_or(&lower);
    match (path.find('['), path.rfind(']')) {
        (Some(open), Some(close)) if open < close => {
            let inner: Vec<&str> = path[open + 1..close].split_whitespace().collect();
            let inner = match inner.as_slice() {
                ["type", "eq", value] if value.trim_matches('"') == "work" => {
                    "type eq \"work\"".to_owned()
                }
                _ => inner.join(" "),
            };
            format!("{}[{inner}]{}", &path[..open], &path[close + 1..])
        }
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(f: &str) -> UserFilter {
        parse(f).unwrap_or_else(|e| panic!("{f}: {e:?}"))
    }

    #[test]
    fn the_identity_providers_filters_parse() {
        assert_eq!(
            ok("userName eq \"Test_User_1\"").user_name.as_deref(),
            Some("Test_User_1")
        );
        assert_eq!(
            ok("USERNAME EQ \"a@example.com\"").user_name.as_deref(),
            Some("a@example.com")
        );
        assert_eq!(
            ok("externalId eq \"00u1\"").external_id.as_deref(),
            Some("00u1")
        );
        assert_eq!(
            ok("emails.value eq \"a@example.com\"").email.as_deref(),
            Some("a@example.com")
        );
        assert_eq!(
            ok("emails[type eq \"work\"].value eq \"a@example.com\"")
                .email
                .as_deref(),
            Some("a@example.com")
        );
        assert_eq!(ok("active eq false").active, Some(false));
        let f = ok("(meta.lastModified gt \"2026-01-01T00:00:00Z\") and active eq true");
        assert_eq!(f.active, Some(true));
        assert_eq!(
            f.modified_since,
            Timestamp::parse("2026-01-01T00:00:00.001Z").ok()
        );
        let f = ok(&format!("{USER}:userName eq \"a\\\"b@example.com\""));
        assert_eq!(f.user_name.as_deref(), Some("a\"b@example.com"));
        assert!(ok("userName eq \"a@example.com\" and userName eq \"b@example.com\"").impossible);
        assert!(ok("active eq true and active eq false").impossible);
        assert!(!ok("userName eq \"A@example.com\" and userName eq \"a@example.com\"").impossible);
    }

    #[test]
    fn everything_else_is_an_invalid_filter() {
        for f in [
            "",
            "userName",
            "userName eq",
            "userName co \"a\"",
            "userName eq \"a\" or active eq true",
            "not (active eq true)",
            "title eq \"x\"",
            "active eq maybe",
            "meta.lastModified lt \"2026-01-01T00:00:00Z\"",
            "meta.lastModified gt \"yesterday\"",
            "userName eq \"unterminated",
            "(active eq true",
            "active eq true)",
            "userName eq \"a\" and",
            "userName xx \"a\"",
        ] {
            assert_eq!(
                parse(f).err().map(|e| e.code()),
                Some("invalidFilter"),
                "{f:?}"
            );
        }
    }
}
