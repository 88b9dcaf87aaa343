//! Arguments of the cluster-wide verbs: nodes, events, tokens, completion.

use clap::{Args, Subcommand, ValueEnum};

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
    /// Stop placing new workloads on a node (running ones stay).
    Cordon {
        /// Node id.
        id: String,
    },
    /// Place workloads on a cordoned or draining node again.
    Uncordon {
        /// Node id.
        id: String,
    },
    /// Mark a node as draining: no new placements.
    Drain {
        /// Node id.
        id: String,
    },
    /// Forget a node with nothing placed on it: its certificate stops working and its
    /// id may register again (drain it first).
    #[command(visible_alias = "remove")]
    Rm {
        /// Node id.
        id: String,
    },
    /// Print the command a new node runs to join the cluster (as `kubeadm token create
    /// --print-join-command` does): `persys-agent` with the scheduler's URLs and the
    /// join token, which carries the CA hash the agent pins.
    ///
    /// Read from local files, on the scheduler's host or next to `persys dev`: the
    /// join token the scheduler wrote to its data dir and its CA certificate (no API
    /// hands out join tokens). Only the command goes to stdout; `-o json` gives its
    /// parts. Anyone holding the token can join a node: keep the output private.
    JoinCommand(JoinCommandArgs),
}

/// `persys node join-command`.
#[derive(Debug, Args, Clone)]
pub struct JoinCommandArgs {
    /// A `persys dev` data dir, or a scheduler's `--data-dir` (holding `join-token`
    /// and `ca.crt`).
    #[arg(long, value_name = "DIR", default_value = ".persys-dev")]
    pub data_dir: std::path::PathBuf,
    /// Scheduler API URL(s) the node will use (repeatable or comma separated); default:
    /// the ones `persys dev` wrote to `DIR/endpoints.json`.
    #[arg(long = "scheduler-url", value_name = "URL", value_delimiter = ',')]
    pub scheduler_urls: Vec<String>,
    /// Bootstrap URL(s) (registration); default: `persys dev`'s, else each scheduler
    /// URL's host on the bootstrap port 8084.
    #[arg(long = "bootstrap-url", value_name = "URL", value_delimiter = ',')]
    pub bootstrap_urls: Vec<String>,
    /// The new node's id (default: its host name; for a `persys dev` cluster `joined-1`,
    /// with a data dir of its own under DIR).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
}

/// `persys events`.
#[derive(Debug, Args, Default)]
pub struct EventsArgs {
    /// Only events of this workload (its id, an id prefix or its name) and no node
    /// events.
    #[arg(long, value_name = "ID")]
    pub workload: Option<String>,
    /// Only events of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<EventKind>,
}

/// Kinds of cluster events, for `persys events --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventKind {
    /// Workload changes (including deletions).
    Workload,
    /// Node changes.
    Node,
}

/// A role of an API token (what the gateway lets it do); the gateway's own type, so a
/// new role cannot be missing here.
pub use persys_proto::Role;

/// What each role may do, for `--role`'s help.
fn role_help(role: Role) -> &'static str {
    match role {
        Role::Viewer => "Read everything",
        Role::Operator => "Read everything, manage workloads",
        Role::Admin => "Everything: nodes and tokens too",
    }
}

/// `--role`: one of the wire names of [`Role`] (clap's `ValueEnum` cannot be derived
/// on a type of another crate).
fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(Role::ALL.map(|r| PossibleValue::new(r.as_str()).help(role_help(r))))
        .try_map(|s| Role::parse(&s).ok_or("not a role"))
}

/// `persys policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the cluster's admission policy (what workloads may ask of the host).
    Get,
    /// Replace the admission policy with the one in a JSON or YAML file (admin role).
    Set {
        /// The policy file (`-` for stdin).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: std::path::PathBuf,
    },
}

/// `persys snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the cluster's state (workloads, nodes, services, tokens, policy, DNS
    /// records) to FILE, sealed with the cluster's key (admin role).
    Save {
        /// Where to write it.
        file: std::path::PathBuf,
    },
    /// Restore a snapshot into an empty cluster (admin role): agents' running
    /// containers are adopted, nothing runs twice.
    Restore {
        /// The snapshot file.
        file: std::path::PathBuf,
    },
}

/// `persys token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (it is shown only this once).
    Create {
        /// A name for the token (letters, digits, '-', '_', '.').
        #[arg(long)]
        name: String,
        /// What the token may do.
        #[arg(long, value_parser = role_parser())]
        role: Role,
    },
    /// List API tokens (never their secrets).
    #[command(visible_alias = "ls")]
    List,
    /// Revoke an API token by its id: it stops working at once.
    #[command(visible_alias = "rm")]
    Revoke {
        /// Token id (from `persys token list`).
        id: String,
    },
}

/// `persys completion SHELL`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
