//! Follows the engine's event stream for this node's containers and pushes each state
//! change to the scheduler at once. If the stream breaks, it reconnects with backoff
//! and asks for a full report, since changes may have been missed meanwhile.

use crate::runtime::{ContainerRuntime, EventAction};
use crate::supervisor::Supervisor;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// First reconnect delay.
const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// Longest reconnect delay (before jitter).
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Reconnect pauses: doubling from [`RECONNECT_MIN`] to [`RECONNECT_MAX`], forever,
/// jittered so that agents sharing one restarted engine (or one restarted host) do not
/// reconnect in lockstep.
fn reconnect_pauses() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(RECONNECT_MIN)
        .with_max_delay(RECONNECT_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Follow events until `shutdown`.
pub async fn follow_events<R: ContainerRuntime>(
    supervisor: Arc<Supervisor<R>>,
    shutdown: CancellationToken,
) {
    let mut pauses = reconnect_pauses();
    let mut connected_before = false;
    loop {
        let mut stream = supervisor.runtime().events(supervisor.node_id());
        if connected_before {
            supervisor.reports().request_full();
        }
        connected_before = true;
        let why = loop {
            let item = tokio::select! {
                _ = shutdown.cancelled() => return,
                item = stream.next() => item,
            };
            match item {
                Some(Ok(event)) => {
                    // A working stream: the next failure starts from the shortest pause.
                    pauses = reconnect_pauses();
                    tracing::debug!(container = %event.container_id, action = ?event.action, "container event");
                    crate::metrics::global()
                        .events
                        .with_label_values(&[event_name(&event.action)])
                        .inc();
                    // Health loops follow the container's runs (before its state is
                    // taken, so a start is reported as `starting`).
                    match event.action {
                        EventAction::Start | EventAction::Restart => {
                            supervisor.watch_health(&event.container_id, &event.labels)
                        }
                        EventAction::Die | EventAction::Stop | EventAction::Oom => {
                            supervisor.unwatch_health(&event.container_id, false)
                        }
                        EventAction::Destroy => {
                            supervisor.unwatch_health(&event.container_id, true)
                        }
                    }
                    if let Some(state) = supervisor.state_for_event(&event).await {
                        tracing::info!(workload = %state.workload_id, generation = state.generation, status = %state.status, exit_code = ?state.exit_code, "container state changed");
                        supervisor.reports().push(state);
                    }
                    if let Some(at) = event.at {
                        crate::metrics::global().event_handled(at);
                    }
                }
                Some(Err(e)) => break Some(e.to_string()),
                None => break None,
            }
        };
        // Without a max count the iterator never ends; the fallback only satisfies types.
        let delay = pauses.next().unwrap_or(RECONNECT_MAX);
        let retry_in_ms = delay.as_millis() as u64;
        match why {
            Some(error) => {
                tracing::warn!(%error, retry_in_ms, "docker event stream failed; reconnecting")
            }
            None => tracing::warn!(retry_in_ms, "docker event stream ended; reconnecting"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn event_name(action: &crate::runtime::EventAction) -> &'static str {
    use crate::runtime::EventAction::*;
    match action {
        Start => "start",
        Die => "die",
        Oom => "oom",
        Stop => "stop",
        Destroy => "destroy",
        Restart => "restart",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ReportHandle;
    use crate::runtime::fake::FakeRuntime;
    use crate::supervisor::ledger::Ledger;
    use persys_proto::{RunRequest, WorkloadStatus};

    #[tokio::test]
    async fn an_exit_is_pushed_as_failed_with_its_code() {
        let rt = Arc::new(FakeRuntime::new());
        let (handle, mut inbox) = ReportHandle::channel();
        let sup = Arc::new(Supervisor::new(
            rt.clone(),
            "n1".into(),
            Ledger::open(None),
            handle,
        ));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(follow_events(sup.clone(), shutdown.clone()));
        tokio::task::yield_now().await;
        let req: RunRequest = serde_json::from_value(serde_json::json!({
            "workloadId": "w1", "image": "busybox:local", "name": "w1",
            "displayName": "w", "generation": 1
        }))
        .expect("request");
        sup.run(&req).await.expect("runs");
        rt.exit("w1-g1", 3).expect("exits");
        let mut failed = None;
        while let Some(s) = tokio::time::timeout(Duration::from_secs(2), inbox.next_state())
            .await
            .expect("in time")
        {
            if s.status == WorkloadStatus::Failed {
                failed = Some(s);
                break;
            }
        }
        assert_eq!(failed.and_then(|s| s.exit_code), Some(3));
        shutdown.cancel();
        task.await.expect("joins");
    }
}
