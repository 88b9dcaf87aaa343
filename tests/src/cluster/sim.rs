//! A simulated fleet: one `persys-agent sim` process whose N nodes (fake runtime) join
//! the cluster through the real join flow, each with its own certificate and mTLS API.

use super::{bin, Cluster};
use crate::process::Process;
use anyhow::{bail, Result};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running `persys-agent sim`; killed on drop.
pub struct SimFleet {
    /// The process.
    pub process: Process,
    /// Node ids are `<prefix><i>`, i in `0..nodes`.
    pub prefix: String,
    /// How many nodes it runs.
    pub nodes: u32,
}

impl SimFleet {
    /// Node ids of the fleet.
    pub fn node_ids(&self) -> Vec<String> {
        (0..self.nodes)
            .map(|i| format!("{}{i}", self.prefix))
            .collect()
    }
}

impl Cluster {
    /// The command line of a fleet of `nodes` simulated nodes named `<prefix><i>`, with
    /// `args` appended (e.g. `--fake-crash-rate 0.5`).
    pub fn sim_command(&self, nodes: u32, prefix: &str, args: &[&str]) -> Result<Command> {
        let token = self.join_token()?;
        let (api_urls, bootstrap_urls) = self.scheduler_urls("127.0.0.1");
        let mut cmd = Command::new(bin("persys-agent"));
        cmd.arg("sim")
            .arg("--nodes")
            .arg(nodes.to_string())
            .arg("--node-prefix")
            .arg(prefix)
            .arg("--scheduler-url")
            .arg(api_urls)
            .arg("--bootstrap-url")
            .arg(bootstrap_urls)
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("{prefix}fleet")))
            .args(args)
            // By environment, as `persys dev` passes it: not in argv.
            .env("PERSYS_JOIN_TOKEN", token)
            .env("RUST_LOG", "info,persys_agent=info");
        Ok(cmd)
    }

    /// Start a fleet `name` of `nodes` simulated nodes (`<cluster prefix>-<name>-<i>`)
    /// and wait (up to `timeout`) until every one of them is Active with a heartbeat.
    pub async fn start_sim(
        &self,
        name: &str,
        nodes: u32,
        args: &[&str],
        timeout: Duration,
    ) -> Result<SimFleet> {
        let prefix = format!("{}-{name}-", self.prefix);
        let cmd = self.sim_command(nodes, &prefix, args)?;
        let log = self.dir.path().join(format!("{prefix}fleet.log"));
        let mut fleet = SimFleet {
            process: Process::spawn("persys-agent sim", cmd, &log)?,
            prefix,
            nodes,
        };
        let api = self.api()?;
        let deadline = Instant::now() + timeout;
        loop {
            let active = match api.get_json("/nodes").await {
                Ok(v) => v["nodes"].as_array().map_or(0, |list| {
                    list.iter()
                        .filter(|n| {
                            n["nodeId"]
                                .as_str()
                                .is_some_and(|id| id.starts_with(&fleet.prefix))
                                && n["status"] == "Active"
                                && n["lastHeartbeat"].is_string()
                        })
                        .count()
                }),
                Err(_) => 0,
            };
            if active == nodes as usize {
                return Ok(fleet);
            }
            if fleet.process.has_exited() {
                bail!(
                    "persys-agent sim exited during start:\n{}",
                    fleet.process.log()
                );
            }
            if Instant::now() > deadline {
                bail!("{active} of {nodes} simulated nodes Active within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
