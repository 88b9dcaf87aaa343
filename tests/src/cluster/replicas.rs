//! Scheduler replicas of a test cluster. Replica 0 is the cluster's `scheduler`
//! (`api_port`, `bootstrap_port`); replicas 1.. are in `replicas`. All share etcd and
//! the data dir, each is `--replica-id r<i>` and advertises its own loopback URLs.

use super::{bin, Cluster};
use crate::api::Api;
use crate::process::Process;
use anyhow::{bail, Result};
use std::process::Command;
use std::time::{Duration, Instant};

/// A scheduler replica other than the first.
pub struct Replica {
    /// The process, when running.
    pub process: Option<Process>,
    /// mTLS API port.
    pub api_port: u16,
    /// Bootstrap port.
    pub bootstrap_port: u16,
}

impl Replica {
    /// A replica on these ports, not started.
    pub fn new(api_port: u16, bootstrap_port: u16) -> Self {
        Self {
            process: None,
            api_port,
            bootstrap_port,
        }
    }
}

impl Cluster {
    /// How many scheduler replicas the cluster has.
    pub fn replica_count(&self) -> usize {
        1 + self.replicas.len()
    }

    /// (API port, bootstrap port) of replica `i`.
    pub fn replica_ports(&self, i: usize) -> (u16, u16) {
        match i {
            0 => (self.api_port, self.bootstrap_port),
            _ => (
                self.replicas[i - 1].api_port,
                self.replicas[i - 1].bootstrap_port,
            ),
        }
    }

    /// The process of replica `i`, when running.
    pub fn replica_process(&mut self, i: usize) -> Option<&mut Process> {
        match i {
            0 => self.scheduler.as_mut(),
            _ => self.replicas[i - 1].process.as_mut(),
        }
    }

    fn set_replica_process(&mut self, i: usize, p: Option<Process>) -> Option<Process> {
        match i {
            0 => std::mem::replace(&mut self.scheduler, p),
            _ => std::mem::replace(&mut self.replicas[i - 1].process, p),
        }
    }

    /// The replica id of replica `i` (`--replica-id`).
    pub fn replica_id(i: usize) -> String {
        format!("r{i}")
    }

    /// Start (or restart) the scheduler (replica 0) and wait until it logs `ready`.
    pub async fn start_scheduler(&mut self) -> Result<()> {
        self.start_replica(0).await
    }

    /// Start (or restart) replica `i` and wait until it logs `ready`.
    pub async fn start_replica(&mut self, i: usize) -> Result<()> {
        let log = match i {
            0 => self.dir.path().join("scheduler.log"),
            _ => self.dir.path().join(format!("scheduler-{i}.log")),
        };
        let before = std::fs::read_to_string(&log).unwrap_or_default().len();
        let (api, boot) = self.replica_ports(i);
        // Hosts in namespaces reach the schedulers at their links' root-side addresses.
        let ip = if self.netns { "0.0.0.0" } else { "127.0.0.1" };
        let mut cmd = Command::new(bin("persys-scheduler"));
        cmd.arg("--etcd-endpoints")
            .arg(self.etcd.endpoint())
            .args(self.etcd.client_flags(persys_certs::Role::Scheduler))
            .arg("--listen")
            .arg(format!("{ip}:{api}"))
            .arg("--bootstrap-listen")
            .arg(format!("{ip}:{boot}"))
            .arg("--data-dir")
            .arg(self.scheduler_dir())
            .arg("--replica-id")
            .arg(Self::replica_id(i))
            .arg("--advertise-url")
            .arg(format!("https://127.0.0.1:{api}"))
            .arg("--advertise-bootstrap-url")
            .arg(format!("https://127.0.0.1:{boot}"))
            .args(&self.scheduler_args)
            .env("RUST_LOG", &self.scheduler_log);
        let name = match i {
            0 => "persys-scheduler".to_string(),
            _ => format!("persys-scheduler r{i}"),
        };
        let mut p = Process::spawn(&name, cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.get(before..).is_some_and(|t| t.contains("ready")) {
                break;
            }
            if p.has_exited() {
                bail!(
                    "{name} exited during start:\n{}",
                    &text[before.min(text.len())..]
                );
            }
            if Instant::now() > deadline {
                bail!("{name} not ready in 30 s:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if let Some(mut old) = self.set_replica_process(i, Some(p)) {
            old.kill();
        }
        Ok(())
    }

    /// kill -9 the scheduler (replica 0).
    pub fn kill_scheduler(&mut self) {
        self.kill_replica(0);
    }

    /// kill -9 replica `i`.
    pub fn kill_replica(&mut self, i: usize) {
        if let Some(mut p) = self.set_replica_process(i, None) {
            p.kill();
        }
    }

    /// An mTLS client of replica `i` with the admin certificate.
    pub fn replica_api(&self, i: usize) -> Result<Api> {
        let d = self.scheduler_dir();
        Api::new(
            &format!("https://127.0.0.1:{}", self.replica_ports(i).0),
            &d.join("ca.crt"),
            Some((&d.join("admin.crt"), &d.join("admin.key"))),
        )
    }

    /// The replica that says it leads (`GET /cluster/leader` answering `"self": true`).
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.replica_count() {
            let Ok(api) = self.replica_api(i) else {
                continue;
            };
            if let Ok((200, v)) = api.get("/cluster/leader").await {
                if v["self"] == true {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Wait until some replica leads; its index.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader().await {
                return Ok(i);
            }
            if Instant::now() > deadline {
                bail!("no scheduler replica leads within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The schedulers' API and bootstrap URLs as an agent reaches them (comma separated
    /// when there are several replicas), from host `ip`.
    pub(crate) fn scheduler_urls(&self, ip: &str) -> (String, String) {
        let (mut api, mut boot) = (Vec::new(), Vec::new());
        for i in 0..self.replica_count() {
            let (a, b) = self.replica_ports(i);
            api.push(format!("https://{ip}:{a}"));
            boot.push(format!("https://{ip}:{b}"));
        }
        (api.join(","), boot.join(","))
    }
}
