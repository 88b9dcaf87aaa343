//! Operation descriptions of the public API (documentation only: the gateway forwards
//! these routes; see `crate::routes`). Errors every operation shares (401, 403, 413,
//! 429, 5xx) are added by `super::CommonResponses`.
#![allow(clippy::unused_async)]

use super::schemas::HealthDoc;
use crate::token_api::{CreateToken, CreatedToken, TokenList};
use crate::tokens::ApiToken;
use crate::webhook::PushOutcome;
use persys_proto::snapshot::RestoreSummary;
use persys_proto::{
    ApiError, ClusterMetrics, ClusterPolicy, Node, NodeList, PlacementExplanation, ScaleRequest,
    ScheduleResponse, ServiceApplied, ServiceRequest, ServiceStatus, Workload, WorkloadRequest,
    WorkloadStatus,
};

#[utoipa::path(get, path = "/workloads", tag = "workloads", operation_id = "listWorkloads",
    params(
        ("status" = Option<WorkloadStatus>, Query, description = "only workloads with this status"),
        ("node" = Option<String>, Query, description = "only workloads placed on this node"),
        ("label" = Option<String>, Query, description = "only workloads with this label, `key=value`"),
    ),
    responses(
        (status = 200, description = "workloads (a bare array, as the original API)", body = Vec<Workload>),
        (status = 400, description = "a filter is invalid", body = ApiError),
    ))]
pub async fn list_workloads() {}

#[utoipa::path(post, path = "/workloads", tag = "workloads", operation_id = "createWorkload",
    request_body(content = WorkloadRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "stored (placed, or Pending when nothing fits yet)", body = Workload),
        (status = 403, description = "the role may not create workloads (`forbidden`), or the cluster policy refuses a field (`policy_denied`, naming the field and the rule)", body = ApiError),
        (status = 413, description = "the body is over the request limit, or the record over the workload limit", body = ApiError),
    ))]
pub async fn create_workload() {}

#[utoipa::path(post, path = "/workloads/schedule", tag = "workloads", operation_id = "scheduleWorkload",
    request_body(content = WorkloadRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "stored; the keys the original CLI reads", body = ScheduleResponse),
        (status = 403, description = "the role may not create workloads (`forbidden`), or the cluster policy refuses a field (`policy_denied`)", body = ApiError),
    ))]
pub async fn schedule_workload() {}

#[utoipa::path(get, path = "/workloads/{id}", tag = "workloads", operation_id = "getWorkload",
    params(("id" = String, Path, description = "workload id")),
    responses(
        (status = 200, description = "the workload", body = Workload),
        (status = 404, description = "no such workload", body = ApiError),
    ))]
pub async fn get_workload() {}

#[utoipa::path(delete, path = "/workloads/{id}", tag = "workloads", operation_id = "deleteWorkload",
    params(("id" = String, Path, description = "workload id")),
    responses(
        (status = 200, description = "desired state Deleted: the container is removed, then the record", body = Workload),
        (status = 404, description = "no such workload", body = ApiError),
        (status = 409, description = "a concurrent change won", body = ApiError),
    ))]
pub async fn delete_workload() {}

#[utoipa::path(post, path = "/workloads/{id}/stop", tag = "workloads", operation_id = "stopWorkload",
    params(("id" = String, Path, description = "workload id")),
    responses(
        (status = 200, description = "desired state Stopped", body = Workload),
        (status = 404, description = "no such workload", body = ApiError),
        (status = 409, description = "the workload is being deleted", body = ApiError),
    ))]
pub async fn stop_workload() {}

#[utoipa::path(post, path = "/workloads/{id}/start", tag = "workloads", operation_id = "startWorkload",
    params(("id" = String, Path, description = "workload id")),
    responses(
        (status = 200, description = "desired state Running", body = Workload),
        (status = 404, description = "no such workload", body = ApiError),
        (status = 409, description = "the workload is being deleted", body = ApiError),
    ))]
pub async fn start_workload() {}

#[utoipa::path(post, path = "/workloads/{id}/redeploy", tag = "workloads", operation_id = "redeployWorkload",
    params(("id" = String, Path, description = "workload id")),
    responses(
        (status = 200, description = "new generation; the container is replaced", body = Workload),
        (status = 404, description = "no such workload", body = ApiError),
        (status = 409, description = "the workload is being deleted", body = ApiError),
    ))]
pub async fn redeploy_workload() {}

#[utoipa::path(get, path = "/workloads/{id}/logs", tag = "workloads", operation_id = "workloadLogs",
    params(
        ("id" = String, Path, description = "workload id"),
        ("tail" = Option<u64>, Query, description = "only the last N lines"),
        ("follow" = Option<bool>, Query, description = "keep streaming new lines"),
        ("timestamps" = Option<bool>, Query, description = "prefix lines with RFC 3339 timestamps"),
    ),
    responses(
        (status = 200, description = "log lines, streamed from the node's agent", body = String, content_type = "text/plain"),
        (status = 400, description = "a query parameter is invalid", body = ApiError),
        (status = 404, description = "no such workload", body = ApiError),
        (status = 409, description = "the workload is not placed on a node yet", body = ApiError),
    ))]
pub async fn workload_logs() {}

#[utoipa::path(get, path = "/workloads/{id}/placement", tag = "workloads", operation_id = "explainPlacement",
    params(("id" = String, Path, description = "workload id")),
    responses(
        (status = 200, description = "the placement explained by the scheduler's placement code: each node's verdict (the filter that rejected it, or its score), the winner, or for a workload nothing fits a hint of what would make it fit", body = PlacementExplanation),
        (status = 404, description = "no such workload", body = ApiError),
    ))]
pub async fn explain_placement() {}

#[utoipa::path(get, path = "/services", tag = "services", operation_id = "listServices",
    responses((status = 200, description = "every service with its replicas", body = Vec<ServiceStatus>)))]
pub async fn list_services() {}

#[utoipa::path(post, path = "/services", tag = "services", operation_id = "createService",
    request_body(content = ServiceRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "stored; the controller creates its replicas", body = ServiceStatus),
        (status = 403, description = "the role may not create services (`forbidden`), or the cluster policy refuses a field of the template (`policy_denied`)", body = ApiError),
        (status = 409, description = "a service of that name exists (update it with PUT)", body = ApiError),
    ))]
pub async fn create_service() {}

#[utoipa::path(get, path = "/services/{id}", tag = "services", operation_id = "getService",
    params(("id" = String, Path, description = "service name")),
    responses(
        (status = 200, description = "the service, its revisions and its replicas", body = ServiceStatus),
        (status = 404, description = "no such service", body = ApiError),
    ))]
pub async fn get_service() {}

#[utoipa::path(put, path = "/services/{id}", tag = "services", operation_id = "applyService",
    params(("id" = String, Path, description = "service name")),
    request_body(content = ServiceRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "created, configured (a new template is a new revision and rolls out) or unchanged", body = ServiceApplied),
        (status = 403, description = "the role may not change services, or the cluster policy refuses a field (`policy_denied`)", body = ApiError),
        (status = 409, description = "a concurrent change won", body = ApiError),
    ))]
pub async fn apply_service() {}

#[utoipa::path(delete, path = "/services/{id}", tag = "services", operation_id = "deleteService",
    params(("id" = String, Path, description = "service name")),
    responses(
        (status = 200, description = "the record is gone; its replicas are being removed", body = ServiceStatus),
        (status = 404, description = "no such service", body = ApiError),
    ))]
pub async fn delete_service() {}

#[utoipa::path(post, path = "/services/{id}/scale", tag = "services", operation_id = "scaleService",
    params(("id" = String, Path, description = "service name")),
    request_body(content = ScaleRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "the new replica count is stored", body = ServiceStatus),
        (status = 404, description = "no such service", body = ApiError),
        (status = 409, description = "the service autoscales (change its bounds instead), or a concurrent change won", body = ApiError),
    ))]
pub async fn scale_service() {}

#[utoipa::path(post, path = "/services/{id}/undo", tag = "services", operation_id = "undoService",
    params(("id" = String, Path, description = "service name")),
    responses(
        (status = 200, description = "the previous template is the new revision and rolls out", body = ServiceStatus),
        (status = 404, description = "no such service", body = ApiError),
        (status = 409, description = "no earlier revision, or a concurrent change won", body = ApiError),
    ))]
pub async fn undo_service() {}

#[utoipa::path(get, path = "/nodes", tag = "nodes", operation_id = "listNodes",
    responses((status = 200, description = "nodes", body = NodeList)))]
pub async fn list_nodes() {}

#[utoipa::path(get, path = "/nodes/{id}", tag = "nodes", operation_id = "getNode",
    params(("id" = String, Path, description = "node id")),
    responses(
        (status = 200, description = "the node", body = Node),
        (status = 404, description = "no such node", body = ApiError),
    ))]
pub async fn get_node() {}

#[utoipa::path(post, path = "/nodes/{id}/cordon", tag = "nodes", operation_id = "cordonNode",
    params(("id" = String, Path, description = "node id")),
    responses(
        (status = 200, description = "no new placements; running workloads stay", body = Node),
        (status = 404, description = "no such node", body = ApiError),
        (status = 409, description = "a concurrent change won", body = ApiError),
    ))]
pub async fn cordon_node() {}

#[utoipa::path(post, path = "/nodes/{id}/uncordon", tag = "nodes", operation_id = "uncordonNode",
    params(("id" = String, Path, description = "node id")),
    responses(
        (status = 200, description = "accepts placements again", body = Node),
        (status = 404, description = "no such node", body = ApiError),
        (status = 409, description = "a concurrent change won", body = ApiError),
    ))]
pub async fn uncordon_node() {}

#[utoipa::path(delete, path = "/nodes/{id}", tag = "nodes", operation_id = "removeNode",
    params(("id" = String, Path, description = "node id")),
    responses(
        (status = 200, description = "the node is forgotten: its record, DNS name and certificate; its id may register again", body = Node),
        (status = 404, description = "no such node", body = ApiError),
        (status = 409, description = "workloads are still placed on the node (drain it first), or a concurrent change won", body = ApiError),
    ))]
pub async fn remove_node() {}

#[utoipa::path(post, path = "/nodes/{id}/drain", tag = "nodes", operation_id = "drainNode",
    params(("id" = String, Path, description = "node id")),
    responses(
        (status = 200, description = "workloads move off; no new placements", body = Node),
        (status = 404, description = "no such node", body = ApiError),
        (status = 409, description = "a concurrent change won", body = ApiError),
    ))]
pub async fn drain_node() {}

#[utoipa::path(get, path = "/cluster/metrics", tag = "cluster", operation_id = "clusterMetrics",
    responses((status = 200, description = "nodes, workload counts, capacity and allocation", body = ClusterMetrics)))]
pub async fn cluster_metrics() {}

#[utoipa::path(get, path = "/cluster/policy", tag = "cluster", operation_id = "getClusterPolicy",
    responses((status = 200, description = "the admission policy in force (the default refuses every host privilege)", body = ClusterPolicy)))]
pub async fn get_cluster_policy() {}

#[utoipa::path(put, path = "/cluster/policy", tag = "cluster", operation_id = "setClusterPolicy",
    request_body(content = ClusterPolicy, content_type = "application/json", description = "the whole policy (unknown keys are refused)"),
    responses(
        (status = 200, description = "stored; applies to workloads created from now on", body = ClusterPolicy),
    ))]
pub async fn set_cluster_policy() {}

#[utoipa::path(get, path = "/cluster/snapshot", tag = "cluster", operation_id = "saveSnapshot",
    responses((status = 200, description = "the cluster's state at one revision: a header line, then lines sealed with the cluster's key (secret values included, readable only by this cluster's schedulers)", body = String, content_type = "application/x-persys-snapshot")))]
pub async fn save_snapshot() {}

#[utoipa::path(post, path = "/cluster/restore", tag = "cluster", operation_id = "restoreSnapshot",
    params(
        ("first" = Option<bool>, Query, description = "the first part: refused unless the cluster holds no workload and no service"),
        ("last" = Option<bool>, Query, description = "the last part: the restore is whole and takes effect"),
    ),
    request_body(content = String, content_type = "text/plain", description = "the snapshot's header line, then some of its sealed lines (at most 4 MiB)"),
    responses(
        (status = 200, description = "entries created where absent", body = RestoreSummary),
        (status = 400, description = "not a snapshot of this cluster, or changed", body = ApiError),
        (status = 409, description = "the cluster is not empty", body = ApiError),
    ))]
pub async fn restore_snapshot() {}

#[utoipa::path(get, path = "/events", tag = "cluster", operation_id = "events",
    responses((status = 200, description = "server-sent events (`workload`, `workloadDeleted`, `node`, `lagged`); the stream does not end", body = String, content_type = "text/event-stream")))]
pub async fn events() {}

#[utoipa::path(get, path = "/tokens", tag = "tokens", operation_id = "listTokens",
    responses((status = 200, description = "API tokens, without secrets", body = TokenList)))]
pub async fn list_tokens() {}

#[utoipa::path(post, path = "/tokens", tag = "tokens", operation_id = "createToken",
    request_body(content = CreateToken, content_type = "application/json"),
    responses(
        (status = 201, description = "created; the secret is shown only in this answer", body = CreatedToken),
        (status = 409, description = "a token with this name exists", body = ApiError),
    ))]
pub async fn create_token() {}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", operation_id = "revokeToken",
    params(("id" = String, Path, description = "token id")),
    responses(
        (status = 200, description = "revoked; it stops working at once", body = ApiToken),
        (status = 404, description = "no such token", body = ApiError),
    ))]
pub async fn revoke_token() {}

#[utoipa::path(post, path = "/webhooks/github", tag = "webhooks", operation_id = "githubWebhook",
    security(()),
    params(
        ("X-GitHub-Event" = Option<String>, Header, description = "event name: ping, push, ..."),
        ("X-Hub-Signature-256" = Option<String>, Header, description = "sha256=<hex HMAC-SHA256 of the body with the webhook secret>"),
    ),
    request_body(content = Object, content_type = "application/json", description = "GitHub's event payload"),
    responses(
        (status = 200, description = "ping answered, or push handled: the workloads redeployed", body = PushOutcome),
        (status = 202, description = "event accepted and ignored", body = Object),
        (status = 400, description = "payload is not the event's JSON", body = ApiError),
        (status = 401, description = "missing or wrong signature; nothing changed", body = ApiError),
        (status = 413, description = "payload too large", body = ApiError),
    ))]
pub async fn github_webhook() {}

#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz", security(()),
    responses((status = 200, description = "the gateway serves", body = HealthDoc)))]
pub async fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readyz", security(()),
    responses(
        (status = 200, description = "a scheduler answers and the token cache is loaded", body = HealthDoc),
        (status = 503, description = "not ready", body = ApiError),
    ))]
pub async fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "metrics", security(()),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", tag = "health", operation_id = "openapi", security(()),
    responses((status = 200, description = "this document", body = Object)))]
pub async fn openapi() {}
