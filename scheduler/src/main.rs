//! `persys-scheduler`: parse flags, log, run until SIGTERM/SIGINT.

use clap::Parser;
use persys_scheduler::config::Config;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let config = Config::parse();
    persys_http::logging::init(&config.log, "info");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("persys-scheduler: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    runtime.spawn(persys_http::cancel_on_signal(shutdown.clone()));
    let result = runtime.block_on(persys_scheduler::run(config, shutdown));
    // Everything of ours has stopped; don't wait for idle client connection tasks.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("persys-scheduler: {e}");
            ExitCode::FAILURE
        }
    }
}
