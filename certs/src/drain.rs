//! Request bodies a handler did not read are drained, up to a bound, before the
//! stream is let go.
//!
//! Why: a server that answers early (401, 403, 413) and drops the request body makes
//! HTTP/2 end the stream with `RST_STREAM` while the client is still uploading (h2
//! sends `NO_ERROR` after a complete answer, as RFC 9113 §8.1 allows). Common clients
//! (curl/nghttp2 among them) treat that reset as a failed request and never show the
//! answer, so the JSON error is lost. Over HTTP/1.1 the connection is closed with
//! unread data, which makes the kernel send a TCP RST that can destroy the answer in
//! flight. Reading the rest of the body (and throwing it away) lets the client finish
//! its upload, so the stream ends normally and the answer arrives whole. The bound
//! keeps a hostile client from holding the task: past [`DRAIN_MAX_BYTES`] or
//! [`DRAIN_MAX_TIME`] the body is dropped and the old behaviour applies.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most bytes read from an abandoned request body.
pub const DRAIN_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// Longest time spent reading an abandoned request body.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// A request body that, when dropped unfinished, is read to its end (bounded) by a
/// task that stops at the server's shutdown.
pub struct DrainOnDrop {
    inner: Option<Incoming>,
    shutdown: CancellationToken,
}

impl DrainOnDrop {
    /// Wraps a request body.
    pub fn new(inner: Incoming, shutdown: CancellationToken) -> Self {
        Self {
            inner: Some(inner),
            shutdown,
        }
    }
}

impl Body for DrainOnDrop {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(body) => body.is_end_stream(),
            None => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shutdown = self.shutdown.clone();
        runtime.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                drained = tokio::time::timeout(DRAIN_MAX_TIME, drain(body, DRAIN_MAX_BYTES)) => {
                    if let Ok(Err(read)) = drained {
                        tracing::debug!(read, "abandoned request body over the drain bound; dropped");
                    }
                }
            }
        });
    }
}

/// Reads `body` to its end, at most `max` bytes: `Ok(read)` when it ended (or broke
/// off), `Err(read)` when it was longer.
async fn drain<B>(mut body: B, max: u64) -> Result<u64, u64>
where
    B: Body + Unpin,
{
    let mut read = 0u64;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(frame) = frame else {
            return Ok(read);
        };
        if let Some(data) = frame.data_ref() {
            read += bytes::Buf::remaining(data) as u64;
            if read > max {
                return Err(read);
            }
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn drain_reads_a_body_to_its_end() {
        let body = Full::new(Bytes::from(vec![0u8; 1000]));
        assert_eq!(drain(body, 4096).await, Ok(1000));
    }

    #[tokio::test]
    async fn drain_stops_past_the_bound() {
        let chunks =
            (0..100).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![0u8; 100]))));
        let body = StreamBody::new(futures::stream::iter(chunks));
        assert_eq!(drain(body, 250).await, Err(300));
    }
}
