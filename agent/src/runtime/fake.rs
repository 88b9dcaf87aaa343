//! `FakeRuntime`: an in-memory container engine for unit tests and benchmarks. It keeps
//! containers in a map, emits the same lifecycle events Docker would, and lets a test
//! make a container exit.

use super::{
    ContainerRuntime, ContainerSpec, EngineStatus, EventAction, EventStream, Listed, LogOptions,
    LogStream, Observed, RuntimeError, RuntimeEvent,
};
use bytes::Bytes;
use futures::StreamExt;
use persys_proto::labels;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// Exit code of a container stopped by the fake (SIGTERM).
pub const STOP_EXIT_CODE: i64 = 143;

#[derive(Debug, Default)]
struct State {
    images: HashSet<String>,
    pullable: HashSet<String>,
    containers: HashMap<String, Observed>,
    logs: HashMap<String, Vec<String>>,
    next_id: u64,
    runs: u64,
}

/// An in-memory engine. Knows `busybox:local` from the start.
#[derive(Debug)]
pub struct FakeRuntime {
    state: Mutex<State>,
    events: broadcast::Sender<RuntimeEvent>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    /// An engine with the image `busybox:local` and no containers.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        let state = State {
            images: HashSet::from(["busybox:local".to_string()]),
            ..Default::default()
        };
        Self {
            state: Mutex::new(state),
            events,
        }
    }

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
        });
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
        self.lock().containers.insert(c.id.clone(), c);
    }

    /// Every container, any owner.
    pub fn containers(&self) -> Vec<Observed> {
        self.lock().containers.values().cloned().collect()
    }

    /// How many containers were created through `run`.
    pub fn runs(&self) -> u64 {
        self.lock().runs
    }

    /// Append a line of output to a container's log.
    pub fn write_log(&self, name_or_id: &str, line: &str) {
        let mut s = self.lock();
        if let Some(id) = find(&s, name_or_id).map(|c| c.id.clone()) {
            s.logs.entry(id).or_default().push(line.to_string());
        }
    }

    /// Make a running container crash with `code` after a short run, as the engine's
    /// restart policy sees it: `Restarting`, restart count up, `die` emitted. Restart it
    /// with `start`.
    pub fn crash(&self, name_or_id: &str, code: i64) -> Result<(), RuntimeError> {
        let c = {
            let mut s = self.lock();
            let c = find_mut(&mut s, name_or_id)?;
            c.status = EngineStatus::Restarting;
            c.exit_code = Some(code);
            c.restart_count += 1;
            c.last_run = Some(Duration::from_millis(200));
            c.clone()
        };
        self.emit(&c, EventAction::Die);
        Ok(())
    }

    /// Make a running container exit with `code` (emits `die`).
    pub fn exit(&self, name_or_id: &str, code: i64) -> Result<(), RuntimeError> {
        let c = {
            let mut s = self.lock();
            let c = find_mut(&mut s, name_or_id)?;
            c.status = EngineStatus::Exited;
            c.exit_code = Some(code);
            c.clone()
        };
        self.emit(&c, EventAction::Die);
        Ok(())
    }
}

fn find<'a>(s: &'a State, name_or_id: &str) -> Option<&'a Observed> {
    s.containers
        .get(name_or_id)
        .or_else(|| s.containers.values().find(|c| c.name == name_or_id))
}

fn find_mut<'a>(s: &'a mut State, name_or_id: &str) -> Result<&'a mut Observed, RuntimeError> {
    let id = find(s, name_or_id)
        .map(|c| c.id.clone())
        .ok_or_else(|| RuntimeError::NotFound(name_or_id.to_string()))?;
    s.containers
        .get_mut(&id)
        .ok_or_else(|| RuntimeError::NotFound(name_or_id.to_string()))
}

impl ContainerRuntime for FakeRuntime {
    async fn run(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let c = {
            let mut s = self.lock();
            if find(&s, &spec.name).is_some() {
                return Err(RuntimeError::NameConflict(spec.name.clone()));
            }
            if !s.images.contains(&spec.image) {
                return Err(RuntimeError::ImageNotFound(spec.image.clone()));
            }
            s.next_id += 1;
            s.runs += 1;
            let c = Observed {
                id: format!("fake{:060}", s.next_id),
                name: spec.name.clone(),
                image: spec.image.clone(),
                labels: spec.labels.clone(),
                status: EngineStatus::Running,
                exit_code: Some(0),
                oom_killed: false,
                error: None,
                restart_count: 0,
                last_run: None,
                nano_cpus: spec.nano_cpus,
                memory_bytes: spec.memory_bytes,
            };
            s.containers.insert(c.id.clone(), c.clone());
            c
        };
        self.emit(&c, EventAction::Start);
        Ok(c.id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let c = {
            let mut s = self.lock();
            let c = find_mut(&mut s, id)?;
            c.status = EngineStatus::Running;
            c.exit_code = Some(0);
            c.clone()
        };
        self.emit(&c, EventAction::Start);
        Ok(())
    }

    async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        if s.pullable.contains(image) {
            s.images.insert(image.to_string());
            Ok(())
        } else {
            Err(RuntimeError::Pull {
                image: image.to_string(),
                message: format!("pull access denied for {image}, repository does not exist"),
            })
        }
    }

    async fn stop(&self, id: &str, _timeout: Duration) -> Result<(), RuntimeError> {
        let c = {
            let mut s = self.lock();
            let c = find_mut(&mut s, id)?;
            if c.status != EngineStatus::Running {
                return Ok(());
            }
            c.status = EngineStatus::Exited;
            c.exit_code = Some(STOP_EXIT_CODE);
            c.clone()
        };
        self.emit(&c, EventAction::Die);
        self.emit(&c, EventAction::Stop);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let c = {
            let mut s = self.lock();
            let id = find(&s, id)
                .map(|c| c.id.clone())
                .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
            s.logs.remove(&id);
            s.containers
                .remove(&id)
                .ok_or_else(|| RuntimeError::NotFound(id.clone()))?
        };
        self.emit(&c, EventAction::Destroy);
        Ok(())
    }

    async fn inspect(&self, name_or_id: &str) -> Result<Observed, RuntimeError> {
        find(&self.lock(), name_or_id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(name_or_id.to_string()))
    }

    async fn list_workload(
        &self,
        node_id: &str,
        workload_id: &str,
    ) -> Result<Vec<Listed>, RuntimeError> {
        Ok(self
            .list(node_id)
            .await?
            .into_iter()
            .filter(|c| c.labels.get(labels::WORKLOAD_ID).map(String::as_str) == Some(workload_id))
            .collect())
    }

    async fn list(&self, node_id: &str) -> Result<Vec<Listed>, RuntimeError> {
        Ok(self
            .lock()
            .containers
            .values()
            .filter(|c| c.labels.get(labels::NODE_ID).map(String::as_str) == Some(node_id))
            .map(|c| Listed {
                id: c.id.clone(),
                name: c.name.clone(),
                labels: c.labels.clone(),
                running: c.status == EngineStatus::Running,
            })
            .collect())
    }

    fn logs(&self, id: &str, options: LogOptions) -> LogStream {
        let s = self.lock();
        let lines = find(&s, id)
            .and_then(|c| s.logs.get(&c.id))
            .cloned()
            .unwrap_or_default();
        let skip = options.tail.map_or(0, |n| {
            lines
                .len()
                .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX))
        });
        let items: Vec<Result<Bytes, RuntimeError>> = lines
            .into_iter()
            .skip(skip)
            .map(|l| Ok(Bytes::from(format!("{l}\n"))))
            .collect();
        futures::stream::iter(items).boxed()
    }

    fn events(&self, node_id: &str) -> EventStream {
        let node = node_id.to_string();
        BroadcastStream::new(self.events.subscribe())
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

    async fn version(&self) -> Result<String, RuntimeError> {
        Ok("fake".to_string())
    }
}
