//! The client towards the leader: one request at a time, buffered, over mTLS with this
//! replica's certificate (the scheduler identity; only a scheduler's is accepted on
//! the other end), keeping the request id and carrying
//! the caller's identity, the write id and the deadline in headers that the leader
//! trusts only from a `persys-scheduler` certificate. The answer is streamed back.

use crate::context::Ctx;
use crate::error::{current_request_id, AppError};
use persys_proto::REQUEST_ID_HEADER;
use std::sync::Arc;

type AppState = Arc<Ctx>;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use persys_proto::codes;
use std::time::Duration;
use tokio::time::Instant;

use super::{
    DEADLINE_HEADER, FORWARDED_BY_HEADER, PEER_HEADER, RETRY_HEADER, SOURCE_HEADER, WRITE_ID_HEADER,
};

/// Dial timeout towards the leader: a dead leader is noticed quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time past the deadline for the leader's answer to arrive.
const ANSWER_SLACK: Duration = Duration::from_secs(2);

/// Why the forwarding client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("leader client setup: {0}")]
pub struct ForwardSetupError(String);

/// HTTP client towards the leader, presenting the scheduler's certificate.
#[derive(Debug, Clone)]
pub struct Forwarder {
    /// Replaced when the scheduler's certificate is renewed ([`Forwarder::rotate`]).
    http: std::sync::Arc<std::sync::RwLock<reqwest::Client>>,
}

impl Forwarder {
    /// A client trusting only `ca_pem` and presenting `(cert_pem, key_pem)`.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, ForwardSetupError> {
        Ok(Self {
            http: std::sync::Arc::new(std::sync::RwLock::new(Self::build(
                ca_pem, cert_pem, key_pem,
            )?)),
        })
    }

    /// Present `(cert_pem, key_pem)` from now on (a renewed certificate).
    pub fn rotate(
        &self,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(), ForwardSetupError> {
        let next = Self::build(ca_pem, cert_pem, key_pem)?;
        *self.http.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    pub(super) fn client(&self) -> reqwest::Client {
        self.http.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn build(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<reqwest::Client, ForwardSetupError> {
        let mut tls = persys_certs::client_config(
            ca_pem,
            Some((cert_pem, key_pem)),
            persys_certs::Expected::role(persys_certs::Role::Scheduler),
        )
        .map_err(|e| ForwardSetupError(e.to_string()))?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ForwardSetupError(e.to_string()))
    }
}

/// 503 `unavailable` with `Retry-After: 1`.
pub fn unavailable(message: impl Into<String>) -> Response {
    let mut resp =
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, message).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// 503 for a request that was not applied and may go to the leader again
/// ([`RETRY_HEADER`]).
pub fn retry_on_leader(message: impl Into<String>) -> Response {
    let mut resp = unavailable(message);
    resp.headers_mut().insert(
        HeaderName::from_static(RETRY_HEADER),
        HeaderValue::from_static("1"),
    );
    resp
}

/// What one request carries to the leader besides its own headers and body.
pub struct Hop<'a> {
    /// The caller's identity, as [`super::peer_header`] writes it.
    pub identity: Option<&'a str>,
    /// The caller's address.
    pub source: Option<&'a str>,
    /// The request's write id.
    pub write_id: &'a str,
    /// When the caller stops waiting.
    pub deadline: Instant,
}

/// Send one buffered request to `url` on the leader and stream its answer back.
/// Whether a failed exchange may be sent again is in the answer ([`RETRY_HEADER`]):
/// yes when the request never left (connection refused, no leader), or when repeating
/// it is harmless (`repeatable`).
pub async fn send(
    ctx: &AppState,
    leader: &persys_proto::LeaderRecord,
    url: String,
    parts: &axum::http::request::Parts,
    body: Bytes,
    hop: &Hop<'_>,
    repeatable: bool,
) -> Response {
    let Some(forwarder) = ctx.leadership().forwarder.as_ref() else {
        return unavailable("this scheduler cannot reach the leader");
    };
    let mut headers = copy_headers(&parts.headers);
    let me = &ctx.leadership().me().id;
    let left = hop.deadline.saturating_duration_since(Instant::now());
    let left_ms = left.as_millis().to_string();
    for (name, value) in [
        (REQUEST_ID_HEADER, Some(current_request_id())),
        (PEER_HEADER, hop.identity.map(String::from)),
        (SOURCE_HEADER, hop.source.map(String::from)),
        (FORWARDED_BY_HEADER, Some(me.clone())),
        (WRITE_ID_HEADER, Some(hop.write_id.to_string())),
        (DEADLINE_HEADER, Some(left_ms)),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    tracing::debug!(method = %parts.method, %url, leader = %leader.id, "forwarding to the leader");
    let sent = forwarder
        .client()
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        // The leader answers by the deadline; the slack carries its answer back.
        .timeout(left + ANSWER_SLACK)
        .send()
        .await;
    match sent {
        Ok(resp) => stream_back(resp),
        Err(e) => {
            let message = format!(
                "the leader {} at {} cannot be reached ({}); try again",
                leader.id,
                leader.url,
                error_chain(&e)
            );
            if e.is_connect() || repeatable {
                retry_on_leader(message)
            } else {
                unavailable(message)
            }
        }
    }
}

/// Read a whole request body of at most `limit` bytes, or the answer refusing it.
pub async fn buffer(body: Body, limit: usize) -> Result<Bytes, Response> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) if too_large(&e) => Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::TOO_LARGE,
            "request body is larger than the limit",
        )
        .into_response()),
        Err(e) => Err(AppError::bad_json(format!("cannot read request body: {e}")).into_response()),
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

/// The headers worth sending on: not the hop-by-hop ones (persys-http's rules), not
/// `Host` (the next hop has its own) nor the length (the client sets it).
fn copy_headers(from: &HeaderMap) -> HeaderMap {
    let listed = persys_http::headers::connection_listed(from);
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if !persys_http::headers::is_hop_by_hop(name, &listed)
            && name != header::HOST
            && name != header::CONTENT_LENGTH
        {
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
