//! SIGTERM or SIGINT → a [`CancellationToken`], the one way every service stops.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Waits for SIGTERM or SIGINT, then cancels `shutdown`. A signal whose handler cannot
/// be installed is logged and not waited for (the other still stops the process);
/// should neither install, it falls back to tokio's portable Ctrl-C.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = signal(SignalKind::terminate())
        .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGTERM"))
        .ok();
    let mut int = signal(SignalKind::interrupt())
        .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGINT"))
        .ok();
    if term.is_none() && int.is_none() {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C either; stopping now");
        }
        shutdown.cancel();
        return;
    }
    tokio::select! {
        Some(()) = recv(&mut term) => tracing::info!("SIGTERM received"),
        Some(()) = recv(&mut int) => tracing::info!("SIGINT received"),
        // Both streams ended (the runtime is going away): nothing will stop us later.
        else => tracing::warn!("signal streams ended; stopping"),
    }
    shutdown.cancel();
}

/// The next delivery of `s`; never, when it has no handler.
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let token = CancellationToken::new();
        let task = tokio::spawn(cancel_on_signal(token.clone()));
        // Let the handlers install before the signal is raised.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!token.is_cancelled());
        // The handler is installed, so this cannot kill the test process.
        let pid = std::process::id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(5), token.cancelled())
            .await
            .expect("cancelled on SIGTERM");
        task.await.expect("task ends");
    }
}
