//! `persys why ID`: the placement of a workload explained by the scheduler
//! (`GET /workloads/{id}/placement`).

use super::{escape, resolve, Ctx};
use crate::output::{self, print_data, print_text, Format};
use anyhow::Context;
use persys_proto::PlacementExplanation;

/// Print each node's verdict, then the winner or what would make the workload fit;
/// with `-o json|yaml` the scheduler's answer as is.
pub async fn why(ctx: &Ctx, reference: &str) -> anyhow::Result<()> {
    let id = resolve::workload_id(&ctx.client, reference).await?;
    let raw = ctx
        .client
        .get_json(&format!("/workloads/{}/placement", escape(&id)))
        .await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &raw);
        return Ok(());
    }
    let explained: PlacementExplanation =
        serde_json::from_value(raw).context("unexpected placement explanation from the server")?;
    print_text(&output::explain_placement(
        &explained,
        ctx.format == Format::Wide,
        ctx.colour,
    ));
    Ok(())
}
