//! The agent API, served over mTLS on `--listen`: only the scheduler's client
//! certificate (CN `persys-scheduler`) is accepted.
//!
//! - `docker`: run, stop, remove, list, logs
//! - `health`: health and metrics
//! - `error`: the JSON error shape

pub mod docker;
pub mod error;
pub mod health;

use crate::runtime::ContainerRuntime;
use crate::supervisor::Supervisor;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use error::AppError;
use persys_certs::request_meta::{logged_method, method_label, route_label, LoggedPath};
use persys_certs::{PeerIdentity, Role};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Largest request body.
const MAX_BODY_BYTES: usize = persys_proto::limits::MAX_DISPATCH_BYTES;

/// What handlers share.
pub struct AppState<R> {
    /// Container operations.
    pub supervisor: Arc<Supervisor<R>>,
    /// Stop timeout when the request names none.
    pub stop_timeout: Duration,
}

impl<R> Clone for AppState<R> {
    fn clone(&self) -> Self {
        Self {
            supervisor: self.supervisor.clone(),
            stop_timeout: self.stop_timeout,
        }
    }
}

/// The agent's router (TLS and peer identity come from the server around it).
pub fn router<R: ContainerRuntime>(state: AppState<R>) -> Router {
    let header = axum::http::HeaderName::from_static(persys_proto::REQUEST_ID_HEADER);
    Router::new()
        .route("/docker/run", post(docker::run::<R>))
        .route("/docker/stop/{id}", post(docker::stop::<R>))
        .route("/docker/remove/{id}", post(docker::remove::<R>))
        .route("/docker/list", get(docker::list::<R>))
        .route("/docker/logs/{id}", get(docker::logs::<R>))
        .route("/api/v1/health", get(health::health::<R>))
        .route("/metrics", get(health::metrics))
        .fallback(docker::fallback)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn(require_scheduler))
        .layer(from_fn(count_requests))
        .layer(from_fn(error::stamp_request_id))
        // The default span carries the whole URI, which the client chooses.
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(header.clone()))
        .layer(SetRequestIdLayer::new(header, MakeRequestUuid))
}

/// Refuse every client but the scheduler (403): a node's certificate, a user's or
/// one without a persys identity is worth nothing here.
async fn require_scheduler(request: Request, next: Next) -> Response {
    match request.extensions().get::<PeerIdentity>() {
        Some(peer) if peer.identity.role == Role::Scheduler => next.run(request).await,
        Some(peer) => {
            tracing::warn!(client = %peer.identity, "refused a client that is not the scheduler");
            AppError::forbidden(format!(
                "client certificate of {} is not allowed; only the scheduler's is",
                peer.identity
            ))
            .into_response()
        }
        None => {
            AppError::forbidden("a client certificate of the scheduler is required").into_response()
        }
    }
}

/// The request's span: its id (set or taken by the layer outside; on every line
/// logged while it is handled), method and path cut to a bounded length.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get(persys_proto::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %logged_method(request.method()),
        path = %LoggedPath(request.uri().path()),
    )
}

async fn count_requests(request: Request, next: Next) -> Response {
    let route = route_label(request.extensions().get::<MatchedPath>()).to_string();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    crate::metrics::global()
        .requests
        .with_label_values(&[route.as_str(), method, status.as_str()])
        .inc();
    tracing::debug!(%route, status = status.as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "request");
    response
}

#[cfg(test)]
mod tests;
