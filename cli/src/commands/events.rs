//! `persys events`: follow `GET /events` (server-sent events) and print one line per
//! event; also the event source of `run --wait`.

use super::Ctx;
use crate::args::cluster::EventKind;
use crate::args::EventsArgs;
use crate::client::{ApiClient, ClientError};
use crate::output::event::{event_cells, event_header, event_line};
use crate::output::{say, to_yaml, write_stdout, Format};
use crate::sse::{SseEvent, SseParser};
use anyhow::Context;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use persys_proto::ClusterEvent;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;

/// One item of the event stream.
#[derive(Debug)]
pub enum Incoming {
    /// A change in the cluster.
    Event {
        /// The change, decoded.
        event: ClusterEvent,
        /// The JSON as the server sent it (printed as is by `-o json`).
        raw: serde_json::Value,
    },
    /// The server dropped events because this client was too slow.
    Lagged(String),
    /// An event this CLI does not know (a newer server).
    Other(String),
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open `GET /events` stream.
pub struct EventStream {
    client: ApiClient,
    body: Body,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
}

impl EventStream {
    /// Open the stream (the answer's head is read; events follow).
    pub async fn open(client: &ApiClient) -> Result<Self, ClientError> {
        let resp = client.stream("/events").await?;
        Ok(Self {
            client: client.clone(),
            body: Box::pin(resp.bytes_stream()),
            parser: SseParser::default(),
            ready: VecDeque::new(),
        })
    }

    /// The next item, or `None` when the server ends the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<Incoming>> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Some(decode(ev)));
            }
            match self.body.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(self.client.transport_error(&e).into()),
                Some(Ok(chunk)) => self.ready.extend(self.parser.feed(&chunk)?),
            }
        }
    }
}

/// An SSE event as an [`Incoming`]: `lagged`, else the JSON of a [`ClusterEvent`].
pub fn decode(ev: SseEvent) -> Incoming {
    if ev.event == "lagged" {
        return Incoming::Lagged(ev.data);
    }
    let Ok(raw) = serde_json::from_str::<serde_json::Value>(&ev.data) else {
        return Incoming::Other(ev.event);
    };
    match serde_json::from_value::<ClusterEvent>(raw.clone()) {
        Ok(event) => Incoming::Event { event, raw },
        Err(_) => Incoming::Other(ev.event),
    }
}

/// Which events `persys events` prints.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A workload id, id prefix or name.
    pub workload: Option<String>,
    /// One kind only.
    pub kind: Option<EventKind>,
}

impl Filter {
    /// Whether to print `ev`; `name_of` knows the names of workloads seen so far (a
    /// deletion carries only the id).
    pub fn matches(&self, ev: &ClusterEvent, name_of: &dyn Fn(&str) -> Option<String>) -> bool {
        let kind = match ev {
            ClusterEvent::Workload { .. } | ClusterEvent::WorkloadDeleted { .. } => {
                EventKind::Workload
            }
            ClusterEvent::Node { .. } => EventKind::Node,
        };
        if self.kind.is_some_and(|k| k != kind) {
            return false;
        }
        let Some(want) = self.workload.as_deref() else {
            return true;
        };
        let (id, name) = match ev {
            ClusterEvent::Workload { workload } => (&workload.id, Some(workload.spec.name.clone())),
            ClusterEvent::WorkloadDeleted { id } => (id, name_of(id)),
            ClusterEvent::Node { .. } => return false,
        };
        id == want || id.starts_with(want) || name.as_deref() == Some(want)
    }
}

/// `persys events`: until Ctrl-C, the server ends the stream, or stdout closes.
pub async fn events(ctx: &Ctx, args: &EventsArgs) -> anyhow::Result<()> {
    let filter = Filter {
        workload: args.workload.clone(),
        kind: args.kind,
    };
    let mut stream = EventStream::open(&ctx.client).await?;
    let mut names: HashMap<String, String> = HashMap::new();
    if !ctx.format.is_data() && !emit(&format!("{}\n", event_header()))? {
        return Ok(());
    }
    while let Some(item) = stream.next().await? {
        let (event, raw) = match item {
            Incoming::Event { event, raw } => (event, raw),
            Incoming::Lagged(n) => {
                say(&format!(
                    "warning: {n} events were missed (this client fell behind); `persys ps` shows the current state"
                ));
                continue;
            }
            Incoming::Other(kind) => {
                tracing::debug!(kind, "unknown event skipped");
                continue;
            }
        };
        if let ClusterEvent::Workload { workload } = &event {
            names.insert(workload.id.clone(), workload.spec.name.clone());
        }
        let name_of = |id: &str| names.get(id).cloned();
        if filter.matches(&event, &name_of) {
            let text = render(ctx, &event, &raw, &name_of)?;
            if !emit(&text)? {
                return Ok(());
            }
        }
        if let ClusterEvent::WorkloadDeleted { id } = &event {
            names.remove(id);
        }
    }
    say("the server closed the event stream");
    Ok(())
}

fn render(
    ctx: &Ctx,
    event: &ClusterEvent,
    raw: &serde_json::Value,
    name_of: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    Ok(match ctx.format {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string(raw).context("encoding an event")?
        ),
        Format::Yaml => format!("---\n{}", to_yaml(raw)),
        Format::Table | Format::Wide => format!(
            "{}\n",
            event_line(chrono::Utc::now(), &event_cells(event, name_of), ctx.colour)
        ),
    })
}

/// Write to stdout; `Ok(false)` once the reader is gone (`persys events | head`).
fn emit(text: &str) -> anyhow::Result<bool> {
    match write_stdout(text) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to standard output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::workload::tests::workload;
    use persys_proto::WorkloadStatus;

    fn wl(id: &str, name: &str) -> ClusterEvent {
        ClusterEvent::Workload {
            workload: std::sync::Arc::new(workload(id, name, WorkloadStatus::Running, None)),
        }
    }

    fn no_names(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn server_event_json_decodes_to_a_cluster_event() {
        let ev = wl("abc", "web");
        let data = serde_json::to_string(&ev).expect("json");
        match decode(SseEvent {
            event: "workload".into(),
            data,
        }) {
            Incoming::Event { event, raw } => {
                assert_eq!(event, ev);
                assert_eq!(raw["kind"], "workload");
            }
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn lagged_and_unknown_events_are_told_apart() {
        assert!(matches!(
            decode(SseEvent {
                event: "lagged".into(),
                data: "4".into()
            }),
            Incoming::Lagged(n) if n == "4"
        ));
        assert!(matches!(
            decode(SseEvent {
                event: "future".into(),
                data: "{\"kind\":\"future\"}".into()
            }),
            Incoming::Other(k) if k == "future"
        ));
    }

    #[test]
    fn workload_filter_matches_id_prefix_and_name_and_skips_nodes() {
        let f = Filter {
            workload: Some("web".into()),
            kind: None,
        };
        assert!(f.matches(&wl("1234", "web"), &no_names));
        assert!(!f.matches(&wl("1234", "db"), &no_names));
        let by_prefix = Filter {
            workload: Some("12".into()),
            kind: None,
        };
        assert!(by_prefix.matches(&wl("1234", "db"), &no_names));
        let deleted = ClusterEvent::WorkloadDeleted { id: "1234".into() };
        assert!(f.matches(&deleted, &|_| Some("web".into())));
        assert!(!f.matches(&deleted, &no_names));
    }

    #[test]
    fn kind_filter_keeps_one_kind() {
        let nodes_only = Filter {
            workload: None,
            kind: Some(EventKind::Node),
        };
        assert!(!nodes_only.matches(&wl("1", "a"), &no_names));
        let deleted = ClusterEvent::WorkloadDeleted { id: "1".into() };
        let workloads_only = Filter {
            workload: None,
            kind: Some(EventKind::Workload),
        };
        assert!(workloads_only.matches(&deleted, &no_names));
    }
}
