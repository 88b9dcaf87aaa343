//! How workloads look to people: list rows and the description of one.

use super::table::{age, key_values, labels};
use chrono::{DateTime, Utc};
use persys_proto::health::Health;
use persys_proto::project::ServiceState;
use persys_proto::{Node, Workload, WorkloadStatus, WorkloadType};

/// Columns of `workload list`.
pub const WORKLOAD_HEADERS: [&str; 6] = ["ID", "NAME", "IMAGE", "STATUS", "NODE", "AGE"];

/// Columns of `workload list -o wide`.
pub const WORKLOAD_WIDE_HEADERS: [&str; 10] = [
    "ID", "NAME", "IMAGE", "STATUS", "NODE", "RESTARTS", "GEN", "PORTS", "AGE", "REASON",
];

/// Index of the STATUS column in both workload tables.
pub const WORKLOAD_STATUS_COLUMN: usize = 3;

/// One `workload list` row per workload.
pub fn workload_rows(workloads: &[Workload], now: DateTime<Utc>) -> Vec<Vec<String>> {
    workloads
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.spec.name.clone(),
                image_of(w),
                w.status.to_string(),
                node_of(w),
                age(now, w.created_at),
            ]
        })
        .collect()
}

/// One `workload list -o wide` row per workload.
pub fn workload_rows_wide(workloads: &[Workload], now: DateTime<Utc>) -> Vec<Vec<String>> {
    workloads
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.spec.name.clone(),
                image_of(w),
                w.status.to_string(),
                node_of(w),
                w.restart_count.to_string(),
                w.generation.to_string(),
                if w.spec.ports.is_empty() {
                    "-".into()
                } else {
                    w.spec.ports.join(",")
                },
                age(now, w.created_at),
                reason(w).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

/// The IMAGE column: the image of a container; what a Compose project is made from
/// (`compose:N services`, or the repository's `owner/name@branch`).
fn image_of(w: &Workload) -> String {
    let s = &w.spec;
    match s.kind {
        WorkloadType::DockerContainer => s.image.clone(),
        WorkloadType::GitCompose => {
            let repo = s.git_repo.as_deref().unwrap_or_default();
            let short = persys_proto::validate::repo_full_name(repo).unwrap_or_else(|| repo.into());
            format!(
                "{short}@{}",
                s.git_branch
                    .as_deref()
                    .unwrap_or(persys_proto::validate::DEFAULT_BRANCH)
            )
        }
        WorkloadType::DockerCompose => match w.services.len() {
            0 => "compose".into(),
            1 => "compose:1 service".into(),
            n => format!("compose:{n} services"),
        },
    }
}

/// One `Service:` line of `describe`: `web  Running, healthy, 2 containers (reason)`.
fn service_line(sv: &ServiceState) -> String {
    let mut parts = vec![sv.status.to_string()];
    if let Some(h) = sv.health {
        parts.push(
            match h {
                Health::Starting => "starting",
                Health::Healthy => "healthy",
                Health::Unhealthy => "unhealthy",
            }
            .into(),
        );
    }
    if let Some(c) = sv.exit_code {
        parts.push(format!("exit code {c}"));
    }
    parts.push(match sv.container_ids.len() {
        1 => "1 container".into(),
        n => format!("{n} containers"),
    });
    let mut line = format!("{} {}", sv.name, parts.join(", "));
    if let Some(r) = sv.reason.as_deref().filter(|r| !r.is_empty()) {
        line.push_str(&format!(" ({})", crate::client::one_line(r)));
    }
    line
}

fn node_of(w: &Workload) -> String {
    w.node_id.clone().unwrap_or_else(|| "-".into())
}

/// Why a workload is in its status, on one line: the server's reason, else the exit
/// code of an exited container.
pub fn reason(w: &Workload) -> Option<String> {
    match (
        w.status_reason.as_deref().filter(|r| !r.is_empty()),
        w.exit_code,
    ) {
        (Some(r), _) => Some(crate::client::one_line(r)),
        (None, Some(c)) => Some(format!("exit code {c}")),
        (None, None) => None,
    }
}

/// `workload get` for people: one `Key: value` line per field that has a value. With
/// the node record (`describe`), where the workload runs is spelled out.
pub fn describe_workload(w: &Workload, node: Option<&Node>, now: DateTime<Utc>) -> String {
    let s = &w.spec;
    let mut lines: Vec<(&str, String)> = vec![
        ("ID", w.id.clone()),
        ("Name", s.name.clone()),
        ("Type", s.kind.as_str().into()),
    ];
    if !s.image.is_empty() {
        lines.push(("Image", s.image.clone()));
    }
    if let Some(repo) = &s.git_repo {
        lines.push((
            "Repository",
            format!(
                "{repo} (branch {})",
                s.git_branch
                    .as_deref()
                    .unwrap_or(persys_proto::validate::DEFAULT_BRANCH)
            ),
        ));
    }
    if !s.git_token.is_empty() {
        lines.push(("Git token", "***".into()));
    }
    if let Some(p) = &s.local_path {
        lines.push(("Local path", p.clone()));
    }
    if s.compose.is_some() {
        lines.push(("Compose", "inline file".into()));
    }
    if let Some(f) = &s.compose_file {
        lines.push(("Compose file", f.clone()));
    }
    if let Some(r) = &w.revision {
        lines.push(("Revision", r.clone()));
    }
    if let Some(c) = &s.command {
        let shown = match c {
            persys_proto::Command::Shell(sh) => format!("{sh} (shell form)"),
            persys_proto::Command::Exec(v) => format!("{v:?} (exec form)"),
        };
        lines.push(("Command", shown));
    }
    lines.push(("Status", w.status.to_string()));
    if let Some(r) = w.status_reason.as_deref().filter(|r| !r.is_empty()) {
        // A Pending workload's reason is why no node fits: the placement's verdict.
        let key = if w.status == WorkloadStatus::Pending {
            "Placement"
        } else {
            "Reason"
        };
        lines.push((key, crate::client::one_line(r)));
    }
    if let Some(code) = w.exit_code {
        lines.push(("Exit code", code.to_string()));
    }
    lines.push(("Desired", w.desired_state.to_string()));
    let node_line = match (&w.node_id, node) {
        (None, _) => "- (not placed)".to_string(),
        (Some(id), Some(n)) => format!(
            "{id} ({}:{}, {}{})",
            n.ip_address,
            n.agent_port,
            n.status,
            if n.domain_name.is_empty() {
                String::new()
            } else {
                format!(", {}", n.domain_name)
            }
        ),
        (Some(id), None) => id.clone(),
    };
    lines.push(("Node", node_line));
    lines.push(("Generation", w.generation.to_string()));
    lines.push(("Restarts", w.restart_count.to_string()));
    lines.push(("Restart", s.restart_policy.as_str().into()));
    if let Some(check) = &s.health_check {
        let probe = match check.probe() {
            Some(persys_proto::Probe::Http { path, port }) => format!("http GET :{port}{path}"),
            Some(persys_proto::Probe::Tcp { port }) => format!("tcp :{port}"),
            Some(persys_proto::Probe::Exec(argv)) => format!("exec {}", argv.join(" ")),
            None => "invalid".into(),
        };
        lines.push((
            "Health check",
            format!(
                "{probe} every {}s, timeout {}s, {} retries",
                check.interval_seconds, check.timeout_seconds, check.retries
            ),
        ));
        let health = w.health.map_or("-", |h| match h {
            persys_proto::Health::Starting => "starting",
            persys_proto::Health::Healthy => "healthy",
            persys_proto::Health::Unhealthy => "unhealthy",
        });
        lines.push(("Health", health.into()));
        if let Some(out) = &w.health_output {
            lines.push(("Last probe failure", out.clone()));
        }
    }
    if s.resources.cpu > 0 || s.resources.memory > 0 {
        lines.push((
            "Resources",
            format!("cpu {}m, memory {}MB", s.resources.cpu, s.resources.memory),
        ));
    }
    for (key, list) in [("Ports", &s.ports), ("Volumes", &s.volumes)] {
        if !list.is_empty() {
            lines.push((key, list.join(", ")));
        }
    }
    if let Some(n) = &s.network {
        lines.push(("Network", n.clone()));
    }
    for (key, map) in [
        ("Env", &s.env_vars),
        ("Labels", &s.labels),
        ("Node selector", &s.node_selector),
    ] {
        if !map.is_empty() {
            lines.push((key, labels(map)));
        }
    }
    if let Some(c) = &w.container_id {
        lines.push(("Container", c.clone()));
    }
    for sv in &w.services {
        lines.push(("Service", service_line(sv)));
    }
    lines.push((
        "Created",
        format!(
            "{} ({} ago)",
            w.created_at.to_rfc3339(),
            age(now, w.created_at)
        ),
    ));
    lines.push((
        "Updated",
        format!(
            "{} ({} ago)",
            w.updated_at.to_rfc3339(),
            age(now, w.updated_at)
        ),
    ));
    key_values(&lines)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;
    use persys_proto::{NodeStatus, WorkloadRequest};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("valid time")
    }

    pub(crate) fn workload(
        id: &str,
        name: &str,
        status: WorkloadStatus,
        node: Option<&str>,
    ) -> Workload {
        let spec = WorkloadRequest {
            name: name.into(),
            image: "busybox:local".into(),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        let mut w = Workload::new(id.into(), spec, t(0));
        w.status = status;
        w.node_id = node.map(Into::into);
        w
    }

    #[test]
    fn empty_table_is_just_the_header() {
        assert_eq!(
            super::super::table(&WORKLOAD_HEADERS, &[]),
            "ID   NAME   IMAGE   STATUS   NODE   AGE\n"
        );
    }

    #[test]
    fn workload_rows_show_pending_without_node_as_dash() {
        let rows = workload_rows(
            &[
                workload("id-1", "web", WorkloadStatus::Running, Some("node-1")),
                workload("id-2", "big", WorkloadStatus::Pending, None),
            ],
            t(65),
        );
        assert_eq!(
            rows[0],
            ["id-1", "web", "busybox:local", "Running", "node-1", "65s"]
        );
        assert_eq!(rows[1][4], "-");
        assert_eq!(rows[1][WORKLOAD_STATUS_COLUMN], "Pending");
    }

    #[test]
    fn wide_rows_add_restarts_generation_ports_and_reason() {
        let mut w = workload("id-1", "web", WorkloadStatus::Exited, Some("node-1"));
        w.restart_count = 2;
        w.generation = 3;
        w.exit_code = Some(1);
        w.spec.ports = vec!["8080:80".into()];
        let rows = workload_rows_wide(&[w], t(10));
        assert_eq!(rows[0].len(), WORKLOAD_WIDE_HEADERS.len());
        assert_eq!(rows[0][5..], ["2", "3", "8080:80", "10s", "exit code 1"]);
        assert_eq!(rows[0][WORKLOAD_STATUS_COLUMN], "Exited");
    }

    #[test]
    fn describe_shows_reason_and_exit_code_of_a_failure() {
        let mut w = workload("id-3", "job", WorkloadStatus::Failed, Some("node-2"));
        w.exit_code = Some(3);
        w.status_reason = Some("exited with code 3".into());
        let text = describe_workload(&w, None, t(10));
        assert!(text.contains("Status:"), "{text}");
        assert!(text.contains("Exit code:"), "{text}");
        assert!(text.lines().any(|l| l.ends_with(" 3")), "{text}");
        assert!(text.contains("Reason:"), "{text}");
        assert!(text.contains("exited with code 3"), "{text}");
    }

    #[test]
    fn describe_calls_a_pending_reason_the_placement() {
        let mut w = workload("id-4", "big", WorkloadStatus::Pending, None);
        w.status_reason = Some("no node fits: 1 node has too little memory".into());
        let text = describe_workload(&w, None, t(1));
        let placement = text
            .lines()
            .find(|l| l.starts_with("Placement:"))
            .expect("a Placement line");
        assert!(
            placement.ends_with(" no node fits: 1 node has too little memory"),
            "{text}"
        );
        assert!(text.contains("Node:"), "{text}");
        assert!(text.contains("(not placed)"), "{text}");
    }

    #[test]
    fn describe_with_the_node_shows_its_address_and_status() {
        let w = workload("id-5", "web", WorkloadStatus::Running, Some("node-1"));
        let node = crate::output::node::tests::node("node-1", NodeStatus::Cordoned, t(0));
        let text = describe_workload(&w, Some(&node), t(1));
        assert!(
            text.contains("node-1 (127.0.0.1:8080, Cordoned, node-1.cluster.local.dev)"),
            "{text}"
        );
    }

    #[test]
    fn a_git_compose_project_shows_its_source_revision_and_services_but_not_its_token() {
        let spec = WorkloadRequest {
            kind: Some("git-compose".into()),
            git_repo: Some("https://github.com/acme/shop.git".into()),
            git_token: Some("s3cret".into()),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        let mut w = Workload::new("id-6".into(), spec, t(0));
        w.status = WorkloadStatus::Degraded;
        w.revision = Some("0123abcd".into());
        w.services = vec![
            ServiceState {
                name: "web".into(),
                status: WorkloadStatus::Running,
                container_ids: vec!["c1".into(), "c2".into()],
                exit_code: None,
                health: Some(Health::Healthy),
                reason: None,
            },
            ServiceState {
                name: "worker".into(),
                status: WorkloadStatus::Exited,
                container_ids: vec!["c3".into()],
                exit_code: Some(2),
                health: None,
                reason: Some("exited with code 2".into()),
            },
        ];
        let text = describe_workload(&w, None, t(1));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("Git token:"), "{text}");
        assert!(
            text.contains("https://github.com/acme/shop.git (branch main)"),
            "{text}"
        );
        assert!(text.contains("Revision:"), "{text}");
        assert!(text.contains("0123abcd"), "{text}");
        assert!(!text.contains("Image:"), "{text}");
        let services: Vec<&str> = text.lines().filter(|l| l.starts_with("Service:")).collect();
        assert_eq!(services.len(), 2, "{text}");
        assert!(
            services[0].ends_with(" web Running, healthy, 2 containers"),
            "{text}"
        );
        assert!(
            services[1].ends_with(" worker Exited, exit code 2, 1 container (exited with code 2)"),
            "{text}"
        );
        let rows = workload_rows(&[w], t(1));
        assert_eq!(rows[0][2], "acme/shop@main");
    }
}
