//! The invariants a test re-reads from the table after its writes: counters against a
//! recount, guards against the members that hold them, one primary, the location items.

use crate::stack::{b, s, Stack};
use crate::{ensure, ensure_eq, TestResult, TABLE};
use aws_sdk_dynamodb::types::AttributeValue;
use shared::model::{Counters, HrisRole, MemberId, OrgId, Organization, Role};
use shared::store::dynamo::{shard_of, COUNTER_SHARDS};
use std::collections::HashMap;

impl Stack {
    /// Fails unless the organisation's counters equal a recount of its members, and at most
    /// one member is primary, the one the organisation names.
    pub async fn check_invariants(&self, org: &OrgId) -> TestResult {
        let members = self.members_of(org).await?;
        let active: Vec<_> = members.iter().filter(|m| b(m, "isActive")).collect();
        let count = |f: &dyn Fn(&HashMap<String, AttributeValue>) -> bool| {
            active.iter().filter(|m| f(m)).count() as i64
        };
        let admins = count(&|m| s(m, "role") == "admin");
        let recount = (
            admins,
            count(&|m| s(m, "hrisRole") == "hris_admin"),
            count(&|m| s(m, "role") == "admin" && s(m, "hrisRole") == "hris_admin"),
            count(&|m| s(m, "role") == "no_access"),
            count(&|m| s(m, "role") == "no_access" && s(m, "hrisRole") == "hris_no_access"),
            count(&|m| s(m, "hrisRole").is_empty()),
        );
        let o = self.organization(org).await?;
        let c = o.counters;
        let stored = (
            c.active_admins,
            c.active_hris_admins,
            c.active_dual_admins,
            c.active_no_access,
            c.active_no_access_hris_no_access,
            c.active_without_hris_role,
        );
        ensure_eq!(stored, recount, "counters vs recount");
        // SCIM's totalResults: the members it shows (all but the deprovisioned, who are
        // never active), and the active ones.
        let shown = members
            .iter()
            .filter(|m| !b(m, "scimDeprovisioned"))
            .count() as i64;
        ensure_eq!(
            (c.scim_members, c.active_members),
            (shown, active.len() as i64),
            "SCIM counters vs recount"
        );
        self.check_shards(org, &o, &members).await?;
        ensure!(
            !members
                .iter()
                .any(|m| b(m, "scimDeprovisioned") && b(m, "isActive")),
            "a member deleted through SCIM is active"
        );
        // One externalId guard per member holding one, pointing at it.
        let mut held: Vec<String> = members
            .iter()
            .filter(|m| m.contains_key("externalId"))
            .map(|m| s(m, "id"))
            .collect();
        let mut guarded: Vec<String> = self
            .items(&format!("ORG#{org}#EXTERNALID#"))
            .await?
            .iter()
            .map(|g| s(g, "memberId"))
            .collect();
        held.sort();
        guarded.sort();
        ensure_eq!(guarded, held, "externalId guards follow the members");
        ensure!(admins >= 1, "an organisation must keep an active admin");
        let primaries: Vec<String> = members
            .iter()
            .filter(|m| b(m, "isPrimary"))
            .map(|m| s(m, "id"))
            .collect();
        ensure!(primaries.len() <= 1, "more than one primary: {primaries:?}");
        ensure_eq!(
            primaries.first().cloned(),
            o.primary_member_id.map(|p| p.to_string()),
            "primary member"
        );
        // One identifier guard per email and per SCIM userName that differs from it
        // (case-insensitively), pointing at its member: nothing more, nothing less.
        let mut expected: Vec<String> = Vec::new();
        for m in &members {
            let email = s(m, "email").to_lowercase();
            expected.push(format!("ORG#{org}#EMAIL#{email}|{}", s(m, "id")));
            if m.contains_key("scimUserName") {
                let user_name = s(m, "scimUserName").to_lowercase();
                if user_name != email {
                    expected.push(format!("ORG#{org}#EMAIL#{user_name}|{}", s(m, "id")));
                }
            }
        }
        let mut stored: Vec<String> = self
            .items(&format!("ORG#{org}#EMAIL#"))
            .await?
            .iter()
            .map(|g| format!("{}|{}", s(g, "PK"), s(g, "memberId")))
            .collect();
        expected.sort();
        stored.sort();
        ensure_eq!(
            stored,
            expected,
            "identifier guards follow emails and userNames"
        );
        // One location item per (member, location), in the partition of the member's status.
        let mut expected: Vec<String> = Vec::new();
        for m in &members {
            if let Some(AttributeValue::L(locations)) = m.get("locations") {
                for l in locations {
                    if let AttributeValue::M(l) = l {
                        let status = if b(m, "isActive") {
                            "active"
                        } else {
                            "inactive"
                        };
                        expected.push(format!(
                            "ORG#{org}#LOCATION#{}#{status}|{}",
                            s(l, "locationId"),
                            s(m, "id")
                        ));
                    }
                }
            }
        }
        let mut stored: Vec<String> = self
            .items(&format!("ORG#{org}#LOCATION#"))
            .await?
            .iter()
            .map(|i| format!("{}|{}", s(i, "PK"), s(i, "SK")))
            .collect();
        expected.sort();
        stored.sort();
        ensure_eq!(stored, expected, "location items follow the members");
        // One membership item per (member, group it lists), in the group's partition, and
        // each listed group exists: the members' scimGroups and the groups' members agree.
        let items = self.items(&format!("ORG#{org}#GROUP")).await?;
        let groups: Vec<String> = items
            .iter()
            .filter(|i| s(i, "entity") == "group")
            .map(|i| s(i, "id"))
            .collect();
        let mut expected: Vec<String> = Vec::new();
        for m in &members {
            if let Some(AttributeValue::L(listed)) = m.get("scimGroups") {
                for g in listed {
                    if let AttributeValue::S(g) = g {
                        ensure!(
                            groups.contains(g),
                            "member {} lists group {g}, which does not exist",
                            s(m, "id")
                        );
                        expected.push(format!("ORG#{org}#GROUP#{g}#MEMBERS|{}", s(m, "id")));
                    }
                }
            }
        }
        let mut stored: Vec<String> = items
            .iter()
            .filter(|i| s(i, "entity") == "membership")
            .map(|i| format!("{}|{}", s(i, "PK"), s(i, "SK")))
            .collect();
        expected.sort();
        stored.sort();
        ensure_eq!(
            stored,
            expected,
            "membership items follow the members' groups"
        );
        // Every custom role a member holds exists, and counts its holders exactly.
        let roles: Vec<_> = self
            .items(&format!("ORG#{org}#ROLE#"))
            .await?
            .into_iter()
            .filter(|i| s(i, "SK") == "ROLE")
            .collect();
        let n = |i: &HashMap<String, AttributeValue>, name: &str| match i.get(name) {
            Some(AttributeValue::N(v)) => v.parse::<i64>().unwrap_or(-1),
            _ => 0,
        };
        for m in members.iter().filter(|m| s(m, "role").starts_with("rol_")) {
            ensure!(
                roles.iter().any(|r| s(r, "id") == s(m, "role")),
                "member {} holds the role {}, which does not exist",
                s(m, "id"),
                s(m, "role")
            );
        }
        // A role counts its holders on its item (an older version) or in its holder shards,
        // each shard exactly the holders whose id hashes to it.
        let role_partition = shared::store::dynamo::keys::role_holders_partition(org);
        let shards = self.partition(&role_partition, "rol_").await?;
        for r in &roles {
            let id = s(r, "id");
            let holding = |m: &&HashMap<String, AttributeValue>| s(m, "role") == id;
            let all = members.iter().filter(holding).count() as i64;
            let active = members
                .iter()
                .filter(holding)
                .filter(|m| b(m, "isActive"))
                .count() as i64;
            let sharded = r.contains_key("holderShards");
            let mine: Vec<_> = shards.iter().filter(|sh| s(sh, "roleId") == id).collect();
            ensure_eq!(
                mine.len(),
                if sharded { COUNTER_SHARDS as usize } else { 0 },
                "role {id}'s holder shards"
            );
            let summed = mine
                .iter()
                .fold((n(r, "holders"), n(r, "activeHolders")), |(a, b), sh| {
                    (a + n(sh, "holders"), b + n(sh, "activeHolders"))
                });
            ensure_eq!(
                summed,
                (all, active),
                "role {id} counts its holders (all, active)"
            );
            for sh in mine {
                let index = s(sh, "SK")
                    .rsplit_once('#')
                    .and_then(|(_, i)| i.parse::<u32>().ok())
                    .ok_or("a holder shard's key")?;
                let own: Vec<_> = members
                    .iter()
                    .filter(holding)
                    .filter(|m| {
                        MemberId::parse(&s(m, "id"))
                            .is_ok_and(|mid| shard_of(&mid, COUNTER_SHARDS) == index)
                    })
                    .collect();
                let own_active = own.iter().filter(|m| b(m, "isActive")).count() as i64;
                ensure_eq!(
                    (n(sh, "holders"), n(sh, "activeHolders")),
                    (own.len() as i64, own_active),
                    "role {id}, holder shard {index}"
                );
            }
        }
        ensure!(
            shards
                .iter()
                .all(|sh| roles.iter().any(|r| s(r, "id") == s(sh, "roleId"))),
            "a holder shard outlived its role"
        );
        Ok(())
    }
}

impl Stack {
    /// Every counter shard counts exactly its own members (so none is ever negative, and the
    /// HRIS switch's per-shard conditions mean what they say), and mirrors the HRIS switch.
    async fn check_shards(
        &self,
        org: &OrgId,
        o: &Organization,
        members: &[HashMap<String, AttributeValue>],
    ) -> TestResult {
        ensure_eq!(
            o.counter_shards,
            COUNTER_SHARDS,
            "the organisation is sharded"
        );
        let shards = self.partition(&format!("ORG#{org}"), "COUNTS#").await?;
        ensure_eq!(shards.len(), COUNTER_SHARDS as usize, "shards");
        let mut expected = vec![Counters::default(); COUNTER_SHARDS as usize];
        for m in members {
            let id = MemberId::parse(&s(m, "id"))?;
            let role = Role::parse(&s(m, "role")).map_err(|e| e.to_string())?;
            let hris = match s(m, "hrisRole").as_str() {
                "" => None,
                r => Some(HrisRole::parse(r).ok_or(format!("hrisRole {r}"))?),
            };
            let c = Counters::of_member(b(m, "isActive"), &role, hris, b(m, "scimDeprovisioned"));
            let slot = &mut expected[shard_of(&id, COUNTER_SHARDS) as usize];
            *slot = slot.plus(c.sharded());
        }
        for shard in &shards {
            let index: usize = s(shard, "SK")
                .trim_start_matches("COUNTS#")
                .parse()
                .map_err(|e| format!("shard key: {e}"))?;
            let want = expected.get(index).ok_or("a shard out of range")?;
            for (name, value) in want.fields() {
                if Counters::is_guarded(name) {
                    continue;
                }
                let stored = match shard.get(name) {
                    Some(AttributeValue::N(n)) => n.parse::<i64>().map_err(|e| e.to_string())?,
                    _ => 0,
                };
                ensure_eq!(stored, value, "shard {index}: {name}");
            }
            ensure_eq!(
                b(shard, "hrisEnabled"),
                o.hris_enabled,
                "shard {index} mirrors the HRIS switch"
            );
        }
        Ok(())
    }

    /// The items of partition `pk` whose sort key starts with `sk`, read consistently (a
    /// Query of what one test wrote, never a Scan of every test's data).
    async fn partition(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, String> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .store
                .client()
                .query()
                .table_name(TABLE)
                .consistent_read(true)
                .key_condition_expression("PK = :pk AND begins_with(SK, :sk)")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .expression_attribute_values(":sk", AttributeValue::S(sk.to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| format!("query {pk}: {e:?}"))?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// How many writes of an organisation DynamoDB itself refused with `code` (from the
    /// functions' JSON logs): proof that a race was decided by a condition, not by a read.
    pub fn refused_by_condition(&self, org: &OrgId, code: &str) -> usize {
        let text = std::fs::read_to_string(&self.watch_log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("write refused by a DynamoDB condition"))
            .filter(|l| l.contains(&format!("\"code\":\"{code}\"")) && l.contains(org.as_str()))
            .count()
    }
}
