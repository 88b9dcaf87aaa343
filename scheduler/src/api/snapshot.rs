//! `GET /cluster/snapshot` (the cluster's state, sealed: see [`crate::snapshot`]) and
//! `POST /cluster/restore` (one part of a snapshot into an empty cluster). Through the
//! gateway both are the admin's.

use super::AppState;
use crate::error::AppError;
use crate::snapshot::SnapshotError;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use persys_proto::snapshot::{RestoreSummary, MEDIA_TYPE};
use std::collections::HashMap;

impl From<SnapshotError> for AppError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Store(e) => e.into(),
            SnapshotError::NotEmpty(_) => AppError::conflict(e.to_string()),
            other => AppError::invalid_field("snapshot", other),
        }
    }
}

/// `GET /cluster/snapshot`: streamed as it is read (one etcd revision throughout). A
/// read that fails midway ends the body early, without its end line, so the file is
/// refused on restore rather than restored in part.
pub async fn save(State(ctx): State<AppState>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let store = ctx.store().clone();
    let shutdown = ctx.shutdown().clone();
    let task_ctx = ctx.clone();
    // Owned by the answer: it ends when the body is dropped (its sends fail) or at
    // shutdown.
    tokio::spawn(async move {
        let key = task_ctx.trust().snapshot_key();
        tokio::select! {
            () = shutdown.cancelled() => {}
            r = crate::snapshot::write(&store, key, tx) => match r {
                Ok(entries) => tracing::info!(entries, "snapshot sent"),
                Err(e) => tracing::warn!(error = %e, "snapshot cut short"),
            }
        }
    });
    let body = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    (
        [
            (header::CONTENT_TYPE, MEDIA_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// A `true`/`false` query parameter (absent: false).
fn flag(q: &HashMap<String, String>, name: &str) -> Result<bool, AppError> {
    match q.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(AppError::invalid_field(
            name,
            format!("{other:?} is not true or false"),
        )),
    }
}

/// `POST /cluster/restore?first=true|last=true`: the body is the header line and
/// sealed lines of one part; `first` checks the cluster is empty, `last` makes the
/// restore take effect.
pub async fn restore(
    State(ctx): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<RestoreSummary>, AppError> {
    let (first, last) = (flag(&q, "first")?, flag(&q, "last")?);
    let summary = crate::snapshot::restore_part(&ctx, &body, first, last).await?;
    tracing::info!(
        restored = summary.restored,
        skipped = summary.skipped,
        end = ?summary.end_entries,
        "snapshot part restored"
    );
    Ok(Json(summary))
}
