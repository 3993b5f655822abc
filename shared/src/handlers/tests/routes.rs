//! The fallback, and SCIM lists stepped by startIndex, on the in-memory store.

use super::*;

#[tokio::test]
async fn the_fallback_answers_405_with_allow_on_a_known_path_and_404_elsewhere() {
    let answer = |req: crate::http::ApiRequest| async move {
        crate::handlers::fallback(Arc::new(()), req)
            .await
            .unwrap_or_else(|e| panic!("the fallback renders its own refusal: {e:?}"))
    };
    let mut req = event(GET_EVENT);
    req.method = "PUT".into();
    req.headers.remove("authorization");
    let response = answer(req.clone()).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("Allow"), Some("GET, PATCH, DELETE"));
    assert_eq!(body_of(&response)["code"], "method_not_allowed");

    req.path = "/v1/members/mem_1/avatar".into();
    let response = answer(req.clone()).await;
    assert_eq!((response.status, response.header("Allow")), (404, None));
    assert_eq!(body_of(&response)["code"], "not_found");

    // On SCIM's paths, a SCIM error document.
    req.path = "/scim/v2/Bulk".into();
    let response = answer(req).await;
    assert_eq!(
        (response.status, response.content_type),
        (404, crate::scim::CONTENT_TYPE)
    );
    assert_eq!(body_of(&response)["status"], "404");
}

/// Okta imports by stepping `startIndex` up to `totalResults`: each page leaves a bookmark
/// where it ends, so every user is reached however far that is, while a jump further than
/// the skip limit from any bookmark is refused.
#[tokio::test]
async fn a_scim_list_stepped_by_start_index_reaches_every_user_past_the_skip_limit() {
    let f = fixture();
    let now = Timestamp::now();
    {
        let mut s = f.store.state.lock().unwrap_or_else(|e| e.into_inner());
        let org = blank_org(&f.org);
        for n in 0..45 {
            let body =
                json!({"firstName": "U", "email": format!("u{n}@example.com"), "role": "simple"});
            let patch = crate::input::parse_member_patch(&body).unwrap_or_else(|e| panic!("{e:?}"));
            let m = crate::rules::new_member(patch, &org, now)
                .unwrap_or_else(|e| panic!("{e:?}"))
                .member;
            s.members.insert((f.org.clone(), m.id.clone()), m);
        }
    }
    let store = f.store.as_ref();
    let query = || {
        let mut q = ListQuery::new(crate::scim::discovery::MAX_RESULTS);
        (q.status, q.scim_only) = (StatusFilter::All, true);
        q
    };
    let key = ApiKeyId::generate();
    let page = |start: usize| {
        let from = crate::handlers::scim_list::Bookmarks {
            key: &key,
            max_skip: 10,
        };
        crate::handlers::scim_list::page(store, &f.org, query(), start, 10, from)
    };
    let refused = page(22).await.err().map(|e| e.code());
    assert_eq!(refused, Some("invalidValue"), "21 users past the start");
    let mut seen: Vec<String> = Vec::new();
    let mut start = 1;
    loop {
        let users = page(start)
            .await
            .unwrap_or_else(|e| panic!("page at {start}: {e:?}"));
        if users.is_empty() {
            break;
        }
        seen.extend(users.iter().map(|m| m.id.to_string()));
        start += 10;
    }
    assert_eq!(seen.len(), 46, "every user once: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "in order, none twice");
    // Now a page can start from the bookmarks the others left.
    let at_35 = page(35).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        at_35.first().map(|m| m.id.to_string()),
        Some(seen[34].clone())
    );
}
