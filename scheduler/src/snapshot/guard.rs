//! The guard of a scheduler that starts on an emptied etcd. When this cluster's CA was
//! already on disk (the cluster existed) but etcd holds no node and no workload, etcd
//! was most likely lost or replaced: the nodes' containers are still the cluster's
//! workloads, and a restore will bring their records back. Until then the backstop
//! must not take them for containers "no record wants" and remove them. The guard
//! lifts when a snapshot is restored, or when a new workload is stored (the operator
//! started the cluster afresh; what still runs from before is then removed). While it
//! is on, the service controller waits too: a service reconciled against half of a
//! restore would replace the replicas still to come, or remove those whose service is.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether orphaned containers are kept (see the module comment).
#[derive(Debug, Default)]
pub struct RestoreGuard {
    on: AtomicBool,
}

impl RestoreGuard {
    /// Decide at start: the CA existed before this start, and the store is empty.
    pub fn arm_if(&self, ca_existed: bool, store_empty: bool) {
        if ca_existed && store_empty {
            self.on.store(true, Ordering::SeqCst);
            tracing::warn!(
                "etcd holds no node and no workload of this existing cluster: containers on nodes are kept until a snapshot is restored (persys snapshot restore) or a new workload is created"
            );
        }
    }

    /// Arm it now: a restore has begun (its records arrive in parts; nothing may act
    /// on half of them).
    pub fn arm(&self, why: &str) {
        if !self.on.swap(true, Ordering::SeqCst) {
            tracing::info!(%why, "containers without a record are kept, services wait");
        }
    }

    /// Whether containers without a record are kept (and services wait).
    pub fn keeps_orphans(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    /// Lift the guard, saying why.
    pub fn clear(&self, why: &str) {
        if self.on.swap(false, Ordering::SeqCst) {
            tracing::info!(%why, "containers without a record are removed again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_only_for_an_existing_cluster_on_an_empty_store_and_cleared_once() {
        let g = RestoreGuard::default();
        g.arm_if(false, true);
        assert!(!g.keeps_orphans(), "a new cluster has nothing to keep");
        g.arm_if(true, false);
        assert!(!g.keeps_orphans(), "records exist: the backstop is right");
        g.arm_if(true, true);
        assert!(g.keeps_orphans());
        g.clear("restored");
        assert!(!g.keeps_orphans());
    }
}
