//! `Cluster`: a real etcd, `persys-scheduler` and N `persys-agent` processes on free
//! ports, talking real mTLS, running containers on the host's Docker engine. Everything
//! started is stopped on drop, containers included (by their `persys.nodeId` label).

mod gateway;
mod hosts;
mod replicas;
mod sim;

pub use gateway::Gateway;
pub use replicas::Replica;
pub use sim::SimFleet;

use crate::api::Api;
use crate::etcd::Etcd;
use crate::netns::Host;
use crate::process::{free_port, Process};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Directory holding the built binaries (`target/debug`), overridable by `PERSYS_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PERSYS_BIN_DIR") {
        return PathBuf::from(d);
    }
    // The test executable lives in target/<profile>/deps.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target dir")
}

/// Path of a built binary, failing clearly when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// Options of one agent.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Advertised CPU cores (`--cpu`).
    pub cpu: Option<f64>,
    /// Advertised memory (`--memory-mb`).
    pub memory_mb: Option<u64>,
    /// Extra agent flags.
    pub args: Vec<String>,
    /// The loopback address it listens on and advertises (default `127.0.0.1`):
    /// agents on `127.0.0.2`, `127.0.0.3`… are nodes with addresses of their own on
    /// one machine (their containers still share its engine). Not for netns hosts.
    pub address: Option<String>,
}

impl AgentOptions {
    /// With one label.
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
}

/// Options of the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Agents to start.
    pub agents: Vec<AgentOptions>,
    /// `--node-timeout-ms` of the scheduler.
    pub node_timeout_ms: Option<u64>,
    /// Extra scheduler flags.
    pub scheduler_args: Vec<String>,
    /// Run each agent as a separate host: in its own network namespace with its own
    /// address (see [`crate::netns`]). The schedulers then listen on all addresses.
    pub netns: bool,
    /// Scheduler replicas sharing etcd and the data dir (0 or 1: one scheduler).
    pub schedulers: usize,
    /// The schedulers' `RUST_LOG` (tests: `info,persys_scheduler=debug`; benchmarks
    /// run what users run, `info`).
    pub scheduler_log: Option<String>,
}

/// One agent process and its identity.
pub struct Agent {
    /// Node id (unique per test run).
    pub node_id: String,
    /// Its mTLS port.
    pub port: u16,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its options.
    pub options: AgentOptions,
    /// The process, when running.
    pub process: Option<Process>,
}

/// A whole persys cluster for one test.
pub struct Cluster {
    /// Temp dir with every data dir and log.
    pub dir: tempfile::TempDir,
    /// The etcd server.
    pub etcd: Etcd,
    /// The scheduler process, when running.
    pub scheduler: Option<Process>,
    /// Scheduler mTLS API port.
    pub api_port: u16,
    /// Scheduler bootstrap port.
    pub bootstrap_port: u16,
    /// Agents, in start order.
    pub agents: Vec<Agent>,
    /// Prefix that makes node ids unique to this cluster.
    pub prefix: String,
    /// The gateway, once started.
    pub gateway: Option<Gateway>,
    /// Scheduler replicas 1.. (replica 0 is `scheduler`, `api_port`, `bootstrap_port`).
    pub replicas: Vec<Replica>,
    /// Test hosts by agent index (agents run inside them when `netns` is set).
    pub hosts: BTreeMap<usize, Host>,
    /// Hosts created at start for agents not added yet (their addresses are in the
    /// schedulers' certificates).
    spare_hosts: Vec<Host>,
    scheduler_args: Vec<String>,
    scheduler_log: String,
    netns: bool,
}

impl Cluster {
    /// Start etcd, the scheduler and the agents; wait until every node is Active.
    pub async fn start(options: ClusterOptions) -> Result<Self> {
        crate::ensure_test_image()?;
        let dir = tempfile::Builder::new().prefix("persys-e2e").tempdir()?;
        let etcd = Etcd::start(dir.path()).await?;
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut scheduler_args = vec![
            "--node-timeout-ms".to_string(),
            options.node_timeout_ms.unwrap_or(5000).to_string(),
        ];
        scheduler_args.extend(options.scheduler_args.iter().cloned());
        let mut spare_hosts = Vec::new();
        if options.netns {
            for _ in &options.agents {
                spare_hosts.push(Host::create()?);
            }
            // Schedulers are reached at the root side of every host's link.
            let sans: Vec<String> = spare_hosts.iter().map(|h| h.host_ip.to_string()).collect();
            if !sans.is_empty() {
                scheduler_args.push("--tls-san".into());
                scheduler_args.push(sans.join(","));
            }
        }
        let mut cluster = Self {
            dir,
            etcd,
            scheduler: None,
            api_port: free_port(),
            bootstrap_port: free_port(),
            agents: Vec::new(),
            prefix,
            gateway: None,
            replicas: (1..options.schedulers.max(1))
                .map(|_| Replica::new(free_port(), free_port()))
                .collect(),
            hosts: BTreeMap::new(),
            spare_hosts,
            scheduler_args,
            scheduler_log: options
                .scheduler_log
                .clone()
                .unwrap_or_else(|| "info,persys_scheduler=debug".into()),
            netns: options.netns,
        };
        for i in 0..cluster.replica_count() {
            cluster.start_replica(i).await?;
        }
        for opts in options.agents {
            cluster.add_agent(opts).await?;
        }
        Ok(cluster)
    }

    /// Path of the scheduler's data dir (PKI, join token).
    pub fn scheduler_dir(&self) -> PathBuf {
        self.dir.path().join("scheduler")
    }

    /// The join token the scheduler wrote.
    pub fn join_token(&self) -> Result<String> {
        let t = std::fs::read_to_string(self.scheduler_dir().join("join-token"))
            .context("read join-token")?;
        Ok(t.trim().to_string())
    }

    /// Add and start an agent; wait until its node is Active.
    pub async fn add_agent(&mut self, options: AgentOptions) -> Result<usize> {
        let idx = self.agents.len();
        let node_id = format!("{}-node-{}", self.prefix, idx + 1);
        let data_dir = self.dir.path().join(format!("agent-{}", idx + 1));
        self.agents.push(Agent {
            node_id,
            port: free_port(),
            data_dir,
            options,
            process: None,
        });
        if self.netns {
            if self.spare_hosts.is_empty() {
                bail!("netns clusters get their hosts at start (ClusterOptions::agents)");
            }
            let host = self.spare_hosts.remove(0);
            self.hosts.insert(idx, host);
        }
        self.start_agent(idx).await?;
        Ok(idx)
    }

    /// Start agent `idx` (again) and wait until its node is Active.
    pub async fn start_agent(&mut self, idx: usize) -> Result<()> {
        let token = self.join_token()?;
        let cmd = self.agent_command(idx, &token);
        let log = self.dir.path().join(format!("agent-{}.log", idx + 1));
        let name = format!("persys-agent {}", self.agents[idx].node_id);
        let p = Process::spawn(&name, cmd, &log)?;
        self.agents[idx].process = Some(p);
        let node_id = self.agents[idx].node_id.clone();
        let api = self.api()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(node) = api.get_json(&format!("/nodes/{node_id}")).await {
                if node["status"] == "Active" && node["lastHeartbeat"].is_string() {
                    return Ok(());
                }
            }
            if let Some(p) = self.agents[idx].process.as_mut() {
                if p.has_exited() {
                    bail!("agent {node_id} exited during start:\n{}", p.log());
                }
            }
            if Instant::now() > deadline {
                bail!("agent {node_id} not Active in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every log line written so far by every process of the cluster.
    pub fn all_logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }

    /// kill -9 agent `idx`.
    pub fn kill_agent(&mut self, idx: usize) {
        if let Some(mut p) = self.agents[idx].process.take() {
            p.kill();
        }
    }

    /// An mTLS client of the scheduler API with the admin certificate.
    pub fn api(&self) -> Result<Api> {
        let d = self.scheduler_dir();
        Api::new(
            &format!("https://127.0.0.1:{}", self.api_port),
            &d.join("ca.crt"),
            Some((&d.join("admin.crt"), &d.join("admin.key"))),
        )
    }

    /// Write a CLI config pointing at this cluster; returns its path.
    pub fn cli_config(&self) -> Result<PathBuf> {
        let d = self.scheduler_dir();
        let path = self.dir.path().join("config.yaml");
        std::fs::write(
            &path,
            format!(
                "api_endpoint: https://127.0.0.1:{}\nca_cert_path: {}\ncert_path: {}\nkey_path: {}\n",
                self.api_port,
                d.join("ca.crt").display(),
                d.join("admin.crt").display(),
                d.join("admin.key").display()
            ),
        )?;
        Ok(path)
    }

    /// Run the built `persys` CLI against this cluster.
    pub fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        let cfg = self.cli_config()?;
        Ok(Command::new(bin("persys"))
            .args(args)
            .env("PERSYS_CONFIG", cfg)
            .env_remove("HOME")
            .output()?)
    }

    /// Schedule a workload through `POST /workloads`; returns the stored record.
    pub async fn submit(&self, body: Value) -> Result<Value> {
        let (status, v) = self.api()?.post("/workloads", &body).await?;
        if status != 201 {
            bail!("POST /workloads answered {status}: {v}");
        }
        Ok(v)
    }

    /// Wait until workload `id` satisfies `pred`; returns the record.
    pub async fn wait_workload(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let api = self.api()?;
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            if let Ok(w) = api.get_json(&format!("/workloads/{id}")).await {
                if pred(&w) {
                    return Ok(w);
                }
                last = w;
            }
            if Instant::now() > deadline {
                bail!("workload {id} not {what} within {timeout:?}; last: {last}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until workload `id` has `status`.
    pub async fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Result<Value> {
        self.wait_workload(id, timeout, status, |w| w["status"] == status)
            .await
    }

    /// Node ids of all agents.
    pub fn node_ids(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.node_id.clone()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut g) = self.gateway.take() {
            g.process.kill();
        }
        for a in &mut self.agents {
            if let Some(mut p) = a.process.take() {
                p.kill();
            }
        }
        if let Some(mut p) = self.scheduler.take() {
            p.kill();
        }
        for r in &mut self.replicas {
            if let Some(mut p) = r.process.take() {
                p.kill();
            }
        }
        for id in self.node_ids() {
            crate::docker::remove_node_containers(&id);
        }
        if std::thread::panicking() {
            self.keep_logs();
        }
    }
}

impl Cluster {
    /// Copy every log of a failed test out of the temp dir (which is deleted) into
    /// `<tmp>/persys-logs-<prefix>`, and say where.
    fn keep_logs(&self) {
        let to = std::env::temp_dir().join(format!("persys-logs-{}", self.prefix));
        let Ok(rd) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        if std::fs::create_dir_all(&to).is_err() {
            return;
        }
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                let _ = std::fs::copy(e.path(), to.join(e.file_name()));
            }
        }
        eprintln!("logs of the failed test kept in {}", to.display());
    }
}
