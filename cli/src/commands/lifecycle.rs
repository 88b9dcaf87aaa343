//! `persys stop|start|rm|redeploy ID`: change a workload's desired state.

use super::{escape, resolve, Ctx};
use crate::output::{print_data, print_text};

/// What to do to a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /workloads/{id}/stop`.
    Stop,
    /// `POST /workloads/{id}/start`.
    Start,
    /// `DELETE /workloads/{id}`.
    Remove,
    /// `POST /workloads/{id}/redeploy`.
    Redeploy,
}

/// Stop, start or remove a workload; prints its id (or the server's answer with `-o json|yaml`).
pub async fn apply(ctx: &Ctx, action: Action, reference: &str) -> anyhow::Result<()> {
    let id = resolve::workload_id(&ctx.client, reference).await?;
    let base = format!("/workloads/{}", escape(&id));
    let answer = match action {
        Action::Stop => {
            ctx.client
                .post_json(&format!("{base}/stop"), Vec::new())
                .await?
        }
        Action::Start => {
            ctx.client
                .post_json(&format!("{base}/start"), Vec::new())
                .await?
        }
        Action::Remove => ctx.client.delete(&base).await?,
        Action::Redeploy => {
            ctx.client
                .post_json(&format!("{base}/redeploy"), Vec::new())
                .await?
        }
    };
    if !ctx.format.is_data() {
        print_text(&format!("{id}\n"));
    } else if answer.is_null() {
        // An empty answer still yields data, so scripts can always parse stdout.
        print_data(ctx.format, &serde_json::json!({ "id": id }));
    } else {
        print_data(ctx.format, &answer);
    }
    Ok(())
}
