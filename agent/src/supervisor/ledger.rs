//! What the agent itself did to containers, so their exits and removals are reported
//! as intended (`Stopped`) rather than as failures. Requested stops are persisted in the
//! data dir because an agent restart must not turn a stopped workload into `Failed`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// Why the agent touched a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Stopped on request: its exit is `Stopped`.
    Stop,
    /// Removed on request: its destruction is `Stopped`.
    Remove,
    /// Removed because a newer generation replaces it: not reported at all.
    Fence,
    /// Stopped to be started again because it was unhealthy: its exit is `Restarting`.
    Restart,
}

/// Container id → intent, with the `Stop` entries mirrored to a file.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Mutex<HashMap<String, Intent>>,
    path: Option<PathBuf>,
}

impl Ledger {
    /// A ledger persisted at `path` (loaded when present), or in memory only.
    pub fn open(path: Option<PathBuf>) -> Self {
        let stopped: HashSet<String> = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            entries: Mutex::new(stopped.into_iter().map(|id| (id, Intent::Stop)).collect()),
            path,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Intent>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The intent recorded for a container.
    pub fn intent(&self, id: &str) -> Option<Intent> {
        self.lock().get(id).copied()
    }

    /// Record an intent (before acting, so the resulting event finds it).
    pub async fn record(&self, id: &str, intent: Intent) {
        let changed = self.lock().insert(id.to_string(), intent) != Some(intent);
        if changed {
            self.persist().await;
        }
    }

    /// Forget a container (started again by the agent, or gone).
    pub async fn forget(&self, id: &str) {
        if self.lock().remove(id).is_some() {
            self.persist().await;
        }
    }

    /// Keep only the entries of containers that still exist.
    pub async fn retain(&self, existing: &HashSet<String>) {
        let before = self.lock().len();
        self.lock().retain(|id, _| existing.contains(id));
        if self.lock().len() != before {
            self.persist().await;
        }
    }

    async fn persist(&self) {
        let Some(path) = &self.path else { return };
        let stopped: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, i)| **i == Intent::Stop)
            .map(|(id, _)| id.clone())
            .collect();
        let body = match serde_json::to_vec(&stopped) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the stopped-containers ledger");
                return;
            }
        };
        // Write-then-rename so a crash never leaves a truncated file.
        let tmp = path.with_extension("tmp");
        let result = async {
            tokio::fs::write(&tmp, &body).await?;
            tokio::fs::rename(&tmp, path).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the stopped-containers ledger");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requested_stops_survive_a_restart_but_removals_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stopped.json");
        let ledger = Ledger::open(Some(path.clone()));
        ledger.record("a", Intent::Stop).await;
        ledger.record("b", Intent::Remove).await;
        let reopened = Ledger::open(Some(path));
        assert_eq!(reopened.intent("a"), Some(Intent::Stop));
        assert_eq!(reopened.intent("b"), None);
    }

    #[tokio::test]
    async fn forgetting_and_retaining_drop_entries() {
        let ledger = Ledger::open(None);
        ledger.record("a", Intent::Stop).await;
        ledger.record("b", Intent::Stop).await;
        ledger.forget("a").await;
        assert_eq!(ledger.intent("a"), None);
        ledger.retain(&HashSet::new()).await;
        assert_eq!(ledger.intent("b"), None);
    }
}
