//! The one shape of every non-2xx answer of every persys API: the JSON body
//! `{"error": "<message>", "code": "<code>", "requestId": "<id>"}` (plus any fields an
//! error adds, such as the webhook's `failed`), `Retry-After` when the client should
//! retry (always on a 503), and `Connection: close` on a 413, whose body was not read.
//! Each binary keeps its own error type for what its errors mean and turns it into an
//! [`ErrorResponse`] at the edge.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

tokio::task_local! {
    /// The request id of the request being handled (`X-Request-Id`), set by each
    /// binary's request-id middleware around the handler.
    pub static REQUEST_ID: String;
}

/// The current request's id (empty outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// A non-2xx answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`persys_proto::codes`).
    pub code: &'static str,
    /// Human message: what failed and, where it helps, what to do.
    pub message: String,
    /// Seconds for `Retry-After` (a 503 gets 1 when this is absent).
    pub retry_after: Option<u64>,
    /// More fields of the body.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ErrorResponse {
    /// An answer with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            extra: serde_json::Map::new(),
        }
    }

    /// The same, with `Retry-After: secs` (at least 1).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        if self.status.is_server_error() {
            tracing::warn!(request_id = %request_id, status = %self.status, error = %self.message, "request failed");
        } else {
            tracing::debug!(request_id = %request_id, status = %self.status, error = %self.message, "request refused");
        }
        let mut body = self.extra;
        body.insert("error".into(), self.message.into());
        body.insert("code".into(), self.code.into());
        body.insert("requestId".into(), request_id.into());
        let mut resp = (self.status, Json(serde_json::Value::Object(body))).into_response();
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read; the connection cannot carry another
            // request, so tell the client not to reuse it (hyper drops this on HTTP/2).
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn the_body_has_the_message_code_request_id_and_extra_fields() {
        let mut e = ErrorResponse::new(StatusCode::BAD_GATEWAY, "agent_error", "node n1 failed");
        e.extra.insert("failed".into(), serde_json::json!(["w1"]));
        let resp = REQUEST_ID
            .scope("rid-7".into(), async { e.into_response() })
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
        let v = body(resp).await;
        assert_eq!(
            v,
            serde_json::json!({"error": "node n1 failed", "code": "agent_error", "requestId": "rid-7", "failed": ["w1"]})
        );
    }

    #[tokio::test]
    async fn a_503_says_when_to_retry_and_a_413_closes_the_connection() {
        let resp =
            ErrorResponse::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "x").into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let resp = ErrorResponse::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "x")
            .retry_after(0)
            .into_response();
        assert_eq!(
            resp.headers()[header::RETRY_AFTER],
            "1",
            "at least one second"
        );
        let resp =
            ErrorResponse::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "x").into_response();
        assert_eq!(resp.headers()[header::CONNECTION], "close");
        assert_eq!(body(resp).await["requestId"], "", "outside a request");
    }
}
