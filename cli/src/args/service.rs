//! `persys service ...` arguments.

use clap::Subcommand;
use std::path::PathBuf;

/// `persys service ...`
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service from a `kind: Service` file (refused if it exists).
    Create {
        /// The service file (JSON or YAML; `-` for stdin).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// Update a service from its file: a new template rolls out as a new revision.
    Update {
        /// The service file (JSON or YAML; `-` for stdin).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// List services: ready and wanted replicas, revision, rollout state.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one service and its replicas.
    Get {
        /// Service name.
        name: String,
    },
    /// Set the number of replicas.
    Scale {
        /// Service name.
        name: String,
        /// Replicas wanted.
        replicas: u32,
    },
    /// Follow, list or undo rollouts.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Delete a service and its replicas.
    #[command(visible_alias = "delete")]
    Rm {
        /// Service name.
        name: String,
    },
}

/// `persys service rollout ...`
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Follow the current rollout until it completes (exit 0) or fails (exit 1).
    Status {
        /// Service name.
        name: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// List the revisions the service keeps.
    History {
        /// Service name.
        name: String,
    },
    /// Go back to the previous revision's template (as a new revision).
    Undo {
        /// Service name.
        name: String,
    },
}
