//! Values: ids, vocabularies, roles, emails, timestamps and password hashes. Each is valid
//! once constructed (built only through `parse`), so the rest of the crate never re-checks.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Declares a prefixed id newtype (`mem_…`, `org_…`) with parsing, generation and serde.
macro_rules! prefixed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id (the ULID's lower-case Crockford form).
            pub fn generate() -> Self {
                Self(format!(
                    "{}{}",
                    $prefix,
                    ulid::Ulid::generate().to_string().to_lowercase()
                ))
            }

            /// `prefix` followed by 1–64 ASCII letters or digits.
            pub fn parse(s: &str) -> Result<Self, String> {
                let rest = s
                    .strip_prefix($prefix)
                    .ok_or_else(|| format!("must start with \"{}\"", $prefix))?;
                if rest.is_empty()
                    || rest.len() > 64
                    || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(format!(
                        "must be \"{}\" followed by 1 to 64 letters or digits",
                        $prefix
                    ));
                }
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(OrgId, "org_");
prefixed_id!(MemberId, "mem_");
prefixed_id!(UserId, "usr_");
prefixed_id!(CustomRoleId, "rol_");
prefixed_id!(ApiKeyId, "key_");
prefixed_id!(AuditEventId, "evt_");
prefixed_id!(WebhookId, "whk_");
prefixed_id!(DeliveryId, "dlv_");
prefixed_id!(GroupId, "grp_");

/// Declares a closed vocabulary: a snake_case enum with its list of allowed values.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const ALLOWED: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// The built-in member roles (seed 000 and 002).
    BuiltinRole { Admin => "admin", Simple => "simple", Reviewer => "reviewer", NoAccess => "no_access" }
);
vocabulary!(
    /// The HRIS application's roles (seed 002).
    HrisRole { HrisAdmin => "hris_admin", HrisEmployee => "hris_employee", HrisNoAccess => "hris_no_access" }
);
vocabulary!(
    /// Departments (seed 000).
    Department { None => "none", Admin => "admin", Gov => "gov", Hr => "hr", It => "it", Itsm => "itsm", Qms => "qms" }
);
vocabulary!(
    /// A member's role at one location (seed 001).
    LocationRole { Admin => "admin", Editor => "editor", Viewer => "viewer" }
);
vocabulary!(
    /// The role a member has in a collaboration rule (seed 002).
    CollaborationRole {
        Admin => "admin",
        RecruitingAdmin => "recruiting_admin",
        HiringManager => "hiring_manager",
        Simple => "simple",
        Reviewer => "reviewer",
    }
);
vocabulary!(
    /// API key scopes.
    Scope {
        ReadMembers => "r_members",
        WriteMembers => "w_members",
        ReadWebhooks => "r_webhooks",
        WriteWebhooks => "w_webhooks",
        Scim => "scim",
    }
);

/// A member's role: a built-in name or one of the organisation's custom roles (seed 000).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Role {
    Builtin(BuiltinRole),
    Custom(CustomRoleId),
}

impl Role {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(builtin) = BuiltinRole::parse(s) {
            return Ok(Role::Builtin(builtin));
        }
        if s.starts_with(CustomRoleId::PREFIX) {
            return CustomRoleId::parse(s).map(Role::Custom);
        }
        Err(format!(
            "must be one of {} or a custom role id (rol_…)",
            BuiltinRole::ALLOWED.join(", ")
        ))
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Role::Builtin(BuiltinRole::Admin))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Role::Builtin(b) => b.as_str(),
            Role::Custom(id) => id.as_str(),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Role::parse(&s)
    }
}

impl From<Role> for String {
    fn from(role: Role) -> String {
        role.as_str().to_owned()
    }
}

/// An email address as given, compared and guarded case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    /// A pragmatic check: one `@`, a non-empty local part, a dotted domain of letters,
    /// digits and hyphens, no spaces or control characters, at most 254 characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        let (local, domain) = s.split_once('@').ok_or("must contain \"@\"")?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '@' && c != '"' && c != ',');
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err("is not a valid email address".into());
        }
        Ok(Email(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness is decided on.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

/// An instant, RFC 3339 on the wire and in the table, always UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(Self::millis(OffsetDateTime::now_utc()))
    }

    /// Millisecond precision: what the seeds show and what survives a round trip.
    fn millis(t: OffsetDateTime) -> OffsetDateTime {
        t.replace_nanosecond(t.millisecond() as u32 * 1_000_000)
            .unwrap_or(t)
    }

    /// The earliest and latest years a timestamp may have in UTC: what the fixed-width text
    /// form (`YYYY-…`) holds, so that whatever is accepted is stored and read back.
    pub const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

    /// An RFC 3339 date-time whose UTC form lies in years 0001–9999. No input can make this
    /// panic: the conversion to UTC is checked (a `9999-12-31T23:00:00-01:00` is year 10000).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|_| "must be an RFC 3339 date-time, e.g. 2026-01-15T00:00:00Z".to_owned())?;
        t.checked_to_offset(time::UtcOffset::UTC)
            .filter(|utc| Self::YEARS.contains(&utc.year()))
            .map(|utc| Timestamp(Self::millis(utc)))
            .ok_or_else(|| {
                "must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z".to_owned()
            })
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn unix_millis(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// `self` moved by `millis`, held inside [`Self::YEARS`] like [`Self::plus_seconds`].
    pub fn plus_millis(self, millis: i64) -> Self {
        let moved = self.plus_seconds(millis.div_euclid(1000));
        let rest = time::Duration::milliseconds(millis.rem_euclid(1000));
        match moved.0.checked_add(rest) {
            Some(t) if t.year() <= 9999 => Timestamp(t),
            _ => moved,
        }
    }

    /// `self` moved by `seconds`, held inside [`Self::YEARS`] (saturating at either end).
    pub fn plus_seconds(self, seconds: i64) -> Self {
        let last = time::macros::datetime!(9999-12-31 23:59:59.999 UTC);
        let first = time::macros::datetime!(0001-01-01 00:00:00 UTC);
        let moved = self
            .0
            .checked_add(time::Duration::seconds(seconds))
            .unwrap_or(if seconds < 0 { first } else { last });
        Timestamp(moved.clamp(first, last))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Fixed width (milliseconds, `Z`), so that stored timestamps sort as text.
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let text = self.0.format(&format).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl TryFrom<String> for Timestamp {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Timestamp::parse(&s)
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.to_string()
    }
}

#[cfg(test)]
thread_local! {
    /// How many times argon2id ran on this thread: tests prove it runs only for writes.
    pub static HASHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// An argon2id PHC string. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// A password that is set but not hashed yet: argon2id runs only once a change will be
    /// written (not for a dry run, nor for a change a rule refuses). The store refuses to
    /// write one.
    pub fn pending() -> Self {
        PasswordHash(String::new())
    }

    pub fn is_pending(&self) -> bool {
        self.0.is_empty()
    }

    /// Hashes a plain password with argon2id and a random salt.
    pub fn hash(password: &str) -> Result<Self, String> {
        use argon2::password_hash::PasswordHasher;
        #[cfg(test)]
        HASHES.with(|n| n.set(n.get() + 1));
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| PasswordHash(h.to_string()))
            .map_err(|e| format!("password hashing failed: {e}"))
    }

    pub fn verify(&self, password: &str) -> bool {
        use argon2::password_hash::{phc, PasswordVerifier};
        match phc::PasswordHash::new(&self.0) {
            Ok(parsed) => argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    pub fn phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_with_their_prefix_only() {
        assert!(MemberId::parse("mem_abc123def456").is_ok());
        assert!(MemberId::parse("org_abc").is_err());
        assert!(MemberId::parse("mem_").is_err());
        assert!(MemberId::parse("mem_a-b").is_err());
        assert!(MemberId::parse(&format!("mem_{}", "a".repeat(65))).is_err());
        let generated = MemberId::generate();
        assert_eq!(MemberId::parse(generated.as_str()), Ok(generated));
    }

    #[test]
    fn roles_are_builtin_names_or_custom_ids() {
        assert_eq!(Role::parse("admin"), Ok(Role::Builtin(BuiltinRole::Admin)));
        assert!(matches!(Role::parse("rol_01abc"), Ok(Role::Custom(_))));
        assert!(Role::parse("owner")
            .unwrap_err()
            .contains("admin, simple, reviewer, no_access"));
        assert!(Role::parse("rol_!").is_err());
    }

    #[test]
    fn emails_are_checked_and_normalised() {
        for ok in ["john@example.com", "J.Doe+x@sub.example.co.uk"] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "john",
            "john@",
            "@example.com",
            "john@example",
            "jo hn@example.com",
            "john@-x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Email::parse("John@Example.COM").map(|e| e.normalized()),
            Ok("john@example.com".into())
        );
    }

    #[test]
    fn timestamps_are_rfc3339_and_normalised_to_utc() {
        let t = Timestamp::parse("2026-01-15T02:00:00+02:00").map(|t| t.to_string());
        assert_eq!(t, Ok("2026-01-15T00:00:00.000Z".to_owned()));
        let precise = Timestamp::parse("2026-01-15T00:00:00.123456Z").map(|t| t.to_string());
        assert_eq!(
            precise,
            Ok("2026-01-15T00:00:00.123Z".to_owned()),
            "sorted as text: fixed width"
        );
        assert!(Timestamp::parse("2026-01-15").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn timestamps_outside_years_0001_to_9999_in_utc_are_refused_without_panicking() {
        for bad in [
            "0000-01-01T00:00:00+01:00", // year -1 in UTC
            "0000-12-31T23:59:59Z",
            "0001-01-01T00:00:00+00:01",
            "9999-12-31T23:00:00-01:00", // year 10000 in UTC: used to panic
            "9999-12-31T23:59:59.999-23:59",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        for (good, utc) in [
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
            ("0001-01-01T01:00:00+01:00", "0001-01-01T00:00:00.000Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999Z"),
            ("9999-12-31T22:59:59-01:00", "9999-12-31T23:59:59.000Z"),
        ] {
            let t = Timestamp::parse(good).map(|t| t.to_string());
            assert_eq!(t, Ok(utc.to_owned()), "{good}");
            let back = Timestamp::parse(utc).map(|t| t.to_string());
            assert_eq!(back, Ok(utc.to_owned()), "{utc} reads back");
        }
    }

    #[test]
    fn moving_a_timestamp_never_panics_and_stays_in_range() {
        let last = Timestamp::parse("9999-12-31T23:59:59.999Z").unwrap_or_else(|e| panic!("{e}"));
        let first = Timestamp::parse("0001-01-01T00:00:00Z").unwrap_or_else(|e| panic!("{e}"));
        for t in [first, last, Timestamp::now()] {
            for by in [i64::MIN, -1, 0, 1, 24 * 3600, i64::MAX] {
                let moved = t.plus_seconds(by).to_string();
                assert_eq!(
                    Timestamp::parse(&moved).map(|m| m.to_string()),
                    Ok(moved.clone())
                );
            }
        }
    }

    #[test]
    fn password_hashes_verify_and_never_print() {
        let hash = PasswordHash::hash("correct horse").unwrap_or_else(|e| panic!("{e}"));
        assert!(hash.phc().starts_with("$argon2id$"));
        assert!(hash.verify("correct horse"));
        assert!(!hash.verify("wrong"));
        assert_eq!(format!("{hash:?}"), "PasswordHash([redacted])");
    }
}
