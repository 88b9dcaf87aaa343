//! Routes agents call on the mTLS port: heartbeat and status pushes. The node's
//! identity is its certificate's common name, never the body.

use super::error::AppError;
use super::extract::{CallingNode, JsonBody};
use super::AppState;
use crate::{control, liveness};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use futures::StreamExt;
use persys_proto::autoscale::UsageReport;
use persys_proto::{HeartbeatResponse, NodeHeartbeat, StatusReport};

/// `POST /nodes/heartbeat`: in memory only (an Inactive node becomes Active: one write).
/// An unknown node is told to register again.
pub async fn heartbeat(
    State(ctx): State<AppState>,
    CallingNode(cn): CallingNode,
    JsonBody(hb): JsonBody<NodeHeartbeat>,
) -> Result<Json<HeartbeatResponse>, AppError> {
    let known = liveness::heartbeat(&ctx, &cn, &hb).await?;
    if !known {
        tracing::debug!(node = %cn, "heartbeat from an unregistered identity");
    }
    Ok(Json(HeartbeatResponse { reregister: !known }))
}

/// Longest heartbeat line a stream may send.
const MAX_BEAT_LINE: usize = 4096;

/// `POST /nodes/heartbeat/stream`: one long-lived request per agent whose body is a
/// stream of heartbeats, one JSON object per line, each handled as
/// [`heartbeat`]. When the stream breaks (cut off before its end: the agent died and
/// its connection was reset) the node is suspected at once and becomes Inactive unless
/// a heartbeat (on any channel) arrives within `--suspect-confirm-ms`. Served by the
/// leader only (liveness is the leader's memory); a follower answers 503.
pub async fn heartbeat_stream(
    State(ctx): State<AppState>,
    CallingNode(cn): CallingNode,
    body: Body,
) -> Result<StatusCode, AppError> {
    if ctx.cache().node_status(&cn).is_none() {
        return Err(AppError::not_found(format!("node {cn} is not registered")));
    }
    let mut frames = body.into_data_stream();
    let mut line: Vec<u8> = Vec::new();
    tracing::debug!(node = %cn, "heartbeat stream opened");
    loop {
        let frame = tokio::select! {
            // Our own shutdown ends the stream; that says nothing about the node.
            _ = ctx.shutdown().cancelled() => return Ok(StatusCode::NO_CONTENT),
            f = frames.next() => f,
        };
        let bytes = match frame {
            Some(Ok(bytes)) => bytes,
            // The agent ended its stream on purpose (it opens a new one from time to
            // time, or it is shutting down): nothing to suspect.
            None => {
                tracing::debug!(node = %cn, "heartbeat stream ended by the agent");
                return Ok(StatusCode::NO_CONTENT);
            }
            // Cut off mid-stream: the agent's connection broke (its process died).
            Some(Err(_)) => {
                let confirm = ctx.config().suspect_confirm();
                ctx.liveness()
                    .suspect(&cn, tokio::time::Instant::now(), confirm);
                tracing::info!(node = %cn, confirm_ms = confirm.as_millis() as u64, "heartbeat stream broke; node suspected");
                return Ok(StatusCode::NO_CONTENT);
            }
        };
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            line.extend_from_slice(chunk);
            if line.len() > MAX_BEAT_LINE {
                return Err(AppError::too_large(format!(
                    "a heartbeat line is over {MAX_BEAT_LINE} bytes"
                )));
            }
            if !line.ends_with(b"\n") {
                continue;
            }
            let text = std::mem::take(&mut line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let hb: NodeHeartbeat = serde_json::from_slice(&text).map_err(|e| {
                AppError::invalid_field("heartbeat", format!("not a heartbeat: {e}"))
            })?;
            if !liveness::heartbeat(&ctx, &cn, &hb).await? {
                return Err(AppError::not_found(format!("node {cn} is not registered")));
            }
        }
    }
}

/// Most samples one usage report may carry.
pub const MAX_USAGE_SAMPLES: usize = 2000;

/// `POST /nodes/usage`: what the calling node's containers use, for the autoscaler
/// (leader memory; followers forward it). A node speaks for itself only: samples of
/// workloads not placed on it are dropped.
pub async fn usage(
    State(ctx): State<AppState>,
    CallingNode(cn): CallingNode,
    JsonBody(report): JsonBody<UsageReport>,
) -> Result<StatusCode, AppError> {
    if report.samples.len() > MAX_USAGE_SAMPLES {
        return Err(AppError::invalid_field(
            "samples",
            format!("at most {MAX_USAGE_SAMPLES} per report"),
        ));
    }
    let total = report.samples.len();
    let own: Vec<_> = report
        .samples
        .into_iter()
        .filter(|s| {
            ctx.cache()
                .workload_shared(&s.workload_id)
                .is_some_and(|w| w.value.node_id.as_deref() == Some(cn.as_str()))
        })
        .collect();
    if own.len() < total {
        tracing::debug!(node = %cn, dropped = total - own.len(), "usage samples of workloads not on the node dropped");
    }
    ctx.usage().record(&cn, own, std::time::Instant::now());
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /nodes/{id}/status`: container states pushed by the node's agent.
pub async fn status(
    State(ctx): State<AppState>,
    CallingNode(cn): CallingNode,
    Path(id): Path<String>,
    JsonBody(report): JsonBody<StatusReport>,
) -> Result<StatusCode, AppError> {
    if cn != id {
        return Err(AppError::forbidden(format!(
            "certificate {cn:?} may not report for node {id:?}"
        )));
    }
    if ctx.cache().node(&id).is_none() {
        return Err(AppError::not_found(format!("node {id} is not registered")));
    }
    control::apply_report(&ctx, &id, &report).await?;
    Ok(StatusCode::NO_CONTENT)
}
