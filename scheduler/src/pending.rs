//! Re-placement of `Pending` workloads (and of workloads stranded on lost nodes or
//! leaving draining nodes) when capacity may have appeared: woken by node and workload
//! changes, and every few seconds.

use crate::context::Ctx;
use crate::outage::OutageLog;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Periodic pass even without a wake-up.
pub const INTERVAL: Duration = Duration::from_secs(3);

/// Run until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outage = OutageLog::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            _ = ctx.pending_kicked() => {}
        }
        match ctx.placer().reconcile(&ctx).await {
            Ok(n) => {
                outage.succeeded("re-placement");
                if n > 0 {
                    tracing::info!(placed = n, "workloads placed");
                }
            }
            Err(e) => {
                outage.failed("re-placement", &e);
            }
        }
    }
}
