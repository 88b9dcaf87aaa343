//! Arguments of the workload verbs.

use super::parse_key_value;
use clap::{Args, Subcommand};
use std::path::PathBuf;

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
    /// Create the workloads of a JSON or YAML file (same as `persys apply`).
    Apply(ApplyArgs),
    /// List workloads (ID NAME IMAGE STATUS NODE AGE; `-o wide` adds RESTARTS, PORTS,
    /// REASON; `-o json` prints the array).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one workload.
    Get(IdArg),
    /// Describe one workload (record, status reason, node).
    Describe(IdArg),
    /// Print a workload's logs.
    Logs(LogsArgs),
    /// Stop a workload's container.
    Stop(IdArg),
    /// Roll a git-compose workload forward to its branch's newest commit (a new
    /// generation), or restart any other workload as a new generation.
    Redeploy(IdArg),
    /// Start a stopped workload again.
    Start(IdArg),
    /// Delete a workload.
    #[command(visible_alias = "delete")]
    Rm(IdArg),
}

/// A workload reference: its id, a unique id prefix, or its unique name.
#[derive(Debug, Args)]
pub struct IdArg {
    /// Workload id (or a unique id prefix, or a unique name).
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `persys workload list` / `persys ps` filters.
#[derive(Debug, Args, Default)]
pub struct ListArgs {
    /// Only workloads in this status (e.g. Running, Pending).
    #[arg(long)]
    pub status: Option<String>,
    /// Only workloads placed on this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Only workloads with this label (repeatable: all must match).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
}

/// `persys apply -f FILE`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// JSON or YAML file of workloads: one object, a list, or YAML documents separated
    /// by `---`; `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
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
    /// Only this service of a Compose workload (all services, each line prefixed with
    /// its service, when absent).
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
}

/// `persys run ...` (see the `Run` verb's doc for how the command is sent).
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Workload type: one container, a Compose project (`--compose` and/or
    /// `--local-path`), or a Compose project from a git repository (`--git-repo`).
    #[arg(long = "type", value_name = "TYPE", value_parser = ["docker-container", "docker-compose", "git-compose"])]
    pub kind: Option<String>,
    /// docker-compose: the Compose file to send (`-` reads standard input).
    #[arg(long, value_name = "FILE")]
    pub compose: Option<PathBuf>,
    /// docker-compose: a directory on the node holding the project (its Compose file,
    /// build contexts, `.env`); needs the cluster policy to allow that host path.
    #[arg(long, value_name = "DIR")]
    pub local_path: Option<String>,
    /// git-compose: the repository URL (https://, http:// or file://).
    #[arg(long, value_name = "URL")]
    pub git_repo: Option<String>,
    /// git-compose: the branch followed (default main).
    #[arg(long, value_name = "BRANCH")]
    pub git_branch: Option<String>,
    /// git-compose: read the repository's token from this environment variable (never
    /// put a token on the command line, where `ps` shows it).
    #[arg(long, value_name = "VAR", conflicts_with = "git_token_file")]
    pub git_token_env: Option<String>,
    /// git-compose: read the repository's token from this file (its first line).
    #[arg(long, value_name = "FILE")]
    pub git_token_file: Option<PathBuf>,
    /// The Compose file's path inside the repository or local directory, when it is
    /// not compose.yaml / docker-compose.yml at its root.
    #[arg(long, value_name = "PATH")]
    pub compose_file: Option<String>,
    /// Workload name (a DNS label); derived from the image when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Secret environment variable (repeatable): given to the container, shown as
    /// `***` by every answer, event and log.
    #[arg(long = "secret-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub secret_env: Vec<(String, String)>,
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
    /// Wait until the workload runs, printing each status change on stderr: exit 0
    /// once Running, non-zero with the reason if it fails (Failed, ImagePullBackOff,
    /// Exited non-zero).
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub wait_timeout: u64,
    /// Image reference, e.g. busybox:local (none for the Compose types).
    #[arg(required_unless_present_any = ["compose", "local_path", "git_repo"])]
    pub image: Option<String>,
    /// Command and arguments (exec form), after the image or after `--`.
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}
