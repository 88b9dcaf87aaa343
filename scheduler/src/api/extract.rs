//! Extractors whose rejections are the contract's JSON errors.

use super::error::AppError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use persys_certs::{PeerIdentity, Role};
use persys_proto::codes;
use serde::de::DeserializeOwned;

/// A JSON body: over the size limit → 413, not JSON of the expected shape → 400,
/// both as `{"error","code","requestId"}`. The content type is not enforced because
/// the original clients do not always send one.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    codes::TOO_LARGE,
                    "request body is larger than the limit",
                )
            } else {
                AppError::bad_json(format!(
                    "cannot read request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(AppError::bad_json(
                "request body is empty; expected a JSON object",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| AppError::bad_json(format!("request body is not valid JSON: {e}")))
    }
}

/// The node calling, from its verified certificate (`spiffe://persys/node/<id>`):
/// agents' routes act for this node only, whatever the body or path says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallingNode(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CallingNode {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<PeerIdentity>() {
            Some(p) if p.identity.role == Role::Node => Ok(CallingNode(p.identity.name.clone())),
            Some(p) => Err(AppError::forbidden(format!(
                "only a node's certificate may call this route, not {}",
                p.identity
            ))),
            None => Err(AppError::unauthenticated(
                "a node certificate of the cluster CA is required",
            )),
        }
    }
}
