//! `persys logs ID [-f] [--tail N] [--timestamps]`: the body is copied to stdout chunk by
//! chunk as it arrives from the node; nothing is buffered whole.

use super::{escape, query, resolve, Ctx};
use crate::args::LogsArgs;
use futures::StreamExt;
use std::io::Write;

/// `persys logs`.
pub async fn logs(ctx: &Ctx, args: &LogsArgs) -> anyhow::Result<()> {
    let id = resolve::workload_id(&ctx.client, &args.id).await?;
    let path = format!("/workloads/{}/logs{}", escape(&id), logs_query(args));
    let resp = ctx.client.stream(&path).await?;
    let mut body = resp.bytes_stream();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ctx.client.transport_error(&e))?;
        if let Err(e) = out.write_all(&chunk).and_then(|()| out.flush()) {
            // The reader went away (`persys logs x | head`): stop quietly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    Ok(())
}

/// `?tail=N&follow=true&timestamps=true`, only the parts that were asked for.
pub fn logs_query(args: &LogsArgs) -> String {
    query(&[
        ("tail", args.tail.map(|n| n.to_string())),
        ("follow", args.follow.then(|| "true".to_string())),
        ("timestamps", args.timestamps.then(|| "true".to_string())),
        ("service", args.service.clone()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(follow: bool, tail: Option<u64>, timestamps: bool) -> LogsArgs {
        LogsArgs {
            id: "x".into(),
            follow,
            tail,
            timestamps,
            service: None,
        }
    }

    #[test]
    fn plain_logs_send_no_query() {
        assert_eq!(logs_query(&a(false, None, false)), "");
    }

    #[test]
    fn follow_tail_and_timestamps_are_all_sent() {
        assert_eq!(
            logs_query(&a(true, Some(10), true)),
            "?tail=10&follow=true&timestamps=true"
        );
    }

    #[test]
    fn a_service_is_sent_escaped() {
        let args = LogsArgs {
            service: Some("web api".into()),
            ..a(true, None, false)
        };
        assert_eq!(logs_query(&args), "?follow=true&service=web%20api");
    }
}
