//! Failures the CLI itself decides on, and the exit code of any error.

use crate::client::ClientError;

/// A failure found by the CLI rather than reported by the server.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Nothing matches what the user named (exit 4, like a 404).
    #[error("{0}")]
    NotFound(String),
}

/// Exit code for an error: the first [`ClientError`] or [`Failure`] in its chain decides;
/// anything else is 1. (Usage errors exit 2 from clap before any of this runs.)
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return c.exit_code();
        }
        if let Some(Failure::NotFound(_)) = cause.downcast_ref::<Failure>() {
            return 4;
        }
    }
    1
}

/// The one line printed for an error: its context chain joined by `: `, no newlines.
pub fn message(err: &anyhow::Error) -> String {
    crate::client::one_line(&format!("{err:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn client_error_under_context_keeps_its_exit_code() {
        let e: anyhow::Error = ClientError::Unreachable {
            endpoint: "https://x".into(),
            reason: "refused".into(),
        }
        .into();
        let e = Err::<(), _>(e)
            .context("listing workloads")
            .expect_err("error");
        assert_eq!(exit_code(&e), 5);
        assert_eq!(
            message(&e),
            "listing workloads: cannot reach https://x: refused"
        );
    }

    #[test]
    fn not_found_failure_exits_4_and_others_exit_1() {
        assert_eq!(exit_code(&Failure::NotFound("no".into()).into()), 4);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), 1);
    }
}
