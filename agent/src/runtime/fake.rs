//! `FakeRuntime`: an in-memory container engine, for unit tests and for simulated nodes
//! (`persys-agent --runtime fake`, `persys-agent sim`). It keeps containers in maps
//! indexed by id, name, node and workload (no operation scans every container), emits
//! the lifecycle events Docker would, writes a few log lines per container, and can
//! take time to start containers, crash them and fail pulls ([`FakeOptions`]). Delays
//! are tokio timers: thousands of containers starting at once cost no threads.

use super::{
    ContainerRuntime, ContainerSpec, EngineStatus, EventAction, EventStream, Listed, LogOptions,
    LogStream, Observed, RuntimeError, RuntimeEvent,
};
use crate::state::restart_delay;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use persys_proto::{labels, RestartPolicy};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

/// Exit code of a container stopped by the fake (SIGTERM).
pub const STOP_EXIT_CODE: i64 = 143;
/// Exit code of a simulated crash.
pub const CRASH_EXIT_CODE: i64 = 1;
/// Image substrings that never pull by default: references that read as absent.
pub const DEFAULT_UNPULLABLE: [&str; 3] = ["missing", "does-not-exist", "unpullable"];

/// How the simulated engine behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeOptions {
    /// How long `run` and `start` take before the container runs (it is `Created`
    /// meanwhile, as with Docker between create and start).
    pub start_latency: Duration,
    /// Probability (0..=1) that a started container crashes: exits with
    /// [`CRASH_EXIT_CODE`] after a run between `crash_after.0` and `crash_after.1`.
    /// Its restart policy applies as Docker applies it, and every restart may crash
    /// again.
    pub crash_rate: f64,
    /// Shortest and longest run of a crashing container.
    pub crash_after: (Duration, Duration),
    /// Probability (0..=1) that a pull fails (the next one may succeed).
    pub pull_failure_rate: f64,
    /// Images whose reference contains one of these never pull.
    pub unpullable: Vec<String>,
    /// Every other image pulls (the simulator); when false only the images named by
    /// [`FakeRuntime::allow_pull`] do (unit tests that check pull failures).
    pub pull_any: bool,
    /// Log lines kept per container (older ones are dropped).
    pub log_lines: usize,
    /// Events buffered per engine for slow followers (a follower that falls further
    /// behind misses some; the agent's periodic full report repairs that). Broadcast
    /// buffers are allocated whole, so with a thousand engines in one process this is
    /// most of a simulated node's memory.
    pub event_buffer: usize,
    /// Seed of the engine's random choices (crashes, pull failures, crash times).
    pub seed: u64,
}

impl Default for FakeOptions {
    /// The simulator's engine: instant starts, no crashes, every image pulls except
    /// those matching [`DEFAULT_UNPULLABLE`].
    fn default() -> Self {
        Self {
            start_latency: Duration::ZERO,
            crash_rate: 0.0,
            crash_after: (Duration::from_millis(200), Duration::from_secs(2)),
            pull_failure_rate: 0.0,
            unpullable: DEFAULT_UNPULLABLE.map(String::from).to_vec(),
            pull_any: true,
            log_lines: 1000,
            event_buffer: 256,
            seed: 0x5eed,
        }
    }
}

impl FakeOptions {
    /// Whether this image can never be pulled.
    fn is_unpullable(&self, image: &str) -> bool {
        self.unpullable
            .iter()
            .any(|p| !p.is_empty() && image.contains(p.as_str()))
    }
}

/// SplitMix64: tiny, fast and good enough for simulated faults; seeded, so a test
/// replays the same choices.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        lo + (hi - lo).mul_f64(self.unit())
    }
}

/// Container ids are unique in the process, not only per engine: the simulator runs
/// many engines and the scheduler sees all their ids.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> String {
    format!("fake{:060}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

#[derive(Debug)]
struct Container {
    observed: Observed,
    restart_policy: RestartPolicy,
    /// Bumped at every start, so a timer of an earlier run leaves this one alone.
    epoch: u64,
    started_at: Option<Instant>,
    logs: VecDeque<(DateTime<Utc>, Arc<str>)>,
}

impl Container {
    fn new(observed: Observed, restart_policy: RestartPolicy) -> Self {
        Self {
            observed,
            restart_policy,
            epoch: 0,
            started_at: None,
            logs: VecDeque::new(),
        }
    }
}

/// What `logs --follow` streams listen to.
#[derive(Debug, Clone)]
enum LogEvent {
    Line {
        id: Arc<str>,
        at: DateTime<Utc>,
        line: Arc<str>,
    },
    /// The container exited or was removed: its follow streams end.
    Closed(Arc<str>),
}

#[derive(Debug)]
struct State {
    images: HashSet<String>,
    pullable: HashSet<String>,
    containers: HashMap<String, Container>,
    /// Name → id.
    names: HashMap<String, String>,
    /// Node id label → workload id label → container ids, for the label lists.
    owners: HashMap<String, HashMap<String, BTreeSet<String>>>,
    runs: u64,
    rng: Rng,
}

impl State {
    fn id_of(&self, name_or_id: &str) -> Option<String> {
        if self.containers.contains_key(name_or_id) {
            return Some(name_or_id.to_string());
        }
        self.names.get(name_or_id).cloned()
    }

    fn get(&self, name_or_id: &str) -> Option<&Container> {
        let id = self.id_of(name_or_id)?;
        self.containers.get(&id)
    }

    fn get_mut(&mut self, name_or_id: &str) -> Result<&mut Container, RuntimeError> {
        let id = self
            .id_of(name_or_id)
            .ok_or_else(|| RuntimeError::NotFound(name_or_id.to_string()))?;
        self.containers
            .get_mut(&id)
            .ok_or_else(|| RuntimeError::NotFound(name_or_id.to_string()))
    }

    fn owner_key(o: &Observed) -> Option<(String, String)> {
        let node = o.labels.get(labels::NODE_ID)?.clone();
        let workload = o
            .labels
            .get(labels::WORKLOAD_ID)
            .cloned()
            .unwrap_or_default();
        Some((node, workload))
    }

    fn add(&mut self, c: Container) {
        let id = c.observed.id.clone();
        if let Some(old) = self.containers.remove(&id) {
            self.unindex(&old.observed);
        }
        self.names.insert(c.observed.name.clone(), id.clone());
        if let Some((node, workload)) = Self::owner_key(&c.observed) {
            self.owners
                .entry(node)
                .or_default()
                .entry(workload)
                .or_default()
                .insert(id.clone());
        }
        self.containers.insert(id, c);
    }

    fn unindex(&mut self, o: &Observed) {
        if self.names.get(&o.name) == Some(&o.id) {
            self.names.remove(&o.name);
        }
        let Some((node, workload)) = Self::owner_key(o) else {
            return;
        };
        if let Some(by_workload) = self.owners.get_mut(&node) {
            if let Some(ids) = by_workload.get_mut(&workload) {
                ids.remove(&o.id);
                if ids.is_empty() {
                    by_workload.remove(&workload);
                }
            }
            if by_workload.is_empty() {
                self.owners.remove(&node);
            }
        }
    }

    fn remove(&mut self, name_or_id: &str) -> Option<Container> {
        let id = self.id_of(name_or_id)?;
        let c = self.containers.remove(&id)?;
        self.unindex(&c.observed);
        Some(c)
    }

    fn listed(&self, ids: impl Iterator<Item = String>) -> Vec<Listed> {
        ids.filter_map(|id| self.containers.get(&id))
            .map(|c| Listed {
                id: c.observed.id.clone(),
                name: c.observed.name.clone(),
                labels: c.observed.labels.clone(),
                running: c.observed.status == EngineStatus::Running,
            })
            .collect()
    }
}

/// What the engine and its timers share.
#[derive(Debug)]
struct Shared {
    options: FakeOptions,
    state: Mutex<State>,
    events: broadcast::Sender<RuntimeEvent>,
    logs: broadcast::Sender<LogEvent>,
    /// Cancelled when the engine is dropped: its crash and restart timers end.
    stop: CancellationToken,
}

/// An in-memory engine. See the module docs and [`FakeOptions`].
#[derive(Debug)]
pub struct FakeRuntime {
    shared: Arc<Shared>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl FakeRuntime {
    /// The unit-test engine: the image `busybox:local`, no containers, and only the
    /// images named by [`Self::allow_pull`] pull.
    pub fn new() -> Self {
        Self::with_options(FakeOptions {
            pull_any: false,
            ..FakeOptions::default()
        })
    }

    /// An engine that behaves as `options` say, with the image `busybox:local`.
    pub fn with_options(options: FakeOptions) -> Self {
        let (events, _) = broadcast::channel(options.event_buffer.max(16));
        // Only `logs --follow` listens; a reader that lags skips lines, as documented.
        let (logs, _) = broadcast::channel(64);
        let state = State {
            images: HashSet::from(["busybox:local".to_string()]),
            pullable: HashSet::new(),
            containers: HashMap::new(),
            names: HashMap::new(),
            owners: HashMap::new(),
            runs: 0,
            rng: Rng(options.seed),
        };
        Self {
            shared: Arc::new(Shared {
                options,
                state: Mutex::new(state),
                events,
                logs,
                stop: CancellationToken::new(),
            }),
        }
    }

    /// The options it runs with.
    pub fn options(&self) -> &FakeOptions {
        &self.shared.options
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Make an image present.
    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_string());
    }

    /// Let `pull` of this image succeed.
    pub fn allow_pull(&self, image: &str) {
        self.lock().pullable.insert(image.to_string());
    }

    /// Put a container in place as if another agent (or an earlier run) made it.
    pub fn insert(&self, c: Observed) {
        self.lock().add(Container::new(c, RestartPolicy::No));
    }

    /// Every container, any owner.
    pub fn containers(&self) -> Vec<Observed> {
        self.lock()
            .containers
            .values()
            .map(|c| c.observed.clone())
            .collect()
    }

    /// How many containers were created through `run`.
    pub fn runs(&self) -> u64 {
        self.lock().runs
    }

    /// Append a line of output to a container's log.
    pub fn write_log(&self, name_or_id: &str, line: &str) {
        let mut s = self.lock();
        if let Ok(c) = s.get_mut(name_or_id) {
            self.shared.log(c, line.to_string());
        }
    }

    /// Make a running container crash with `code` after a short run, as the engine's
    /// restart policy sees it: `Restarting`, restart count up, `die` emitted. Restart it
    /// with `start`.
    pub fn crash(&self, name_or_id: &str, code: i64) -> Result<(), RuntimeError> {
        let c = {
            let mut s = self.lock();
            let c = s.get_mut(name_or_id)?;
            c.observed.status = EngineStatus::Restarting;
            c.observed.exit_code = Some(code);
            c.observed.restart_count += 1;
            c.observed.last_run = Some(Duration::from_millis(200));
            c.observed.clone()
        };
        self.shared.emit(&c, EventAction::Die);
        Ok(())
    }

    /// Make a running container exit with `code` (emits `die`).
    pub fn exit(&self, name_or_id: &str, code: i64) -> Result<(), RuntimeError> {
        let c = {
            let mut s = self.lock();
            let c = s.get_mut(name_or_id)?;
            c.observed.status = EngineStatus::Exited;
            c.observed.exit_code = Some(code);
            c.observed.clone()
        };
        self.shared.closed(&c.id);
        self.shared.emit(&c, EventAction::Die);
        Ok(())
    }

    /// Wait out the start latency, then run container `id` (created or exited before).
    async fn start_after_latency(&self, id: &str) -> Result<(), RuntimeError> {
        let latency = self.shared.options.start_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        Shared::begin_run(&self.shared, id)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock only happens in a failing test; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, c: &Observed, action: EventAction) {
        let _ = self.events.send(RuntimeEvent {
            container_id: c.id.clone(),
            action,
            labels: c.labels.clone(),
            exit_code: c.exit_code,
            at: Some(std::time::SystemTime::now()),
        });
    }

    /// Append a log line (called with the state locked, so a follow stream that took
    /// its snapshot under the same lock sees every line exactly once).
    fn log(&self, c: &mut Container, line: String) {
        let at = Utc::now();
        let line: Arc<str> = line.into();
        if c.logs.len() >= self.options.log_lines.max(1) {
            c.logs.pop_front();
        }
        c.logs.push_back((at, line.clone()));
        let _ = self.logs.send(LogEvent::Line {
            id: c.observed.id.as_str().into(),
            at,
            line,
        });
    }

    fn closed(&self, id: &str) {
        let _ = self.logs.send(LogEvent::Closed(id.into()));
    }

    /// The container `id` (created or restarting) runs now: a new epoch, its start
    /// lines in the log, `start` emitted, and maybe a crash scheduled.
    fn begin_run(this: &Arc<Self>, id: &str) -> Result<(), RuntimeError> {
        let (observed, crash) = {
            let mut s = this.lock();
            let crash = s.rng.chance(this.options.crash_rate).then(|| {
                let (lo, hi) = this.options.crash_after;
                s.rng.between(lo, hi)
            });
            let c = s.get_mut(id).map_err(|_| RuntimeError::StartFailed {
                id: id.to_string(),
                message: "the container was removed while it was starting".into(),
            })?;
            c.epoch += 1;
            c.started_at = Some(Instant::now());
            c.observed.status = EngineStatus::Running;
            c.observed.exit_code = Some(0);
            let name = c.observed.name.clone();
            let image = c.observed.image.clone();
            this.log(c, format!("fake container {name} started (image {image})"));
            (c.observed.clone(), crash.map(|after| (c.epoch, after)))
        };
        this.emit(&observed, EventAction::Start);
        if let Some((epoch, after)) = crash {
            Self::schedule(this, after, id, epoch, Self::crash_run);
        }
        Ok(())
    }

    /// Run `action(id, epoch)` after `delay` unless the engine is dropped first.
    fn schedule(
        this: &Arc<Self>,
        delay: Duration,
        id: &str,
        epoch: u64,
        action: fn(&Arc<Self>, &str, u64),
    ) {
        let shared = this.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::select! {
                _ = shared.stop.cancelled() => {}
                _ = tokio::time::sleep(delay) => action(&shared, &id, epoch),
            }
        });
    }

    /// A simulated crash of run `epoch` of container `id`, if that run still goes on:
    /// the restart policy decides between `Restarting` (a restart scheduled with
    /// Docker's delay) and `Exited`.
    fn crash_run(this: &Arc<Self>, id: &str, epoch: u64) {
        let (observed, restart) = {
            let mut s = this.lock();
            let Ok(c) = s.get_mut(id) else { return };
            if c.epoch != epoch || c.observed.status != EngineStatus::Running {
                return;
            }
            let ran = c.started_at.map(|t| t.elapsed());
            let restarts = matches!(
                c.restart_policy,
                RestartPolicy::Always | RestartPolicy::UnlessStopped | RestartPolicy::OnFailure
            );
            c.observed.exit_code = Some(CRASH_EXIT_CODE);
            c.observed.last_run = ran;
            let name = c.observed.name.clone();
            this.log(
                c,
                format!(
                    "fake container {name} crashed with exit code {CRASH_EXIT_CODE} (simulated)"
                ),
            );
            let restart = if restarts {
                c.observed.status = EngineStatus::Restarting;
                c.observed.restart_count += 1;
                Some(restart_delay(c.observed.restart_count, ran))
            } else {
                c.observed.status = EngineStatus::Exited;
                None
            };
            (c.observed.clone(), restart)
        };
        if restart.is_none() {
            this.closed(id);
        }
        this.emit(&observed, EventAction::Die);
        if let Some(delay) = restart {
            Self::schedule(this, delay, id, epoch, Self::restart_run);
        }
    }

    /// The engine's restart after a crash of run `epoch`, unless the container was
    /// stopped, started or removed meanwhile.
    fn restart_run(this: &Arc<Self>, id: &str, epoch: u64) {
        {
            let s = this.lock();
            match s.get(id) {
                Some(c) if c.epoch == epoch && c.observed.status == EngineStatus::Restarting => {}
                _ => return,
            }
        }
        // Only fails when the container was removed in between; nothing to restart then.
        let _ = Self::begin_run(this, id);
    }
}

impl ContainerRuntime for FakeRuntime {
    async fn run(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let id = {
            let mut s = self.lock();
            if s.names.contains_key(&spec.name) {
                return Err(RuntimeError::NameConflict(spec.name.clone()));
            }
            if !s.images.contains(&spec.image) {
                return Err(RuntimeError::ImageNotFound(spec.image.clone()));
            }
            s.runs += 1;
            let observed = Observed {
                id: next_id(),
                name: spec.name.clone(),
                image: spec.image.clone(),
                labels: spec.labels.clone(),
                status: EngineStatus::Created,
                exit_code: Some(0),
                oom_killed: false,
                error: None,
                restart_count: 0,
                last_run: None,
                nano_cpus: spec.nano_cpus,
                memory_bytes: spec.memory_bytes,
            };
            let id = observed.id.clone();
            let mut c = Container::new(observed, spec.restart_policy);
            if let Some(cmd) = spec.cmd.as_ref().filter(|c| !c.is_empty()) {
                let line = format!("command: {}", cmd.join(" "));
                self.shared.log(&mut c, line);
            }
            s.add(c);
            id
        };
        self.start_after_latency(&id).await?;
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let id = {
            let s = self.lock();
            let c = s
                .get(id)
                .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
            // Docker answers "already started" without doing anything.
            if c.observed.status == EngineStatus::Running {
                return Ok(());
            }
            c.observed.id.clone()
        };
        self.start_after_latency(&id).await
    }

    async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        let options = &self.shared.options;
        let mut s = self.lock();
        let denied = || RuntimeError::Pull {
            image: image.to_string(),
            message: format!("pull access denied for {image}, repository does not exist"),
        };
        if options.is_unpullable(image) || !(options.pull_any || s.pullable.contains(image)) {
            return Err(denied());
        }
        if s.rng.chance(options.pull_failure_rate) {
            return Err(RuntimeError::Pull {
                image: image.to_string(),
                message: format!("simulated pull failure for {image}: connection reset by peer"),
            });
        }
        s.images.insert(image.to_string());
        Ok(())
    }

    async fn stop(&self, id: &str, _timeout: Duration) -> Result<(), RuntimeError> {
        let c = {
            let mut s = self.lock();
            let c = s.get_mut(id)?;
            if !matches!(
                c.observed.status,
                EngineStatus::Running | EngineStatus::Restarting
            ) {
                return Ok(());
            }
            c.observed.status = EngineStatus::Exited;
            c.observed.exit_code = Some(STOP_EXIT_CODE);
            c.observed.last_run = c.started_at.map(|t| t.elapsed());
            let name = c.observed.name.clone();
            self.shared
                .log(c, format!("fake container {name} stopped on request"));
            c.observed.clone()
        };
        self.shared.closed(&c.id);
        self.shared.emit(&c, EventAction::Die);
        self.shared.emit(&c, EventAction::Stop);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let c = self
            .lock()
            .remove(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        self.shared.closed(&c.observed.id);
        self.shared.emit(&c.observed, EventAction::Destroy);
        Ok(())
    }

    async fn inspect(&self, name_or_id: &str) -> Result<Observed, RuntimeError> {
        self.lock()
            .get(name_or_id)
            .map(|c| c.observed.clone())
            .ok_or_else(|| RuntimeError::NotFound(name_or_id.to_string()))
    }

    async fn list_workload(
        &self,
        node_id: &str,
        workload_id: &str,
    ) -> Result<Vec<Listed>, RuntimeError> {
        let s = self.lock();
        let ids = s
            .owners
            .get(node_id)
            .and_then(|w| w.get(workload_id))
            .map(|ids| ids.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        Ok(s.listed(ids.into_iter()))
    }

    async fn list(&self, node_id: &str) -> Result<Vec<Listed>, RuntimeError> {
        let s = self.lock();
        let ids: Vec<String> = s
            .owners
            .get(node_id)
            .map(|w| w.values().flatten().cloned().collect())
            .unwrap_or_default();
        Ok(s.listed(ids.into_iter()))
    }

    fn logs(&self, id: &str, options: LogOptions) -> LogStream {
        let format = move |at: &DateTime<Utc>, line: &str| {
            if options.timestamps {
                let at = at.to_rfc3339_opts(SecondsFormat::Nanos, true);
                Bytes::from(format!("{at} {line}\n"))
            } else {
                Bytes::from(format!("{line}\n"))
            }
        };
        let s = self.lock();
        let Some(c) = s.get(id) else {
            return futures::stream::empty().boxed();
        };
        let skip = options.tail.map_or(0, |n| {
            c.logs
                .len()
                .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX))
        });
        let past: Vec<Result<Bytes, RuntimeError>> = c
            .logs
            .iter()
            .skip(skip)
            .map(|(at, line)| Ok(format(at, line)))
            .collect();
        let past = futures::stream::iter(past);
        let running = matches!(
            c.observed.status,
            EngineStatus::Running | EngineStatus::Restarting | EngineStatus::Created
        );
        if !options.follow || !running {
            return past.boxed();
        }
        // Subscribed under the state lock: no line falls between the snapshot and this.
        let wanted: Arc<str> = c.observed.id.as_str().into();
        let live = BroadcastStream::new(self.shared.logs.subscribe())
            .take_while({
                let wanted = wanted.clone();
                move |ev| {
                    let open = !matches!(ev, Ok(LogEvent::Closed(id)) if *id == wanted);
                    async move { open }
                }
            })
            .filter_map(move |ev| {
                let line = match ev {
                    Ok(LogEvent::Line { id, at, line }) if id == wanted => {
                        Some(Ok(format(&at, &line)))
                    }
                    // Lagged: lines were lost to a slow reader; the stream goes on.
                    _ => None,
                };
                async move { line }
            });
        past.chain(live).boxed()
    }

    fn events(&self, node_id: &str) -> EventStream {
        let node = node_id.to_string();
        BroadcastStream::new(self.shared.events.subscribe())
            .filter_map(move |item| {
                let keep = match &item {
                    Ok(ev) => ev.labels.get(labels::NODE_ID) == Some(&node),
                    Err(_) => false, // lagged: the periodic full report covers the gap
                };
                async move {
                    match item {
                        Ok(ev) if keep => Some(Ok(ev)),
                        _ => None,
                    }
                }
            })
            .boxed()
    }

    /// A fake container runs no processes: any command "succeeds" while it runs.
    async fn exec(&self, id: &str, _argv: &[String]) -> Result<super::ExecOutcome, RuntimeError> {
        let o = self.inspect(id).await?;
        if o.status != EngineStatus::Running {
            return Err(RuntimeError::Engine(format!(
                "container {id} is not running"
            )));
        }
        Ok(super::ExecOutcome {
            exit_code: 0,
            output: String::new(),
        })
    }

    /// A fake container has no network: HTTP and TCP checks of it fail.
    async fn address(&self, id: &str) -> Result<Option<std::net::IpAddr>, RuntimeError> {
        self.inspect(id).await.map(|_| None)
    }

    async fn stats(&self, id: &str) -> Result<super::ContainerStats, RuntimeError> {
        // Simulated containers use nothing.
        self.inspect(id)
            .await
            .map(|_| super::ContainerStats::default())
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        Ok("fake".to_string())
    }
}

#[cfg(test)]
#[path = "fake_tests.rs"]
mod tests;
