//! `AppError`: every non-2xx answer as the contract's JSON
//! `{"error", "code", "requestId"}`.

use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use persys_proto::{codes, ValidationError};

pub use persys_http::error::{current_request_id, REQUEST_ID};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`persys_proto::codes`).
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// The request was not applied and may be sent to the leader again
    /// (`crate::forward::RETRY_HEADER`).
    pub retry_on_leader: bool,
    /// `Retry-After` in seconds (a 503 always gets one: 1).
    pub retry_after_secs: Option<u64>,
}

impl AppError {
    /// Any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_on_leader: false,
            retry_after_secs: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    /// 400 naming the field.
    pub fn invalid(e: &ValidationError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID, e.to_string())
    }

    /// 400 for a field of our own checks.
    pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID,
            format!("{field}: {message}"),
        )
    }

    /// 400 for a body that is not the expected JSON.
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_JSON, message)
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    /// 403: the cluster's admission policy refuses the workload.
    pub fn policy_denied(e: &crate::admission::Denied) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::POLICY_DENIED, e.to_string())
    }

    /// 413 naming the limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, codes::TOO_LARGE, message)
    }

    /// 429 for a source that failed too often; come back after `wait`.
    pub fn too_many_failures(message: impl Into<String>, wait: std::time::Duration) -> Self {
        Self {
            retry_after_secs: Some(wait.as_secs().max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, codes::RATE_LIMITED, message)
        }
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, codes::CONFLICT, message)
    }

    /// 502: the node's agent failed.
    pub fn agent(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, codes::AGENT_ERROR, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                format!("{e}; try again"),
            ),
            StoreError::NotLeader => Self {
                retry_on_leader: true,
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::UNAVAILABLE,
                    "leadership changed while handling the request; nothing was changed, try again",
                )
            },
            StoreError::Conflict { .. } => Self::conflict(e.to_string()),
            other => {
                tracing::error!(error = %other, "store error");
                Self::internal(other.to_string())
            }
        }
    }
}

impl From<crate::agent_client::AgentError> for AppError {
    fn from(e: crate::agent_client::AgentError) -> Self {
        if e.is_not_found() {
            Self::not_found(e.to_string())
        } else {
            Self::agent(e.to_string())
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut resp = persys_http::ErrorResponse {
            status: self.status,
            code: self.code,
            message: self.message,
            retry_after: self.retry_after_secs,
            extra: serde_json::Map::new(),
        }
        .into_response();
        if self.retry_on_leader {
            resp.headers_mut().insert(
                crate::forward::RETRY_HEADER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}
