//! `persys workload schedule FILE.json`: the original persysctl form. The file's bytes
//! go to `POST /workloads/schedule` unchanged, so every body the original CLI sent works.

use super::Ctx;
use crate::output::{print_data, print_text};
use anyhow::Context;
use std::io::Read;
use std::path::Path;

/// Largest file sent; the server refuses more than its body limit anyway.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// `persys workload schedule`.
pub async fn schedule(ctx: &Ctx, file: &Path) -> anyhow::Result<()> {
    let body = read_body(file)?;
    let answer = ctx.client.post_json("/workloads/schedule", body).await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &answer);
    } else {
        print_text(&summary(&answer));
    }
    Ok(())
}

/// `workloadId`, `nodeId` and `status` of the answer, one per line (the keys the
/// original CLI read).
pub fn summary(answer: &serde_json::Value) -> String {
    let field = |k: &str| match answer.get(k) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::String(_)) | Some(serde_json::Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    };
    format!(
        "workloadId: {}\nnodeId:     {}\nstatus:     {}\n",
        field("workloadId"),
        field("nodeId"),
        field("status")
    )
}

/// The bytes of a file, or of standard input for `-` (at most 4 MB).
pub fn read_body(file: &Path) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    if file == Path::new("-") {
        std::io::stdin()
            .take(MAX_FILE_BYTES)
            .read_to_end(&mut body)
            .context("cannot read the workload from standard input")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_FILE_BYTES).read_to_end(&mut body))
            .with_context(|| format!("cannot read workload file {}", file.display()))?;
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_prints_the_keys_the_original_cli_read() {
        let s = summary(&serde_json::json!({
            "id": "w1", "workloadId": "w1", "nodeId": "node-1", "node_id": "node-1", "status": "Scheduled"
        }));
        assert_eq!(
            s,
            "workloadId: w1\nnodeId:     node-1\nstatus:     Scheduled\n"
        );
    }

    #[test]
    fn pending_workload_shows_dash_for_node() {
        let s =
            summary(&serde_json::json!({"workloadId": "w1", "nodeId": "", "status": "Pending"}));
        assert!(s.contains("nodeId:     -\n"), "{s}");
    }

    #[test]
    fn missing_file_is_named_in_the_error() {
        let e = read_body(Path::new("/nonexistent/w.json")).expect_err("missing");
        assert!(format!("{e:#}").contains("/nonexistent/w.json"));
    }
}
