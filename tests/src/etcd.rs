//! A real etcd server (Debian's `etcd` binary) on free 127.0.0.1 ports, secured as
//! persys runs it: TLS only, client certificates of its own CA required (no plaintext
//! listener), so tests exercise the scheduler's and gateway's etcd TLS.

use crate::process::{free_port, Process};
use anyhow::{bail, Result};
use persys_certs::etcd::EtcdPki;
use persys_certs::Role;
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
    pki: EtcdPki,
}

impl Etcd {
    /// Start etcd with its data under `dir/etcd` and wait until it answers.
    pub async fn start(dir: &Path) -> Result<Self> {
        let data_dir = dir.join("etcd");
        let log = dir.join("etcd.log");
        let client_port = free_port();
        let peer_port = free_port();
        let pki = EtcdPki::load_or_create(
            &dir.join("etcd-pki"),
            &["127.0.0.1".into(), "localhost".into()],
        )?;
        let process = spawn(&data_dir, &log, client_port, peer_port, &pki)?;
        let etcd = Self {
            process,
            client_port,
            peer_port,
            data_dir,
            log,
            pki,
        };
        etcd.wait_ready().await?;
        Ok(etcd)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    /// The `--etcd-*` flags of a scheduler or gateway (`role`) for this etcd.
    pub fn client_flags(&self, role: Role) -> Vec<String> {
        self.pki.client_flags(role)
    }

    /// A client of this etcd, with the scheduler's etcd certificate.
    pub async fn client(&self) -> Result<etcd_client::Client> {
        let access = self.pki.access(Role::Scheduler)?;
        let options = access.apply(etcd_client::ConnectOptions::new());
        Ok(etcd_client::Client::connect([self.endpoint()], Some(options)).await?)
    }

    /// A client without a certificate: etcd must refuse it.
    pub async fn anonymous_client(&self) -> Result<etcd_client::Client> {
        let access = persys_certs::etcd::Access::from_flags(
            Some(&self.pki.ca_cert()),
            None,
            None,
            None,
            None,
        )?;
        let options = access
            .apply(etcd_client::ConnectOptions::new())
            .with_timeout(Duration::from_secs(2));
        Ok(etcd_client::Client::connect([self.endpoint()], Some(options)).await?)
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
        self.process = spawn(
            &self.data_dir,
            &self.log,
            self.client_port,
            self.peer_port,
            &self.pki,
        )?;
        self.wait_ready().await
    }

    /// Lose everything: stop, delete the data directory, start empty on the same ports
    /// and PKI (as an etcd replaced after a disk loss).
    pub async fn wipe(&mut self) -> Result<()> {
        self.process.kill();
        if self.data_dir.exists() {
            std::fs::remove_dir_all(&self.data_dir)?;
        }
        std::fs::create_dir_all(&self.data_dir)?;
        self.process = spawn(
            &self.data_dir,
            &self.log,
            self.client_port,
            self.peer_port,
            &self.pki,
        )?;
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

fn spawn(
    data_dir: &Path,
    log: &Path,
    client_port: u16,
    peer_port: u16,
    pki: &EtcdPki,
) -> Result<Process> {
    let client = format!("https://127.0.0.1:{client_port}");
    let peer = format!("https://127.0.0.1:{peer_port}");
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
        .args(pki.server_flags())
        .arg("--log-level")
        .arg("warn");
    Process::spawn("etcd", cmd, log)
}
