//! Who may call what on the scheduler's mTLS API, by certificate identity (the
//! Kubernetes Node authorizer's idea): a node acts only as itself, on its own routes;
//! users' routes take the administrator's certificate or the gateway's (which has
//! authorized the user behind the request). The table is here and nowhere else.

use crate::context::Ctx;
use crate::error::AppError;
use axum::http::Method;
use persys_certs::{PeerIdentity, Role};

/// Who a route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any client the TLS layer admitted (a certificate of the cluster CA).
    Anyone,
    /// A node, for itself only: its current certificate, and `{id}` (if any) is its
    /// own id.
    OwnNode,
    /// The gateway or the administrator.
    Users,
}

/// The role table: method, path template (`{id}` is one segment), access. Every route
/// not listed is [`Access::Users`].
pub const TABLE: &[(Method, &str, Access)] = &[
    (Method::GET, "/healthz", Access::Anyone),
    (Method::POST, "/nodes/heartbeat", Access::OwnNode),
    (Method::POST, "/nodes/heartbeat/stream", Access::OwnNode),
    (Method::POST, "/nodes/usage", Access::OwnNode),
    (Method::POST, "/nodes/{id}/status", Access::OwnNode),
];

fn matches(template: &str, path: &str) -> Option<Option<String>> {
    let mut id = None;
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(id),
            (Some("{id}"), Some(seg)) if !seg.is_empty() => id = Some(seg.to_string()),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

/// The access `method path` needs, and the `{id}` of the path when its template has one.
pub fn access(method: &Method, path: &str) -> (Access, Option<String>) {
    let path = path.trim_end_matches('/');
    TABLE
        .iter()
        .filter(|(m, _, _)| m == method)
        .find_map(|(_, template, access)| matches(template, path).map(|id| (*access, id)))
        .unwrap_or((Access::Users, None))
}

/// Whether `peer` may call `method path`; the refusal otherwise (401 without an
/// identity, 403 with the wrong one).
pub fn check(
    ctx: &Ctx,
    method: &Method,
    path: &str,
    peer: Option<&PeerIdentity>,
) -> Result<(), AppError> {
    let (access, id) = access(method, path);
    if access == Access::Anyone {
        return Ok(());
    }
    let Some(peer) = peer else {
        return Err(AppError::unauthenticated(
            "a client certificate with a persys identity is required",
        ));
    };
    let who = &peer.identity;
    match access {
        Access::Anyone => Ok(()),
        Access::Users if who.role == Role::Gateway || who.is_admin() => Ok(()),
        Access::Users => Err(AppError::forbidden(format!(
            "{who} may not call {method} {}: users' routes take the administrator's \
             certificate or go through the gateway",
            short(path)
        ))),
        Access::OwnNode if who.role != Role::Node => Err(AppError::forbidden(format!(
            "{who} may not call {method} {}: it is a node's route",
            short(path)
        ))),
        Access::OwnNode if id.as_deref().is_some_and(|id| id != who.name) => {
            Err(AppError::forbidden(format!(
                "{who} may act only for its own node, not {:?}",
                id.unwrap_or_default()
            )))
        }
        Access::OwnNode => current_certificate(ctx, peer),
    }
}

/// A node's certificate is refused once a re-registration replaced it.
fn current_certificate(ctx: &Ctx, peer: &PeerIdentity) -> Result<(), AppError> {
    let Some(node) = ctx.cache().node(&peer.identity.name) else {
        // Unknown nodes are told to register (heartbeat) or refused (status) later.
        return Ok(());
    };
    match &node.value.cert_serial {
        Some(current) if *current != peer.serial => Err(AppError::forbidden(format!(
            "this certificate of node {} was replaced by a newer registration",
            peer.identity.name
        ))),
        _ => Ok(()),
    }
}

/// A path as it may appear in an error message.
fn short(path: &str) -> &str {
    let end = path.char_indices().nth(128).map_or(path.len(), |(i, _)| i);
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_the_access_of_the_table() {
        let cases = [
            (Method::GET, "/healthz", Access::Anyone, None),
            (Method::POST, "/nodes/heartbeat", Access::OwnNode, None),
            (
                Method::POST,
                "/nodes/n1/status",
                Access::OwnNode,
                Some("n1"),
            ),
            (
                Method::POST,
                "/nodes/n1/status/",
                Access::OwnNode,
                Some("n1"),
            ),
            (Method::GET, "/nodes/heartbeat", Access::Users, None),
            (Method::POST, "/nodes/n1/cordon", Access::Users, None),
            (Method::POST, "/nodes/n1/drain", Access::Users, None),
            (Method::POST, "/nodes/n1/uncordon", Access::Users, None),
            (Method::DELETE, "/nodes/n1", Access::Users, None),
            (Method::GET, "/nodes", Access::Users, None),
            (Method::GET, "/nodes/n1", Access::Users, None),
            (Method::POST, "/workloads", Access::Users, None),
            (Method::GET, "/workloads", Access::Users, None),
            (Method::POST, "/workloads/schedule", Access::Users, None),
            (Method::GET, "/workloads/w1", Access::Users, None),
            (Method::DELETE, "/workloads/w1", Access::Users, None),
            (Method::POST, "/workloads/w1/stop", Access::Users, None),
            (Method::POST, "/workloads/w1/start", Access::Users, None),
            (Method::POST, "/workloads/w1/redeploy", Access::Users, None),
            (Method::GET, "/workloads/w1/logs", Access::Users, None),
            (Method::GET, "/workloads/w1/placement", Access::Users, None),
            (Method::GET, "/events", Access::Users, None),
            (Method::GET, "/cluster/metrics", Access::Users, None),
            (Method::GET, "/cluster/leader", Access::Users, None),
            (Method::POST, "/nodes//status", Access::Users, None),
            (Method::POST, "/nodes/a/b/status", Access::Users, None),
            (Method::PATCH, "/anything", Access::Users, None),
        ];
        for (method, path, want, id) in cases {
            let (got, got_id) = access(&method, path);
            assert_eq!(got, want, "{method} {path}");
            assert_eq!(got_id.as_deref(), id, "{method} {path}");
        }
    }

    #[test]
    fn long_paths_are_cut_in_messages() {
        let long = "/x".repeat(500);
        assert!(short(&long).len() <= 128);
        assert_eq!(short("/nodes"), "/nodes");
    }
}
