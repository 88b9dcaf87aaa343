//! `persys service create|update|ls|get|scale|rollout|rm`: services (`/services`).
//! `create` and `update` take a `kind: Service` file, checked here first, as
//! `persys apply` does.

use super::{escape, Ctx};
use crate::args::{RolloutCommand, ServiceCommand};
use crate::manifest::{self, Request, Syntax};
use crate::output::{self, print_data, print_text, say};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Run one `persys service ...` verb.
pub async fn run(ctx: &Ctx, command: ServiceCommand) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Create { file } => apply_file(ctx, &file, Some(false)).await,
        ServiceCommand::Update { file } => apply_file(ctx, &file, Some(true)).await,
        ServiceCommand::Ls => list(ctx).await,
        ServiceCommand::Get { name } => get(ctx, &name).await,
        ServiceCommand::Scale { name, replicas } => scale(ctx, &name, replicas).await,
        ServiceCommand::Rollout(r) => match r {
            RolloutCommand::Status { name, timeout } => status(ctx, &name, timeout).await,
            RolloutCommand::History { name } => history(ctx, &name).await,
            RolloutCommand::Undo { name } => undo(ctx, &name).await,
        },
        ServiceCommand::Rm { name } => rm(ctx, &name).await,
    }
}

/// `create` (`must_exist: false`: refused when the service exists) or `update`
/// (`true`: refused when it does not).
async fn apply_file(ctx: &Ctx, file: &Path, must_exist: Option<bool>) -> anyhow::Result<()> {
    let bytes = super::schedule::read_body(file)?;
    let text = String::from_utf8(bytes).context("the file is not UTF-8 text")?;
    let entries = manifest::parse(&text, Syntax::detect(file, &text))
        .with_context(|| format!("cannot read {}", file.display()))?;
    let [entry] = entries.as_slice() else {
        bail!(
            "{} holds {} entries; give one service",
            file.display(),
            entries.len()
        );
    };
    let Request::Service(body) = &entry.request else {
        bail!("{} is not a service (kind: Service)", file.display());
    };
    let path = format!("/services/{}", escape(&entry.name));
    let exists = match ctx.client.get_json(&path).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(e.into()),
    };
    match (must_exist, exists) {
        (Some(false), true) => bail!(
            "service {} already exists; use `persys service update -f`",
            entry.name
        ),
        (Some(true), false) => bail!(
            "service {} does not exist; use `persys service create -f`",
            entry.name
        ),
        _ => {}
    }
    let answer = ctx
        .client
        .put_json(
            &path,
            serde_json::to_vec(body).context("encoding the service")?,
        )
        .await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &answer);
    } else {
        print_text(&format!(
            "{}\n",
            super::apply::service_line(&entry.name, &answer)
        ));
    }
    Ok(())
}

fn rows(services: &[Value]) -> Vec<Vec<String>> {
    services
        .iter()
        .map(|s| {
            vec![
                s["name"].as_str().unwrap_or("-").to_string(),
                format!(
                    "{}/{}",
                    s["readyReplicas"].as_u64().unwrap_or(0),
                    s["replicas"].as_u64().unwrap_or(0)
                ),
                s["revision"].as_u64().unwrap_or(0).to_string(),
                s["rollout"].as_str().unwrap_or("-").to_string(),
                s["template"]["image"].as_str().unwrap_or("-").to_string(),
            ]
        })
        .collect()
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let answer = ctx.client.get_json("/services").await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &answer);
        return Ok(());
    }
    let services = answer.as_array().cloned().unwrap_or_default();
    print_text(&output::table::table(
        &["NAME", "READY", "REVISION", "ROLLOUT", "IMAGE"],
        &rows(&services),
    ));
    Ok(())
}

async fn get(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let s = ctx
        .client
        .get_json(&format!("/services/{}", escape(name)))
        .await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &s);
        return Ok(());
    }
    print_text(&describe(&s));
    Ok(())
}

/// `key: value` lines and one line per replica.
pub fn describe(s: &Value) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<10} {v}\n"));
    line("Name:", s["name"].as_str().unwrap_or("-").into());
    line(
        "Replicas:",
        format!(
            "{} wanted, {} ready",
            s["replicas"].as_u64().unwrap_or(0),
            s["readyReplicas"].as_u64().unwrap_or(0)
        ),
    );
    line(
        "Image:",
        s["template"]["image"].as_str().unwrap_or("-").into(),
    );
    line("Revision:", s["revision"].as_u64().unwrap_or(0).to_string());
    let mut rollout = s["rollout"].as_str().unwrap_or("-").to_string();
    if let Some(why) = s["rolloutReason"].as_str() {
        rollout.push_str(&format!(": {why}"));
    }
    line("Rollout:", rollout);
    if let Some(a) = s["autoscale"].as_object() {
        let (metric, target) = match a.get("targetCpuPercent").and_then(Value::as_u64) {
            Some(t) => ("cpu", t),
            None => (
                "memory",
                a.get("targetMemoryPercent")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            ),
        };
        line(
            "Autoscale:",
            format!(
                "{}-{} replicas, {metric} target {target}%, down after {}s",
                a.get("min").and_then(Value::as_u64).unwrap_or(0),
                a.get("max").and_then(Value::as_u64).unwrap_or(0),
                a.get("scaleDownStabilizationSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            ),
        );
    }
    for e in s["scaleEvents"].as_array().into_iter().flatten() {
        line(
            "Scaled:",
            format!(
                "{} {}",
                e["at"].as_str().unwrap_or("-"),
                e["reason"].as_str().unwrap_or("-")
            ),
        );
    }
    for w in s["replicaWorkloads"].as_array().into_iter().flatten() {
        line(
            "Replica:",
            format!(
                "{} rev {} {} {} on {}",
                w["name"].as_str().unwrap_or("-"),
                w["serviceRevision"].as_u64().unwrap_or(0),
                w["status"].as_str().unwrap_or("-"),
                w["health"].as_str().unwrap_or("-"),
                w["nodeId"].as_str().unwrap_or("-"),
            ),
        );
    }
    out
}

async fn scale(ctx: &Ctx, name: &str, replicas: u32) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&json!({ "replicas": replicas }))?;
    let s = ctx
        .client
        .post_json(&format!("/services/{}/scale", escape(name)), body)
        .await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &s);
    } else {
        say(&format!("service/{name} scaled to {replicas}"));
    }
    Ok(())
}

/// Follow the rollout until it is complete (exit 0), rolled back or paused (exit 1),
/// or `timeout` seconds pass.
async fn status(ctx: &Ctx, name: &str, timeout: u64) -> anyhow::Result<()> {
    let path = format!("/services/{}", escape(name));
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut last = String::new();
    loop {
        let s = ctx.client.get_json(&path).await?;
        let want = s["replicas"].as_u64().unwrap_or(0);
        let rev = s["revision"].as_u64().unwrap_or(0);
        let replicas = s["replicaWorkloads"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let updated = replicas
            .iter()
            .filter(|w| w["serviceRevision"].as_u64() == Some(rev))
            .count();
        let state = s["rollout"].as_str().unwrap_or("-").to_string();
        let now = format!(
            "revision {rev}: {updated} of {want} replicas updated, {} ready ({state})",
            s["readyReplicas"].as_u64().unwrap_or(0)
        );
        if now != last {
            say(&now);
            last = now;
        }
        match state.as_str() {
            "complete" if updated as u64 == want && replicas.len() as u64 == want => return Ok(()),
            "rolledBack" | "paused" => {
                bail!(
                    "rollout of service {name} {}: {}",
                    if state == "paused" {
                        "paused"
                    } else {
                        "was rolled back"
                    },
                    s["rolloutReason"].as_str().unwrap_or("no reason given")
                )
            }
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("rollout of service {name} not complete within {timeout}s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn history(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let s = ctx
        .client
        .get_json(&format!("/services/{}", escape(name)))
        .await?;
    let current = s["revision"].as_u64();
    let revisions = s["history"].as_array().cloned().unwrap_or_default();
    if ctx.format.is_data() {
        print_data(ctx.format, &Value::Array(revisions));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = revisions
        .iter()
        .map(|r| {
            let rev = r["revision"].as_u64();
            vec![
                format!(
                    "{}{}",
                    rev.unwrap_or(0),
                    if rev == current { " (current)" } else { "" }
                ),
                r["createdAt"].as_str().unwrap_or("-").to_string(),
                r["template"]["image"].as_str().unwrap_or("-").to_string(),
            ]
        })
        .collect();
    print_text(&output::table::table(
        &["REVISION", "CREATED", "IMAGE"],
        &rows,
    ));
    Ok(())
}

async fn undo(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let s = ctx
        .client
        .post_json(&format!("/services/{}/undo", escape(name)), b"{}".to_vec())
        .await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &s);
    } else {
        say(&format!(
            "service/{name} rolled back to the previous template as revision {}",
            s["revision"].as_u64().unwrap_or(0)
        ));
    }
    Ok(())
}

async fn rm(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let s = ctx
        .client
        .delete(&format!("/services/{}", escape(name)))
        .await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &s);
    } else {
        say(&format!(
            "service/{name} deleted; its replicas are being removed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_lists_the_rollout_and_each_replica() {
        let s = json!({
            "name": "web", "replicas": 2, "readyReplicas": 1, "revision": 2,
            "rollout": "rolledBack", "rolloutReason": "replica web-0 did not serve",
            "template": {"image": "busybox:local"},
            "replicaWorkloads": [
                {"name": "web-0", "serviceRevision": 2, "status": "Running", "health": "healthy", "nodeId": "n1"}
            ]
        });
        let text = describe(&s);
        assert!(text.contains("2 wanted, 1 ready"), "{text}");
        assert!(
            text.contains("rolledBack: replica web-0 did not serve"),
            "{text}"
        );
        assert!(text.contains("web-0 rev 2 Running healthy on n1"), "{text}");
        assert!(!text.contains("Autoscale:"), "{text}");
    }

    #[test]
    fn describe_shows_the_autoscaler_and_its_decisions() {
        let s = json!({
            "name": "api", "replicas": 3, "readyReplicas": 3, "revision": 1,
            "rollout": "complete", "template": {"image": "busybox:local"},
            "autoscale": {"min": 1, "max": 5, "targetCpuPercent": 60, "scaleDownStabilizationSeconds": 300},
            "scaleEvents": [{"at": "2026-12-03T10:00:00Z", "reason": "cpu at 150% of the 60% target over 1 measured replica(s): 1 -> 3"}]
        });
        let text = describe(&s);
        assert!(
            text.contains("1-5 replicas, cpu target 60%, down after 300s"),
            "{text}"
        );
        assert!(text.contains("2026-12-03T10:00:00Z cpu at 150%"), "{text}");
    }
}
