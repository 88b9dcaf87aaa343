//! `persys metrics`: `GET /cluster/metrics` as a summary, or as is with `-o json|yaml`.

use super::Ctx;
use crate::output::{metrics::metrics_summary, print_data, print_text};
use anyhow::Context;
use persys_proto::ClusterMetrics;

/// `persys metrics`.
pub async fn metrics(ctx: &Ctx) -> anyhow::Result<()> {
    let raw = ctx.client.get_json("/cluster/metrics").await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &raw);
        return Ok(());
    }
    let m: ClusterMetrics =
        serde_json::from_value(raw).context("unexpected cluster metrics from the server")?;
    print_text(&metrics_summary(&m));
    Ok(())
}
