//! `persys node list` and `persys node get`.

use super::{escape, Ctx};
use crate::output::{self, print_json, print_text, Format};
use anyhow::Context;
use persys_proto::{Node, NodeList};

/// `persys node list`: the table, or with `-o json` the array of nodes.
pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let raw = ctx.client.get_json("/nodes").await?;
    match ctx.format {
        Format::Json => {
            // `GET /nodes` answers `{"nodes": [...]}`; scripts get the bare array, like
            // `workload list -o json`.
            let nodes = raw.get("nodes").cloned().unwrap_or_else(|| raw.clone());
            print_json(&nodes);
        }
        Format::Table => {
            let mut list: NodeList =
                serde_json::from_value(raw).context("unexpected node list from the server")?;
            list.nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            let rows = output::node_rows(&list.nodes, chrono::Utc::now());
            print_text(&output::table(&output::NODE_HEADERS, &rows));
        }
    }
    Ok(())
}

/// `persys node get ID`.
pub async fn get(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let raw = ctx
        .client
        .get_json(&format!("/nodes/{}", escape(id)))
        .await?;
    match ctx.format {
        Format::Json => print_json(&raw),
        Format::Table => {
            let node: Node =
                serde_json::from_value(raw).context("unexpected node record from the server")?;
            let rows = output::node_rows(std::slice::from_ref(&node), chrono::Utc::now());
            let mut text = output::table(&output::NODE_HEADERS, &rows);
            text.push_str(&format!(
                "\nhostname: {}\nos:       {} {}\ndns:      {}\nfree:     {} cores, {}MB\n",
                node.hostname,
                node.os_name,
                node.kernel_version,
                node.domain_name,
                node.available_cpu,
                node.available_memory
            ));
            print_text(&text);
        }
    }
    Ok(())
}
