//! Keeping a dev cluster up once it is: a child that exits is reported in one line and
//! started again after an exponential backoff with jitter (backon), a line per restart;
//! the others keep running. Nothing is restarted once a signal asked us to stop.
//!
//! etcd, the scheduler, persys-dns and the gateway come back after 0.5 s, doubling to
//! 30 s while they keep failing. Agents (and the simulated fleet) wait at least
//! [`AGENT_RESTART_MIN`], longer than the scheduler's node timeout, as an agent under
//! systemd does (`RestartSec=2s` against a 0.8 s suspicion of a broken heartbeat
//! stream): the node is lost first, its workloads whose restart policy reschedules on
//! node loss move to other nodes, and then it rejoins as the same node (same data dir
//! and node id), where the old copies of the moved workloads are removed.

use super::child::{Stage, Supervisor};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The node timeout `persys dev` gives the scheduler (`--node-timeout-ms`).
pub const NODE_TIMEOUT: Duration = Duration::from_secs(2);
/// The shortest wait before an agent is started again: past the node timeout, so that
/// killing an agent shows its workloads moving before it rejoins.
pub const AGENT_RESTART_MIN: Duration = Duration::from_secs(3);

/// How a kind of child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// First wait (before jitter, which adds up to as much again).
    pub min: Duration,
    /// Longest wait, jitter included.
    pub max: Duration,
    /// A child that ran this long before it exited starts over from `min`.
    pub stable_after: Duration,
}

/// The policy of the cluster's services: etcd, scheduler, DNS, gateway.
pub const SERVICES: Policy = Policy {
    min: Duration::from_millis(500),
    max: Duration::from_secs(30),
    stable_after: Duration::from_secs(30),
};

/// The policy of the agents and the simulated fleet.
pub const AGENTS: Policy = Policy {
    min: AGENT_RESTART_MIN,
    ..SERVICES
};

/// The policy of a stage.
pub fn policy(stage: Stage) -> Policy {
    match stage {
        Stage::Agents => AGENTS,
        Stage::Store | Stage::Scheduler | Stage::Dns | Stage::Gateway => SERVICES,
    }
}

/// The restart delays of one child.
#[derive(Debug)]
pub struct Backoff {
    policy: Policy,
    delays: Option<ExponentialBackoff>,
    restarts: u64,
}

impl Backoff {
    /// A child that never restarted yet.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            delays: None,
            restarts: 0,
        }
    }

    /// How long to wait before the next start of a child that ran for `uptime`.
    pub fn next_delay(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.policy.stable_after {
            self.delays = None;
        }
        let Policy { min, max, .. } = self.policy;
        let delays = self.delays.get_or_insert_with(|| {
            ExponentialBuilder::default()
                .with_min_delay(min)
                .with_max_delay(max)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build()
        });
        self.restarts += 1;
        delays.next().unwrap_or(max).clamp(min, max)
    }

    /// How many restarts were asked for so far.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

/// `0.6s`, `12s`: a wait as people read it.
pub fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}s", d.as_secs_f64().round())
    }
}

/// A restart that is due at some time.
struct Due {
    at: Instant,
    index: usize,
}

/// Watch the children until a signal arrives (or the signal channel is gone): report
/// each exit, start the child again after its backoff ([`policy`] of its stage).
pub async fn keep_up(sup: &mut Supervisor, signals: &mut watch::Receiver<u32>) {
    keep_up_with(sup, signals, policy).await;
}

/// [`keep_up`] with the policies given.
async fn keep_up_with(
    sup: &mut Supervisor,
    signals: &mut watch::Receiver<u32>,
    policy: fn(Stage) -> Policy,
) {
    let mut backoffs: Vec<Option<Backoff>> = Vec::new();
    let mut due: Vec<Due> = Vec::new();
    loop {
        if *signals.borrow() > 0 {
            return;
        }
        let next = due.iter().map(|d| d.at).min();
        tokio::select! {
            // A signal first: no restart is started once one has arrived.
            biased;
            changed = signals.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            exit = sup.wait_any_exit() => {
                let backoff = backoff_of(&mut backoffs, sup, exit.index, policy);
                let delay = backoff.next_delay(exit.uptime);
                crate::output::say(&format!(
                    "{}; restarting it in {}",
                    exit.died,
                    seconds(delay)
                ));
                due.push(Due { at: Instant::now() + delay, index: exit.index });
            }
            () = sleep_until(next) => {
                let now = Instant::now();
                let (ready, later): (Vec<Due>, Vec<Due>) = due.drain(..).partition(|d| d.at <= now);
                due = later;
                for d in ready {
                    let name = sup.name(d.index).to_string();
                    match sup.restart(d.index) {
                        Ok(pid) => {
                            let n = backoff_of(&mut backoffs, sup, d.index, policy).restarts();
                            crate::output::say(&format!(
                                "restarted {name} (pid {pid}; restart {n})"
                            ));
                        }
                        Err(e) => {
                            let delay = backoff_of(&mut backoffs, sup, d.index, policy)
                                .next_delay(Duration::ZERO);
                            crate::output::say(&format!(
                                "cannot restart {name}: {e}; trying again in {}",
                                seconds(delay)
                            ));
                            due.push(Due { at: Instant::now() + delay, index: d.index });
                        }
                    }
                }
            }
        }
    }
}

/// The backoff of child `index`, made at its first exit.
fn backoff_of<'a>(
    backoffs: &'a mut Vec<Option<Backoff>>,
    sup: &Supervisor,
    index: usize,
    policy: fn(Stage) -> Policy,
) -> &'a mut Backoff {
    if backoffs.len() <= index {
        backoffs.resize_with(index + 1, || None);
    }
    backoffs[index]
        .get_or_insert_with(|| Backoff::new(policy(sup.stage(index).unwrap_or(Stage::Agents))))
}

/// Sleep until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(SERVICES);
        let mut floor = SERVICES.min;
        for _ in 0..12 {
            let d = b.next_delay(Duration::ZERO);
            assert!(
                d >= floor && d <= SERVICES.max,
                "{d:?} not in [{floor:?}, 30s]"
            );
            assert!(
                d < floor * 2 || d == SERVICES.max,
                "jitter adds less than the base"
            );
            floor = (floor * 2).min(SERVICES.max);
        }
        assert_eq!(b.restarts(), 12);
    }

    #[test]
    fn a_child_that_stayed_up_starts_over_from_the_first_delay() {
        let mut b = Backoff::new(SERVICES);
        for _ in 0..8 {
            b.next_delay(Duration::from_millis(10));
        }
        assert!(b.next_delay(Duration::from_millis(10)) >= Duration::from_secs(20));
        let d = b.next_delay(SERVICES.stable_after);
        assert!(d < SERVICES.min * 2, "{d:?}");
    }

    #[test]
    fn agents_wait_past_the_node_timeout() {
        assert!(AGENT_RESTART_MIN > NODE_TIMEOUT);
        let mut b = Backoff::new(policy(Stage::Agents));
        assert!(b.next_delay(Duration::ZERO) >= AGENT_RESTART_MIN);
        assert_eq!(policy(Stage::Store), SERVICES);
        assert_eq!(policy(Stage::Gateway), SERVICES);
    }

    #[test]
    fn waits_read_as_seconds() {
        assert_eq!(seconds(Duration::from_millis(640)), "0.6s");
        assert_eq!(seconds(Duration::from_millis(3_250)), "3.2s");
        assert_eq!(seconds(Duration::from_millis(29_600)), "30s");
    }

    /// A child that fails right at start is retried with growing waits, never in a
    /// tight loop, and nothing is restarted after the signal.
    #[tokio::test]
    async fn a_crashing_child_is_restarted_with_backoff_until_the_signal() {
        fn quick(_: Stage) -> Policy {
            Policy {
                min: Duration::from_millis(50),
                max: Duration::from_secs(2),
                stable_after: Duration::from_secs(30),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sup = Supervisor::new(dir.path().to_path_buf(), dir.path().to_path_buf());
        let runs = dir.path().join("runs");
        let script = format!("echo run >> {}; exit 7", runs.display());
        sup.spawn(
            "crasher",
            Stage::Gateway,
            Path::new("/bin/sh"),
            &["-c", &script],
            &[],
            "",
        )
        .expect("spawns");
        let (tx, mut signals) = watch::channel(0u32);
        let count = |runs: &Path| {
            std::fs::read_to_string(runs)
                .unwrap_or_default()
                .lines()
                .count()
        };
        let begun = Instant::now();
        let observer = async {
            let deadline = Instant::now() + Duration::from_secs(20);
            while count(&runs) < 4 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tx.send_modify(|n| *n += 1);
        };
        tokio::join!(keep_up_with(&mut sup, &mut signals, quick), observer);
        let ran = count(&runs);
        assert!(ran >= 4, "restarted again and again: {ran}");
        // Three waits of at least 50, 100 and 200 ms came between the four runs.
        assert!(
            begun.elapsed() >= Duration::from_millis(350),
            "{:?}",
            begun.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(count(&runs), ran, "no restart after the signal");
        let (_tx, mut hurry) = watch::channel(0);
        sup.shutdown(Duration::from_secs(5), &mut hurry).await;
    }
}
