//! Whether a connection has a request in flight: from the moment its headers are read
//! until its answer's body is done (or dropped), so a streamed answer (log follow,
//! server-sent events) keeps its connection busy however long it lasts. The idle
//! timeout of [`crate::serve`] counts only the time with nothing in flight.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;

/// What [`Activity::idle`] waited out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// No request ever started: the client connected and said nothing.
    BeforeFirstRequest,
    /// Requests came and went, then none for the idle timeout.
    AfterRequests,
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    in_flight: usize,
    started: u64,
}

/// Requests in flight on one connection.
#[derive(Debug, Clone)]
pub struct Activity {
    state: watch::Sender<State>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// A connection with nothing in flight.
    pub fn new() -> Self {
        Self {
            state: watch::Sender::new(State::default()),
        }
    }

    /// One more request in flight until the guard is dropped.
    pub fn start(&self) -> InFlight {
        self.state.send_modify(|s| {
            s.in_flight += 1;
            s.started += 1;
        });
        InFlight {
            state: self.state.clone(),
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.state.borrow().in_flight
    }

    /// Resolves once nothing has been in flight without a break for `first` (while
    /// no request ever started) or `idle` (after one did).
    pub async fn idle(&self, first: Duration, idle: Duration) -> Idle {
        let mut rx = self.state.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            let (wait, what) = if state.started == 0 {
                (first, Idle::BeforeFirstRequest)
            } else {
                (idle, Idle::AfterRequests)
            };
            if state.in_flight == 0 {
                tokio::select! {
                    () = tokio::time::sleep(wait) => return what,
                    changed = rx.changed() => if changed.is_err() { return what },
                }
            } else if rx.changed().await.is_err() {
                return what;
            }
        }
    }
}

/// A request in flight; dropping it ends it.
#[derive(Debug)]
pub struct InFlight {
    state: watch::Sender<State>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state
            .send_modify(|s| s.in_flight = s.in_flight.saturating_sub(1));
    }
}

/// An answer body that keeps its request in flight until it is done or dropped.
pub struct TrackedBody<B> {
    inner: B,
    guard: Option<InFlight>,
}

impl<B> TrackedBody<B> {
    /// `inner`, holding `guard` until its end.
    pub fn new(inner: B, guard: InFlight) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B> Body for TrackedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_last_request_to_end() {
        let activity = Activity::new();
        let guard = activity.start();
        assert_eq!(activity.in_flight(), 1);
        let idle = tokio::spawn({
            let a = activity.clone();
            async move {
                a.idle(Duration::from_secs(1), Duration::from_secs(10))
                    .await
            }
        });
        // A request in flight for longer than the idle timeout is not idleness.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!idle.is_finished());
        drop(guard);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!idle.is_finished(), "idle only after the full timeout");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(idle.await.expect("join"), Idle::AfterRequests);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_request_restarts_the_idle_clock() {
        let activity = Activity::new();
        drop(activity.start());
        let idle = tokio::spawn({
            let a = activity.clone();
            async move {
                a.idle(Duration::from_secs(1), Duration::from_secs(10))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_secs(8)).await;
        drop(activity.start());
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert!(!idle.is_finished(), "the clock restarted at the request");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(idle.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_any_request_gets_the_first_timeout() {
        let activity = Activity::new();
        let started = tokio::time::Instant::now();
        let what = activity
            .idle(Duration::from_secs(2), Duration::from_secs(60))
            .await;
        assert_eq!(what, Idle::BeforeFirstRequest);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_tracked_body_ends_its_request_at_its_end() {
        use http_body_util::BodyExt;
        let activity = Activity::new();
        let body = TrackedBody::new(
            http_body_util::Full::new(Bytes::from_static(b"abc")),
            activity.start(),
        );
        assert_eq!(activity.in_flight(), 1);
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"abc");
        assert_eq!(activity.in_flight(), 0);
    }
}
