//! `persys-gateway`: parse flags, log, serve until SIGTERM/SIGINT, then drain.

use clap::Parser;
use persys_gateway::Config;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let config = Config::parse();
    persys_http::logging::init(&config.log, "info");
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
