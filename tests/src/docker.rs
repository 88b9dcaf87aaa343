//! Direct looks at the Docker engine (through the `docker` CLI, independent of the
//! agent's own code) to check what really runs.

use serde_json::Value;
use std::process::Command;

fn docker(args: &[&str]) -> Option<String> {
    let out = Command::new("docker").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Ids of the containers (running or not) whose label `key=value` matches.
pub fn containers_with_label(key: &str, value: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label={key}={value}"),
    ])
    .map(|s| s.lines().map(str::to_string).collect())
    .unwrap_or_default()
}

/// Containers of one workload.
pub fn workload_containers(workload_id: &str) -> Vec<String> {
    containers_with_label("persys.workloadId", workload_id)
}

/// Running containers of one workload.
pub fn running_workload_containers(workload_id: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=persys.workloadId={workload_id}"),
    ])
    .map(|s| s.lines().map(str::to_string).collect())
    .unwrap_or_default()
}

/// `docker inspect` of one container.
pub fn inspect(id: &str) -> Option<Value> {
    let text = docker(&["inspect", id])?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get(0).cloned()
}

/// Remove every container an agent with this node id created.
pub fn remove_node_containers(node_id: &str) {
    let ids = containers_with_label("persys.nodeId", node_id);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        let _ = docker(&args);
    }
}

/// Remove one container by id.
pub fn remove(id: &str) {
    let _ = docker(&["rm", "-f", id]);
}

/// Wall time of a bare `docker run -d` of `image` with `cmd` until running, in ms.
pub fn bare_run_ms(image: &str, cmd: &[&str]) -> Option<f64> {
    let start = std::time::Instant::now();
    let mut args = vec!["run", "-d", "--label", "persys.benchBare=1", image];
    args.extend_from_slice(cmd);
    let id = docker(&args)?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    remove(id.trim());
    Some(ms)
}
