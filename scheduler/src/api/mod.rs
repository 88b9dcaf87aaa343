//! HTTP API: the mTLS scheduler API (users and agents) and the bootstrap port.

pub mod agent;
/// The role table (a leaf module: the forwarding layer checks it too).
pub use crate::authz;
/// Errors as JSON answers (a leaf module shared with the forwarding layer).
pub use crate::error;
pub mod bootstrap;
pub mod cluster;
pub mod events;
pub mod extract;
pub mod logs;
pub mod nodes;
pub mod paging;
pub mod placement;
pub mod policy;
pub mod services;
pub mod snapshot;
pub mod workloads;

use crate::context::Ctx;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use error::{AppError, REQUEST_ID};
use std::sync::Arc;

/// Header carrying the request id (taken from the client or generated, always echoed).
pub use persys_proto::REQUEST_ID_HEADER;

/// Shared handler state.
pub type AppState = Arc<Ctx>;

/// The scheduler API (8085). Every route expects the TLS layer to have verified a
/// client certificate of the cluster CA; node routes further check the node's own CN.
pub fn router(ctx: AppState) -> Router {
    let limit = ctx.config().max_body_bytes;
    Router::new()
        .route("/workloads", post(workloads::create).get(workloads::list))
        .route("/workloads/schedule", post(workloads::schedule))
        .route(
            "/workloads/{id}",
            get(workloads::get_one).delete(workloads::delete),
        )
        .route("/workloads/{id}/stop", post(workloads::stop))
        .route("/workloads/{id}/start", post(workloads::start))
        .route("/workloads/{id}/redeploy", post(workloads::redeploy))
        .route("/workloads/{id}/logs", get(logs::logs))
        .route("/workloads/{id}/placement", get(placement::explain))
        .route("/services", post(services::create).get(services::list))
        .route(
            "/services/{name}",
            get(services::get_one)
                .put(services::apply)
                .delete(services::delete),
        )
        .route("/services/{name}/scale", post(services::scale))
        .route("/services/{name}/undo", post(services::undo))
        .route("/nodes", get(nodes::list))
        .route("/nodes/heartbeat", post(agent::heartbeat))
        .route("/nodes/heartbeat/stream", post(agent::heartbeat_stream))
        .route("/nodes/usage", post(agent::usage))
        .route("/nodes/{id}", get(nodes::get_one).delete(nodes::remove))
        .route("/nodes/{id}/cordon", post(nodes::cordon))
        .route("/nodes/{id}/uncordon", post(nodes::uncordon))
        .route("/nodes/{id}/drain", post(nodes::drain))
        .route("/nodes/{id}/status", post(agent::status))
        .route("/cluster/metrics", get(cluster::metrics))
        .route("/cluster/leader", get(cluster::leader))
        .route("/cluster/policy", get(policy::get).merge(put(policy::set)))
        .route("/cluster/snapshot", get(snapshot::save))
        .route(
            "/cluster/restore",
            post(snapshot::restore).layer(DefaultBodyLimit::max(
                persys_proto::snapshot::MAX_RESTORE_PART_BYTES,
            )),
        )
        .route("/events", get(events::events))
        .route("/healthz", get(bootstrap::healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Inside `request_context`, so forwarded requests keep the request id.
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            crate::forward::api,
        ))
        .layer(middleware::from_fn_with_state(ctx.clone(), request_context))
        .with_state(ctx)
}

/// The bootstrap port (8084): TLS with a server certificate only.
pub fn bootstrap_router(ctx: AppState) -> Router {
    let limit = ctx.config().max_body_bytes;
    Router::new()
        .route("/nodes/register", post(bootstrap::register))
        .route("/healthz", get(bootstrap::healthz))
        .route("/readyz", get(bootstrap::readyz))
        .route("/metrics", get(bootstrap::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            crate::forward::bootstrap,
        ))
        .layer(middleware::from_fn_with_state(ctx.clone(), request_context))
        .with_state(ctx)
}

async fn not_found() -> AppError {
    AppError::not_found("no such route")
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        persys_proto::codes::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// A client's request id is kept when it is short printable ASCII; otherwise a new one.
fn request_id_of(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Request id (taken or generated, echoed), a log line for the request (its path cut
/// to a bounded length), and counters by route template (bounded labels).
async fn request_context(State(ctx): State<AppState>, req: Request, next: Next) -> Response {
    use persys_certs::request_meta::{logged_method, method_label, route_label, LoggedPath};
    let id = request_id_of(&req);
    let method = req.method().clone();
    let uri = req.uri().clone();
    let route = route_label(req.extensions().get::<MatchedPath>()).to_string();
    let started = std::time::Instant::now();
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
    let status = resp.status();
    ctx.metrics()
        .http_requests
        .with_label_values(&[route.as_str(), method_label(&method), status.as_str()])
        .inc();
    tracing::debug!(request_id = %id, method = %logged_method(&method), path = %LoggedPath(uri.path()), %route, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    resp
}

#[cfg(test)]
mod tests;
