//! Middleware: the request id and request metrics around everything, and the access
//! decision (authenticate, authorize by role, rate limit) on every API route. Every
//! decision is logged with the request id, method, path, subject and role; never the
//! credential itself.

use crate::auth::{authenticate, Subject};
use crate::error::{ApiFailure, REQUEST_ID};
use crate::ratelimit::retry_after_secs;
use crate::routes;
use crate::App;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use persys_certs::request_meta::{logged_method, method_label, LoggedPath, UNMATCHED_ROUTE};
use persys_certs::PeerIdentity;
use persys_proto::REQUEST_ID_HEADER;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The matched route pattern, carried on the response for the request metrics.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// A client's request id is kept when it is short printable ASCII; otherwise a new one.
pub fn request_id_of(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Outermost layer: request id (taken or generated, echoed on every answer) and the
/// request counter by route pattern, method and status (all bounded: unknown methods
/// are `OTHER`, unknown paths `unmatched`).
pub async fn request_context(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let id = request_id_of(&req);
    let method = method_label(req.method());
    let span = persys_http::request_span!(id);
    let mut resp = REQUEST_ID
        .scope(
            id.clone(),
            tracing::Instrument::instrument(next.run(req), span),
        )
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    let route = resp
        .extensions()
        .get::<RouteLabel>()
        .map_or(UNMATCHED_ROUTE, |r| r.0.as_str());
    app.metrics
        .requests
        .with_label_values(&[route, method, resp.status().as_str()])
        .inc();
    resp
}

/// Route layer: remembers which route pattern answered (bounded metric labels).
pub async fn label_route(req: Request, next: Next) -> Response {
    let label = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let mut resp = next.run(req).await;
    if let Some(label) = label {
        resp.extensions_mut().insert(RouteLabel(label));
    }
    resp
}

/// Route layer of the API routes: is the source within its failed-authentication
/// limit, who is calling, may they, and are they within their rate limit. Inserts the
/// [`Subject`] for the handler.
pub async fn check(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let request_id = crate::error::current_request_id();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = LoggedPath(uri.path());
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let Some(route) = routes::find(&method, &pattern) else {
        // Only routes from the table carry this layer; a method the table does not
        // know is refused rather than let through unchecked.
        return crate::health::method_not_allowed().await.into_response();
    };
    if let Some(ip) = source {
        if let Err(wait) = app.auth_failures.check(ip, Instant::now()) {
            tracing::warn!(%request_id, method = %logged_method(&method), %path, %ip, decision = "rate_limited", "access denied: too many failed authentications from this address");
            app.metrics
                .auth_decisions
                .with_label_values(&["rate_limited", "none"])
                .inc();
            return ApiFailure::auth_rate_limited(retry_after_secs(wait)).into_response();
        }
    }
    let subject = match authenticate(
        req.headers().get(header::AUTHORIZATION),
        req.extensions().get::<PeerIdentity>(),
        app.tokens.cache(),
    ) {
        Ok(s) => s,
        Err(why) => {
            tracing::warn!(%request_id, %method, %path, ip = ?source, reason = why.reason(), decision = "unauthenticated", "access denied");
            app.metrics
                .auth_decisions
                .with_label_values(&["unauthenticated", "none"])
                .inc();
            app.metrics
                .auth_failures
                .with_label_values(&[why.reason()])
                .inc();
            if let Some(ip) = source {
                app.auth_failures.record_failure(ip, Instant::now());
            }
            let mut resp = ApiFailure::unauthenticated(why.message()).into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"persys\""),
            );
            return resp;
        }
    };
    let role = subject.role.as_str();
    if !subject.role.allows(route.role) {
        tracing::warn!(%request_id, %method, %path, subject = %subject.name, %role, via = subject.via(), required = route.role.as_str(), decision = "forbidden", "access denied");
        app.metrics
            .auth_decisions
            .with_label_values(&["forbidden", role])
            .inc();
        return ApiFailure::forbidden(format!(
            "role {role} may not {method} {pattern}; it requires {}",
            route.role
        ))
        .into_response();
    }
    if let Err(wait) = app.limits.check(&subject.limit_key()) {
        tracing::warn!(%request_id, %method, %path, subject = %subject.name, %role, decision = "rate_limited", "access denied");
        app.metrics
            .auth_decisions
            .with_label_values(&["rate_limited", role])
            .inc();
        return ApiFailure::rate_limited(retry_after_secs(wait)).into_response();
    }
    tracing::info!(%request_id, %method, %path, subject = %subject.name, %role, via = subject.via(), decision = "allowed", "access granted");
    app.metrics
        .auth_decisions
        .with_label_values(&["allowed", role])
        .inc();
    req.extensions_mut().insert::<Subject>(subject);
    next.run(req).await
}
