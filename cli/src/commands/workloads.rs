//! `persys ps` / `workload list`, `get` and `describe`.

use super::{escape, query, resolve, Ctx};
use crate::args::ListArgs;
use crate::output::{self, print_data, print_text, Format};
use anyhow::Context;
use persys_proto::{Node, Workload};
use serde_json::Value;

/// The list path: status and node filters, and the first label (the server takes one;
/// the others are checked here).
pub fn list_path(args: &ListArgs) -> String {
    format!(
        "/workloads{}",
        query(&[
            ("status", args.status.clone()),
            ("node", args.node.clone()),
            (
                "label",
                args.labels.first().map(|(k, v)| format!("{k}={v}"))
            ),
        ])
    )
}

/// Whether a workload (as JSON) carries every label asked for.
pub fn has_labels(workload: &Value, labels: &[(String, String)]) -> bool {
    labels.iter().all(|(k, v)| {
        workload
            .get("labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            == Some(v.as_str())
    })
}

/// `persys ps` / `persys workload list`: the table, or with `-o json|yaml` the array.
/// Read page by page, so a cluster of many workloads is never one giant answer.
pub async fn list(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<()> {
    let mut items = ctx.client.get_all(&list_path(args), None).await?;
    if args.labels.len() > 1 {
        items.retain(|w| has_labels(w, &args.labels));
    }
    let raw = Value::Array(items);
    if ctx.format.is_data() {
        print_data(ctx.format, &raw);
        return Ok(());
    }
    let mut workloads: Vec<Workload> =
        serde_json::from_value(raw).context("unexpected workload list from the server")?;
    // Oldest first, like `docker ps` reversed: new workloads appear at the bottom.
    workloads.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let now = chrono::Utc::now();
    let text = if ctx.format == Format::Wide {
        output::status_table(
            &output::WORKLOAD_WIDE_HEADERS,
            &output::workload_rows_wide(&workloads, now),
            output::WORKLOAD_STATUS_COLUMN,
            ctx.colour,
        )
    } else {
        output::status_table(
            &output::WORKLOAD_HEADERS,
            &output::workload_rows(&workloads, now),
            output::WORKLOAD_STATUS_COLUMN,
            ctx.colour,
        )
    };
    print_text(&text);
    Ok(())
}

async fn fetch(ctx: &Ctx, reference: &str) -> anyhow::Result<Value> {
    let id = resolve::workload_id(&ctx.client, reference).await?;
    Ok(ctx
        .client
        .get_json(&format!("/workloads/{}", escape(&id)))
        .await?)
}

fn decode(raw: Value) -> anyhow::Result<Workload> {
    serde_json::from_value(raw).context("unexpected workload record from the server")
}

/// `persys get ID`: the record (`-o json|yaml`) or its description.
pub async fn get(ctx: &Ctx, reference: &str) -> anyhow::Result<()> {
    let raw = fetch(ctx, reference).await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &raw);
        return Ok(());
    }
    let w = decode(raw)?;
    print_text(&output::describe_workload(&w, None, chrono::Utc::now()));
    Ok(())
}

/// `persys describe ID`: the description, with its node's address and status.
pub async fn describe(ctx: &Ctx, reference: &str) -> anyhow::Result<()> {
    let raw = fetch(ctx, reference).await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &raw);
        return Ok(());
    }
    let w = decode(raw)?;
    let node = match &w.node_id {
        Some(id) => node_of(ctx, id).await,
        None => None,
    };
    print_text(&output::describe_workload(
        &w,
        node.as_ref(),
        chrono::Utc::now(),
    ));
    Ok(())
}

/// The node record, if it can be read: the description is still worth showing
/// without it (e.g. a viewer token the gateway refuses for nodes).
async fn node_of(ctx: &Ctx, id: &str) -> Option<Node> {
    match ctx
        .client
        .get::<Node>(&format!("/nodes/{}", escape(id)))
        .await
    {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::debug!(node = id, error = %e, "node details unavailable");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn list_path_sends_filters_and_the_first_label() {
        let args = ListArgs {
            status: Some("Running".into()),
            node: Some("node-1".into()),
            labels: labels(&[("team", "web"), ("tier", "1")]),
        };
        assert_eq!(
            list_path(&args),
            "/workloads?status=Running&node=node-1&label=team%3Dweb"
        );
        assert_eq!(list_path(&ListArgs::default()), "/workloads");
    }

    #[test]
    fn every_label_must_match() {
        let w = serde_json::json!({"labels": {"team": "web", "tier": "1"}});
        assert!(has_labels(&w, &labels(&[("team", "web"), ("tier", "1")])));
        assert!(!has_labels(&w, &labels(&[("team", "web"), ("tier", "2")])));
        assert!(!has_labels(&serde_json::json!({}), &labels(&[("a", "b")])));
        assert!(has_labels(&serde_json::json!({}), &[]));
    }
}
