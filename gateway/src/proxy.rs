//! Forwarding a public API request to the scheduler over mTLS: headers filtered,
//! bodies streamed both ways (log follow and server-sent events pass chunk by chunk),
//! failover between schedulers, timeouts for non-streaming answers.

use crate::body::ReplayBody;
use crate::error::{current_request_id, ApiFailure};
use crate::routes::{Handling, Route};
use crate::upstream::UpstreamError;
use crate::App;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use persys_proto::REQUEST_ID_HEADER;

use persys_http::headers::{connection_listed, is_hop_by_hop};

/// The headers sent to the scheduler: the client's, less hop-by-hop headers, `Host`
/// and the client's credential (the scheduler trusts the gateway's certificate; the
/// token must never travel further), plus the request id and `X-Forwarded-*`.
pub fn upstream_headers(
    client: &HeaderMap,
    request_id: &str,
    remote: Option<SocketAddr>,
) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::with_capacity(client.len() + 3);
    for (name, value) in client {
        if is_hop_by_hop(name, &listed)
            || name == header::HOST
            || name == header::AUTHORIZATION
            || name == header::COOKIE
            || name.as_str() == REQUEST_ID_HEADER
            || name.as_str().starts_with("x-forwarded-")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        out.insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    if let Some(addr) = remote {
        if let Ok(v) = HeaderValue::from_str(&addr.ip().to_string()) {
            out.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
    }
    out.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    out
}

/// The headers sent back to the client: the scheduler's, less hop-by-hop headers.
pub fn downstream_headers(upstream: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        if !is_hop_by_hop(name, &listed) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Forwards one request of `route` to the scheduler and streams the answer back.
pub async fn forward(app: Arc<App>, route: &'static Route, req: Request) -> Response {
    let request_id = current_request_id();
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let headers = upstream_headers(&parts.headers, &request_id, remote);
    let body = ReplayBody::new(body);
    let started = Instant::now();
    let wait_until = tokio::time::Instant::now() + app.upstream_wait;
    let mut pauses = upstream_pauses();
    let result = loop {
        let result = app
            .upstreams
            .send(&parts.method, &path, Some(app.request_timeout), |builder| {
                let builder = builder.headers(headers.clone());
                if body.is_present() {
                    body.attempt().map(|b| builder.body(b))
                } else {
                    Some(builder)
                }
            })
            .await;
        // No scheduler took the connection, so nothing was sent: wait for one (a
        // restart, a failover) rather than answering 503 at once.
        let pause = pauses.next().unwrap_or(MAX_PAUSE);
        match result {
            Err(UpstreamError::Unreachable { .. })
                if !body.hit_limit()
                    && tokio::time::Instant::now() + pause < wait_until
                    && !app.shutdown.is_cancelled() =>
            {
                tokio::time::sleep(pause).await;
            }
            other => break other,
        }
    };
    app.metrics
        .upstream_latency
        .with_label_values(&[route.path])
        .observe(started.elapsed().as_secs_f64());
    let upstream = match result {
        Ok(resp) => resp,
        Err(_) if body.hit_limit() => {
            return ApiFailure::too_large(crate::body::limit_of(route.path, app.max_body_bytes))
                .into_response()
        }
        Err(e) => return failure(&e).into_response(),
    };
    let status = upstream.status();
    let headers = downstream_headers(upstream.headers());
    let stream = upstream.bytes_stream();
    let body = match route.handling {
        // Followed logs and events have no end of their own: end them at shutdown so
        // that draining does not wait for them.
        Handling::Stream => Body::from_stream(
            persys_http::stream::end_at_error(stream, "stream from the scheduler")
                .take_until(app.shutdown.clone().cancelled_owned()),
        ),
        Handling::Forward | Handling::Local => Body::from_stream(with_deadline(
            stream,
            tokio::time::Instant::now() + app.request_timeout,
        )),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// First and largest pause while waiting for a scheduler to be reachable.
const MIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(1000);

fn upstream_pauses() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(MIN_PAUSE)
        .with_max_delay(MAX_PAUSE)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The answer to a failed upstream call.
pub fn failure(e: &UpstreamError) -> ApiFailure {
    match e {
        UpstreamError::Unreachable { .. } => ApiFailure::unavailable(e.to_string()),
        UpstreamError::Timeout(_) => ApiFailure::timeout(e.to_string()),
        UpstreamError::Failed(_) => ApiFailure::bad_gateway(e.to_string()),
    }
}

/// Ends a body with an error (not a silent, plausible-looking truncation) when it is
/// not complete by `deadline`.
fn with_deadline<S>(
    stream: S,
    deadline: tokio::time::Instant,
) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send
where
    S: Stream<Item = reqwest::Result<bytes::Bytes>> + Send + Unpin + 'static,
{
    futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(None) => None,
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "scheduler answer did not complete in time",
                )),
                None,
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_never_reach_the_scheduler() {
        let client = hm(&[
            ("authorization", "Bearer persys_secret"),
            ("cookie", "a=b"),
            ("host", "gw:8551"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("x-request-id", "client-supplied"),
            ("x-forwarded-for", "6.6.6.6"),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
        ]);
        let out = upstream_headers(
            &client,
            "rid-7",
            Some("10.1.2.3:5555".parse().expect("addr")),
        );
        for gone in [
            "authorization",
            "cookie",
            "host",
            "connection",
            "x-private",
            "transfer-encoding",
        ] {
            assert!(!out.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(out["x-request-id"], "rid-7");
        assert_eq!(out["x-forwarded-for"], "10.1.2.3");
        assert_eq!(out["content-type"], "application/json");
        assert_eq!(out["accept"], "text/event-stream");
    }

    #[test]
    fn downstream_keeps_content_headers_and_drops_hop_by_hop() {
        let up = hm(&[
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
        ]);
        let out = downstream_headers(&up);
        assert_eq!(out["content-type"], "text/event-stream");
        assert_eq!(out["cache-control"], "no-cache");
        assert!(!out.contains_key("connection"));
        assert!(!out.contains_key("transfer-encoding"));
    }
}
