//! What the replicas use, as their agents last said: `POST /nodes/usage` replaces the
//! calling node's samples. Leader memory only, like liveness: a new leader learns it
//! from the next reports, and no sample is ever written to etcd.

use persys_proto::autoscale::UsageSample;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sample older than this is not used (its agent stopped reporting it).
pub const MAX_SAMPLE_AGE: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Entry {
    sample: UsageSample,
    at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    by_workload: HashMap<String, Entry>,
    by_node: HashMap<String, Vec<String>>,
}

/// The last sample of each measured workload.
#[derive(Debug, Default)]
pub struct UsageStore {
    inner: Mutex<Inner>,
}

impl UsageStore {
    /// Replace node `node`'s samples with `samples` (already checked to be its own).
    pub fn record(&self, node: &str, samples: Vec<UsageSample>, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ids: Vec<String> = samples.iter().map(|s| s.workload_id.clone()).collect();
        if let Some(old) = inner.by_node.insert(node.to_string(), ids) {
            for id in old {
                inner.by_workload.remove(&id);
            }
        }
        for sample in samples {
            inner
                .by_workload
                .insert(sample.workload_id.clone(), Entry { sample, at: now });
        }
    }

    /// Workload `id`'s last sample, unless older than [`MAX_SAMPLE_AGE`].
    pub fn get(&self, id: &str, now: Instant) -> Option<UsageSample> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .by_workload
            .get(id)
            .filter(|e| now.saturating_duration_since(e.at) <= MAX_SAMPLE_AGE)
            .map(|e| e.sample.clone())
    }

    /// Forget node `node` (it left the cluster).
    pub fn forget_node(&self, node: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = inner.by_node.remove(node) {
            for id in old {
                inner.by_workload.remove(&id);
            }
        }
    }

    /// Measured workloads (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_workload
            .len()
    }

    /// Whether nothing is measured.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, cpu: u64) -> UsageSample {
        UsageSample {
            workload_id: id.into(),
            cpu_millicores: cpu,
            memory_bytes: 0,
        }
    }

    #[test]
    fn a_report_replaces_the_nodes_samples_and_old_ones_expire() {
        let u = UsageStore::default();
        let t0 = Instant::now();
        u.record("n1", vec![sample("a", 10), sample("b", 20)], t0);
        u.record("n2", vec![sample("c", 30)], t0);
        assert_eq!(u.get("a", t0).map(|s| s.cpu_millicores), Some(10));
        u.record("n1", vec![sample("a", 11)], t0);
        assert_eq!(u.get("a", t0).map(|s| s.cpu_millicores), Some(11));
        assert!(u.get("b", t0).is_none(), "no longer reported by its node");
        assert!(u.get("c", t0).is_some(), "another node's samples stay");
        assert!(u
            .get("a", t0 + MAX_SAMPLE_AGE + Duration::from_secs(1))
            .is_none());
        u.forget_node("n2");
        assert_eq!(u.len(), 1);
    }
}
