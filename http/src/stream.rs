//! Streamed bodies that end cleanly. A followed log stream has no natural end: when its
//! source goes away (the container is removed, the agent's connection drops), the
//! answer ends there. Passing the error on instead makes hyper abort the chunked body,
//! which clients report as a broken connection, not as the end of the logs.

use futures::{future, Stream, StreamExt};
use std::convert::Infallible;

/// `stream` until its first error, which is logged (at debug: it is how such streams
/// end) with `what` and not passed on.
pub fn end_at_error<S, T, E>(
    stream: S,
    what: &'static str,
) -> impl Stream<Item = Result<T, Infallible>>
where
    S: Stream<Item = Result<T, E>>,
    E: std::fmt::Display,
{
    stream.scan((), move |(), item| {
        future::ready(match item {
            Ok(chunk) => Some(Ok(chunk)),
            Err(error) => {
                tracing::debug!(%error, what, "stream ended by an error");
                None
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stream_ends_at_the_first_error_with_what_came_before() {
        let items: Vec<Result<u32, String>> = vec![Ok(1), Ok(2), Err("gone".into()), Ok(3)];
        let out: Vec<u32> = end_at_error(futures::stream::iter(items), "test")
            .map(|r| match r {
                Ok(v) => v,
                Err(never) => match never {},
            })
            .collect()
            .await;
        assert_eq!(out, [1, 2]);
    }
}
