//! The bootstrap port (8084): node registration with a join token and a CSR, health,
//! readiness and metrics.

use super::error::AppError;
use super::extract::JsonBody;
use super::AppState;
use crate::context::Ctx;
use crate::control;
use crate::dns::{self, DnsRecord};
use crate::pki::TokenRecord;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use persys_certs::{constant_time_eq, hash_secret, Identity, JoinToken, PeerIdentity};
use persys_proto::validate::is_dns_label;
use persys_proto::{codes, keys, Node, NodeStatus, RegisterRequest, RegisterResponse};
use std::net::IpAddr;
use tokio::time::Instant;

/// Node ids that read like cluster components' names (a node's identity could never
/// pass for theirs, but logs and `node list` should not mislead either).
pub const RESERVED_NODE_IDS: [&str; 3] = [
    persys_certs::identity::SCHEDULER_NAME,
    persys_certs::identity::ADMIN_NAME,
    persys_certs::identity::GATEWAY_NAME,
];

/// `GET /healthz`: the process serves.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: etcd answers.
pub async fn readyz(State(ctx): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    ctx.store().ping().await?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(ctx): State<AppState>) -> impl IntoResponse {
    crate::metrics::refresh(&ctx);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics().render(),
    )
}

/// Check `Authorization: Bearer <join token>` against the token hashes in etcd.
async fn authenticate(ctx: &Ctx, headers: &HeaderMap) -> Result<(), AppError> {
    let denied = || AppError::unauthenticated("invalid or missing join token");
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(denied)?;
    let raw = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(denied)?;
    let token = JoinToken::parse(raw).map_err(|_| denied())?;
    if !constant_time_eq(token.ca_hash.as_bytes(), ctx.trust().ca_hash().as_bytes()) {
        return Err(AppError::unauthenticated(
            "join token is for another cluster CA",
        ));
    }
    let presented = hash_secret(&token.secret);
    // Only the presented token's record: a lookup by its hash reveals nothing about
    // other secrets, and the MAC shows persys wrote it (a raw etcd write mints none).
    let record = ctx
        .store()
        .get::<TokenRecord>(&keys::token(&presented))
        .await?;
    let ok = record.is_some_and(|r| r.value.is_join_for(ctx.trust().record_key(), &presented));
    if ok {
        Ok(())
    } else {
        Err(denied())
    }
}

/// The node record after a (re-)registration: fresh facts from the agent; an operator's
/// cordon/drain is kept, a lost node is Active again.
fn registered(
    prev: Option<&Node>,
    req: &RegisterRequest,
    node_id: &str,
    domain: &str,
    cert_serial: &str,
) -> Node {
    let now = Utc::now();
    let status = match prev.map(|p| p.status) {
        Some(s @ (NodeStatus::Cordoned | NodeStatus::Draining)) => s,
        _ => NodeStatus::Active,
    };
    Node {
        node_id: node_id.to_string(),
        hostname: req.hostname.clone(),
        ip_address: req.ip_address.clone(),
        agent_port: req.agent_port,
        os_name: req.os_name.clone(),
        kernel_version: req.kernel_version.clone(),
        status,
        total_cpu: req.total_cpu,
        total_memory: req.total_memory,
        available_cpu: prev.map_or(req.total_cpu, |p| p.available_cpu),
        available_memory: prev.map_or(req.total_memory, |p| p.available_memory),
        allocated_cpu: 0,
        allocated_memory: 0,
        labels: req.labels.clone(),
        domain_name: dns::node_fqdn(domain, node_id),
        last_heartbeat: prev.and_then(|p| p.last_heartbeat),
        registered_at: prev.map_or(now, |p| p.registered_at),
        cert_serial: Some(cert_serial.to_string()),
    }
}

/// Whether `presented` may re-register `existing`: only the holder of its current
/// certificate may (a renewal). Records from before serials were kept accept any
/// certificate of the node's own identity.
fn may_reregister(existing: &Node, presented: Option<&PeerIdentity>) -> bool {
    let Some(p) = presented else {
        return false;
    };
    if p.identity != Identity::node(&existing.node_id) {
        return false;
    }
    match &existing.cert_serial {
        Some(current) => constant_time_eq(current.as_bytes(), p.serial.as_bytes()),
        None => true,
    }
}

fn taken(node_id: &str) -> AppError {
    AppError::forbidden(format!(
        "node {node_id} is already registered: re-registering it needs its current certificate \
         (the agent presents the one in its data dir), or an admin removes it first \
         (`persys node rm {node_id}`)"
    ))
}

/// `POST /nodes/register` with `Authorization: Bearer <join token>`.
pub async fn register(
    State(ctx): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<PeerIdentity>>,
    source: Option<Extension<crate::forward::ClientAddr>>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<Json<RegisterResponse>, AppError> {
    let from = source.as_ref().map(|Extension(a)| a.0);
    if let Some(ip) = from {
        if let Err(wait) = ctx
            .trust()
            .join_failures()
            .check(ip, std::time::Instant::now())
        {
            return Err(AppError::too_many_failures(
                format!("too many failed registrations from {ip}; try again later"),
                wait,
            ));
        }
    }
    if let Err(refused) = authenticate(&ctx, &headers).await {
        if let Some(ip) = from.filter(|_| refused.status == StatusCode::UNAUTHORIZED) {
            ctx.trust()
                .join_failures()
                .record_failure(ip, std::time::Instant::now());
            ctx.metrics().join_failures.inc();
        }
        return Err(refused);
    }
    let peer = peer.map(|Extension(p)| p);
    let node_id = req
        .node_id
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| req.hostname.to_ascii_lowercase());
    if !is_dns_label(&node_id) {
        return Err(AppError::invalid_field(
            "nodeId",
            format!("{node_id:?} must be a DNS label (lower-case letters, digits, '-')"),
        ));
    }
    // The node id becomes the certificate's CN, and these CNs carry authority (the
    // scheduler's own towards agents and replicas, the admin's at the gateway).
    if RESERVED_NODE_IDS.contains(&node_id.as_str()) {
        return Err(AppError::invalid_field(
            "nodeId",
            format!("{node_id:?} is reserved for a cluster component"),
        ));
    }
    let ip: IpAddr = req.ip_address.parse().map_err(|_| {
        AppError::invalid_field(
            "ipAddress",
            format!("{:?} is not an IP address", req.ip_address),
        )
    })?;
    // The certificate names this address: it must be where the node really is, not
    // one it picks to pass for another server.
    if let Some(Extension(crate::forward::ClientAddr(from))) = source {
        if from != ip && !(from.is_loopback() && ip.is_loopback()) {
            return Err(AppError::invalid_field(
                "ipAddress",
                format!("{ip} is not the address this registration comes from ({from})"),
            ));
        }
    }
    if let Some(existing) = ctx.cache().node(&node_id) {
        // Checked again in the write (a registration may race this one).
        if !may_reregister(&existing.value, peer.as_ref()) {
            return Err(taken(&node_id));
        }
    }
    if req.agent_port == 0 {
        return Err(AppError::invalid_field("agentPort", "must be 1-65535"));
    }
    if !(req.total_cpu.is_finite() && req.total_cpu >= 0.0) {
        return Err(AppError::invalid_field(
            "totalCpu",
            "must be a non-negative number",
        ));
    }
    // Only the verified address: a host name or any other name the node chose could
    // make its certificate pass for another server's.
    let sans = vec![ip.to_string()];
    let certificate = ctx
        .trust()
        .ca()
        .sign_csr_valid_for(
            &req.csr,
            &Identity::node(&node_id),
            &sans,
            ctx.config().node_cert_validity,
        )
        .map_err(|e| AppError::invalid_field("csr", e))?;
    let serial = persys_certs::pem::parse_certs(&certificate)
        .ok()
        .and_then(|c| {
            c.first()
                .and_then(|der| persys_certs::identity::serial_of(der))
        })
        .ok_or_else(|| AppError::internal("the signed certificate has no serial"))?;

    // The grace period starts before the record is Active: a liveness pass between the
    // two would otherwise find an Active node that never beat and mark it Inactive.
    ctx.liveness().grace(&node_id, Instant::now());
    store_node(&ctx, &req, &node_id, &serial, peer.as_ref()).await?;
    let record = DnsRecord {
        host: ip.to_string(),
        port: None,
        ttl: dns::TTL,
    };
    ctx.store()
        .put_if_changed(
            &dns::node_key(&ctx.config().cluster_domain, &node_id),
            &record,
        )
        .await?;
    ctx.kick_pending();
    // Back from a restart, it may still run old copies of workloads that moved while
    // it was away: removed at its first heartbeat, not at the backstop's next interval.
    ctx.node_queue().request_at_next_beat(&node_id);
    tracing::info!(node = %node_id, ip = %ip, "node registered");
    Ok(Json(RegisterResponse {
        node_id: node_id.clone(),
        certificate,
        ca_certificate: ctx.trust().ca_pem().to_string(),
        domain_name: dns::node_fqdn(&ctx.config().cluster_domain, &node_id),
        heartbeat_interval_ms: ctx.config().heartbeat_interval_ms,
    }))
}

async fn store_node(
    ctx: &Ctx,
    req: &RegisterRequest,
    node_id: &str,
    serial: &str,
    presented: Option<&PeerIdentity>,
) -> Result<(), AppError> {
    let domain = ctx.config().cluster_domain.clone();
    for _ in 0..8 {
        let mut refused = false;
        let out = control::update_node(ctx, node_id, |prev| {
            refused = !may_reregister(prev, presented);
            if refused {
                return None;
            }
            let next = registered(Some(prev), req, node_id, &domain, serial);
            (&next != prev).then_some(next)
        })
        .await?;
        if refused {
            return Err(taken(node_id));
        }
        if !matches!(out, crate::store::Updated::Missing) {
            return Ok(());
        }
        let node = registered(None, req, node_id, &domain, serial);
        if ctx.records().create_node(&node).await?.is_some() {
            return Ok(());
        }
    }
    Err(AppError::new(
        StatusCode::CONFLICT,
        codes::CONFLICT,
        format!("node {node_id} is being registered concurrently"),
    ))
}
