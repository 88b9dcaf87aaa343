//! The command line surface (clap derive). Parsing only; the verbs live in `commands/`.

use crate::output::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// persys: run containers on a persys cluster.
#[derive(Debug, Parser)]
#[command(name = "persys", version, propagate_version = true)]
#[command(
    about = "persys: run containers on a persys cluster",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 unauthorized/forbidden, 4 not found, \
                  5 server error or unreachable.\n\
                  Start a local cluster with `persys dev`, then `export PERSYS_CONFIG=...` as it says."
)]
pub struct Cli {
    /// Client config (YAML: api_endpoint, ca_cert_path, cert_path, key_path [, token]).
    /// Default: $PERSYS_CONFIG, else ~/.persys/config.yaml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format: `table` for people, `json` for scripts (pure JSON on stdout).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a whole local cluster (etcd, scheduler, agents) in the foreground until Ctrl-C.
    Dev(DevArgs),
    /// Run a container on the cluster and print its workload id.
    ///
    /// The command after the image (or after `--`) is sent in exec form, one array
    /// element per argument, and never goes through a shell on any host:
    /// `persys run busybox:local -- echo "a b"` runs `echo` with the single argument
    /// `a b`. A single argument containing spaces is still one element (`-- "echo hi"`
    /// looks for a program named `echo hi`); for shell syntax, ask the container's own
    /// shell: `-- sh -c 'echo hi && sleep 60'`. Flags after the first command word
    /// belong to the command.
    Run(RunArgs),
    /// Manage workloads (schedule a file, list, get, stop, start, rm).
    #[command(subcommand, visible_alias = "workloads")]
    Workload(WorkloadCommand),
    /// Print a workload's logs (streamed from its node).
    Logs(LogsArgs),
    /// Stop a workload's container (the record stays; `start` runs it again).
    Stop(IdArg),
    /// Start a stopped workload again.
    Start(IdArg),
    /// Delete a workload: its container, then its record.
    #[command(visible_alias = "delete")]
    Rm(IdArg),
    /// Inspect nodes.
    #[command(subcommand, visible_alias = "nodes")]
    Node(NodeCommand),
}

/// `persys workload ...`
#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Submit a workload JSON file as the original persysctl did
    /// (POST /workloads/schedule); `-` reads standard input.
    Schedule {
        /// The workload JSON file.
        #[arg(value_name = "FILE.json")]
        file: PathBuf,
    },
    /// List workloads (ID NAME IMAGE STATUS NODE AGE; `-o json` prints the array).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one workload.
    Get(IdArg),
    /// Print a workload's logs.
    Logs(LogsArgs),
    /// Stop a workload's container.
    Stop(IdArg),
    /// Start a stopped workload again.
    Start(IdArg),
    /// Delete a workload.
    #[command(visible_alias = "delete")]
    Rm(IdArg),
}

/// `persys node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes (NODE STATUS ADDRESS CPU MEMORY LABELS HEARTBEAT; `-o json` prints
    /// the array of nodes).
    #[command(visible_alias = "ls")]
    List,
    /// Show one node.
    Get {
        /// Node id.
        id: String,
    },
}

/// A workload reference: its id, a unique id prefix, or its unique name.
#[derive(Debug, Args)]
pub struct IdArg {
    /// Workload id (or a unique id prefix, or a unique name).
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `persys workload list` filters.
#[derive(Debug, Args, Default)]
pub struct ListArgs {
    /// Only workloads in this status (e.g. Running, Pending).
    #[arg(long)]
    pub status: Option<String>,
    /// Only workloads placed on this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Only workloads with this label.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub label: Option<(String, String)>,
}

/// `persys logs ...`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Workload id (or a unique id prefix, or a unique name).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Keep streaming new lines until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Prefix every line with its timestamp.
    #[arg(long)]
    pub timestamps: bool,
}

/// `persys run ...` (see the `Run` verb's doc for how the command is sent).
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Workload name (a DNS label); derived from the image when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// CPU request and limit in millicores (1000 = one core; 0 = none).
    #[arg(long, value_name = "MILLICORES", default_value_t = 0)]
    pub cpu: u64,
    /// Memory request and limit in MB (0 = none).
    #[arg(long, value_name = "MB", default_value_t = 0)]
    pub memory: u64,
    /// Workload label (repeatable).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// Node label the workload requires (repeatable).
    #[arg(long = "node-selector", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub node_selector: Vec<(String, String)>,
    /// Restart policy.
    #[arg(long, value_name = "POLICY", value_parser = ["no", "on-failure", "always", "unless-stopped"])]
    pub restart: Option<String>,
    /// Port mapping HOST:CONTAINER[/PROTO] (repeatable).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub ports: Vec<String>,
    /// Bind mount HOST:CONTAINER[:ro|rw] (repeatable).
    #[arg(short = 'v', long = "volume", value_name = "VOL")]
    pub volumes: Vec<String>,
    /// Docker network.
    #[arg(long)]
    pub network: Option<String>,
    /// Wait until the workload runs: exit 0 once Running, non-zero with the reason
    /// if it fails (Failed, ImagePullBackOff, Exited non-zero).
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub wait_timeout: u64,
    /// Image reference, e.g. busybox:local.
    pub image: String,
    /// Command and arguments (exec form), after the image or after `--`.
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

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
    /// First agent's port; agent i listens on PORT+i-1 (on 127.0.0.1).
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub agent_port: u16,
}

/// Parse `KEY=VALUE` (the value may contain `=`; the key may not be empty).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("persys").chain(args.iter().copied())).expect("parses")
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).command {
            Command::Run(r) => r,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_value_keeps_equals_signs_in_the_value() {
        assert_eq!(
            parse_key_value("URL=http://x/?a=1&b=2"),
            Ok(("URL".into(), "http://x/?a=1&b=2".into()))
        );
        assert!(parse_key_value("=v").is_err());
        assert!(parse_key_value("novalue").is_err());
    }

    #[test]
    fn run_command_after_double_dash_is_kept_verbatim() {
        let r = run_args(&[
            "run",
            "--name",
            "x",
            "busybox:local",
            "--",
            "sh",
            "-c",
            "echo hi; sleep 1",
        ]);
        assert_eq!(r.image, "busybox:local");
        assert_eq!(r.command, ["sh", "-c", "echo hi; sleep 1"]);
    }

    #[test]
    fn run_command_without_double_dash_starts_after_the_image() {
        let r = run_args(&["run", "busybox:local", "echo", "-n", "--wait"]);
        assert_eq!(r.command, ["echo", "-n", "--wait"]);
        assert!(!r.wait);
    }

    #[test]
    fn run_flags_between_image_and_double_dash_are_flags() {
        let r = run_args(&["run", "busybox:local", "--wait", "--", "sleep", "5"]);
        assert!(r.wait);
        assert_eq!(r.command, ["sleep", "5"]);
    }

    #[test]
    fn global_output_flag_works_after_the_verb() {
        let c = parse(&["workload", "list", "-o", "json"]);
        assert_eq!(c.output, Format::Json);
    }

    #[test]
    fn unknown_restart_policy_is_a_usage_error() {
        let e = Cli::try_parse_from(["persys", "run", "--restart", "sometimes", "img"])
            .expect_err("refused");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn rm_has_delete_alias_under_workload() {
        assert!(matches!(
            parse(&["workload", "delete", "abc"]).command,
            Command::Workload(WorkloadCommand::Rm(_))
        ));
    }
}
