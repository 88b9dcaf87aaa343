//! Command-line flags and their `PERSYS_*` environment twins.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default address of the DNS listeners (UDP and TCP).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5353";

/// Configuration of `persys-dns`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "persys-dns",
    version,
    about = "persys DNS: answers the cluster's node, workload and service records from etcd"
)]
pub struct Config {
    /// etcd endpoints, comma separated.
    #[arg(
        long,
        env = "PERSYS_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: Vec<String>,

    /// TLS and credentials towards etcd (read access to `/skydns/` is enough).
    #[command(flatten)]
    pub etcd: persys_certs::etcd::EtcdFlags,

    /// The zone answered, authoritatively: the scheduler's `--cluster-domain`. Names
    /// outside it are refused.
    #[arg(long, env = "PERSYS_CLUSTER_DOMAIN", default_value = persys_proto::dns::DEFAULT_DOMAIN)]
    pub domain: String,

    /// Address of the UDP and TCP listeners (one port for both). Port 0 picks a free
    /// port, which is logged and written to `--addr-file`.
    #[arg(long, env = "PERSYS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Write the bound address (`ip:port`) to this file once both listeners are up.
    #[arg(long, env = "PERSYS_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,

    /// Serve Prometheus metrics at `http://<addr>/metrics` (off unless given).
    #[arg(long, env = "PERSYS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// A TCP connection that sends no query for this long is closed.
    #[arg(long, env = "PERSYS_TCP_IDLE_TIMEOUT_MS", default_value_t = 5_000)]
    pub tcp_idle_timeout_ms: u64,

    /// Log line format.
    #[command(flatten)]
    pub log: persys_http::logging::LogFlags,
}

impl Config {
    /// How to reach etcd, from the `--etcd-*` flags.
    pub fn etcd_access(&self) -> Result<persys_certs::etcd::Access, persys_certs::CertError> {
        self.etcd.access()
    }

    /// The TCP idle timeout.
    pub fn tcp_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.tcp_idle_timeout_ms.max(100))
    }

    /// The zone, lower case and without its trailing dot.
    pub fn zone(&self) -> String {
        self.domain.trim_matches('.').to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_clusters() {
        let c = Config::try_parse_from(["persys-dns"]).expect("parses");
        assert_eq!(c.zone(), "cluster.local.dev");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.addr_file.is_none() && c.metrics_listen.is_none());
    }

    #[test]
    fn flags_are_read() {
        let c = Config::try_parse_from([
            "persys-dns",
            "--etcd-endpoints",
            "https://a:2379,https://b:2379",
            "--domain",
            "Example.ORG.",
            "--listen",
            "127.0.0.1:0",
            "--etcd-cacert",
            "/ca.crt",
        ])
        .expect("parses");
        assert_eq!(c.etcd_endpoints.len(), 2);
        assert_eq!(c.zone(), "example.org");
        assert_eq!(c.listen.port(), 0);
        assert!(c.etcd.etcd_cacert.is_some());
    }
}
