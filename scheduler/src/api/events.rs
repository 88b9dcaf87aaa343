//! `GET /events`: server-sent events of workload and node changes, from the cache's
//! change feed (itself fed by the etcd watch).

use super::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use persys_proto::{ClusterEvent, Public};
use std::convert::Infallible;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

fn kind(ev: &ClusterEvent) -> &'static str {
    match ev {
        ClusterEvent::Workload { .. } => "workload",
        ClusterEvent::WorkloadDeleted { .. } => "workloadDeleted",
        ClusterEvent::Node { .. } => "node",
    }
}

/// The event stream; ends at shutdown. A subscriber too slow to keep up gets a
/// `lagged` event telling it to re-read the lists.
pub async fn events(
    State(ctx): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(ctx.cache().subscribe())
        .map(|item| {
            Ok(match item {
                // Redacted: no secret value leaves the scheduler in an event.
                Ok(ev) => Event::default()
                    .event(kind(&ev))
                    .json_data(Public::new(ev))
                    .unwrap_or_else(|_| Event::default().event("error")),
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    Event::default().event("lagged").data(n.to_string())
                }
            })
        })
        .take_until(ctx.shutdown().clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}
