//! Arguments of `persys dev`.

use clap::Args;
use std::path::PathBuf;

/// `persys dev ...`
#[derive(Debug, Args, Clone)]
pub struct DevArgs {
    /// Where the cluster keeps its state (etcd data, PKI, agents, logs, config.yaml).
    #[arg(long, value_name = "DIR", default_value = ".persys-dev")]
    pub data_dir: PathBuf,
    /// Number of agents (nodes `node-1`..`node-N`, sharing the local Docker engine).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(0..=100))]
    pub agents: u16,
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
}
