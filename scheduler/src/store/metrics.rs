//! Latency and errors of every etcd request the store makes, by operation:
//! `persys_etcd_request_duration_seconds{operation}` and
//! `persys_etcd_request_errors_total{operation,kind}`. The handles are resolved once
//! (no label lookup, lock or allocation per request): a request costs two clock reads
//! and a few atomic adds on top of its round trip.

use super::StoreError;
use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};
use std::future::Future;
use std::time::{Duration, Instant};

/// The kinds of etcd request, the `operation` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A read of one key (also the readiness ping).
    Get,
    /// A read of a key prefix (lists).
    Range,
    /// A transaction (every record write, batches, the election's compare-and-set).
    Txn,
    /// An unconditional delete.
    Delete,
    /// Granting a lease.
    LeaseGrant,
    /// Revoking a lease.
    LeaseRevoke,
    /// Opening a lease keep-alive stream, and each renewal's round trip on it.
    LeaseKeepAlive,
    /// Opening a watch.
    Watch,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::Get,
        Op::Range,
        Op::Txn,
        Op::Delete,
        Op::LeaseGrant,
        Op::LeaseRevoke,
        Op::LeaseKeepAlive,
        Op::Watch,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Range => "range",
            Op::Txn => "txn",
            Op::Delete => "delete",
            Op::LeaseGrant => "lease_grant",
            Op::LeaseRevoke => "lease_revoke",
            Op::LeaseKeepAlive => "lease_keepalive",
            Op::Watch => "watch",
        }
    }
}

/// The `kind` label of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// etcd could not be reached or did not answer in time.
    Unavailable,
    /// The request was abandoned before etcd answered (its deadline passed, or its
    /// caller went away).
    Cancelled,
    /// etcd answered with an error.
    Error,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Unavailable, Kind::Cancelled, Kind::Error];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Unavailable => "unavailable",
            Kind::Cancelled => "cancelled",
            Kind::Error => "error",
        }
    }
}

/// The handles of one operation.
#[derive(Debug, Clone)]
struct OpHandles {
    latency: Histogram,
    errors: [IntCounter; 3],
}

/// The etcd request metrics of one store (shared by its clones).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    latency: HistogramVec,
    errors: IntCounterVec,
    ops: Vec<OpHandles>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreMetrics {
    /// Every series of every operation, at zero.
    pub fn new() -> Self {
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "persys_etcd_request_duration_seconds",
                "Duration of etcd requests by operation, until etcd answered or the request failed",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["operation"],
        )
        .unwrap_or_else(|_| invalid());
        let errors = IntCounterVec::new(
            Opts::new(
                "persys_etcd_request_errors_total",
                "etcd requests that failed, by operation and kind (unavailable, cancelled, error)",
            ),
            &["operation", "kind"],
        )
        .unwrap_or_else(|_| invalid());
        let ops = Op::ALL
            .iter()
            .map(|op| OpHandles {
                latency: latency.with_label_values(&[op.as_str()]),
                errors: Kind::ALL.map(|k| errors.with_label_values(&[op.as_str(), k.as_str()])),
            })
            .collect();
        Self {
            latency,
            errors,
            ops,
        }
    }

    /// The collectors to register (on the scheduler's registry).
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.latency.clone()),
            Box::new(self.errors.clone()),
        ]
    }

    fn handles(&self, op: Op) -> &OpHandles {
        // `ops` follows `Op::ALL`, whose order is the enum's.
        &self.ops[op as usize]
    }

    /// Record one request of `op` that took `took` (a renewal answered on a stream).
    pub fn observe(&self, op: Op, took: Duration) {
        self.handles(op).latency.observe(took.as_secs_f64());
    }

    /// Count one failed request of `op`.
    pub fn failed(&self, op: Op, e: &StoreError) {
        let kind = if e.is_unavailable() {
            Kind::Unavailable
        } else {
            Kind::Error
        };
        self.handles(op).errors[kind as usize].inc();
    }

    /// Run one etcd request of `op`, timing it and counting its failure. A request
    /// dropped before it finished (its deadline, its caller gone) counts as
    /// `cancelled`.
    pub async fn timed<T, F>(&self, op: Op, request: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut guard = Pending {
            metrics: self,
            op,
            started: Instant::now(),
            done: false,
        };
        let result = request.await.map_err(StoreError::from);
        guard.done = true;
        self.observe(op, guard.started.elapsed());
        if let Err(e) = &result {
            self.failed(op, e);
        }
        result
    }
}

/// Counts a request abandoned before it finished.
struct Pending<'a> {
    metrics: &'a StoreMetrics,
    op: Op,
    started: Instant,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            let h = self.metrics.handles(self.op);
            h.latency.observe(self.started.elapsed().as_secs_f64());
            h.errors[Kind::Cancelled as usize].inc();
        }
    }
}

/// Metric construction only fails for invalid names or options, which are constants
/// here (the tests construct them).
fn invalid() -> ! {
    panic!("invalid metric definition")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(m: &StoreMetrics, op: Op, kind: Kind) -> u64 {
        m.handles(op).errors[kind as usize].get()
    }

    #[tokio::test]
    async fn requests_are_timed_and_failures_counted_by_kind() {
        let m = StoreMetrics::new();
        let ok: Result<u8, StoreError> = m.timed(Op::Get, async { Ok(1) }).await;
        assert_eq!(ok.ok(), Some(1));
        let _ = m
            .timed(Op::Txn, async {
                Err::<(), _>(etcd_client::Error::InvalidArgs("no".into()))
            })
            .await;
        // Dropped before it answered: cancelled.
        let _ = tokio::time::timeout(
            Duration::from_millis(10),
            m.timed(
                Op::Range,
                std::future::pending::<Result<(), etcd_client::Error>>(),
            ),
        )
        .await;
        assert_eq!(m.handles(Op::Get).latency.get_sample_count(), 1);
        assert_eq!(count(&m, Op::Get, Kind::Error), 0);
        assert_eq!(count(&m, Op::Txn, Kind::Error), 1);
        assert_eq!(count(&m, Op::Range, Kind::Cancelled), 1);
        assert_eq!(m.handles(Op::Range).latency.get_sample_count(), 1);
        m.failed(Op::Watch, &StoreError::Unavailable("down".into()));
        assert_eq!(count(&m, Op::Watch, Kind::Unavailable), 1);
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "Op::ALL follows the enum");
        }
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "Kind::ALL follows the enum");
        }
    }
}
