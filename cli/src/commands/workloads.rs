//! `persys workload list` and `persys workload get`.

use super::{escape, query, resolve, Ctx};
use crate::args::ListArgs;
use crate::output::{self, print_json, print_text, Format};
use anyhow::Context;
use persys_proto::Workload;

/// `persys workload list`: the table, or with `-o json` the server's array as is.
pub async fn list(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<()> {
    let path = format!(
        "/workloads{}",
        query(&[
            ("status", args.status.clone()),
            ("node", args.node.clone()),
            (
                "label",
                args.label.as_ref().map(|(k, v)| format!("{k}={v}"))
            ),
        ])
    );
    let raw = ctx.client.get_json(&path).await?;
    match ctx.format {
        Format::Json => print_json(&raw),
        Format::Table => {
            let mut workloads: Vec<Workload> =
                serde_json::from_value(raw).context("unexpected workload list from the server")?;
            // Oldest first, like `docker ps` reversed: new workloads appear at the bottom.
            workloads.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            let rows = output::workload_rows(&workloads, chrono::Utc::now());
            print_text(&output::table(&output::WORKLOAD_HEADERS, &rows));
        }
    }
    Ok(())
}

/// `persys workload get ID`.
pub async fn get(ctx: &Ctx, reference: &str) -> anyhow::Result<()> {
    let id = resolve::workload_id(&ctx.client, reference).await?;
    let raw = ctx
        .client
        .get_json(&format!("/workloads/{}", escape(&id)))
        .await?;
    match ctx.format {
        Format::Json => print_json(&raw),
        Format::Table => {
            let w: Workload = serde_json::from_value(raw)
                .context("unexpected workload record from the server")?;
            print_text(&output::describe_workload(&w, chrono::Utc::now()));
        }
    }
    Ok(())
}
