//! A SCIM User's id, and why a deleted one never answers again.

use crate::model::*;

/// A SCIM User's id: the member's id, followed by `-<n>` once the member came back into SCIM
/// for the n-th time after a SCIM deletion. A deleted id is never served again (RFC 7644
/// §3.6), and no id is ever reassigned (RFC 7643 §3.1), while the member keeps its `/v1` id
/// and history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimId {
    pub member: MemberId,
    pub generation: u32,
}

impl ScimId {
    pub fn of(m: &Member) -> Self {
        ScimId {
            member: m.id.clone(),
            generation: m.scim_generation,
        }
    }

    /// `None` for what no User ever had as id (a 404, as any unknown id).
    pub fn parse(s: &str) -> Option<Self> {
        let (member, generation) = match s.split_once('-') {
            None => (s, 0),
            Some((member, n)) => {
                let valid = !n.is_empty()
                    && !n.starts_with('0')
                    && n.len() <= 10
                    && n.bytes().all(|b| b.is_ascii_digit());
                (member, n.parse::<u32>().ok().filter(|_| valid)?)
            }
        };
        Some(ScimId {
            member: MemberId::parse(member).ok()?,
            generation,
        })
    }

    /// Whether this id is `m` as SCIM shows it now.
    pub fn names(&self, m: &Member) -> bool {
        m.id == self.member && m.scim_generation == self.generation && !m.scim_deprovisioned
    }
}

impl std::fmt::Display for ScimId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.generation {
            0 => write!(f, "{}", self.member),
            n => write!(f, "{}-{n}", self.member),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::MemberPatch;

    fn org() -> Organization {
        Organization::new("A", false)
    }

    #[test]
    fn a_scim_id_names_one_provisioning_of_a_member() {
        let id = |s: &str| ScimId::parse(s).map(|i| i.to_string());
        assert_eq!(id("mem_abc"), Some("mem_abc".into()));
        assert_eq!(id("mem_abc-2"), Some("mem_abc-2".into()));
        for bad in [
            "mem_abc-0",
            "mem_abc-02",
            "mem_abc-",
            "mem_abc-x",
            "abc-1",
            "mem_abc-99999999999",
        ] {
            assert_eq!(id(bad), None, "{bad}");
        }
        let body =
            serde_json::json!({"firstName": "A", "email": "a@example.com", "role": "simple"});
        let patch = crate::input::parse_member_patch(&body).unwrap_or_else(|e| panic!("{e:?}"));
        let mut m = crate::rules::new_member(patch, &org(), Timestamp::now())
            .unwrap_or_else(|e| panic!("{e:?}"))
            .member;
        let first = ScimId::of(&m);
        assert!(first.names(&m));
        // Deleted through SCIM, then back: a new id; the old one names nothing again.
        m.scim_deprovisioned = true;
        m.is_active = false;
        assert!(!first.names(&m));
        let back = crate::rules::apply(
            MemberPatch {
                is_active: Some(true),
                ..MemberPatch::default()
            },
            &m,
            &org(),
            Timestamp::now(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
        .member;
        assert!(!first.names(&back));
        assert!(ScimId::of(&back).names(&back));
        assert_eq!(ScimId::of(&back).to_string(), format!("{}-1", m.id));
    }
}
