//! `/docker/*`: the container operations the scheduler drives.

use super::error::AppError;
use super::AppState;
use crate::runtime::{ContainerRuntime, LogOptions};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use persys_proto::{ContainerState, LogsQuery, RunRequest};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Longest stop timeout a request may ask for.
const MAX_STOP_TIMEOUT_SECS: u64 = 300;

fn observe(operation: &str, started: Instant) {
    crate::metrics::global()
        .operations
        .with_label_values(&[operation])
        .observe(started.elapsed().as_secs_f64());
}

/// `POST /docker/run`: `RunRequest` → `ContainerState`. The body is read up to
/// `persys_proto::limits::MAX_DISPATCH_BYTES`, which every workload the scheduler
/// accepts fits (not the router's general limit).
pub async fn run<R: ContainerRuntime>(
    State(state): State<AppState<R>>,
    body: Body,
) -> Result<Json<ContainerState>, AppError> {
    let req = read_run_request(body).await?;
    let started = Instant::now();
    let result = state.supervisor.run(&req).await;
    observe("run", started);
    match &result {
        Ok(s) => {
            tracing::info!(workload = %req.workload_id, generation = req.generation, status = %s.status, elapsed_ms = started.elapsed().as_millis() as u64, "run");
            // The scheduler applies this answer itself; no push of the same state.
            state.supervisor.answered(s);
        }
        Err(e) => {
            tracing::warn!(workload = %req.workload_id, generation = req.generation, error = %e, "run refused")
        }
    }
    Ok(Json(result?))
}

async fn read_run_request(body: Body) -> Result<RunRequest, AppError> {
    let limit = persys_proto::limits::MAX_DISPATCH_BYTES;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| AppError {
            status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            code: persys_proto::codes::TOO_LARGE,
            message: format!(
                "run request over {limit} bytes (MAX_DISPATCH_BYTES) or unreadable: {e}"
            ),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| AppError {
        status: axum::http::StatusCode::BAD_REQUEST,
        code: persys_proto::codes::BAD_JSON,
        message: format!("run request is not valid JSON: {e}"),
    })
}

/// Query of `POST /docker/stop/{id}`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct StopQuery {
    /// Seconds before the container is killed.
    pub timeout: Option<u64>,
}

/// `POST /docker/stop/{id}?timeout=N`.
pub async fn stop<R: ContainerRuntime>(
    State(state): State<AppState<R>>,
    Path(id): Path<String>,
    query: Result<Query<StopQuery>, QueryRejection>,
) -> Result<Json<ContainerState>, AppError> {
    let Query(q) = query?;
    let timeout = q.timeout.map_or(state.stop_timeout, |t| {
        Duration::from_secs(t.min(MAX_STOP_TIMEOUT_SECS))
    });
    let started = Instant::now();
    let result = state.supervisor.stop(&id, timeout).await;
    observe("stop", started);
    let s = result?;
    tracing::info!(container = %id, status = %s.status, "stop");
    Ok(Json(s))
}

/// `POST /docker/remove/{id}`.
pub async fn remove<R: ContainerRuntime>(
    State(state): State<AppState<R>>,
    Path(id): Path<String>,
) -> Result<Json<ContainerState>, AppError> {
    let started = Instant::now();
    let result = state.supervisor.remove(&id).await;
    observe("remove", started);
    let s = result?;
    tracing::info!(container = %id, status = %s.status, "remove");
    Ok(Json(s))
}

/// `GET /docker/list`: every container of this node.
pub async fn list<R: ContainerRuntime>(
    State(state): State<AppState<R>>,
) -> Result<Json<Vec<ContainerState>>, AppError> {
    Ok(Json(state.supervisor.list().await?))
}

/// `GET /docker/logs/{id}?tail=N&follow=true&timestamps=true`: plain text, streamed
/// as the engine produces it (never buffered whole); with `follow` it lasts until the
/// client goes away or the container is removed.
pub async fn logs<R: ContainerRuntime>(
    State(state): State<AppState<R>>,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = query?;
    let options = LogOptions {
        tail: q.tail,
        follow: q.follow,
        timestamps: q.timestamps,
    };
    let stream = state
        .supervisor
        .logs(&id, q.service.as_deref(), options)
        .await?;
    let body = Body::from_stream(persys_http::stream::end_at_error(stream, "container logs"));
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

/// Unknown routes.
pub async fn fallback() -> AppError {
    AppError::not_found("no such route on the agent")
}
