//! `GET /cluster/metrics` and `GET /cluster/leader`.

use super::nodes::decorated_nodes;
use super::AppState;
use axum::extract::State;
use axum::Json;
use persys_proto::{ClusterMetrics, LeaderInfo, WorkloadStatus};

/// `GET /cluster/leader`: `{"leader", "url", "self"}` as this replica sees it.
pub async fn leader(State(ctx): State<AppState>) -> Json<LeaderInfo> {
    Json(ctx.leadership.info())
}

/// Nodes, workload counts by status, capacity and allocation totals.
pub async fn metrics(State(ctx): State<AppState>) -> Json<ClusterMetrics> {
    let nodes = decorated_nodes(&ctx);
    let workloads = ctx.cache.workloads();
    let mut m = ClusterMetrics {
        total_workloads: workloads.len() as u64,
        ..Default::default()
    };
    for s in WorkloadStatus::ALL {
        m.workloads_by_status.insert(s.as_str().to_string(), 0);
    }
    for w in &workloads {
        *m.workloads_by_status
            .entry(w.status.as_str().to_string())
            .or_default() += 1;
    }
    for n in &nodes {
        m.total_cpu_millis += n.cpu_millis();
        m.total_memory_mb += n.total_memory;
        m.allocated_cpu_millis += n.allocated_cpu;
        m.allocated_memory_mb += n.allocated_memory;
    }
    m.nodes = nodes;
    Json(m)
}
