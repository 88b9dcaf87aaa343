//! `persys-agent`: flags → [`persys_agent::run`] (or `sim` → [`persys_agent::sim::run`])
//! until SIGTERM/SIGINT.

use clap::Parser;
use persys_agent::{Cli, Command};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = cli.default_log_filter();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .init();
    let shutdown = CancellationToken::new();
    tokio::spawn(persys_http::cancel_on_signal(shutdown.clone()));
    let result = match cli.command {
        None => persys_agent::run(cli.agent, shutdown).await,
        Some(Command::Sim(args)) => persys_agent::sim::run(args, shutdown).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each message already names its cause; no chain to append.
            tracing::error!(error = %e, "persys-agent failed");
            ExitCode::FAILURE
        }
    }
}
