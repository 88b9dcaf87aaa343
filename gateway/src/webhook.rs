//! `POST /webhooks/github`: a signed `push` redeploys the workloads labelled with its
//! repository and branch (`persys.io/repo`, `persys.io/branch`); `ping` is answered;
//! other events are acknowledged and ignored. Unsigned or wrongly signed deliveries
//! get 401 and change nothing.

use crate::body::read_all;
use crate::error::{current_request_id, ApiFailure};
use crate::proxy::failure;
use crate::App;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use persys_proto::REQUEST_ID_HEADER;
use persys_proto::{labels, DesiredState, Workload};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::Arc;

/// Header with `sha256=<hex HMAC of the body>`.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// Header naming the event.
pub const EVENT_HEADER: &str = "x-github-event";
/// Header with GitHub's delivery id.
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
/// The comparison is constant-time (`verify_slice`).
pub fn verify_signature(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(hex_sig) = signature.and_then(|s| s.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `sha256=<hex>` of `body` under `secret` (what GitHub sends; used by tests and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The parts of a `push` payload that matter here.
#[derive(Debug, Deserialize)]
pub struct PushEvent {
    /// `refs/heads/<branch>` or `refs/tags/<tag>`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The branch was deleted.
    #[serde(default)]
    pub deleted: bool,
    /// The repository.
    pub repository: Repository,
}

/// Repository of a push.
#[derive(Debug, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
}

/// Answer to a push.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushOutcome {
    /// Always `push`.
    pub event: String,
    /// `owner/name`.
    pub repository: String,
    /// Branch pushed to.
    pub branch: String,
    /// Workloads redeployed (new generation, container replaced).
    pub redeployed: Vec<String>,
}

/// Whether a workload follows this repository and branch.
pub fn follows(w: &Workload, repository: &str, branch: &str) -> bool {
    w.desired_state != DesiredState::Deleted
        && w.spec.labels.get(labels::REPO).map(String::as_str) == Some(repository)
        && w.spec.labels.get(labels::BRANCH).map(String::as_str) == Some(branch)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The webhook handler.
pub async fn github(State(app): State<Arc<App>>, req: Request) -> Response {
    let request_id = current_request_id();
    let headers = req.headers().clone();
    let event = header(&headers, EVENT_HEADER).to_string();
    let delivery = header(&headers, DELIVERY_HEADER).to_string();
    let body = match read_all(req.into_body(), app.webhook_max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let verified = app
        .webhook_secret
        .as_deref()
        .is_some_and(|secret| verify_signature(secret, &body, signature));
    if !verified {
        tracing::warn!(%request_id, %event, %delivery, signed = signature.is_some(), configured = app.webhook_secret.is_some(), decision = "unauthenticated", "webhook delivery refused");
        app.metrics
            .webhooks
            .with_label_values(&[&label(&event), "refused"])
            .inc();
        return ApiFailure::unauthenticated(
            "missing or invalid X-Hub-Signature-256 (or no webhook secret is configured)",
        )
        .into_response();
    }
    tracing::info!(%request_id, %event, %delivery, "webhook delivery verified");
    let resp = match event.as_str() {
        "ping" => {
            let zen = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("zen").cloned())
                .unwrap_or(serde_json::Value::Null);
            Json(serde_json::json!({"ok": true, "zen": zen})).into_response()
        }
        "push" => push(&app, &body).await,
        _ => ignored(&event, "event type is not handled"),
    };
    app.metrics
        .webhooks
        .with_label_values(&[&label(&event), resp.status().as_str()])
        .inc();
    resp
}

/// Bounded label values: GitHub's event names are short identifiers.
fn label(event: &str) -> String {
    if !event.is_empty()
        && event.len() <= 40
        && event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        event.to_string()
    } else {
        "other".to_string()
    }
}

fn ignored(event: &str, reason: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"event": event, "ignored": true, "reason": reason})),
    )
        .into_response()
}

async fn push(app: &App, body: &[u8]) -> Response {
    let event: PushEvent = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => return ApiFailure::bad_json(format!("push payload: {e}")).into_response(),
    };
    let Some(branch) = event.git_ref.strip_prefix("refs/heads/") else {
        return ignored("push", "not a branch (tag push)");
    };
    if event.deleted {
        return ignored("push", "branch deleted");
    }
    let repository = event.repository.full_name;
    let candidates = match matching_workloads(app, &repository, branch).await {
        Ok(ids) => ids,
        Err(e) => return e.into_response(),
    };
    let mut redeployed = Vec::new();
    let mut failed = Vec::new();
    for id in candidates {
        match call(app, Method::POST, &format!("/workloads/{id}/redeploy"), &[]).await {
            Ok(_) => redeployed.push(id),
            Err(e) => failed.push(serde_json::json!({"id": id, "error": e.message})),
        }
    }
    tracing::info!(request_id = %current_request_id(), %repository, %branch, redeployed = ?redeployed, failed = failed.len(), "push handled");
    if failed.is_empty() {
        return Json(PushOutcome {
            event: "push".into(),
            repository,
            branch: branch.to_string(),
            redeployed,
        })
        .into_response();
    }
    ApiFailure::bad_gateway(format!(
        "{} of the matching workloads could not be redeployed",
        failed.len()
    ))
    .with("event", "push".into())
    .with("repository", repository.into())
    .with("branch", branch.into())
    .with("redeployed", redeployed.into())
    .with("failed", failed.into())
    .into_response()
}

/// Ids of the workloads following `repository` and `branch` (the scheduler filters
/// one label; the branch is checked here).
async fn matching_workloads(
    app: &App,
    repository: &str,
    branch: &str,
) -> Result<Vec<String>, ApiFailure> {
    let selector = format!("{}={repository}", labels::REPO);
    let bytes = call(app, Method::GET, "/workloads", &[("label", &selector)]).await?;
    let all: Vec<Workload> = serde_json::from_slice(&bytes)
        .map_err(|e| ApiFailure::bad_gateway(format!("scheduler workload list: {e}")))?;
    Ok(all
        .iter()
        .filter(|w| follows(w, repository, branch))
        .map(|w| w.id.clone())
        .collect())
}

/// One call to the scheduler as the gateway itself; a non-2xx answer becomes an error
/// carrying the scheduler's message.
async fn call(
    app: &App,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
) -> Result<bytes::Bytes, ApiFailure> {
    let request_id = current_request_id();
    let resp = app
        .upstreams
        .send(&method, path, Some(app.request_timeout), |b| {
            Some(
                b.header(REQUEST_ID_HEADER, request_id.as_str())
                    .query(query),
            )
        })
        .await
        .map_err(|e| failure(&e))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ApiFailure::bad_gateway(format!("reading scheduler answer: {e}")))?;
    if status.is_success() {
        return Ok(bytes);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| format!("scheduler answered {status}"));
    Err(ApiFailure::bad_gateway(format!(
        "{method} {path}: {message}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from GitHub's documentation on validating webhook deliveries.
    const DOC_SECRET: &[u8] = b"It's a Secret to Everybody";
    const DOC_BODY: &[u8] = b"Hello, World!";
    const DOC_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn signature_matches_githubs_documented_example() {
        assert!(verify_signature(DOC_SECRET, DOC_BODY, Some(DOC_SIG)));
        assert_eq!(sign(DOC_SECRET, DOC_BODY), DOC_SIG);
    }

    #[test]
    fn wrong_missing_or_malformed_signatures_are_refused() {
        assert!(!verify_signature(
            DOC_SECRET,
            b"Hello, World?",
            Some(DOC_SIG)
        ));
        assert!(!verify_signature(b"other secret", DOC_BODY, Some(DOC_SIG)));
        assert!(!verify_signature(DOC_SECRET, DOC_BODY, None));
        assert!(!verify_signature(DOC_SECRET, DOC_BODY, Some("sha1=abc")));
        assert!(!verify_signature(DOC_SECRET, DOC_BODY, Some("sha256=zz")));
        let truncated = &DOC_SIG[..DOC_SIG.len() - 2];
        assert!(!verify_signature(DOC_SECRET, DOC_BODY, Some(truncated)));
    }

    fn workload(labels: &[(&str, &str)], desired: DesiredState) -> Workload {
        let mut req = persys_proto::WorkloadRequest {
            image: "busybox:local".into(),
            ..Default::default()
        };
        req.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut w = Workload::new(
            "w1".into(),
            req.validate().expect("valid"),
            chrono::Utc::now(),
        );
        w.desired_state = desired;
        w
    }

    #[test]
    fn only_workloads_labelled_with_repo_and_branch_follow_a_push() {
        let both = [(labels::REPO, "acme/web"), (labels::BRANCH, "main")];
        assert!(follows(
            &workload(&both, DesiredState::Running),
            "acme/web",
            "main"
        ));
        assert!(follows(
            &workload(&both, DesiredState::Stopped),
            "acme/web",
            "main"
        ));
        assert!(!follows(
            &workload(&both, DesiredState::Deleted),
            "acme/web",
            "main"
        ));
        assert!(!follows(
            &workload(&both, DesiredState::Running),
            "acme/web",
            "dev"
        ));
        assert!(!follows(
            &workload(&both, DesiredState::Running),
            "acme/api",
            "main"
        ));
        let repo_only = [(labels::REPO, "acme/web")];
        assert!(!follows(
            &workload(&repo_only, DesiredState::Running),
            "acme/web",
            "main"
        ));
    }
}
