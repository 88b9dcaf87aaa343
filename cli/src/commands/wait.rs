//! `run --wait`: follow one workload until it runs or fails, reporting each status
//! change on stderr as it happens.

use super::events::{EventStream, Incoming};
use super::run::judge;
use super::{escape, Ctx};
use anyhow::{bail, Context};
use persys_proto::{ClusterEvent, Workload, WorkloadStatus};
use std::time::Duration;
use tokio::time::Instant;

/// How often `--wait` polls the workload without an event stream.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often `--wait` polls anyway while events arrive (a missed event cannot stall it).
const BACKSTOP_INTERVAL: Duration = Duration::from_secs(2);

/// `--wait`: follows one workload until [`judge`] decides.
pub struct Waiter<'a> {
    /// Client and output format.
    pub ctx: &'a Ctx,
    /// The workload.
    pub id: &'a str,
    /// How long to wait at most.
    pub timeout: Duration,
}

/// What to do after waiting for something to happen.
enum Step {
    /// A new record of the workload arrived.
    Record(serde_json::Value),
    /// Read the record now.
    Poll,
    /// Nothing about this workload; keep waiting.
    Skip,
}

/// The newest state seen, so a late or repeated report neither goes backwards nor
/// prints twice.
#[derive(Default)]
struct Seen {
    status: Option<WorkloadStatus>,
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Seen {
    /// Whether `w` is news (not older than what was seen); records it if so.
    fn observe(&mut self, w: &Workload) -> bool {
        if self.updated_at.is_some_and(|t| w.updated_at < t) {
            return false;
        }
        self.updated_at = Some(w.updated_at);
        true
    }
}

impl Waiter<'_> {
    /// Judge the record the POST answered, then every change: from the event stream
    /// as it happens (with a slow poll as a backstop), or by polling alone.
    pub async fn wait(
        &self,
        first: serde_json::Value,
        mut events: Option<EventStream>,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + self.timeout;
        let mut seen = Seen::default();
        let mut raw = first;
        let mut next_poll = Instant::now() + self.poll_interval(&events);
        loop {
            let w: Workload = serde_json::from_value(raw.clone())
                .with_context(|| format!("unexpected workload record for {}", self.id))?;
            if seen.observe(&w) {
                self.report(&mut seen, &w);
                match judge(&w) {
                    Some(Ok(())) => return Ok(raw),
                    Some(Err(reason)) => bail!("workload {} did not run: {reason}", self.id),
                    None => {}
                }
            }
            raw = loop {
                let step = tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => bail!(
                        "timed out after {}s waiting for workload {} to run (status {})",
                        self.timeout.as_secs(),
                        self.id,
                        seen.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into())
                    ),
                    _ = tokio::time::sleep_until(next_poll) => Step::Poll,
                    item = next_event(&mut events) => self.on_event(item, &mut events)?,
                };
                match step {
                    Step::Record(r) => break r,
                    Step::Skip => {}
                    Step::Poll => {
                        next_poll = Instant::now() + self.poll_interval(&events);
                        break self.fetch().await?;
                    }
                }
            };
        }
    }

    fn poll_interval(&self, events: &Option<EventStream>) -> Duration {
        if events.is_some() {
            BACKSTOP_INTERVAL
        } else {
            POLL_INTERVAL
        }
    }

    async fn fetch(&self) -> anyhow::Result<serde_json::Value> {
        let path = format!("/workloads/{}", escape(self.id));
        self.ctx
            .client
            .get_json(&path)
            .await
            .with_context(|| format!("waiting for workload {}", self.id))
    }

    /// What an item of the event stream means for this workload. A broken or ended
    /// stream is dropped, and polling takes over.
    fn on_event(
        &self,
        item: anyhow::Result<Option<Incoming>>,
        events: &mut Option<EventStream>,
    ) -> anyhow::Result<Step> {
        match item {
            Ok(Some(Incoming::Event {
                event: ClusterEvent::Workload { workload },
                raw,
            })) if workload.id == self.id => {
                Ok(Step::Record(raw.get("workload").cloned().unwrap_or(raw)))
            }
            Ok(Some(Incoming::Event {
                event: ClusterEvent::WorkloadDeleted { id },
                ..
            })) if id == self.id => bail!("workload {} was deleted while waiting", self.id),
            // Events were dropped: one of them may have been ours.
            Ok(Some(Incoming::Lagged(_))) => Ok(Step::Poll),
            Ok(Some(_)) => Ok(Step::Skip),
            Ok(None) | Err(_) => {
                tracing::debug!("event stream ended; polling");
                *events = None;
                Ok(Step::Poll)
            }
        }
    }

    /// A status change goes to stderr for people (stdout stays the id alone).
    fn report(&self, seen: &mut Seen, w: &Workload) {
        if seen.status == Some(w.status) {
            return;
        }
        seen.status = Some(w.status);
        let why = w.status_reason.as_deref().unwrap_or_default();
        tracing::debug!(status = %w.status, reason = why, "workload status");
        if !self.ctx.format.is_data() {
            crate::output::say(&format!(
                "{}: {}{}",
                self.id,
                w.status,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", crate::client::one_line(why))
                }
            ));
        }
    }
}

/// The next item of the stream, or never when there is none.
async fn next_event(events: &mut Option<EventStream>) -> anyhow::Result<Option<Incoming>> {
    match events {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
