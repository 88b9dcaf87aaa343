//! The gateway of a test cluster: `persys-gateway` in front of the scheduler(s), and
//! clients and CLI configurations that go through it.

use super::{bin, Cluster};
use crate::api::Api;
use crate::process::{free_port, Process};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

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
            .args(self.etcd.client_flags(persys_certs::Role::Gateway))
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
}
