//! `persys run`: build a workload from flags, `POST /workloads`, print the id, and with
//! `--wait` follow its status until it runs or fails.

use super::events::EventStream;
use super::wait::Waiter;
use super::Ctx;
use crate::args::RunArgs;
use crate::output::{print_data, print_text};
use anyhow::Context;
use persys_proto::workload::ResourcesRequest;
use persys_proto::{Workload, WorkloadRequest, WorkloadStatus, WorkloadType};
use std::time::Duration;

/// The request `persys run` sends for its arguments. The command is always the exec
/// form (an array, one element per argument), never a string run by a shell. Files
/// named by flags (`--compose`, `--git-token-file`) are read here.
pub fn build_request(args: &RunArgs) -> anyhow::Result<WorkloadRequest> {
    build_request_with_env(args, |var| std::env::var(var).ok())
}

/// [`build_request`] with the environment given (`--git-token-env` reads it).
fn build_request_with_env(
    args: &RunArgs,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<WorkloadRequest> {
    let compose = args
        .compose
        .as_deref()
        .map(|path| {
            read_input(path).with_context(|| format!("reading --compose {}", path.display()))
        })
        .transpose()?;
    let git_token = git_token(args, env)?;
    Ok(WorkloadRequest {
        name: args.name.clone().unwrap_or_default(),
        kind: Some(kind_of(args).as_str().to_string()),
        image: args.image.clone().unwrap_or_default(),
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
        compose,
        local_path: args.local_path.clone(),
        git_repo: args.git_repo.clone(),
        git_branch: args.git_branch.clone(),
        git_token,
        compose_file: args.compose_file.clone(),
        ..Default::default()
    })
}

/// `--type`, or what the project flags imply: `--git-repo` is git-compose, `--compose`
/// or `--local-path` docker-compose, anything else one container.
fn kind_of(args: &RunArgs) -> WorkloadType {
    match args.kind.as_deref() {
        Some("docker-compose") => WorkloadType::DockerCompose,
        Some("git-compose") => WorkloadType::GitCompose,
        Some(_) => WorkloadType::DockerContainer,
        None if args.git_repo.is_some() => WorkloadType::GitCompose,
        None if args.compose.is_some() || args.local_path.is_some() => WorkloadType::DockerCompose,
        None => WorkloadType::DockerContainer,
    }
}

/// The repository token from `--git-token-env` or `--git-token-file`: never from the
/// command line itself, where every user of the host can read it.
fn git_token(
    args: &RunArgs,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<String>> {
    let token = if let Some(var) = &args.git_token_env {
        env(var).ok_or_else(|| anyhow::anyhow!("--git-token-env: ${var} is not set"))?
    } else if let Some(path) = &args.git_token_file {
        let text = read_input(path)
            .with_context(|| format!("reading --git-token-file {}", path.display()))?;
        text.lines().next().unwrap_or_default().to_string()
    } else {
        return Ok(None);
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        anyhow::bail!("the git token is empty");
    }
    Ok(Some(token))
}

/// A file's text, or standard input for `-`.
fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        Ok(text)
    } else {
        Ok(std::fs::read_to_string(path)?)
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
    let request = build_request(args)?;
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
            image: Some("busybox:local".into()),
            wait_timeout: 300,
            ..Default::default()
        }
    }

    fn record(status: WorkloadStatus, exit: Option<i64>, reason: Option<&str>) -> Workload {
        let spec = build_request(&args())
            .expect("request")
            .validate()
            .expect("valid");
        let mut w = Workload::new("id".into(), spec, Utc::now());
        w.status = status;
        w.exit_code = exit;
        w.status_reason = reason.map(Into::into);
        w
    }

    #[test]
    fn minimal_run_sends_type_image_and_zero_resources() {
        let v = serde_json::to_value(build_request(&args()).expect("request")).expect("json");
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
        let v = serde_json::to_value(build_request(&a).expect("request")).expect("json");
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
            .expect("request")
            .validate()
            .expect("server-side validation accepts it");
    }

    #[test]
    fn single_argument_with_spaces_stays_one_exec_element() {
        let a = RunArgs {
            command: vec!["echo hi".into()],
            ..args()
        };
        let v = serde_json::to_value(build_request(&a).expect("request")).expect("json");
        assert_eq!(v["command"], serde_json::json!(["echo hi"]));
    }

    #[test]
    fn secret_env_goes_in_its_own_map() {
        let a = RunArgs {
            env: vec![("MODE".into(), "prod".into())],
            secret_env: vec![("DB_PASSWORD".into(), "hunter2".into())],
            ..args()
        };
        let r = build_request(&a).expect("request");
        assert_eq!(r.secret_env["DB_PASSWORD"], "hunter2");
        assert!(!r.env_vars.contains_key("DB_PASSWORD"));
    }

    #[test]
    fn repeated_env_key_keeps_the_last_value() {
        let a = RunArgs {
            env: vec![("A".into(), "1".into()), ("A".into(), "2".into())],
            ..args()
        };
        assert_eq!(build_request(&a).expect("request").env_vars["A"], "2");
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

    #[test]
    fn a_compose_file_is_read_and_implies_the_docker_compose_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, "services:\n  web:\n    image: busybox:local\n").expect("write");
        let a = RunArgs {
            image: None,
            name: Some("shop".into()),
            compose: Some(file),
            ..args()
        };
        let r = build_request(&a).expect("request");
        assert_eq!(r.kind.as_deref(), Some("docker-compose"));
        assert!(r.image.is_empty());
        assert_eq!(
            r.compose.as_deref(),
            Some("services:\n  web:\n    image: busybox:local\n")
        );
        let spec = r.validate().expect("the server accepts it");
        assert_eq!(spec.name, "shop");
    }

    #[test]
    fn a_git_repo_implies_git_compose_and_the_token_comes_from_the_environment() {
        let var = "PERSYS_TEST_RUN_GIT_TOKEN";
        let a = RunArgs {
            image: None,
            git_repo: Some("https://github.com/acme/shop.git".into()),
            git_branch: Some("release".into()),
            git_token_env: Some(var.into()),
            compose_file: Some("deploy/compose.yaml".into()),
            ..args()
        };
        let env = |v: &str| (v == var).then(|| " s3cret\n".to_string());
        let r = build_request_with_env(&a, env).expect("request");
        assert_eq!(r.kind.as_deref(), Some("git-compose"));
        assert_eq!(r.git_token.as_deref(), Some("s3cret"));
        assert_eq!(r.git_branch.as_deref(), Some("release"));
        assert_eq!(r.compose_file.as_deref(), Some("deploy/compose.yaml"));
        let spec = r.validate().expect("the server accepts it");
        assert_eq!(spec.name, "shop");
        assert_eq!(spec.labels["persys.io/repo"], "acme/shop");
    }

    #[test]
    fn a_missing_token_variable_or_an_empty_token_file_is_an_error() {
        let a = RunArgs {
            image: None,
            git_repo: Some("https://github.com/acme/shop.git".into()),
            git_token_env: Some("PERSYS_TEST_RUN_UNSET_TOKEN".into()),
            ..args()
        };
        let e = build_request(&a).expect_err("unset");
        assert!(
            e.to_string()
                .contains("PERSYS_TEST_RUN_UNSET_TOKEN is not set"),
            "{e}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "\n").expect("write");
        let a = RunArgs {
            git_token_env: None,
            git_token_file: Some(file),
            ..a
        };
        let e = build_request(&a).expect_err("empty");
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
