//! Startup adoption: the containers this node already runs (e.g. after an agent
//! restart) are kept as they are — never duplicated — and reported. Only duplicates
//! of a workload left by a crash half-way through a fence are removed.

use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::supervisor::ledger::Intent;
use crate::supervisor::plan::stale_duplicates;
use crate::supervisor::{Supervisor, SupervisorError};
use persys_proto::{ContainerState, WorkloadStatus};
use std::collections::HashSet;

/// Adopt this node's containers; returns their states and asks for a full report.
pub async fn adopt<R: ContainerRuntime>(
    supervisor: &Supervisor<R>,
) -> Result<Vec<ContainerState>, SupervisorError> {
    let runtime = supervisor.runtime();
    let own = runtime.list(supervisor.node_id()).await?;
    for id in stale_duplicates(&own) {
        tracing::info!(container = %id, "removing a stale duplicate found at startup");
        supervisor.ledger().record(&id, Intent::Fence).await;
        match runtime.remove(&id).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            Err(e) => tracing::warn!(container = %id, error = %e, "cannot remove stale duplicate"),
        }
    }
    let existing: HashSet<String> = own.iter().map(|c| c.id.clone()).collect();
    supervisor.ledger().retain(&existing).await;
    let states = supervisor.list().await?;
    let running = states
        .iter()
        .filter(|s| s.status == WorkloadStatus::Running)
        .count();
    tracing::info!(
        containers = states.len(),
        running,
        "adopted existing containers"
    );
    supervisor.reports().request_full();
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ReportHandle;
    use crate::runtime::fake::FakeRuntime;
    use crate::supervisor::ledger::Ledger;
    use persys_proto::RunRequest;
    use std::sync::Arc;

    fn request(generation: u64) -> RunRequest {
        serde_json::from_value(serde_json::json!({
            "workloadId": "w1", "image": "busybox:local", "name": "w1",
            "displayName": "w", "generation": generation
        }))
        .expect("request")
    }

    #[tokio::test]
    async fn a_restarted_agent_adopts_its_containers_without_duplicating_them() {
        let rt = Arc::new(FakeRuntime::new());
        let (h1, _i1) = ReportHandle::channel();
        let before = Supervisor::new(rt.clone(), "n1".into(), Ledger::open(None), h1);
        before.run(&request(1)).await.expect("runs");
        let (h2, _i2) = ReportHandle::channel();
        let after = Supervisor::new(rt.clone(), "n1".into(), Ledger::open(None), h2);
        let states = adopt(&after).await.expect("adopts");
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].status, WorkloadStatus::Running);
        after.run(&request(1)).await.expect("the same run again");
        assert_eq!(rt.runs(), 1);
    }

    #[tokio::test]
    async fn adoption_ignores_other_nodes_containers() {
        let rt = Arc::new(FakeRuntime::new());
        let (h1, _i1) = ReportHandle::channel();
        Supervisor::new(rt.clone(), "n2".into(), Ledger::open(None), h1)
            .run(&request(1))
            .await
            .expect("runs");
        let (h2, _i2) = ReportHandle::channel();
        let mine = Supervisor::new(rt.clone(), "n1".into(), Ledger::open(None), h2);
        assert!(adopt(&mine).await.expect("adopts").is_empty());
        assert_eq!(rt.containers().len(), 1);
    }
}
