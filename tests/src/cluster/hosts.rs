//! Agents as processes or as separate hosts (network namespaces), and the faults a
//! host can suffer: death, partition, a slow and lossy link.

use super::{bin, Cluster};
use crate::netns::{Host, NetemMode};
use anyhow::{Context, Result};
use std::process::Command;

impl Cluster {
    /// The command line of agent `idx` (used to start it and by security tests). Inside
    /// its host when it has one, reaching the schedulers at the host's root-side address.
    pub fn agent_command(&self, idx: usize, token: &str) -> Command {
        let a = &self.agents[idx];
        let host = self.hosts.get(&idx);
        let (mut cmd, ip, scheduler_ip) = match host {
            Some(h) => (
                h.command(&bin("persys-agent")),
                h.node_ip.to_string(),
                h.host_ip.to_string(),
            ),
            None => (
                Command::new(bin("persys-agent")),
                a.options
                    .address
                    .clone()
                    .unwrap_or_else(|| "127.0.0.1".to_string()),
                "127.0.0.1".to_string(),
            ),
        };
        let (api_urls, bootstrap_urls) = self.scheduler_urls(&scheduler_ip);
        cmd.arg("--scheduler-url")
            .arg(api_urls)
            .arg("--bootstrap-url")
            .arg(bootstrap_urls)
            .arg("--join-token")
            .arg(token)
            .arg("--node-id")
            .arg(&a.node_id)
            .arg("--data-dir")
            .arg(&a.data_dir)
            .arg("--listen")
            .arg(format!("{ip}:{}", a.port))
            .arg("--advertise-address")
            .arg(&ip)
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
        cmd.args(&a.options.args);
        cmd
    }

    /// The host of agent `idx` (netns clusters only).
    pub fn host(&self, idx: usize) -> Result<&Host> {
        self.hosts
            .get(&idx)
            .with_context(|| format!("agent {idx} has no host (ClusterOptions::netns)"))
    }

    /// A host's death on a shared engine: kill -9 agent `idx` and remove its containers.
    pub fn kill_host(&mut self, idx: usize) {
        self.kill_agent(idx);
        crate::docker::remove_node_containers(&self.agents[idx].node_id);
    }

    /// Cut agent `idx`'s host off the network, both ways.
    pub fn partition(&self, idx: usize) -> Result<()> {
        self.host(idx)?.partition()
    }

    /// Reconnect agent `idx`'s host.
    pub fn heal(&self, idx: usize) -> Result<()> {
        self.host(idx)?.heal()
    }

    /// Latency and loss on agent `idx`'s link (`tc netem` syntax, both directions).
    pub fn netem(&mut self, idx: usize, spec: &str) -> Result<NetemMode> {
        self.hosts
            .get_mut(&idx)
            .with_context(|| format!("agent {idx} has no host (ClusterOptions::netns)"))?
            .netem(spec)
    }

    /// Remove latency and loss from agent `idx`'s link.
    pub fn clear_netem(&mut self, idx: usize) {
        if let Some(h) = self.hosts.get_mut(&idx) {
            h.clear_netem();
        }
    }
}
