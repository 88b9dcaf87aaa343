//! `persys node list|get|cordon|uncordon|drain|rm`.

use super::{escape, Ctx};
use crate::output::{self, print_data, print_text};
use anyhow::Context;
use persys_proto::Node;

/// `persys node list`: the table, or with `-o json|yaml` the array of nodes. Read page
/// by page; a server without paging answers `{"nodes": [...]}` at once.
pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let items = ctx.client.get_all("/nodes", Some("nodes")).await?;
    let raw = serde_json::Value::Array(items);
    if ctx.format.is_data() {
        // Scripts get the bare array, like `workload list -o json`.
        print_data(ctx.format, &raw);
        return Ok(());
    }
    let mut nodes: Vec<Node> =
        serde_json::from_value(raw).context("unexpected node list from the server")?;
    nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let rows = output::node_rows(&nodes, chrono::Utc::now());
    print_text(&output::status_table(
        &output::NODE_HEADERS,
        &rows,
        output::NODE_STATUS_COLUMN,
        ctx.colour,
    ));
    Ok(())
}

/// `persys node get ID`.
pub async fn get(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let raw = ctx
        .client
        .get_json(&format!("/nodes/{}", escape(id)))
        .await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &raw);
        return Ok(());
    }
    let node: Node =
        serde_json::from_value(raw).context("unexpected node record from the server")?;
    print_text(&output::describe_node(&node, chrono::Utc::now()));
    Ok(())
}

/// What to do to a node's placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// `POST /nodes/{id}/cordon`.
    Cordon,
    /// `POST /nodes/{id}/uncordon`.
    Uncordon,
    /// `POST /nodes/{id}/drain`.
    Drain,
}

impl NodeAction {
    /// The route's last segment.
    pub fn segment(self) -> &'static str {
        match self {
            Self::Cordon => "cordon",
            Self::Uncordon => "uncordon",
            Self::Drain => "drain",
        }
    }
}

/// `persys node cordon|uncordon|drain ID`: prints `node-1: Cordoned` (the node's status
/// after the change), or the node record with `-o json|yaml`.
pub async fn control(ctx: &Ctx, action: NodeAction, id: &str) -> anyhow::Result<()> {
    let raw = ctx
        .client
        .post_json(
            &format!("/nodes/{}/{}", escape(id), action.segment()),
            Vec::new(),
        )
        .await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &raw);
        return Ok(());
    }
    let status = raw
        .get("status")
        .and_then(|s| s.as_str())
        .unwrap_or(action.segment());
    print_text(&format!("{id}: {status}\n"));
    Ok(())
}

/// `persys node rm ID`: `DELETE /nodes/{id}`; prints `node-1: removed`.
pub async fn remove(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let raw = ctx.client.delete(&format!("/nodes/{}", escape(id))).await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &raw);
        return Ok(());
    }
    print_text(&format!("{id}: removed\n"));
    Ok(())
}
