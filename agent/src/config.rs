//! Command-line flags, each with its `PERSYS_*` environment twin (see
//! `docs/interfaces.md`): one agent ([`Config`]), or `sim` ([`SimArgs`]), many
//! simulated ones in one process.

use crate::runtime::fake::{FakeOptions, DEFAULT_UNPULLABLE};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// persys node agent: joins the cluster, runs containers through Docker, reports their
/// state and serves the agent API over mTLS.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "persys-agent",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Without a subcommand: one agent.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The agent's flags.
    #[command(flatten)]
    pub agent: Config,
}

impl Cli {
    /// The log filter without `RUST_LOG`. A thousand simulated nodes would log a
    /// thousand of every line: sim says only its own progress and the nodes' warnings.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            None => "info",
            Some(Command::Sim(_)) => "warn,persys_agent::sim=info",
        }
    }
}

/// What `persys-agent` runs besides one agent.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run N simulated nodes in this process: each registers with the join token and
    /// its own key and CSR, serves its own mTLS agent API, heartbeats and reports, over
    /// its own in-memory container engine (`--runtime fake`).
    Sim(SimArgs),
}

/// The container engine behind the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum RuntimeKind {
    /// The Docker engine (`--docker-host`).
    #[default]
    Docker,
    /// An in-memory engine that simulates containers (no Docker connection); see the
    /// `--fake-*` flags.
    Fake,
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Docker => "docker",
            Self::Fake => "fake",
        })
    }
}

/// The agent's flags (also every simulated node's, in `sim`).
#[derive(Debug, Clone, Args)]
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

    /// Milliseconds between usage reports of service replicas (for autoscaling); 0
    /// sends none.
    #[arg(long, env = "PERSYS_USAGE_INTERVAL_MS", default_value_t = 10_000)]
    pub usage_interval_ms: u64,

    /// Timeouts and the connection cap of the agent API listener.
    #[command(flatten)]
    pub listener: persys_certs::ListenerFlags,

    /// Container engine: `docker`, or `fake` (in memory: containers are simulated,
    /// nothing runs, no Docker connection is made).
    #[arg(long, env = "PERSYS_RUNTIME", value_enum, default_value_t = RuntimeKind::Docker)]
    pub runtime: RuntimeKind,

    /// How `--runtime fake` behaves.
    #[command(flatten)]
    pub fake: FakeFlags,

    /// Log line format.
    #[command(flatten)]
    pub log: persys_http::logging::LogFlags,
}

/// The simulated engine's behaviour (`--runtime fake` and `sim`).
#[derive(Debug, Clone, PartialEq, Args)]
pub struct FakeFlags {
    /// Fake runtime: milliseconds a container takes to start (it is
    /// `ContainerCreating` meanwhile).
    #[arg(long, env = "PERSYS_FAKE_START_LATENCY_MS", default_value_t = 0)]
    pub fake_start_latency_ms: u64,

    /// Fake runtime: probability (0..1) that a started container crashes (exit code 1)
    /// 0.2-2 s after starting; its restart policy applies.
    #[arg(long, env = "PERSYS_FAKE_CRASH_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub fake_crash_rate: f64,

    /// Fake runtime: probability (0..1) that an image pull fails (`ImagePullBackOff`).
    #[arg(long, env = "PERSYS_FAKE_PULL_FAILURE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub fake_pull_failure_rate: f64,

    /// Fake runtime: images whose reference contains one of these never pull (comma
    /// separated); every other image pulls.
    #[arg(
        long,
        env = "PERSYS_FAKE_UNPULLABLE",
        value_delimiter = ',',
        default_values_t = DEFAULT_UNPULLABLE.map(String::from)
    )]
    pub fake_unpullable: Vec<String>,

    /// Fake runtime: seed of its random choices (crashes, pull failures); default: from
    /// the clock.
    #[arg(long, env = "PERSYS_FAKE_SEED")]
    pub fake_seed: Option<u64>,
}

impl Default for FakeFlags {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            fake_start_latency_ms: 0,
            fake_crash_rate: 0.0,
            fake_pull_failure_rate: 0.0,
            fake_unpullable: DEFAULT_UNPULLABLE.map(String::from).to_vec(),
            fake_seed: None,
        }
    }
}

impl FakeFlags {
    /// The engine options of simulated node number `index` (each node draws its own
    /// random sequence from the one seed).
    pub fn options(&self, index: u64) -> FakeOptions {
        let seed = self.fake_seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        FakeOptions {
            start_latency: Duration::from_millis(self.fake_start_latency_ms),
            crash_rate: self.fake_crash_rate,
            pull_failure_rate: self.fake_pull_failure_rate,
            unpullable: self
                .fake_unpullable
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            seed: seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ..FakeOptions::default()
        }
    }
}

/// A probability.
fn parse_rate(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{s} is not a probability between 0 and 1"))
    }
}

/// `persys-agent sim`: N simulated nodes in one process. Every agent flag applies to
/// each node, except `--node-id`, `--listen`, `--docker-host` and `--runtime` (the
/// nodes are `<prefix><i>` on `--listen-host`, always with the fake runtime).
#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("node_id", |a| a.hide(true)),
    mut_arg("listen", |a| a.hide(true)),
    mut_arg("docker_host", |a| a.hide(true)),
    mut_arg("runtime", |a| a.hide(true))
)]
pub struct SimArgs {
    /// Simulated nodes to run.
    #[arg(long, env = "PERSYS_SIM_NODES", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub nodes: u32,

    /// Node ids are `<prefix><i>`, i from 0; each node's data dir is
    /// `<data-dir>/<node id>`.
    #[arg(long, env = "PERSYS_SIM_NODE_PREFIX", default_value = "sim-")]
    pub node_prefix: String,

    /// Address every node's agent API listens on (and is registered at, unless
    /// `--advertise-address`).
    #[arg(long, env = "PERSYS_SIM_LISTEN_HOST", default_value = "127.0.0.1")]
    pub listen_host: IpAddr,

    /// Node i listens on port PORT+i; 0: each on a free port of its own.
    #[arg(long, env = "PERSYS_SIM_BASE_PORT", default_value_t = 0)]
    pub base_port: u16,

    /// Registrations in flight at once (so that many nodes do not join as one herd).
    #[arg(long, env = "PERSYS_SIM_MAX_CONCURRENT_JOINS", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_concurrent_joins: u32,

    /// The flags of every node.
    #[command(flatten)]
    pub agent: Config,
}

impl SimArgs {
    /// Node `i`'s id.
    pub fn node_id(&self, i: u32) -> String {
        format!("{}{i}", self.node_prefix)
    }

    /// Node `i`'s listen address; `None` when the port range passes 65535.
    pub fn listen(&self, i: u32) -> Option<SocketAddr> {
        let port = match self.base_port {
            0 => 0,
            base => u16::try_from(u32::from(base) + i).ok()?,
        };
        Some(SocketAddr::new(self.listen_host, port))
    }
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

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("persys-agent").chain(args.iter().copied()))?;
        assert!(cli.command.is_none());
        Ok(cli.agent)
    }

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
        let c = parse(&[]).expect("defaults parse");
        assert_eq!(c.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(c.scheduler_urls, vec!["https://127.0.0.1:8085".to_string()]);
        assert_eq!(c.bootstrap_urls, vec!["https://127.0.0.1:8084".to_string()]);
        assert_eq!(c.advertise_ip(), IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn scheduler_urls_are_comma_separated_and_repeatable() {
        let c = parse(&[
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
        let c = parse(&["--listen", "10.0.0.5:9000"]).expect("parses");
        assert_eq!(c.advertise_ip(), IpAddr::from([10, 0, 0, 5]));
    }

    #[test]
    fn the_runtime_is_docker_unless_fake_is_asked_for() {
        let c = parse(&[]).expect("defaults parse");
        assert_eq!(c.runtime, RuntimeKind::Docker);
        let c = parse(&[
            "--runtime",
            "fake",
            "--fake-start-latency-ms",
            "250",
            "--fake-crash-rate",
            "0.1",
            "--fake-pull-failure-rate",
            "0.2",
            "--fake-seed",
            "9",
        ])
        .expect("parses");
        assert_eq!(c.runtime, RuntimeKind::Fake);
        let o = c.fake.options(0);
        assert_eq!(o.start_latency, Duration::from_millis(250));
        assert_eq!((o.crash_rate, o.pull_failure_rate), (0.1, 0.2));
        assert_eq!(o.unpullable, DEFAULT_UNPULLABLE.map(String::from).to_vec());
        assert_ne!(c.fake.options(1).seed, o.seed, "each node its own sequence");
        assert_eq!(parse(&[]).expect("defaults").fake, FakeFlags::default());
        assert!(parse(&["--fake-crash-rate", "1.5"]).is_err());
        assert!(parse(&["--fake-pull-failure-rate", "-0.1"]).is_err());
    }

    #[test]
    fn sim_takes_the_agent_flags_and_names_and_places_its_nodes() {
        let cli = Cli::try_parse_from([
            "persys-agent",
            "sim",
            "--nodes",
            "3",
            "--join-token",
            "t",
            "--data-dir",
            "/tmp/sim",
            "--base-port",
            "9000",
            "--fake-crash-rate",
            "0.5",
        ])
        .expect("parses");
        let Some(Command::Sim(sim)) = cli.command else {
            panic!("sim subcommand expected");
        };
        assert_eq!(sim.nodes, 3);
        assert_eq!(sim.max_concurrent_joins, 32);
        assert_eq!(sim.agent.join_token.as_deref(), Some("t"));
        assert_eq!(sim.agent.fake.fake_crash_rate, 0.5);
        assert_eq!(sim.node_id(2), "sim-2");
        assert_eq!(sim.listen(2), Some("127.0.0.1:9002".parse().expect("addr")));
        let high = SimArgs {
            base_port: 65535,
            ..sim.clone()
        };
        assert_eq!(high.listen(1), None);
        let ephemeral = SimArgs {
            base_port: 0,
            ..sim
        };
        assert_eq!(ephemeral.listen(7).map(|a| a.port()), Some(0));
        assert!(
            Cli::try_parse_from(["persys-agent", "sim"]).is_err(),
            "--nodes is required"
        );
    }
}
