//! The command line surface (clap derive). Parsing only; the verbs live in `commands/`.
//!
//! - this module: the top level ([`Cli`], [`Command`]) and [`parse_key_value`];
//! - [`workload`]: workload verbs and their arguments (`run`, `apply`, `ps`, `logs`, ...);
//! - [`cluster`]: nodes, events, tokens, completion;
//! - [`dev`]: `persys dev`.

pub mod cluster;
pub mod dev;
pub mod pki;
pub mod service;
pub mod workload;

pub use cluster::{
    CompletionArgs, EventsArgs, JoinCommandArgs, NodeCommand, PolicyCommand, SnapshotCommand,
    TokenCommand,
};
pub use dev::DevArgs;
pub use pki::PkiCommand;
pub use service::{RolloutCommand, ServiceCommand};
pub use workload::{ApplyArgs, IdArg, ListArgs, LogsArgs, RunArgs, WorkloadCommand};

use crate::output::Format;
use clap::{Parser, Subcommand};
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
    /// Client config (YAML: api_endpoint, ca_cert_path, token and/or cert_path, key_path).
    /// Default: $PERSYS_CONFIG, else ~/.persys/config.yaml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// API token to send instead of the config's `token` (prefer the environment
    /// variable: a flag is visible to other users in `ps`).
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "PERSYS_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Output format: `table` (for people), `wide` (more columns), `json` or `yaml`
    /// (for scripts: only the data on stdout).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a whole local cluster (etcd, scheduler, gateway, agents) in the foreground
    /// until Ctrl-C.
    ///
    /// With `--sim-nodes N` the cluster also gets N simulated nodes (one
    /// `persys-agent sim` child, in-memory containers, no Docker needed) and, unless
    /// `--agents` says otherwise, no real agent: `persys dev --sim-nodes 1000` is a
    /// thousand-node cluster on a laptop.
    ///
    /// Once the cluster is up, a child that dies is reported and started again with
    /// exponential backoff (an agent after 3 s or more, past the node timeout: its node
    /// is lost and its workloads move before it rejoins as the same node); each
    /// child's pid is in `DIR/pids/<child>.pid` while it runs.
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
    Run(Box<RunArgs>),
    /// Create the workloads of a JSON or YAML file (one, a list, or YAML documents
    /// separated by `---`), one line per workload.
    Apply(ApplyArgs),
    /// List workloads (same as `workload list`).
    Ps(ListArgs),
    /// Show one workload (`key: value` lines; `-o json|yaml` the record as is).
    Get(IdArg),
    /// Describe one workload: its record, why it is in its status, where it runs.
    Describe(IdArg),
    /// Explain a workload's placement: each node's verdict (the filter that rejected
    /// it, or its score), then the winner, or for a Pending workload what would make it
    /// fit. `-o json` prints the scheduler's answer.
    Why(IdArg),
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
    /// Roll a git-compose workload forward to its branch's newest commit (the old
    /// generation runs until the new one is up), or restart any other workload as a
    /// new generation.
    Redeploy(IdArg),
    /// Inspect and control nodes (list, get, cordon, uncordon, drain).
    #[command(subcommand, visible_alias = "nodes")]
    Node(NodeCommand),
    /// Follow the cluster's event stream (workload and node changes) until Ctrl-C.
    Events(EventsArgs),
    /// Cluster capacity, allocation and workload counts.
    Metrics,
    /// Show or set the cluster's admission policy (host paths, host namespaces,
    /// privileges; `set` needs the admin role).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage services: replicated workloads with rolling updates (create and update
    /// from a `kind: Service` file, ls, get, scale, rollout status|history|undo, rm).
    #[command(subcommand, visible_alias = "services")]
    Service(ServiceCommand),
    /// Save or restore the cluster's state (admin role).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Manage API tokens (create, list, revoke; admin role).
    #[command(subcommand, visible_alias = "tokens")]
    Token(TokenCommand),
    /// Create a cluster's certificates from local files, before any component runs
    /// (etcd's PKI, the cluster CA with the admin certificate and join token, client
    /// certificates).
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Print a shell completion script (`source <(persys completion bash)`).
    Completion(CompletionArgs),
    /// Print the version of this CLI (and its git revision when built from git).
    Version,
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

    pub(crate) fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("persys").chain(args.iter().copied())).expect("parses")
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).command {
            Command::Run(r) => *r,
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
        assert_eq!(r.image.as_deref(), Some("busybox:local"));
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
        assert_eq!(parse(&["ps", "-o", "wide"]).output, Format::Wide);
        assert_eq!(parse(&["ps", "-o", "yaml"]).output, Format::Yaml);
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

    #[test]
    fn ps_takes_the_list_filters_with_repeatable_labels() {
        let Command::Ps(l) = parse(&[
            "ps", "--status", "Running", "--node", "node-1", "-l", "a=1", "-l", "b=2",
        ])
        .command
        else {
            panic!("not ps");
        };
        assert_eq!(l.status.as_deref(), Some("Running"));
        assert_eq!(l.node.as_deref(), Some("node-1"));
        assert_eq!(
            l.labels,
            [("a".to_string(), "1".to_string()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn why_takes_a_workload_reference() {
        let Command::Why(a) = parse(&["why", "web", "-o", "json"]).command else {
            panic!("not why");
        };
        assert_eq!(a.id, "web");
        let e = Cli::try_parse_from(["persys", "why"]).expect_err("refused");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn apply_needs_a_file() {
        let e = Cli::try_parse_from(["persys", "apply"]).expect_err("refused");
        assert_eq!(e.exit_code(), 2);
        let Command::Apply(a) = parse(&["apply", "-f", "w.yaml"]).command else {
            panic!("not apply");
        };
        assert_eq!(a.file, PathBuf::from("w.yaml"));
    }

    #[test]
    fn token_create_refuses_an_unknown_role() {
        let e = Cli::try_parse_from(["persys", "token", "create", "--name", "x", "--role", "god"])
            .expect_err("refused");
        assert_eq!(e.exit_code(), 2);
        assert!(matches!(
            parse(&["token", "create", "--name", "ci", "--role", "viewer"]).command,
            Command::Token(TokenCommand::Create { .. })
        ));
    }

    #[test]
    fn node_control_verbs_take_a_node_id() {
        for verb in ["cordon", "uncordon", "drain", "rm"] {
            assert!(matches!(
                parse(&["node", verb, "node-1"]).command,
                Command::Node(_)
            ));
        }
    }
}
