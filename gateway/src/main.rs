//! `persys-gateway`: parse flags, log, serve until SIGTERM/SIGINT, then drain.

use clap::Parser;
use persys_gateway::Config;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("persys-gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    runtime.spawn(persys_http::cancel_on_signal(shutdown.clone()));
    let result = runtime.block_on(persys_gateway::run(config, shutdown));
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("persys-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
