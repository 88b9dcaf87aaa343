//! The repository's `docker-compose.yml` (issue 13): `scripts/compose-images.sh`
//! builds its image offline from the built binaries, `docker compose up -d` brings up
//! three etcd members, two schedulers, the gateway, two agents on the host's engine,
//! persys-dns and Prometheus; the host's `persys` works with the config the stack
//! writes; a workload runs; losing one etcd member and the leading scheduler keeps
//! the cluster working; `docker compose down -v` leaves nothing behind, the agents'
//! workloads included.
//!
//! Each run is its own compose project (`persys-test-<random>`) with its own state
//! directory, free loopback ports and node ids, so it runs beside other tests and
//! beside a developer's own stack. Compose v2 (`docker compose`) is used when present,
//! else v1 (`docker-compose`). Everything is torn down on drop, failures included.

use anyhow::{bail, Context, Result};
use persys_tests::{cluster::bin, cluster::bin_dir, docker, ensure_test_image, TEST_IMAGE};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The repository root (where docker-compose.yml is).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// `docker compose` when the v2 plugin answers, else `docker-compose` (v1).
fn compose_program() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// Run `cmd` for at most `limit` (coreutils' `timeout`, then a kill).
fn bounded(
    program: &str,
    args: &[String],
    envs: &[(String, String)],
    limit: Duration,
) -> Result<Output> {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &limit.as_secs().to_string(), program])
        .args(args)
        .current_dir(repo());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    Ok(out)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Poll `check` every 500 ms until it answers `Some`, at most `limit`.
fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("not within {limit:?}: {what} (last error: {last})");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One compose project of docker-compose.yml, taken down on drop.
struct Stack {
    compose: Vec<String>,
    project: String,
    env: Vec<(String, String)>,
    state: tempfile::TempDir,
    nodes: [String; 2],
    prometheus_port: u16,
    down: bool,
}

impl Stack {
    fn new() -> Result<Self> {
        let project = format!(
            "persys-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let state = tempfile::Builder::new()
            .prefix("persys-compose-")
            .tempdir()?;
        let (gateway, prometheus, dns) = (
            persys_tests::process::free_port(),
            persys_tests::process::free_port(),
            persys_tests::process::free_port(),
        );
        let env = vec![
            ("PERSYS_COMPOSE_GATEWAY_PORT".into(), gateway.to_string()),
            (
                "PERSYS_COMPOSE_PROMETHEUS_PORT".into(),
                prometheus.to_string(),
            ),
            ("PERSYS_COMPOSE_DNS_PORT".into(), dns.to_string()),
            (
                "PERSYS_COMPOSE_STATE".into(),
                state.path().display().to_string(),
            ),
            ("PERSYS_COMPOSE_NODE_PREFIX".into(), project.clone()),
        ];
        Ok(Self {
            compose: compose_program(),
            nodes: [format!("{project}-node-1"), format!("{project}-node-2")],
            project,
            env,
            state,
            prometheus_port: prometheus,
            down: false,
        })
    }

    /// `docker compose -p <project> -f docker-compose.yml <args>`, bounded.
    fn compose(&self, args: &[&str], limit: Duration) -> Result<Output> {
        let mut all: Vec<String> = self.compose[1..].to_vec();
        all.extend(["-p".into(), self.project.clone(), "-f".into()]);
        all.push(repo().join("docker-compose.yml").display().to_string());
        all.extend(args.iter().map(|a| (*a).to_string()));
        bounded(&self.compose[0], &all, &self.env, limit)
    }

    /// The same, failing with its output unless it succeeds.
    fn compose_ok(&self, args: &[&str], limit: Duration) -> Result<String> {
        let out = self.compose(args, limit)?;
        if !out.status.success() {
            bail!("compose {args:?} failed ({}):\n{}", out.status, text(&out));
        }
        Ok(text(&out))
    }

    fn config(&self) -> PathBuf {
        self.state.path().join("config.yaml")
    }

    /// The host's `persys` with the config the stack wrote.
    fn cli(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["--config".to_string(), self.config().display().to_string()];
        all.extend(args.iter().map(|a| (*a).to_string()));
        bounded(
            &bin("persys").display().to_string(),
            &all,
            &[],
            Duration::from_secs(60),
        )
    }

    fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!("persys {args:?} failed: {}", text(&out));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Ids of the Active nodes.
    fn active_nodes(&self) -> Result<Vec<String>> {
        let nodes = self.cli_json(&["node", "list", "-o", "json"])?;
        Ok(nodes
            .as_array()
            .context("node list is an array")?
            .iter()
            .filter(|n| n["status"] == "Active")
            .filter_map(|n| n["nodeId"].as_str().map(str::to_string))
            .collect())
    }

    /// Wait until workload `id` is Running (and healthy, when it has a check);
    /// returns its node.
    fn wait_running(&self, id: &str, healthy: bool) -> Result<String> {
        eventually(&format!("{id} Running"), Duration::from_secs(60), || {
            let w = self.cli_json(&["get", id, "-o", "json"])?;
            let ok = w["status"] == "Running" && (!healthy || w["health"] == "healthy");
            Ok(ok.then(|| w["nodeId"].as_str().unwrap_or("").to_string()))
        })
    }

    /// `persys run` a sleeping container and wait until it is Running; returns (id,
    /// node).
    fn run_workload(&self, name: &str) -> Result<(String, String)> {
        let out = self.cli(&["run", "--name", name, TEST_IMAGE, "--", "sleep", "300"])?;
        if !out.status.success() {
            bail!("persys run failed: {}", text(&out));
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let node = self.wait_running(&id, false)?;
        Ok((id, node))
    }

    /// `persys apply` a web server with an HTTP health check (the agent probes the
    /// container's address on the engine's bridge network) and wait until it is
    /// healthy; returns (id, node).
    fn apply_checked_web(&self, name: &str) -> Result<(String, String)> {
        let file = self.state.path().join("web.yaml");
        std::fs::write(
            &file,
            format!(
                "name: {name}\nimage: {TEST_IMAGE}\ncommand: [httpd, -f, -p, '8080', -h, /www]\n\
                 healthCheck:\n  http: {{path: /, port: 8080}}\n  intervalSeconds: 1\n"
            ),
        )?;
        let created = self.cli_json(&["apply", "-f", &file.display().to_string(), "-o", "json"])?;
        let id = created[0]["id"]
            .as_str()
            .context("apply answers the created record")?
            .to_string();
        let node = self.wait_running(&id, true)?;
        Ok((id, node))
    }

    /// The scheduler service that leads, from its own /metrics.
    fn leader(&self) -> Result<String> {
        for s in ["scheduler-1", "scheduler-2"] {
            let metrics = self.compose_ok(
                &[
                    "exec",
                    "-T",
                    s,
                    "curl",
                    "-fsS",
                    "--cacert",
                    "/scheduler/ca.crt",
                    "https://localhost:8084/metrics",
                ],
                Duration::from_secs(30),
            )?;
            if metrics
                .lines()
                .any(|l| l.trim() == "persys_scheduler_is_leader 1")
            {
                return Ok(s.to_string());
            }
        }
        bail!("no scheduler says it leads")
    }

    /// Prometheus' targets as (job, health).
    fn targets(&self) -> Result<Vec<(String, String)>> {
        let url = format!("http://127.0.0.1:{}/api/v1/targets", self.prometheus_port);
        let out = bounded("curl", &["-fsS".into(), url], &[], Duration::from_secs(10))?;
        if !out.status.success() {
            bail!("prometheus: {}", text(&out));
        }
        let v: Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["data"]["activeTargets"]
            .as_array()
            .context("activeTargets")?
            .iter()
            .map(|t| {
                (
                    t["labels"]["job"].as_str().unwrap_or("").to_string(),
                    t["health"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    /// What of the project Docker still has: containers, volumes, networks.
    fn leftovers(&self) -> Vec<String> {
        let filter = format!("label=com.docker.compose.project={}", self.project);
        let mut left = Vec::new();
        for kind in [["ps", "-aq"], ["volume", "ls"], ["network", "ls"]] {
            let mut args: Vec<String> = kind.iter().map(|s| (*s).to_string()).collect();
            args.extend(["-q".into(), "--filter".into(), filter.clone()]);
            if let Ok(out) = bounded("docker", &args, &[], Duration::from_secs(30)) {
                left.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(|l| format!("{} {l}", kind[0])),
                );
            }
        }
        left
    }

    fn take_down(&mut self) -> Result<String> {
        self.down = true;
        self.compose_ok(
            &["down", "-v", "--remove-orphans"],
            Duration::from_secs(120),
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(out) = self.compose(
                &["logs", "--no-color", "--tail", "40"],
                Duration::from_secs(30),
            ) {
                eprintln!("--- compose logs of {}:\n{}", self.project, text(&out));
            }
        }
        if !self.down {
            let _ = self.compose(
                &["down", "-v", "--remove-orphans", "-t", "2"],
                Duration::from_secs(120),
            );
        }
        for node in &self.nodes {
            docker::remove_node_containers(node);
        }
    }
}

#[test]
fn docker_compose_up_runs_a_resilient_cluster_and_down_leaves_nothing() {
    let started = Instant::now();
    ensure_test_image().expect("test image");
    let build = bounded(
        "bash",
        &[repo()
            .join("scripts/compose-images.sh")
            .display()
            .to_string()],
        &[("PERSYS_BIN_DIR".into(), bin_dir().display().to_string())],
        Duration::from_secs(180),
    )
    .expect("image script runs");
    assert!(
        build.status.success(),
        "compose-images.sh failed:\n{}",
        text(&build)
    );
    eprintln!(
        "image ready after {:?}: {}",
        started.elapsed(),
        text(&build).trim()
    );

    let mut stack = Stack::new().expect("stack");
    eprintln!("compose: {:?}, project {}", stack.compose, stack.project);
    stack
        .compose_ok(&["up", "-d"], Duration::from_secs(180))
        .expect("docker compose up -d");
    eprintln!("up after {:?}", started.elapsed());

    // The host's CLI, with the config the stack wrote, sees both agents Active.
    let active = eventually("two Active nodes", Duration::from_secs(90), || {
        if !stack.config().is_file() {
            return Ok(None);
        }
        let active = stack.active_nodes()?;
        Ok((active.len() == 2).then_some(active))
    })
    .expect("nodes");
    let mut expected = stack.nodes.to_vec();
    expected.sort();
    let mut got = active.clone();
    got.sort();
    assert_eq!(got, expected, "the agents' own node ids");
    eprintln!("2 Active after {:?}", started.elapsed());

    let (id, node) = stack
        .apply_checked_web("compose-web")
        .expect("a health-checked workload runs and is healthy");
    assert!(
        stack.nodes.contains(&node),
        "placed on a node of the stack: {node}"
    );
    assert_eq!(
        docker::running_workload_containers(&id).len(),
        1,
        "its container runs on the host's engine"
    );

    // Prometheus scrapes every component: each job has its targets up.
    let jobs = [
        "persys-scheduler",
        "persys-gateway",
        "persys-agent",
        "persys-dns",
        "etcd",
    ];
    eventually(
        "every Prometheus target up",
        Duration::from_secs(45),
        || {
            let targets = stack.targets()?;
            let all_up = jobs.iter().all(|job| {
                let of_job: Vec<_> = targets.iter().filter(|(j, _)| j == job).collect();
                !of_job.is_empty() && of_job.iter().all(|(_, h)| h == "up")
            });
            Ok(all_up.then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}: {:?}", stack.targets()));
    eprintln!("prometheus targets up after {:?}", started.elapsed());

    // Losing an etcd member and the leading scheduler keeps the cluster working.
    let leader = stack.leader().expect("leader");
    stack
        .compose_ok(&["kill", "etcd-1", &leader], Duration::from_secs(60))
        .expect("kill");
    eprintln!("killed etcd-1 and {leader} after {:?}", started.elapsed());
    // The killed leader's lease runs out before another replica leads: writes answer
    // 503 "no leader" meanwhile (nothing is stored), then succeed.
    let (id2, _) = eventually(
        "a workload accepted after the losses",
        Duration::from_secs(60),
        || match stack.run_workload("compose-web2") {
            Ok(v) => Ok(Some(v)),
            Err(e) if format!("{e:#}").contains("leader") => Err(e),
            Err(e) => panic!("a workload runs after the losses: {e:#}"),
        },
    )
    .expect("a workload runs after the losses");
    eventually(
        "two Active nodes after the losses",
        Duration::from_secs(30),
        || Ok((stack.active_nodes()?.len() == 2).then_some(())),
    )
    .expect("nodes after the losses");
    assert_eq!(docker::running_workload_containers(&id2).len(), 1);
    eprintln!("workload after the losses at {:?}", started.elapsed());

    // down -v leaves nothing: no container, volume or network of the project, and the
    // reaper removed the agents' workloads.
    let out = stack.take_down().expect("docker compose down -v");
    let left = stack.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}\n{out}");
    for n in &stack.nodes {
        let workloads = docker::containers_with_label("persys.nodeId", n);
        assert!(
            workloads.is_empty(),
            "workloads of {n} left: {workloads:?}\n{out}"
        );
    }
    eprintln!("down after {:?}", started.elapsed());
}
