//! `persys`, the command line of a persys cluster.
//!
//! - [`args`]: the command line surface (clap);
//! - [`config`]: the client config file (original persysctl keys);
//! - [`client`]: the one API client (mTLS, one-line errors);
//! - [`output`]: tables for people, JSON/YAML for scripts;
//! - [`manifest`]: workload files for `apply` (JSON, YAML, lists, multi-document);
//! - [`sse`]: the server-sent events parser behind `events` and `run --wait`;
//! - [`commands`]: one module per verb;
//! - [`dev`]: `persys dev`, a whole local cluster as child processes;
//! - [`error`]: exit codes.

pub mod args;
pub mod client;
pub mod commands;
pub mod config;
pub mod dev;
pub mod error;
pub mod manifest;
pub mod output;
pub mod sse;

use clap::Parser;
use std::process::ExitCode;

/// Parse the command line, run it, print any error as one line and map it to an exit code.
pub fn main_entry() -> ExitCode {
    install_panic_hook();
    // Usage errors print clap's message and exit 2 here.
    let cli = args::Cli::parse();
    init_tracing();
    // One thread: the CLI needs no parallelism, and `persys dev` relies on its children
    // being spawned from a thread that lives as long as the process (PR_SET_PDEATHSIG
    // fires when the spawning thread exits).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::output::say(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::output::say(&format!("error: {}", error::message(&e)));
            ExitCode::from(error::exit_code(&e))
        }
    }
}

/// Logs go to stderr, quiet unless `RUST_LOG` asks for more.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// A bug must still end as one line and a non-zero exit, never a backtrace.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        crate::output::say(&format!(
            "error: internal error: {}{at}",
            client::one_line(&msg)
        ));
    }));
}
