//! `GET /api/v1/health` and `GET /metrics`.

use super::AppState;
use crate::runtime::ContainerRuntime;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use persys_proto::AgentHealth;

/// `GET /api/v1/health`: 200 `ok` when the engine answers, else 503 with its error.
pub async fn health<R: ContainerRuntime>(
    State(state): State<AppState<R>>,
) -> (StatusCode, Json<AgentHealth>) {
    let node_id = state.supervisor.node_id().to_string();
    match state.supervisor.runtime().version().await {
        Ok(version) => (
            StatusCode::OK,
            Json(AgentHealth {
                status: "ok".into(),
                node_id,
                docker_api_version: version,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(AgentHealth {
                status: format!("docker unavailable: {e}"),
                node_id,
                docker_api_version: String::new(),
            }),
        ),
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::global().render(),
    )
}
