//! `persys run`: build a workload from flags, `POST /workloads`, print the id, and with
//! `--wait` follow its status until it runs or fails.

use super::events::EventStream;
use super::wait::Waiter;
use super::Ctx;
use crate::args::RunArgs;
use crate::output::{print_data, print_text};
use anyhow::Context;
use persys_proto::workload::ResourcesRequest;
use persys_proto::{Workload, WorkloadRequest, WorkloadStatus};
use std::time::Duration;

/// The request `persys run` sends for its arguments. The command is always the exec
/// form (an array, one element per argument), never a string run by a shell.
pub fn build_request(args: &RunArgs) -> WorkloadRequest {
    WorkloadRequest {
        name: args.name.clone().unwrap_or_default(),
        kind: Some(
            persys_proto::WorkloadType::DockerContainer
                .as_str()
                .to_string(),
        ),
        image: args.image.clone(),
        command: (!args.command.is_empty()).then(|| {
            serde_json::Value::Array(
                args.command
                    .iter()
                    .map(|a| serde_json::Value::String(a.clone()))
                    .collect(),
            )
        }),
        env_vars: args.env.iter().cloned().collect(),
        ports: args.ports.clone(),
        volumes: args.volumes.clone(),
        network: args.network.clone(),
        restart_policy: args.restart.clone(),
        resources: Some(ResourcesRequest {
            cpu: args.cpu.into(),
            memory: args.memory.into(),
        }),
        labels: args.labels.iter().cloned().collect(),
        node_selector: args.node_selector.iter().cloned().collect(),
        secret_env: args.secret_env.iter().cloned().collect(),
        ..Default::default()
    }
}

/// What a status means for `--wait`: `None` keep waiting, `Some(Ok)` it ran,
/// `Some(Err(reason))` it failed.
pub fn judge(w: &Workload) -> Option<Result<(), String>> {
    let reason = w.status_reason.as_deref().filter(|r| !r.is_empty());
    // "Failed: exited with code 3", or "Failed (exit code 3)" when the reason is silent
    // about the code, so the code is always there but never twice.
    let explain = || {
        let code = w.exit_code.map(|c| c.to_string());
        match (reason, code) {
            (Some(r), Some(c)) if !r.contains(c.as_str()) => {
                format!("{} (exit code {c}): {r}", w.status)
            }
            (Some(r), _) => format!("{}: {r}", w.status),
            (None, Some(c)) => format!("{} (exit code {c})", w.status),
            (None, None) => w.status.to_string(),
        }
    };
    match w.status {
        WorkloadStatus::Running => Some(Ok(())),
        // It ran and finished cleanly before we saw it running (e.g. `echo hi`).
        WorkloadStatus::Exited if w.exit_code.unwrap_or(0) == 0 => Some(Ok(())),
        WorkloadStatus::Exited | WorkloadStatus::Failed | WorkloadStatus::ImagePullBackOff => {
            Some(Err(explain()))
        }
        WorkloadStatus::Stopped => Some(Err(format!("stopped before it ran ({})", explain()))),
        _ => None,
    }
}

/// `persys run`.
pub async fn run(ctx: &Ctx, args: &RunArgs) -> anyhow::Result<()> {
    let request = build_request(args);
    // Checked here too so a typo is reported before anything is sent.
    request
        .clone()
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid workload: {e}"))?;
    let body = serde_json::to_vec(&request).context("encoding the workload")?;
    // Subscribed before the workload exists, so no status change can slip by; without
    // an event stream (an older server, a refused route) `--wait` polls instead.
    let events = if args.wait {
        EventStream::open(&ctx.client)
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "no event stream; polling"))
            .ok()
    } else {
        None
    };
    let record = ctx.client.post_json("/workloads", body).await?;
    let id = record
        .get("id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .context("the server answered without a workload id")?;
    if !args.wait {
        if ctx.format.is_data() {
            print_data(ctx.format, &record);
        } else {
            print_text(&format!("{id}\n"));
        }
        return Ok(());
    }
    if !ctx.format.is_data() {
        print_text(&format!("{id}\n"));
    }
    let waiter = Waiter {
        ctx,
        id: &id,
        timeout: Duration::from_secs(args.wait_timeout),
    };
    let last = waiter.wait(record, events).await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &last);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn args() -> RunArgs {
        RunArgs {
            image: "busybox:local".into(),
            wait_timeout: 300,
            ..Default::default()
        }
    }

    fn record(status: WorkloadStatus, exit: Option<i64>, reason: Option<&str>) -> Workload {
        let spec = build_request(&args()).validate().expect("valid");
        let mut w = Workload::new("id".into(), spec, Utc::now());
        w.status = status;
        w.exit_code = exit;
        w.status_reason = reason.map(Into::into);
        w
    }

    #[test]
    fn minimal_run_sends_type_image_and_zero_resources() {
        let v = serde_json::to_value(build_request(&args())).expect("json");
        assert_eq!(v["type"], "docker-container");
        assert_eq!(v["image"], "busybox:local");
        assert_eq!(v["resources"], serde_json::json!({"cpu": 0, "memory": 0}));
        assert_eq!(v["command"], serde_json::Value::Null);
        assert_eq!(v["restartPolicy"], serde_json::Value::Null);
    }

    #[test]
    fn every_flag_maps_to_its_field() {
        let a = RunArgs {
            name: Some("web".into()),
            env: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
            cpu: 250,
            memory: 64,
            labels: vec![("team".into(), "web".into())],
            node_selector: vec![("zone".into(), "a".into())],
            restart: Some("on-failure".into()),
            ports: vec!["8080:80".into()],
            volumes: vec!["/data:/data:ro".into()],
            network: Some("bridge".into()),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            ..args()
        };
        let v = serde_json::to_value(build_request(&a)).expect("json");
        assert_eq!(v["name"], "web");
        assert_eq!(v["envVars"], serde_json::json!({"A": "1", "B": "x=y"}));
        assert_eq!(
            v["resources"],
            serde_json::json!({"cpu": 250, "memory": 64})
        );
        assert_eq!(v["labels"], serde_json::json!({"team": "web"}));
        assert_eq!(v["nodeSelector"], serde_json::json!({"zone": "a"}));
        assert_eq!(v["restartPolicy"], "on-failure");
        assert_eq!(v["ports"], serde_json::json!(["8080:80"]));
        assert_eq!(v["volumes"], serde_json::json!(["/data:/data:ro"]));
        assert_eq!(v["network"], "bridge");
        assert_eq!(v["command"], serde_json::json!(["sh", "-c", "echo hi"]));
        build_request(&a)
            .validate()
            .expect("server-side validation accepts it");
    }

    #[test]
    fn single_argument_with_spaces_stays_one_exec_element() {
        let a = RunArgs {
            command: vec!["echo hi".into()],
            ..args()
        };
        let v = serde_json::to_value(build_request(&a)).expect("json");
        assert_eq!(v["command"], serde_json::json!(["echo hi"]));
    }

    #[test]
    fn secret_env_goes_in_its_own_map() {
        let a = RunArgs {
            env: vec![("MODE".into(), "prod".into())],
            secret_env: vec![("DB_PASSWORD".into(), "hunter2".into())],
            ..args()
        };
        let r = build_request(&a);
        assert_eq!(r.secret_env["DB_PASSWORD"], "hunter2");
        assert!(!r.env_vars.contains_key("DB_PASSWORD"));
    }

    #[test]
    fn repeated_env_key_keeps_the_last_value() {
        let a = RunArgs {
            env: vec![("A".into(), "1".into()), ("A".into(), "2".into())],
            ..args()
        };
        assert_eq!(build_request(&a).env_vars["A"], "2");
    }

    #[test]
    fn wait_succeeds_on_running_and_clean_exit() {
        assert_eq!(
            judge(&record(WorkloadStatus::Running, None, None)),
            Some(Ok(()))
        );
        assert_eq!(
            judge(&record(WorkloadStatus::Exited, Some(0), None)),
            Some(Ok(()))
        );
    }

    #[test]
    fn wait_fails_with_reason_on_failures() {
        let e = judge(&record(
            WorkloadStatus::ImagePullBackOff,
            None,
            Some("no such image"),
        ));
        assert_eq!(e, Some(Err("ImagePullBackOff: no such image".into())));
        let e = judge(&record(WorkloadStatus::Exited, Some(3), None));
        assert_eq!(e, Some(Err("Exited (exit code 3)".into())));
        let e = judge(&record(WorkloadStatus::Failed, Some(1), Some("boom")));
        assert_eq!(e, Some(Err("Failed (exit code 1): boom".into())));
        let e = judge(&record(
            WorkloadStatus::Failed,
            Some(3),
            Some("exited with code 3"),
        ));
        assert_eq!(e, Some(Err("Failed: exited with code 3".into())));
    }

    #[test]
    fn wait_keeps_waiting_while_in_progress() {
        for s in [
            WorkloadStatus::Pending,
            WorkloadStatus::Scheduled,
            WorkloadStatus::Pulling,
            WorkloadStatus::ContainerCreating,
            WorkloadStatus::Unknown,
        ] {
            assert_eq!(judge(&record(s, None, None)), None, "{s}");
        }
    }
}
