//! Unauthenticated operational routes: `/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`, and the JSON fallbacks for unknown routes and methods.

use crate::error::ApiFailure;
use crate::App;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use persys_proto::codes;
use std::sync::Arc;

/// `GET /healthz`: the process serves.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: 200 only when a scheduler answers (probed now if none did lately)
/// and the token cache has been loaded from etcd.
pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiFailure> {
    if !app.upstreams.any_healthy() {
        app.upstreams.probe_all().await;
    }
    let schedulers: Vec<serde_json::Value> = app
        .upstreams
        .health()
        .into_iter()
        .map(|(url, healthy)| serde_json::json!({"url": url, "healthy": healthy}))
        .collect();
    let tokens_synced = app.tokens.cache().is_synced();
    if app.upstreams.any_healthy() && tokens_synced {
        return Ok(Json(serde_json::json!({
            "status": "ready",
            "schedulers": schedulers,
            "tokensSynced": tokens_synced,
        })));
    }
    let why = if tokens_synced {
        "no scheduler answers"
    } else if app.upstreams.any_healthy() {
        "the token cache is not loaded from etcd yet"
    } else {
        "no scheduler answers and the token cache is not loaded from etcd yet"
    };
    Err(ApiFailure::unavailable(format!("not ready: {why}"))
        .with("schedulers", schedulers.into())
        .with("tokensSynced", tokens_synced.into()))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
}

/// `GET /openapi.json`.
pub async fn openapi(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(app.openapi.clone())
}

/// Unknown route.
pub async fn not_found() -> ApiFailure {
    ApiFailure::not_found("no such route")
}

/// Known route, other method.
pub async fn method_not_allowed() -> ApiFailure {
    ApiFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}
