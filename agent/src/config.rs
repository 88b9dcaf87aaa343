//! Command-line flags, each with its `PERSYS_*` environment twin (see
//! `docs/interfaces.md`).

use clap::Parser;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// persys node agent: joins the cluster, runs containers through Docker, reports their
/// state and serves the agent API over mTLS.
#[derive(Debug, Clone, Parser)]
#[command(name = "persys-agent", version, about)]
pub struct Config {
    /// Scheduler API URL(s) (mTLS) for heartbeats and status pushes; repeatable or comma
    /// separated (one per scheduler replica). Calls stick to the one that answers and
    /// fail over to the next on connection errors and 5xx answers.
    #[arg(
        long = "scheduler-url",
        env = "PERSYS_SCHEDULER_URL",
        value_delimiter = ',',
        default_value = "https://127.0.0.1:8085"
    )]
    pub scheduler_urls: Vec<String>,

    /// Scheduler bootstrap URL(s) (TLS) for registration; repeatable or comma separated,
    /// tried in turn like `--scheduler-url`.
    #[arg(
        long = "bootstrap-url",
        env = "PERSYS_BOOTSTRAP_URL",
        value_delimiter = ',',
        default_value = "https://127.0.0.1:8084"
    )]
    pub bootstrap_urls: Vec<String>,

    /// Join token `PERSYS1.<ca-hash>.<secret>`; required unless already registered.
    #[arg(long, env = "PERSYS_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,

    /// Node id; else the one persisted in `<data-dir>/node-id`, else the host name.
    #[arg(long, env = "PERSYS_NODE_ID")]
    pub node_id: Option<String>,

    /// Directory for `node.key`, `node.crt`, `ca.crt`, `node-id`.
    #[arg(long, env = "PERSYS_DATA_DIR", default_value = "/var/lib/persys/agent")]
    pub data_dir: PathBuf,

    /// Address of the agent API (mTLS; only the scheduler's certificate is accepted).
    /// Port 0 picks a free port, which is then registered.
    #[arg(long, env = "PERSYS_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address the scheduler reaches this agent at; default: the listen IP, or
    /// 127.0.0.1 when listening on all addresses.
    #[arg(long, env = "PERSYS_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<IpAddr>,

    /// Node labels `k=v,k=v` (matched by workloads' `nodeSelector`).
    #[arg(long, env = "PERSYS_LABELS", value_parser = parse_labels, default_value = "")]
    pub labels: Labels,

    /// Advertised CPU capacity in cores (may be fractional); default: the host's.
    #[arg(long, env = "PERSYS_CPU")]
    pub cpu: Option<f64>,

    /// Advertised memory in MB; default: the host's.
    #[arg(long, env = "PERSYS_MEMORY_MB")]
    pub memory_mb: Option<u64>,

    /// Docker engine (`unix:///var/run/docker.sock`, `tcp://host:2375`); default: the
    /// local socket.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,

    /// Seconds a stop waits before killing, unless the request says otherwise.
    #[arg(long, env = "PERSYS_STOP_TIMEOUT_SECS", default_value_t = 5)]
    pub stop_timeout_secs: u64,

    /// Milliseconds between full status reports (the backstop to event pushes).
    #[arg(long, env = "PERSYS_FULL_REPORT_INTERVAL_MS", default_value_t = 30_000)]
    pub full_report_interval_ms: u64,

    /// Timeouts and the connection cap of the agent API listener.
    #[command(flatten)]
    pub listener: persys_certs::ListenerFlags,
}

/// Node labels.
pub type Labels = BTreeMap<String, String>;

/// Parse `k=v,k=v` (empty → none).
pub fn parse_labels(s: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("label {pair:?} is not k=v"))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("label {pair:?} has an empty key"));
        }
        labels.insert(k.to_string(), v.trim().to_string());
    }
    Ok(labels)
}

impl Config {
    /// The address the scheduler reaches this agent at.
    pub fn advertise_ip(&self) -> IpAddr {
        self.advertise_address.unwrap_or_else(|| {
            let ip = self.listen.ip();
            if ip.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                ip
            }
        })
    }

    /// `<data-dir>/<name>`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_from_comma_separated_pairs() {
        let l = parse_labels("region=eu, disk=ssd").expect("valid");
        assert_eq!(l["region"], "eu");
        assert_eq!(l["disk"], "ssd");
        assert!(parse_labels("").expect("empty is fine").is_empty());
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("=x").is_err());
    }

    #[test]
    fn flags_have_the_documented_defaults() {
        let c = Config::try_parse_from(["persys-agent"]).expect("defaults parse");
        assert_eq!(c.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(c.scheduler_urls, vec!["https://127.0.0.1:8085".to_string()]);
        assert_eq!(c.bootstrap_urls, vec!["https://127.0.0.1:8084".to_string()]);
        assert_eq!(c.advertise_ip(), IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn scheduler_urls_are_comma_separated_and_repeatable() {
        let c = Config::try_parse_from([
            "persys-agent",
            "--scheduler-url",
            "https://a:8085,https://b:8085",
            "--scheduler-url",
            "https://c:8085",
            "--bootstrap-url",
            "https://a:8084,https://b:8084",
        ])
        .expect("parses");
        assert_eq!(
            c.scheduler_urls,
            ["https://a:8085", "https://b:8085", "https://c:8085"].map(String::from)
        );
        assert_eq!(c.bootstrap_urls.len(), 2);
    }

    #[test]
    fn advertise_address_defaults_to_a_specific_listen_ip() {
        let c =
            Config::try_parse_from(["persys-agent", "--listen", "10.0.0.5:9000"]).expect("parses");
        assert_eq!(c.advertise_ip(), IpAddr::from([10, 0, 0, 5]));
    }
}
