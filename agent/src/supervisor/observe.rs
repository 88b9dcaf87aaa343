//! Engine events → the state to report.

use super::ledger::Intent;
use super::Supervisor;
use crate::runtime::{ContainerRuntime, EventAction, RuntimeError, RuntimeEvent};
use crate::state::{without_container, workload_of};
use chrono::Utc;
use persys_proto::{ContainerState, WorkloadStatus};

impl<R: ContainerRuntime> Supervisor<R> {
    /// The state to report for an engine event, if any.
    pub async fn state_for_event(&self, ev: &RuntimeEvent) -> Option<ContainerState> {
        // A Compose project's container: its project reports for all its services
        // (`crate::compose`), not this one container for the whole workload.
        if ev.labels.contains_key(persys_proto::labels::SERVICE) {
            return match &self.projects {
                Some(p) => p.state_for_event(&ev.labels).await,
                None => None,
            };
        }
        let (workload, generation) =
            workload_of(&ev.labels, ev.labels.get("name").map_or("", String::as_str));
        let intent = self.ledger.intent(&ev.container_id);
        if ev.action == EventAction::Destroy {
            self.ledger.forget(&ev.container_id).await;
            self.forget_container(&ev.container_id);
            return match intent {
                Some(Intent::Fence) => None,
                Some(Intent::Remove | Intent::Stop) => Some(without_container(
                    &workload,
                    generation,
                    WorkloadStatus::Stopped,
                    Some("removed on request".into()),
                    Utc::now(),
                )),
                None | Some(Intent::Restart) => Some(without_container(
                    &workload,
                    generation,
                    WorkloadStatus::Missing,
                    Some("container was removed".into()),
                    Utc::now(),
                )),
            };
        }
        if ev.action == EventAction::Die {
            if let Some(code) = ev.exit_code {
                self.remember_exit(&ev.container_id, code);
            }
        }
        // A container being removed on purpose dies on the way; only its removal counts.
        if matches!(intent, Some(Intent::Fence | Intent::Remove)) {
            return None;
        }
        match self.runtime.inspect(&ev.container_id).await {
            Ok(o) => Some(self.state_of(&o)),
            // Gone already: the exit code the event carried is all there is.
            Err(RuntimeError::NotFound(_)) => {
                let code = ev.exit_code.unwrap_or(0);
                let (status, reason) = match intent {
                    Some(_) => (WorkloadStatus::Stopped, None),
                    None if code == 0 => (WorkloadStatus::Exited, None),
                    None => (
                        WorkloadStatus::Failed,
                        Some(format!("exited with code {code}")),
                    ),
                };
                Some(ContainerState {
                    exit_code: ev.exit_code,
                    ..without_container(&workload, generation, status, reason, Utc::now())
                })
            }
            Err(e) => {
                tracing::warn!(container = %ev.container_id, error = %e, "cannot inspect container after event");
                None
            }
        }
    }
}
