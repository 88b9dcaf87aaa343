//! Writes reach the leader. On a follower, every request that is not a read (any
//! method but GET/HEAD/OPTIONS: workload and node changes, agents' heartbeats and
//! status pushes, registrations) is forwarded to the leader over mTLS with this
//! replica's certificate (CN `persys-scheduler`), keeping the request id and carrying
//! the caller's identity in [`NODE_ID_HEADER`]; the answer is streamed back. The leader
//! trusts that header only from a `persys-scheduler` certificate. With no leader
//! known, the answer is 503 `unavailable` with `Retry-After: 1`.

use crate::api::error::{current_request_id, AppError};
use crate::api::{AppState, REQUEST_ID_HEADER};
use crate::pki::SCHEDULER_CN;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use persys_certs::PeerIdentity;
use persys_proto::codes;
use std::time::Duration;

/// The original caller's certificate CN on a forwarded request.
pub const NODE_ID_HEADER: &str = "x-persys-node-id";
/// Replica id of the follower that forwarded a request (a request is forwarded once).
pub const FORWARDED_BY_HEADER: &str = "x-persys-forwarded-by";
/// Dial timeout towards the leader: a dead leader answers 503 quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A forwarded write must be answered within this.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers that describe one hop's connection, never copied across.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Why the forwarding client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("leader client setup: {0}")]
pub struct ForwardSetupError(String);

/// HTTP client towards the leader, presenting the scheduler's certificate.
#[derive(Debug, Clone)]
pub struct Forwarder {
    http: reqwest::Client,
}

impl Forwarder {
    /// A client trusting only `ca_pem` and presenting `(cert_pem, key_pem)`.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, ForwardSetupError> {
        let mut tls = persys_certs::client_config(ca_pem, Some((cert_pem, key_pem)))
            .map_err(|e| ForwardSetupError(e.to_string()))?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ForwardSetupError(e.to_string()))?;
        Ok(Self { http })
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// 503 `unavailable` with `Retry-After: 1`.
pub fn unavailable(message: impl Into<String>) -> Response {
    let mut resp =
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, message).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Middleware of the mTLS API: the forwarded identity, then local or leader.
pub async fn api(State(ctx): State<AppState>, mut req: Request, next: Next) -> Response {
    let from_replica = req
        .extensions()
        .get::<PeerIdentity>()
        .is_some_and(|p| p.common_name == SCHEDULER_CN);
    // Whoever else sends these headers is not believed, and they go no further.
    let claimed = req.headers_mut().remove(NODE_ID_HEADER);
    let forwarded = req.headers_mut().remove(FORWARDED_BY_HEADER).is_some() && from_replica;
    if from_replica {
        if let Some(cn) = claimed
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
        {
            req.extensions_mut().insert(PeerIdentity {
                common_name: cn.to_string(),
            });
        }
    }
    if is_read(req.method()) || ctx.leadership.is_leader() {
        return next.run(req).await;
    }
    let identity = req
        .extensions()
        .get::<PeerIdentity>()
        .map(|p| p.common_name.clone());
    to_leader(&ctx, req, forwarded, identity, |l| l.url.clone()).await
}

/// Middleware of the bootstrap port: registrations go to the leader's bootstrap port.
pub async fn bootstrap(State(ctx): State<AppState>, mut req: Request, next: Next) -> Response {
    let forwarded = req.headers_mut().remove(FORWARDED_BY_HEADER).is_some();
    if is_read(req.method()) || ctx.leadership.is_leader() {
        return next.run(req).await;
    }
    to_leader(&ctx, req, forwarded, None, |l| l.bootstrap_url.clone()).await
}

async fn to_leader(
    ctx: &AppState,
    req: Request,
    already_forwarded: bool,
    identity: Option<String>,
    base: impl Fn(&persys_proto::LeaderRecord) -> String,
) -> Response {
    if already_forwarded {
        // The sender thought we lead; a second hop could loop between stale views.
        return unavailable("this scheduler replica is no longer the leader; try again");
    }
    let Some(leader) = ctx.leadership.leader() else {
        return unavailable("no scheduler replica is the leader right now; try again");
    };
    let Some(forwarder) = ctx.leadership.forwarder.as_ref() else {
        return unavailable("this scheduler cannot reach the leader");
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, ctx.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) if too_large(&e) => {
            return AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::TOO_LARGE,
                "request body is larger than the limit",
            )
            .into_response()
        }
        Err(e) => {
            return AppError::bad_json(format!("cannot read request body: {e}")).into_response()
        }
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", base(&leader));
    let mut headers = copy_headers(&parts.headers);
    let me = &ctx.leadership.me().id;
    for (name, value) in [
        (REQUEST_ID_HEADER, Some(current_request_id())),
        (NODE_ID_HEADER, identity),
        (FORWARDED_BY_HEADER, Some(me.clone())),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    tracing::debug!(method = %parts.method, %url, leader = %leader.id, "forwarding to the leader");
    let sent = forwarder
        .http
        .request(parts.method, &url)
        .headers(headers)
        .body(body)
        .timeout(FORWARD_TIMEOUT)
        .send()
        .await;
    match sent {
        Ok(resp) => stream_back(resp),
        Err(e) => unavailable(format!(
            "the leader {} at {} cannot be reached ({}); try again",
            leader.id,
            leader.url,
            error_chain(&e)
        )),
    }
}

fn too_large(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn copy_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The leader's answer as ours: status, headers and the body as it arrives.
fn stream_back(resp: reqwest::Response) -> Response {
    let status = resp.status();
    let headers = copy_headers(resp.headers());
    let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// reqwest's Display hides the cause; include the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_served_locally() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(is_read(&m), "{m}");
        }
        for m in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH] {
            assert!(!is_read(&m), "{m}");
        }
    }

    #[test]
    fn hop_by_hop_headers_and_length_are_not_copied() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.insert(header::HOST, HeaderValue::from_static("x"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let out = copy_headers(&h);
        assert_eq!(out.len(), 2);
        assert!(out.contains_key(header::CONTENT_TYPE));
        assert!(out.contains_key(header::AUTHORIZATION));
    }

    #[tokio::test]
    async fn unavailable_asks_to_retry_after_a_second() {
        let resp = unavailable("no leader");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }
}
