//! Errors: [`StartError`] for what stops the gateway from starting, [`ApiFailure`] for
//! every non-2xx answer (the contract's JSON `{"error","code","requestId"}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use persys_proto::codes;
use std::path::PathBuf;

pub use persys_http::error::{current_request_id, REQUEST_ID};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag has an unusable value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Certificates could not be loaded, issued or turned into a TLS configuration.
    #[error("pki: {0}")]
    Pki(#[from] persys_certs::CertError),
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The upstream HTTP client could not be built.
    #[error("upstream client: {0}")]
    Client(#[from] reqwest::Error),
}

/// An error answer. Extra fields (e.g. what a webhook did redeploy) are merged into the
/// JSON object next to `error`, `code` and `requestId`.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`persys_proto::codes`).
    pub code: &'static str,
    /// Human message (lower case, says what failed).
    pub message: String,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// More fields of the answer.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiFailure {
    /// Any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            extra: serde_json::Map::new(),
        }
    }

    /// 400 naming the field.
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
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

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, codes::CONFLICT, message)
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            "rate limit exceeded for this credential; retry later",
        );
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// 429 with `Retry-After` for a source address over its failed-authentication
    /// limit.
    pub fn auth_rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            "too many failed authentications from this address; retry later",
        );
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// 503: no scheduler (or etcd) answered.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, message);
        e.retry_after = Some(1);
        e
    }

    /// 504: the scheduler did not answer in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, codes::TIMEOUT, message)
    }

    /// 502: the scheduler's answer broke off or could not be used.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
    }

    /// Adds a field to the answer.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        persys_http::ErrorResponse {
            status: self.status,
            code: self.code,
            message: self.message,
            retry_after: self.retry_after,
            extra: self.extra,
        }
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failure_is_contract_json_with_request_id_and_retry_after() {
        let resp = REQUEST_ID
            .scope("rid-1".into(), async {
                ApiFailure::rate_limited(3).into_response()
            })
            .await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[axum::http::header::RETRY_AFTER], "3");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["code"], "rate_limited");
        assert_eq!(v["requestId"], "rid-1");
        assert!(v["error"].is_string());
    }
}
