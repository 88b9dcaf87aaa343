//! A real etcd server (Debian's `etcd` binary) on free 127.0.0.1 ports.

use crate::process::{free_port, Process};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A private etcd for one test.
pub struct Etcd {
    process: Process,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Etcd {
    /// Start etcd with its data under `dir/etcd` and wait until it answers.
    pub async fn start(dir: &Path) -> Result<Self> {
        let data_dir = dir.join("etcd");
        let log = dir.join("etcd.log");
        let client_port = free_port();
        let peer_port = free_port();
        let process = spawn(&data_dir, &log, client_port, peer_port)?;
        let etcd = Self {
            process,
            client_port,
            peer_port,
            data_dir,
            log,
        };
        etcd.wait_ready().await?;
        Ok(etcd)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// A client of this etcd.
    pub async fn client(&self) -> Result<etcd_client::Client> {
        Ok(etcd_client::Client::connect([self.endpoint()], None).await?)
    }

    /// Stop etcd (kill -9); its data stays for a restart.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Freeze etcd (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) -> Result<()> {
        self.process.signal(libc::SIGSTOP)
    }

    /// Thaw a paused etcd (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.process.signal(libc::SIGCONT)
    }

    /// Start it again on the same ports and data.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill();
        self.process = spawn(&self.data_dir, &self.log, self.client_port, self.peer_port)?;
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = self.client().await {
                if c.status().await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("etcd did not become ready:\n{}", self.process.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The current revision of the store.
    pub async fn revision(&self) -> Result<i64> {
        let mut c = self.client().await?;
        let r = c.get("/", None).await?;
        Ok(r.header().map(|h| h.revision()).unwrap_or_default())
    }
}

fn spawn(data_dir: &Path, log: &Path, client_port: u16, peer_port: u16) -> Result<Process> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let mut cmd = Command::new("etcd");
    cmd.arg("--name")
        .arg("persys-test")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen-client-urls")
        .arg(&client)
        .arg("--advertise-client-urls")
        .arg(&client)
        .arg("--listen-peer-urls")
        .arg(&peer)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer)
        .arg("--initial-cluster")
        .arg(format!("persys-test={peer}"))
        .arg("--log-level")
        .arg("warn");
    Process::spawn("etcd", cmd, log)
}
