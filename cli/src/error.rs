//! Failures the CLI itself decides on, and the exit code of any error.

use crate::client::ClientError;

/// A failure found by the CLI rather than reported by the server.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Nothing matches what the user named (exit 4, like a 404).
    #[error("{0}")]
    NotFound(String),
    /// Some of several requests failed (each was reported as it failed); exits with
    /// the code of the first failure.
    #[error("{message}")]
    Partial {
        /// What failed, in sum.
        message: String,
        /// Exit code of the first failure.
        exit_code: u8,
    },
}

/// Exit code for an error: the first [`ClientError`] or [`Failure`] in its chain decides;
/// anything else is 1. (Usage errors exit 2 from clap before any of this runs.)
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return c.exit_code();
        }
        match cause.downcast_ref::<Failure>() {
            Some(Failure::NotFound(_)) => return 4,
            Some(Failure::Partial { exit_code, .. }) => return *exit_code,
            None => {}
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
        let partial = Failure::Partial {
            message: "1 of 2 failed".into(),
            exit_code: 3,
        };
        assert_eq!(exit_code(&partial.into()), 3);
    }
}
