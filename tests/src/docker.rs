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

/// The labels of each running container of one workload.
pub fn running_workload_labels(workload_id: &str) -> Vec<Value> {
    running_workload_containers(workload_id)
        .iter()
        .filter_map(|c| inspect(c))
        .map(|v| v["Config"]["Labels"].clone())
        .collect()
}

/// `docker inspect` of one container.
pub fn inspect(id: &str) -> Option<Value> {
    let text = docker(&["inspect", id])?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get(0).cloned()
}

/// Remove every container an agent with this node id created, and the networks,
/// volumes and built images of its Compose projects (all labelled with the node).
pub fn remove_node_containers(node_id: &str) {
    let ids = containers_with_label("persys.nodeId", node_id);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        let _ = docker(&args);
    }
    let filter = format!("label=persys.nodeId={node_id}");
    for (list, remove) in [
        (["network", "ls", "-q"], ["network", "rm"]),
        (["volume", "ls", "-q"], ["volume", "rm"]),
        (["image", "ls", "-q"], ["image", "rm"]),
    ] {
        let mut args = list.to_vec();
        args.extend(["--filter", &filter]);
        let listed = docker(&args).unwrap_or_default();
        let ids: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
        if !ids.is_empty() {
            let mut args = remove.to_vec();
            if remove[0] == "image" {
                args.push("-f");
            }
            args.extend(ids);
            let _ = docker(&args);
        }
    }
}

/// Names of the networks, volumes or images (`kind`) labelled `key=value`.
pub fn labelled(kind: &str, key: &str, value: &str) -> Vec<String> {
    let format = if kind == "image" {
        "{{.Repository}}:{{.Tag}}"
    } else {
        "{{.Name}}"
    };
    docker(&[
        kind,
        "ls",
        "--filter",
        &format!("label={key}={value}"),
        "--format",
        format,
    ])
    .map(|s| s.lines().map(str::to_string).collect())
    .unwrap_or_default()
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

/// Running containers of every persys workload: workload id → container ids.
pub fn running_by_workload() -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let text = docker(&[
        "ps",
        "--no-trunc",
        "--filter",
        "label=persys.workloadId",
        "--format",
        "{{.ID}} {{.Label \"persys.workloadId\"}}",
    ])
    .unwrap_or_default();
    for line in text.lines() {
        if let Some((cid, wid)) = line.split_once(' ') {
            out.entry(wid.to_string())
                .or_default()
                .push(cid.to_string());
        }
    }
    out
}

/// Engine events between two Unix times (seconds, fractional) matching `filters`
/// (`key=value` as `docker events --filter`), oldest first, as JSON objects.
pub fn events(since: f64, until: f64, filters: &[&str]) -> Vec<Value> {
    let since = format!("{since:.3}");
    let until = format!("{until:.3}");
    let mut args = vec![
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{json .}}",
    ];
    for f in filters {
        args.push("--filter");
        args.push(f);
    }
    docker(&args)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Now as a Unix time in seconds (for [`events`]).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
