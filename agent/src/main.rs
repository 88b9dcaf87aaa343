//! `persys-agent`: flags → [`persys_agent::run`] until SIGTERM/SIGINT.

use clap::Parser;
use persys_agent::Config;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let shutdown = CancellationToken::new();
    tokio::spawn(persys_http::cancel_on_signal(shutdown.clone()));
    match persys_agent::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each message already names its cause; no chain to append.
            tracing::error!(error = %e, "persys-agent failed");
            ExitCode::FAILURE
        }
    }
}
