//! `/tokens`: create (the secret is in this answer only), list (no secrets), revoke.

use crate::auth::{Role, Subject};
use crate::body::read_json;
use crate::error::{current_request_id, ApiFailure};
use crate::token_store::TokenStoreError;
use crate::tokens::{validate_name, ApiToken};
use crate::App;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Body of `POST /tokens`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CreateToken {
    /// Human name, unique among tokens: 1-63 letters, digits, '-', '_' or '.'.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,63}$", min_length = 1, max_length = 63)]
    pub name: String,
    /// Role of the token.
    pub role: Role,
}

/// Answer of `POST /tokens`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// Token id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The secret: send it as `Authorization: Bearer <token>`. Not retrievable later.
    pub token: String,
    /// Creation time (RFC 3339).
    pub created_at: DateTime<Utc>,
}

/// Answer of `GET /tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenList {
    /// API tokens, oldest first (join tokens are not listed).
    pub tokens: Vec<ApiToken>,
}

fn store_failure(e: TokenStoreError) -> ApiFailure {
    match e {
        TokenStoreError::NameTaken(_) => ApiFailure::conflict(e.to_string()),
        other => ApiFailure::unavailable(format!(
            "token store unavailable: {other}; nothing was changed, try again"
        )),
    }
}

fn who(req: &Request) -> String {
    req.extensions()
        .get::<Subject>()
        .map(|s| s.name.clone())
        .unwrap_or_default()
}

/// `POST /tokens` (admin): 201 with the secret.
pub async fn create(
    State(app): State<Arc<App>>,
    req: Request,
) -> Result<(StatusCode, Json<CreatedToken>), ApiFailure> {
    let by = who(&req);
    let body: serde_json::Value = read_json(req.into_body(), app.max_body_bytes).await?;
    let name = match body.get("name") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiFailure::invalid("name", "must be a string")),
        None => return Err(ApiFailure::invalid("name", "is required")),
    };
    validate_name(&name).map_err(|m| ApiFailure::invalid("name", m))?;
    let role = match body.get("role") {
        Some(serde_json::Value::String(s)) => Role::parse(s).ok_or_else(|| {
            ApiFailure::invalid(
                "role",
                format!("{s:?} is not one of viewer, operator, admin"),
            )
        })?,
        Some(_) => return Err(ApiFailure::invalid("role", "must be a string")),
        None => return Err(ApiFailure::invalid("role", "is required")),
    };
    let (secret, token) = app
        .tokens
        .create(&name, role)
        .await
        .map_err(store_failure)?;
    tracing::info!(request_id = %current_request_id(), by = %by, token_id = %token.id, token_name = %token.name, role = %token.role, "api token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: token.id,
            name: token.name,
            role: token.role,
            token: secret,
            created_at: token.created_at,
        }),
    ))
}

/// `GET /tokens` (admin).
pub async fn list(State(app): State<Arc<App>>) -> Json<TokenList> {
    Json(TokenList {
        tokens: app.tokens.cache().list(),
    })
}

/// `DELETE /tokens/{id}` (admin): the revoked token; it stops working at once on this
/// gateway and, through the etcd watch, on every other.
pub async fn revoke(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Json<ApiToken>, ApiFailure> {
    match app.tokens.revoke(&id).await.map_err(store_failure)? {
        Some(token) => {
            tracing::info!(request_id = %current_request_id(), by = %who(&req), token_id = %token.id, token_name = %token.name, "api token revoked");
            Ok(Json(token))
        }
        None => Err(ApiFailure::not_found(format!("token {id} not found"))),
    }
}
