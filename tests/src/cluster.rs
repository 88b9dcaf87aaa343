//! `Cluster`: a real etcd, `persys-scheduler` and N `persys-agent` processes on free
//! ports, talking real mTLS, running containers on the host's Docker engine. Everything
//! started is stopped on drop, containers included (by their `persys.nodeId` label).

use crate::api::Api;
use crate::etcd::Etcd;
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
    scheduler_args: Vec<String>,
}

/// A running `persys-gateway`.
pub struct Gateway {
    /// Its process.
    pub process: Process,
    /// HTTPS port.
    pub port: u16,
    /// The bootstrap admin token it wrote.
    pub admin_token: String,
    /// Its log file.
    pub log: PathBuf,
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
        let mut cluster = Self {
            dir,
            etcd,
            scheduler: None,
            api_port: free_port(),
            bootstrap_port: free_port(),
            agents: Vec::new(),
            prefix,
            gateway: None,
            scheduler_args,
        };
        cluster.start_scheduler().await?;
        for opts in options.agents {
            cluster.add_agent(opts).await?;
        }
        Ok(cluster)
    }

    /// Path of the scheduler's data dir (PKI, join token).
    pub fn scheduler_dir(&self) -> PathBuf {
        self.dir.path().join("scheduler")
    }

    /// Start (or restart) the scheduler and wait until it logs `ready`.
    pub async fn start_scheduler(&mut self) -> Result<()> {
        let log = self.dir.path().join("scheduler.log");
        let before = std::fs::read_to_string(&log).unwrap_or_default().len();
        let mut cmd = Command::new(bin("persys-scheduler"));
        cmd.arg("--etcd-endpoints")
            .arg(self.etcd.endpoint())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.api_port))
            .arg("--bootstrap-listen")
            .arg(format!("127.0.0.1:{}", self.bootstrap_port))
            .arg("--data-dir")
            .arg(self.scheduler_dir())
            .args(&self.scheduler_args)
            .env("RUST_LOG", "info,persys_scheduler=debug");
        let mut p = Process::spawn("persys-scheduler", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.get(before..).is_some_and(|t| t.contains("ready")) {
                break;
            }
            if p.has_exited() {
                bail!(
                    "persys-scheduler exited during start:\n{}",
                    &text[before.min(text.len())..]
                );
            }
            if Instant::now() > deadline {
                bail!("persys-scheduler not ready in 30 s:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.scheduler = Some(p);
        Ok(())
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
        self.start_agent(idx).await?;
        Ok(idx)
    }

    /// The command line of agent `idx` (used to start it and by security tests).
    pub fn agent_command(&self, idx: usize, token: &str) -> Command {
        let a = &self.agents[idx];
        let mut cmd = Command::new(bin("persys-agent"));
        cmd.arg("--scheduler-url")
            .arg(format!("https://127.0.0.1:{}", self.api_port))
            .arg("--bootstrap-url")
            .arg(format!("https://127.0.0.1:{}", self.bootstrap_port))
            .arg("--join-token")
            .arg(token)
            .arg("--node-id")
            .arg(&a.node_id)
            .arg("--data-dir")
            .arg(&a.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", a.port))
            .arg("--advertise-address")
            .arg("127.0.0.1")
            .env("RUST_LOG", "info,persys_agent=debug");
        if !a.options.labels.is_empty() {
            let labels: Vec<String> = a
                .options
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            cmd.arg("--labels").arg(labels.join(","));
        }
        if let Some(cpu) = a.options.cpu {
            cmd.arg("--cpu").arg(cpu.to_string());
        }
        if let Some(m) = a.options.memory_mb {
            cmd.arg("--memory-mb").arg(m.to_string());
        }
        cmd
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

    /// Start `persys-gateway` in front of the scheduler(s) at `scheduler_ports` (the
    /// cluster's own scheduler when empty) with `extra` flags; wait until it is ready.
    pub async fn start_gateway(&mut self, scheduler_ports: &[u16], extra: &[&str]) -> Result<()> {
        let port = free_port();
        let dir = self.dir.path().join("gateway");
        std::fs::create_dir_all(&dir)?;
        let token_file = dir.join("admin-token");
        let log = self.dir.path().join("gateway.log");
        let ports: Vec<u16> = if scheduler_ports.is_empty() {
            vec![self.api_port]
        } else {
            scheduler_ports.to_vec()
        };
        let urls: Vec<String> = ports
            .iter()
            .map(|p| format!("https://127.0.0.1:{p}"))
            .collect();
        let mut cmd = Command::new(bin("persys-gateway"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--scheduler-url")
            .arg(urls.join(","))
            .arg("--scheduler-data-dir")
            .arg(self.scheduler_dir())
            .arg("--etcd-endpoints")
            .arg(self.etcd.endpoint())
            .arg("--admin-token-file")
            .arg(&token_file)
            .args(extra)
            .env("RUST_LOG", "info,persys_gateway=debug");
        let mut p = Process::spawn("persys-gateway", cmd, &log)?;
        let ca = self.scheduler_dir().join("ca.crt");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(t) = std::fs::read_to_string(&token_file) {
                let token = t.trim().to_string();
                if !token.is_empty() {
                    let api = Api::with_token(&format!("https://127.0.0.1:{port}"), &ca, &token)?;
                    if let Ok((200, _)) = api.get("/readyz").await {
                        self.gateway = Some(Gateway {
                            process: p,
                            port,
                            admin_token: token,
                            log,
                        });
                        return Ok(());
                    }
                }
            }
            if p.has_exited() {
                bail!("persys-gateway exited during start:\n{}", p.log());
            }
            if Instant::now() > deadline {
                bail!("persys-gateway not ready in 30 s:\n{}", p.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client of the gateway with a bearer token.
    pub fn gateway_api(&self, token: &str) -> Result<Api> {
        let g = self.gateway.as_ref().context("gateway not started")?;
        Api::with_token(
            &format!("https://127.0.0.1:{}", g.port),
            &self.scheduler_dir().join("ca.crt"),
            token,
        )
    }

    /// The gateway client with the bootstrap admin token.
    pub fn gateway_admin(&self) -> Result<Api> {
        let g = self.gateway.as_ref().context("gateway not started")?;
        self.gateway_api(&g.admin_token)
    }

    /// Write a CLI config for the gateway with `token`; returns its path.
    pub fn gateway_cli_config(&self, token: &str) -> Result<PathBuf> {
        let g = self.gateway.as_ref().context("gateway not started")?;
        let path = self
            .dir
            .path()
            .join(format!("gw-config-{}.yaml", uuid::Uuid::new_v4().simple()));
        std::fs::write(
            &path,
            format!(
                "api_endpoint: https://127.0.0.1:{}\nca_cert_path: {}\ntoken: {token}\n",
                g.port,
                self.scheduler_dir().join("ca.crt").display(),
            ),
        )?;
        Ok(path)
    }

    /// Run the built `persys` CLI through the gateway with `token`.
    pub fn gateway_cli(&self, token: &str, args: &[&str]) -> Result<std::process::Output> {
        let cfg = self.gateway_cli_config(token)?;
        Ok(Command::new(bin("persys"))
            .args(args)
            .env("PERSYS_CONFIG", cfg)
            .env_remove("HOME")
            .output()?)
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

    /// kill -9 the scheduler.
    pub fn kill_scheduler(&mut self) {
        if let Some(mut p) = self.scheduler.take() {
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
        for id in self.node_ids() {
            crate::docker::remove_node_containers(&id);
        }
    }
}
