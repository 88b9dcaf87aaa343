//! `persys-dns`: parse flags, log, serve until SIGTERM/SIGINT.

use clap::Parser;
use persys_dns::Config;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let config = Config::parse();
    // hickory logs every request at info.
    persys_http::logging::init(&config.log, "info,hickory_server=warn");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("persys-dns: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    runtime.spawn(persys_http::cancel_on_signal(shutdown.clone()));
    let result = runtime.block_on(persys_dns::run(config, shutdown));
    // Everything of ours has stopped; don't wait for idle connection tasks.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("persys-dns: {e}");
            ExitCode::FAILURE
        }
    }
}
