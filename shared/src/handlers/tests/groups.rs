//! SCIM Groups on the in-memory store: memberships as member writes, roles from groups,
//! and a change that would break a rule refused whole.

use super::*;
use crate::handlers::{scim_create_group, scim_get_group, scim_patch_group};

/// A key with the `scim` scope.
fn scim_key(f: &Fixture) -> String {
    let issued = issue_key(&f.org, "idp", vec![Scope::Scim]).unwrap_or_else(|e| panic!("{e}"));
    let mut s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
    s.keys
        .insert(issued.record.hash.clone(), issued.record.key.clone());
    issued.secret
}

/// A member provisioned through SCIM (it has a userName): under the identity provider.
fn provisioned(f: &Fixture, user: &str) -> MemberId {
    let org = blank_org(&f.org);
    let body = json!({"firstName": user, "email": format!("{user}@example.com"), "role": "simple"});
    let patch = crate::input::parse_member_patch(&body).unwrap_or_else(|e| panic!("{e:?}"));
    let mut m = crate::rules::new_member(patch, &org, Timestamp::now())
        .unwrap_or_else(|e| panic!("{e:?}"))
        .member;
    m.scim_user_name = Some(format!("{user}@corp.example"));
    let mut s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
    s.emails
        .insert((f.org.clone(), m.email.normalized()), m.id.clone());
    s.members.insert((f.org.clone(), m.id.clone()), m.clone());
    m.id
}

fn scim(key: &str, method: &str, path: &str, id: Option<&str>, body: Value) -> ApiRequest {
    let mut r = event(GET_EVENT);
    r.headers
        .insert("authorization".into(), format!("Bearer {key}"));
    r.headers
        .insert("content-type".into(), "application/scim+json".into());
    r.method = method.into();
    r.path = path.into();
    r.path_id = id.map(str::to_owned);
    r.query.clear();
    r.body = serde_json::to_vec(&body).unwrap_or_default();
    r
}

fn answer(result: Result<crate::http::ApiResponse, crate::error::ApiError>) -> (u16, Value) {
    let response = result.unwrap_or_else(|e| crate::scim::error_response(&e));
    (response.status, body_of(&response))
}

fn member(f: &Fixture, id: &MemberId) -> Member {
    let s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
    s.members[&(f.org.clone(), id.clone())].clone()
}

fn add(ids: &[&MemberId]) -> Value {
    let members: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
    json!({"schemas": [crate::scim::PATCH_OP],
           "Operations": [{"op": "add", "path": "members", "value": members}]})
}

fn remove(id: &MemberId) -> Value {
    json!({"schemas": [crate::scim::PATCH_OP],
           "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]})
}

#[tokio::test]
async fn groups_decide_roles_and_a_change_that_breaks_a_rule_is_refused_whole() {
    let f = fixture();
    let key = scim_key(&f);
    let (a, b) = (provisioned(&f, "ada"), provisioned(&f, "bob"));
    let create = scim(
        &key,
        "POST",
        "/scim/v2/Groups",
        None,
        json!({"schemas": [crate::scim::GROUP], "displayName": "Admins", "members": [{"value": a}]}),
    );
    let (status, group) = answer(scim_create_group(f.store.clone(), create).await);
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(group["members"][0]["value"], json!(a));
    assert_eq!(
        member(&f, &a).scim_groups,
        vec![GroupId::parse(&gid).unwrap_or_else(|e| panic!("{e}"))]
    );
    assert_eq!(
        member(&f, &a).role,
        Role::Builtin(BuiltinRole::Simple),
        "no mapping yet"
    );

    // The same name again, in another case: 409 uniqueness.
    let again = scim(
        &key,
        "POST",
        "/scim/v2/Groups",
        None,
        json!({"schemas": [crate::scim::GROUP], "displayName": "admins"}),
    );
    let (status, body) = answer(scim_create_group(f.store.clone(), again).await);
    assert_eq!(
        (status, body["status"].as_str()),
        (409, Some("409")),
        "{body}"
    );

    // With a mapping, members of the group are admins: joining makes one.
    {
        let mut s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
        let org = s.orgs.get_mut(&f.org).unwrap_or_else(|| panic!("org"));
        org.scim_group_roles = vec![GroupRole {
            group_id: GroupId::parse(&gid).unwrap_or_else(|e| panic!("{e}")),
            role: Role::Builtin(BuiltinRole::Admin),
        }];
    }
    let path = format!("/scim/v2/Groups/{gid}");
    let (status, body) = answer(
        scim_patch_group(
            f.store.clone(),
            scim(&key, "PATCH", &path, Some(&gid), add(&[&b])),
        )
        .await,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(member(&f, &b).role, Role::Builtin(BuiltinRole::Admin));
    // A repeat changes nothing; an unknown id is a 400 naming it, with nothing applied.
    let (status, _) = answer(
        scim_patch_group(
            f.store.clone(),
            scim(&key, "PATCH", &path, Some(&gid), add(&[&b])),
        )
        .await,
    );
    assert_eq!(status, 200);
    let ghost = MemberId::generate();
    let (status, body) = answer(
        scim_patch_group(
            f.store.clone(),
            scim(&key, "PATCH", &path, Some(&gid), add(&[&a, &ghost])),
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(ghost.as_str()),
        "{body}"
    );

    // The mapping decides: /v1 cannot change b's role.
    let mut req = event(UPDATE_EVENT);
    req.headers
        .insert("authorization".into(), format!("Bearer {}", f.write_key));
    req.headers.remove("if-match");
    req.path_id = Some(b.to_string());
    req.body = br#"{"role": "reviewer"}"#.to_vec();
    let refused = update_member(f.store.clone(), req)
        .await
        .err()
        .map(|e| e.code());
    assert_eq!(refused, Some("role_managed_by_idp"));

    // Root steps down: the group's members are now the only admins.
    let mut req = event(UPDATE_EVENT);
    req.headers
        .insert("authorization".into(), format!("Bearer {}", f.write_key));
    req.headers.remove("if-match");
    req.path_id = Some(f.admin.to_string());
    req.body = br#"{"role": "simple"}"#.to_vec();
    update_member(f.store.clone(), req)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (status, _) = answer(
        scim_patch_group(
            f.store.clone(),
            scim(&key, "PATCH", &path, Some(&gid), remove(&a)),
        )
        .await,
    );
    assert_eq!(status, 200, "b stays an admin");
    assert_eq!(member(&f, &a).role, Role::Builtin(BuiltinRole::Simple));
    // Emptying the group would leave no admin: refused whole, naming the rule.
    let empty = json!({"schemas": [crate::scim::PATCH_OP], "Operations": [{"op": "Remove", "path": "members"}]});
    let (status, body) = answer(
        scim_patch_group(
            f.store.clone(),
            scim(&key, "PATCH", &path, Some(&gid), empty),
        )
        .await,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("last_admin"),
        "{body}"
    );
    assert_eq!(
        member(&f, &b).role,
        Role::Builtin(BuiltinRole::Admin),
        "nothing applied"
    );

    // The group reads its members; the user reads its groups.
    let (status, group) = answer(
        scim_get_group(
            f.store.clone(),
            scim(&key, "GET", &path, Some(&gid), Value::Null),
        )
        .await,
    );
    assert_eq!(status, 200);
    assert_eq!(group["members"].as_array().map(Vec::len), Some(1));
    let user = crate::scim::user::to_user(
        &member(&f, &b),
        &scim(&key, "GET", "/scim/v2/Users", None, Value::Null),
    );
    assert_eq!(user["groups"][0]["value"], json!(gid));
}
