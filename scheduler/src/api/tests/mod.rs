//! Handler tests: the real router over a real etcd, driven with `oneshot`.

mod nodes;
mod outage;
mod paging;
mod placement;
mod workloads;

use super::*;
use crate::testutil::TestApp;
use axum::body::Body;
use axum::http::{Method, Request as HttpRequest, StatusCode};
use http_body_util::BodyExt;
use persys_certs::PeerIdentity;
use serde_json::Value;
use tower::ServiceExt;

pub(super) struct Resp {
    pub status: StatusCode,
    pub request_id: Option<String>,
    body: Value,
}

pub(super) async fn send(
    router: Router,
    method: Method,
    uri: &str,
    body: Option<Vec<u8>>,
    cn: Option<&str>,
    extra: &[(&str, &str)],
) -> Resp {
    let mut req = HttpRequest::builder().method(method).uri(uri);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let mut req = req
        .header("content-type", "application/json")
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .expect("request");
    if let Some(cn) = cn {
        req.extensions_mut()
            .insert(PeerIdentity::new(identity_named(cn)));
    }
    let resp = router.oneshot(req).await.expect("infallible");
    let status = resp.status();
    let request_id = resp
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        request_id,
        body,
    }
}

pub(super) async fn api(app: &TestApp, method: Method, uri: &str, body: Option<Value>) -> Resp {
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
    send(
        router(app.ctx.clone()),
        method,
        uri,
        bytes,
        Some("admin"),
        &[],
    )
    .await
}

pub(super) fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.body["code"], code, "{:?}", r.body);
    assert!(r.body["error"].is_string());
    assert_eq!(r.body["requestId"].as_str(), r.request_id.as_deref());
}

/// The identity the tests mean by a name: the admin user, a component, else a node.
pub(crate) fn identity_named(name: &str) -> persys_certs::Identity {
    use persys_certs::identity::{ADMIN_NAME, GATEWAY_NAME, SCHEDULER_NAME};
    use persys_certs::Identity;
    match name {
        ADMIN_NAME => Identity::admin(),
        SCHEDULER_NAME => Identity::scheduler(),
        GATEWAY_NAME => Identity::gateway(),
        other => Identity::node(other),
    }
}
