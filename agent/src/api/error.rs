//! API errors as the contract's JSON `{"error","code","requestId"}`.

use crate::runtime::RuntimeError;
use crate::supervisor::SupervisorError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use persys_proto::{codes, REQUEST_ID_HEADER};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`persys_proto::codes`).
    pub code: &'static str,
    /// Human message.
    pub message: String,
}

impl AppError {
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: codes::FORBIDDEN,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: codes::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: codes::INVALID,
            message: message.into(),
        }
    }
}

impl From<SupervisorError> for AppError {
    fn from(e: SupervisorError) -> Self {
        let message = e.to_string();
        let (status, code) = match e {
            SupervisorError::Invalid(_) => (StatusCode::BAD_REQUEST, codes::INVALID),
            SupervisorError::Conflict(_) => (StatusCode::CONFLICT, codes::CONFLICT),
            SupervisorError::NotFound(_) => (StatusCode::NOT_FOUND, codes::NOT_FOUND),
            SupervisorError::Runtime(RuntimeError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE)
            }
            SupervisorError::Runtime(RuntimeError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, codes::NOT_FOUND)
            }
            SupervisorError::Runtime(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL),
        };
        Self {
            status,
            code,
            message,
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        let (status, code) = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, codes::TOO_LARGE),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                codes::UNSUPPORTED_MEDIA_TYPE,
            ),
            _ => (StatusCode::BAD_REQUEST, codes::BAD_JSON),
        };
        Self {
            status,
            code,
            message: r.body_text(),
        }
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        Self::invalid(r.body_text())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        persys_http::ErrorResponse::new(self.status, self.code, self.message).into_response()
    }
}

/// Middleware: the request's id (the scheduler's `X-Request-Id`) for the error bodies
/// made while handling it, and back on the answer when it is an error.
pub async fn stamp_request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut response = persys_http::REQUEST_ID
        .scope(id.clone(), next.run(request))
        .await;
    let is_error = response.status().is_client_error() || response.status().is_server_error();
    if is_error && !id.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
    }
    response
}
