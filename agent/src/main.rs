//! `persys-agent`: flags → [`persys_agent::run`] (or `sim` → [`persys_agent::sim::run`])
//! until SIGTERM/SIGINT.

use clap::Parser;
use persys_agent::{Cli, Command};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = cli.default_log_filter();
    let log = match &cli.command {
        None => &cli.agent.log,
        Some(Command::Sim(args)) => &args.agent.log,
    };
    persys_http::logging::init(log, default_filter);
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
