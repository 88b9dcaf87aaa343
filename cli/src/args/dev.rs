//! Arguments of `persys dev`.

use clap::Args;
use std::path::PathBuf;

/// `persys dev ...`
#[derive(Debug, Args, Clone)]
pub struct DevArgs {
    /// Where the cluster keeps its state (etcd data, PKI, agents, logs, config.yaml).
    #[arg(long, value_name = "DIR", default_value = ".persys-dev")]
    pub data_dir: PathBuf,
    /// Number of agents (nodes `node-1`..`node-N`, sharing the local Docker engine);
    /// default 1, or 0 with `--sim-nodes`.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(0..=100))]
    pub agents: Option<u16>,
    /// Node ids of the agents are `<PREFIX><i>`; another prefix lets two dev clusters
    /// share one Docker engine (agents only touch containers of their own node id).
    #[arg(long, value_name = "PREFIX", default_value = "node-", value_parser = parse_node_prefix)]
    pub node_prefix: String,
    /// Also run N simulated nodes `sim-0`..`sim-<N-1>`: one more child,
    /// `persys-agent sim`, whose nodes join and serve like agents but run containers in
    /// memory (`--runtime fake`: nothing runs, no Docker needed). Real agents then
    /// default to none; add them with `--agents`.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub sim_nodes: u32,
    /// Use this etcd (comma separated URLs) instead of starting one.
    #[arg(long, value_name = "URLS")]
    pub etcd_endpoints: Option<String>,
    /// Scheduler mTLS API port (on 127.0.0.1).
    #[arg(long, value_name = "PORT", default_value_t = 8085)]
    pub scheduler_port: u16,
    /// Scheduler bootstrap port (register, healthz; on 127.0.0.1).
    #[arg(long, value_name = "PORT", default_value_t = 8084)]
    pub bootstrap_port: u16,
    /// Gateway HTTPS port (on 127.0.0.1); the written config points at it.
    #[arg(long, value_name = "PORT", default_value_t = 8551)]
    pub gateway_port: u16,
    /// First agent's port; agent i listens on PORT+i-1 (on 127.0.0.1).
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub agent_port: u16,
    /// Cluster DNS domain: the scheduler's records are `<name>.<DOMAIN>`, and
    /// `persys-dns` (started on a free 127.0.0.1 port when it is built) answers them.
    #[arg(long, value_name = "DOMAIN", default_value = persys_proto::dns::DEFAULT_DOMAIN)]
    pub cluster_domain: String,
}

/// A node id prefix: lower-case letters, digits and `-`, starting with a letter, at
/// most 40 characters (node ids are DNS names too).
fn parse_node_prefix(s: &str) -> Result<String, String> {
    let ok = s.len() <= 40
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(s.to_string())
    } else {
        Err("lower-case letters, digits and '-', starting with a letter, at most 40".into())
    }
}

impl DevArgs {
    /// The node id of real agent `i` (1-based).
    pub fn node_id(&self, i: u16) -> String {
        format!("{}{i}", self.node_prefix)
    }

    /// How many real agents to start: `--agents`, else 1 without simulated nodes and 0
    /// with them (a simulated fleet needs no Docker; mixing is asked for explicitly).
    pub fn real_agents(&self) -> u16 {
        self.agents
            .unwrap_or(if self.sim_nodes > 0 { 0 } else { 1 })
    }
}
