//! `persys apply -f FILE`: every workload and service of a JSON or YAML file is checked
//! first (a mistake anywhere sends nothing), then sent, one line each: a workload is
//! created (`POST /workloads`), a service created or updated (`PUT /services/{name}`:
//! `created`, `configured`, or `unchanged` as kubectl says).

use super::schedule::read_body;
use super::Ctx;
use crate::client::ClientError;
use crate::error::Failure;
use crate::manifest::{self, Entry, Request, Syntax};
use crate::output::{print_data, print_text, say};
use anyhow::Context;
use serde_json::Value;
use std::path::Path;

/// `persys apply`.
pub async fn apply(ctx: &Ctx, file: &Path) -> anyhow::Result<()> {
    let shown = if file == Path::new("-") {
        "standard input".to_string()
    } else {
        file.display().to_string()
    };
    let bytes = read_body(file)?;
    let text = String::from_utf8(bytes).with_context(|| format!("{shown} is not UTF-8 text"))?;
    let entries = manifest::parse(&text, Syntax::detect(file, &text))
        .with_context(|| format!("cannot apply {shown}"))?;
    for e in &entries {
        for key in &e.unknown_keys {
            say(&format!(
                "warning: {shown}: workload {} ({}): unknown key {key:?} is ignored",
                e.position, e.name
            ));
        }
    }
    let total = entries.len();
    let mut created = Vec::new();
    let mut failures: Vec<(String, ClientError)> = Vec::new();
    for e in entries {
        match create(ctx, &e).await {
            Ok(record) => {
                if !ctx.format.is_data() {
                    let line = match e.request {
                        Request::Workload(_) => created_line(&e.name, &record),
                        Request::Service(_) => service_line(&e.name, &record),
                    };
                    print_text(&format!("{line}\n"));
                }
                created.push(record);
            }
            Err(err) => {
                if total > 1 {
                    say(&format!("error: {}: {err}", e.name));
                }
                failures.push((e.name, err));
            }
        }
    }
    if ctx.format.is_data() {
        // What was created, even if something else failed: scripts need the ids.
        print_data(ctx.format, &Value::Array(created));
    }
    let failed = failures.len();
    let mut failures = failures.into_iter();
    match failures.next() {
        None => Ok(()),
        Some((_, only)) if total == 1 => Err(only.into()),
        Some((name, first)) => Err(Failure::Partial {
            message: format!("{failed} of {total} workloads not created (first: {name}: {first})"),
            exit_code: first.exit_code(),
        }
        .into()),
    }
}

async fn create(ctx: &Ctx, e: &Entry) -> Result<Value, ClientError> {
    let setup = |err: serde_json::Error| ClientError::Setup(err.to_string());
    match &e.request {
        Request::Workload(w) => {
            let body = serde_json::to_vec(w).map_err(setup)?;
            ctx.client.post_json("/workloads", body).await
        }
        Request::Service(s) => {
            let body = serde_json::to_vec(s).map_err(setup)?;
            let path = format!("/services/{}", super::escape(&e.name));
            ctx.client.put_json(&path, body).await
        }
    }
}

/// `service/web configured (revision 2, 3 replicas)`.
pub fn service_line(name: &str, answer: &Value) -> String {
    let result = answer["result"].as_str().unwrap_or("applied");
    let s = &answer["service"];
    format!(
        "service/{name} {result} (revision {}, {} replicas)",
        s["revision"].as_u64().unwrap_or(0),
        s["replicas"].as_u64().unwrap_or(0)
    )
}

/// `web created: <id> (Scheduled on node-1)`, or `(Pending: <why>)`.
pub fn created_line(name: &str, record: &Value) -> String {
    let field = |k: &str| {
        record
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let id = field("id").unwrap_or("-");
    let status = field("status").unwrap_or("created");
    let state = match (field("nodeId"), field("statusReason")) {
        (Some(node), _) => format!("{status} on {node}"),
        (None, Some(why)) => format!("{status}: {}", crate::client::one_line(why)),
        (None, None) => status.to_string(),
    };
    format!("{name} created: {id} ({state})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_line_names_the_node_or_why_there_is_none() {
        let placed = serde_json::json!({"id": "w1", "status": "Scheduled", "nodeId": "node-1"});
        assert_eq!(
            created_line("web", &placed),
            "web created: w1 (Scheduled on node-1)"
        );
        let pending = serde_json::json!({
            "id": "w2", "status": "Pending", "nodeId": null,
            "statusReason": "no node fits:\n too little memory"
        });
        assert_eq!(
            created_line("big", &pending),
            "big created: w2 (Pending: no node fits: too little memory)"
        );
    }
}
