//! Status reports to the scheduler: state changes are pushed as soon as they are seen,
//! buffered (latest per workload and generation) and retried with backoff while the
//! scheduler is unreachable; a full list goes out on request and every `full_every`
//! as the backstop that repairs anything lost.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use chrono::{DateTime, Utc};
use persys_proto::{ContainerState, StatusReport, WorkloadStatus};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First retry delay after a failed push.
const RETRY_MIN: Duration = Duration::from_millis(200);
/// Longest retry delay (before jitter).
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Retry pauses while pushes fail: doubling from [`RETRY_MIN`] to [`RETRY_MAX`], for as
/// long as the scheduler is away, jittered so that the nodes of a cluster whose
/// scheduler comes back do not all push at the same instant.
fn retry_pauses() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Where reports go (the scheduler in production, a recorder in tests).
pub trait StatusSink: Send + Sync + 'static {
    /// Deliver one report; an error means "try again later".
    fn push(&self, report: &StatusReport) -> impl Future<Output = Result<(), String>> + Send;
}

/// Where a full report comes from (the supervisor's view of its containers).
pub trait Snapshot: Send + Sync + 'static {
    /// Every container of this node.
    fn snapshot(&self) -> impl Future<Output = Result<Vec<ContainerState>, String>> + Send;
}

enum Msg {
    State(ContainerState),
    /// A state the scheduler already has: it was the answer to its own call.
    Answered(ContainerState),
    Full,
}

/// Sends states to the reporter task. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct ReportHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::State(s) => write!(f, "State({} {})", s.workload_id, s.status),
            Self::Answered(s) => write!(f, "Answered({} {})", s.workload_id, s.status),
            Self::Full => f.write_str("Full"),
        }
    }
}

/// The receiving end, consumed by [`run_reporter`].
#[derive(Debug)]
pub struct ReportInbox {
    rx: mpsc::UnboundedReceiver<Msg>,
}

impl ReportHandle {
    /// A connected handle and inbox.
    pub fn channel() -> (Self, ReportInbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, ReportInbox { rx })
    }

    /// Report a state change.
    pub fn push(&self, state: ContainerState) {
        // A closed inbox means the agent is shutting down; nothing left to tell.
        let _ = self.tx.send(Msg::State(state));
    }

    /// `state` reached the scheduler as the answer to its call (a run, a stop): the
    /// same state from the engine's events is not pushed again. Should that answer
    /// have been lost, the scheduler calls again (its dispatch retries until the
    /// record shows the state), and the periodic full report covers the rest.
    pub fn answered(&self, state: ContainerState) {
        let _ = self.tx.send(Msg::Answered(state));
    }

    /// Ask for a full report soon.
    pub fn request_full(&self) {
        let _ = self.tx.send(Msg::Full);
    }
}

impl ReportInbox {
    /// Next pending state or full request, for tests that read what was reported.
    pub async fn next_state(&mut self) -> Option<ContainerState> {
        loop {
            match self.rx.recv().await? {
                Msg::State(s) => return Some(s),
                Msg::Answered(_) | Msg::Full => continue,
            }
        }
    }
}

/// What identifies a change, so identical consecutive states are not re-sent.
type Fingerprint = (
    WorkloadStatus,
    Option<String>,
    Option<i64>,
    u32,
    Option<String>,
    Option<persys_proto::Health>,
    Option<String>,
);

fn fingerprint(s: &ContainerState) -> Fingerprint {
    (
        s.status,
        s.container_id.clone(),
        s.exit_code,
        s.restart_count,
        s.reason.clone(),
        s.health,
        s.health_output.clone(),
    )
}

type Key = (String, u64);

fn key(s: &ContainerState) -> Key {
    (s.workload_id.clone(), s.generation)
}

struct Reporter<S, P> {
    sink: Arc<S>,
    source: Arc<P>,
    pending: BTreeMap<Key, ContainerState>,
    sent: HashMap<Key, Fingerprint>,
    full_due: bool,
    retry_at: Option<Instant>,
    /// Pauses of the current run of failures (fresh after each delivery).
    backoff: ExponentialBackoff,
}

impl<S: StatusSink, P: Snapshot> Reporter<S, P> {
    fn accept(&mut self, msg: Msg) {
        match msg {
            Msg::Full => self.full_due = true,
            Msg::Answered(s) => {
                // What waits for the same container and is not newer than the answer
                // would only repeat it, or take the scheduler back to before it.
                let k = key(&s);
                if self.pending.get(&k).is_some_and(|p| {
                    fingerprint(p) == fingerprint(&s) || p.observed_at <= s.observed_at
                }) {
                    self.pending.remove(&k);
                }
                self.sent.insert(k, fingerprint(&s));
            }
            Msg::State(s) => {
                let k = key(&s);
                if self.sent.get(&k) == Some(&fingerprint(&s)) && !self.pending.contains_key(&k) {
                    return;
                }
                match self.pending.get(&k) {
                    Some(old) if old.observed_at > s.observed_at => {}
                    _ => {
                        self.pending.insert(k, s);
                    }
                }
            }
        }
    }

    fn failed(&mut self, what: &str, error: &str) {
        // Without a max count the iterator never ends; the fallback only satisfies types.
        let delay = self.backoff.next().unwrap_or(RETRY_MAX);
        tracing::warn!(
            error,
            retry_in_ms = delay.as_millis() as u64,
            "status {what} not delivered, will retry"
        );
        self.retry_at = Some(Instant::now() + delay);
    }

    fn delivered(&mut self, states: &[ContainerState]) {
        for s in states {
            self.sent.insert(key(s), fingerprint(s));
        }
        self.retry_at = None;
        self.backoff = retry_pauses();
    }

    async fn flush(&mut self) {
        if self.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        self.retry_at = None;
        if self.full_due {
            let taken_at: DateTime<Utc> = Utc::now();
            match self.source.snapshot().await {
                Ok(containers) => {
                    let report = StatusReport {
                        containers,
                        full: true,
                    };
                    match self.sink.push(&report).await {
                        Ok(()) => {
                            self.full_due = false;
                            self.sent.clear();
                            self.delivered(&report.containers);
                            self.pending.retain(|_, s| s.observed_at > taken_at);
                        }
                        Err(e) => return self.failed("full report", &e),
                    }
                }
                Err(e) => return self.failed("full report (listing containers)", &e),
            }
        }
        if self.pending.is_empty() {
            return;
        }
        let report = StatusReport {
            containers: self.pending.values().cloned().collect(),
            full: false,
        };
        match self.sink.push(&report).await {
            Ok(()) => {
                // Only what was sent is cleared; the task is single, nothing raced in.
                self.pending.clear();
                self.delivered(&report.containers);
            }
            Err(e) => self.failed("update", &e),
        }
    }
}

/// Run the reporter until `shutdown`: pushes states from `inbox` to `sink`, and a full
/// report from `source` on request and every `full_every`.
pub async fn run_reporter<S: StatusSink, P: Snapshot>(
    mut inbox: ReportInbox,
    sink: Arc<S>,
    source: Arc<P>,
    full_every: Duration,
    shutdown: CancellationToken,
) {
    let mut r = Reporter {
        sink,
        source,
        pending: BTreeMap::new(),
        sent: HashMap::new(),
        full_due: false,
        retry_at: None,
        backoff: retry_pauses(),
    };
    let mut ticker = tokio::time::interval_at(Instant::now() + full_every, full_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let retry_at = r.retry_at;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = inbox.rx.recv() => match msg {
                Some(m) => r.accept(m),
                None => break,
            },
            _ = ticker.tick() => r.full_due = true,
            _ = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        // Batch whatever queued up while the previous push was in flight.
        while let Ok(m) = inbox.rx.try_recv() {
            r.accept(m);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = r.flush() => {}
        }
    }
    if !r.pending.is_empty() {
        tracing::info!(
            pending = r.pending.len(),
            "status reporter stopped with undelivered states; the next full report covers them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        reports: Mutex<Vec<StatusReport>>,
        failures_left: Mutex<u32>,
    }

    impl StatusSink for Recorder {
        async fn push(&self, report: &StatusReport) -> Result<(), String> {
            let mut left = self.failures_left.lock().expect("lock");
            if *left > 0 {
                *left -= 1;
                return Err("scheduler unreachable".into());
            }
            self.reports.lock().expect("lock").push(report.clone());
            Ok(())
        }
    }

    struct Fixed(Vec<ContainerState>);

    impl Snapshot for Fixed {
        async fn snapshot(&self) -> Result<Vec<ContainerState>, String> {
            Ok(self.0.clone())
        }
    }

    fn state(id: &str, status: WorkloadStatus) -> ContainerState {
        crate::state::without_container(id, 1, status, None, Utc::now())
    }

    fn reports(sink: &Recorder) -> Vec<StatusReport> {
        sink.reports.lock().expect("lock").clone()
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn start(
        sink: Arc<Recorder>,
        snapshot: Vec<ContainerState>,
    ) -> (ReportHandle, CancellationToken, tokio::task::JoinHandle<()>) {
        let (handle, inbox) = ReportHandle::channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_reporter(
            inbox,
            sink,
            Arc::new(Fixed(snapshot)),
            Duration::from_secs(30),
            shutdown.clone(),
        ));
        (handle, shutdown, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_change_is_pushed_at_once_as_a_partial_report() {
        let sink = Arc::new(Recorder::default());
        let (handle, shutdown, task) = start(sink.clone(), vec![]);
        handle.push(state("w1", WorkloadStatus::Failed));
        settle().await;
        let got = reports(&sink);
        assert_eq!(got.len(), 1);
        assert!(!got[0].full);
        assert_eq!(got[0].containers[0].status, WorkloadStatus::Failed);
        shutdown.cancel();
        task.await.expect("joins");
    }

    #[tokio::test(start_paused = true)]
    async fn undelivered_states_are_retried_until_the_scheduler_answers() {
        let sink = Arc::new(Recorder::default());
        *sink.failures_left.lock().expect("lock") = 3;
        let (handle, shutdown, task) = start(sink.clone(), vec![]);
        handle.push(state("w1", WorkloadStatus::Running));
        settle().await;
        assert!(reports(&sink).is_empty());
        tokio::time::sleep(Duration::from_secs(3)).await;
        settle().await;
        let got = reports(&sink);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].containers[0].workload_id, "w1");
        shutdown.cancel();
        task.await.expect("joins");
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_the_scheduler_got_as_an_answer_is_not_pushed_again() {
        let sink = Arc::new(Recorder::default());
        let (handle, shutdown, task) = start(sink.clone(), vec![]);
        let running = state("w1", WorkloadStatus::Running);
        // The answer first, then the engine's event of the same start.
        handle.answered(running.clone());
        handle.push(running.clone());
        settle().await;
        assert!(reports(&sink).is_empty(), "{:?}", reports(&sink));
        // A later change of that container is still pushed.
        handle.push(state("w1", WorkloadStatus::Exited));
        settle().await;
        let got = reports(&sink);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].containers[0].status, WorkloadStatus::Exited);
        shutdown.cancel();
        task.await.expect("joins");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_drops_the_older_state_waiting_for_its_container() {
        let sink = Arc::new(Recorder::default());
        // Every push fails for a while, so the states queue up.
        *sink.failures_left.lock().expect("lock") = 1;
        let (handle, shutdown, task) = start(sink.clone(), vec![]);
        handle.push(state("w0", WorkloadStatus::Running));
        settle().await;
        handle.push(state("w1", WorkloadStatus::Pulling));
        handle.answered(state("w1", WorkloadStatus::Running));
        tokio::time::sleep(Duration::from_secs(3)).await;
        settle().await;
        let sent: Vec<String> = reports(&sink)
            .iter()
            .flat_map(|r| {
                r.containers
                    .iter()
                    .map(|c| format!("{} {}", c.workload_id, c.status))
            })
            .collect();
        assert_eq!(
            sent,
            vec!["w0 Running".to_string()],
            "Pulling must not follow the answer"
        );
        shutdown.cancel();
        task.await.expect("joins");
    }

    #[tokio::test(start_paused = true)]
    async fn identical_consecutive_states_are_sent_once() {
        let sink = Arc::new(Recorder::default());
        let (handle, shutdown, task) = start(sink.clone(), vec![]);
        handle.push(state("w1", WorkloadStatus::Stopped));
        settle().await;
        handle.push(state("w1", WorkloadStatus::Stopped));
        settle().await;
        assert_eq!(reports(&sink).len(), 1);
        shutdown.cancel();
        task.await.expect("joins");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_report_is_sent_on_request_and_periodically() {
        let sink = Arc::new(Recorder::default());
        let (handle, shutdown, task) =
            start(sink.clone(), vec![state("w1", WorkloadStatus::Running)]);
        handle.request_full();
        settle().await;
        assert_eq!(reports(&sink).len(), 1);
        assert!(reports(&sink)[0].full);
        tokio::time::sleep(Duration::from_secs(31)).await;
        settle().await;
        let got = reports(&sink);
        assert_eq!(got.len(), 2);
        assert!(got[1].full);
        shutdown.cancel();
        task.await.expect("joins");
    }
}
