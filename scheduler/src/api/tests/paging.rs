//! `GET /workloads?limit=&continue=` and `GET /nodes?limit=`: pages from the cache's
//! indexes, complete and without duplicates while records come and go.

use super::*;
use serde_json::json;
use std::collections::{HashMap, HashSet};

async fn create(app: &TestApp, name: &str, labels: Value) -> String {
    let r = api(
        app,
        Method::POST,
        "/workloads",
        Some(json!({"name": name, "image": "busybox:local", "labels": labels})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["id"].as_str().expect("id").to_string()
}

/// Every page of `uri` (which has `?limit=`), following `continue`.
async fn all_pages(app: &TestApp, uri: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            Some(t) => format!("{uri}&continue={t}"),
            None => uri.to_string(),
        };
        let r = api(app, Method::GET, &url, None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        pages += 1;
        for w in r.body["items"].as_array().expect("items") {
            ids.push(w["id"].as_str().expect("id").to_string());
        }
        match r.body.get("continue").and_then(Value::as_str) {
            Some(t) => next = Some(t.to_string()),
            None => return (ids, pages),
        }
    }
}

#[tokio::test]
async fn paging_is_complete_and_without_duplicates_while_workloads_come_and_go() {
    let app = TestApp::start().await;
    let mut stable = Vec::new();
    let mut doomed = Vec::new();
    for i in 0..120 {
        let id = create(&app, &format!("w{i}"), json!({})).await;
        if i % 3 == 0 {
            doomed.push(id);
        } else {
            stable.push(id);
        }
    }
    // Pages of 7 while another client creates and deletes.
    let churn = {
        let ctx = app.ctx.clone();
        let doomed = doomed.clone();
        tokio::spawn(async move {
            let mut created = Vec::new();
            for (i, id) in doomed.iter().enumerate() {
                let r = router(ctx.clone());
                let body = serde_json::to_vec(
                    &json!({"name": format!("new{i}"), "image": "busybox:local"}),
                )
                .expect("json");
                let c = send(
                    r,
                    Method::POST,
                    "/workloads",
                    Some(body),
                    Some("admin"),
                    &[],
                )
                .await;
                created.push(c.body["id"].as_str().unwrap_or_default().to_string());
                let d = send(
                    router(ctx.clone()),
                    Method::DELETE,
                    &format!("/workloads/{id}"),
                    None,
                    Some("admin"),
                    &[],
                )
                .await;
                assert_eq!(d.status, StatusCode::OK, "{:?}", d.body);
                tokio::task::yield_now().await;
            }
            created
        })
    };
    let mut seen_pages = 0;
    let mut listed = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            Some(t) => format!("/workloads?limit=7&continue={t}"),
            None => "/workloads?limit=7".to_string(),
        };
        let r = api(&app, Method::GET, &url, None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let items = r.body["items"].as_array().expect("items");
        assert!(items.len() <= 7);
        listed.extend(
            items
                .iter()
                .map(|w| w["id"].as_str().expect("id").to_string()),
        );
        seen_pages += 1;
        tokio::task::yield_now().await;
        match r.body.get("continue").and_then(Value::as_str) {
            Some(t) => next = Some(t.to_string()),
            None => break,
        }
    }
    let created = churn.await.expect("churn");
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "a workload was listed twice");
    for id in &stable {
        assert!(
            unique.contains(id),
            "{id} existed throughout but was not listed"
        );
    }
    assert!(seen_pages >= 120 / 7, "{seen_pages} pages");
    // Afterwards a full paging equals the unpaged list, in the same order.
    let (paged, _) = all_pages(&app, "/workloads?limit=50").await;
    let bare = api(&app, Method::GET, "/workloads", None).await;
    let bare: Vec<String> = bare
        .body
        .as_array()
        .expect("the unpaged list is a bare array")
        .iter()
        .map(|w| w["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(paged, bare);
    assert_eq!(paged.len(), stable.len() + created.len());
}

#[tokio::test]
async fn filters_page_through_their_index() {
    let app = TestApp::start().await;
    app.add_node("a", 4.0, 4096, &[]).await;
    let mut team = HashMap::new();
    for i in 0..30 {
        let t = if i % 2 == 0 { "web" } else { "db" };
        let id = create(&app, &format!("w{i}"), json!({"team": t})).await;
        team.insert(id, t);
    }
    let (web, pages) = all_pages(&app, "/workloads?limit=4&label=team=web").await;
    assert_eq!(web.len(), 15);
    assert!(pages >= 4);
    assert!(web.iter().all(|id| team[id] == "web"));
    let (on_a, _) = all_pages(&app, "/workloads?limit=8&node=a").await;
    assert_eq!(on_a.len(), 30, "every workload fits on node a");
    let (none, pages) = all_pages(&app, "/workloads?limit=8&node=b").await;
    assert_eq!((none.len(), pages), (0, 1));
}

#[tokio::test]
async fn bad_paging_parameters_are_400_naming_the_field() {
    let app = TestApp::start().await;
    for (uri, field) in [
        ("/workloads?limit=0", "limit"),
        ("/workloads?limit=x", "limit"),
        ("/workloads?limit=5&continue=nonsense", "continue"),
        ("/workloads?continue=abc", "continue"),
        ("/nodes?limit=5&continue=zz", "continue"),
    ] {
        let r = api(&app, Method::GET, uri, None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid");
        let msg = r.body["error"].as_str().expect("message");
        assert!(msg.starts_with(&format!("{field}:")), "{uri}: {msg}");
    }
}

#[tokio::test]
async fn nodes_page_by_id_and_the_unpaged_answer_keeps_its_shape() {
    let app = TestApp::start().await;
    for i in 0..5 {
        app.add_node(&format!("n{i}"), 1.0, 1024, &[]).await;
    }
    let r = api(&app, Method::GET, "/nodes?limit=2", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let ids: Vec<&str> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["nodeId"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["n0", "n1"]);
    let t = r.body["continue"].as_str().expect("more");
    let r = api(
        &app,
        Method::GET,
        &format!("/nodes?limit=3&continue={t}"),
        None,
    )
    .await;
    let ids: Vec<&str> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["nodeId"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["n2", "n3", "n4"]);
    assert!(r.body.get("continue").is_none(), "{:?}", r.body);
    let r = api(&app, Method::GET, "/nodes", None).await;
    assert_eq!(r.body["nodes"].as_array().map(Vec::len), Some(5));
}
