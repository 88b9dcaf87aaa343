//! The public API's routes and the role each requires: the one table that the router,
//! the access check and the OpenAPI coverage test all read.

use crate::auth::Role;
use axum::http::Method;

/// How a route is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Forwarded to the scheduler; the answer must complete within the request timeout.
    Forward,
    /// Forwarded to the scheduler; the answer is a stream (logs, events) without a
    /// deadline, passed through chunk by chunk.
    Stream,
    /// Answered by the gateway itself (API tokens).
    Local,
}

/// One route of the public API.
#[derive(Debug, Clone)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path pattern as axum spells it (`/workloads/{id}`).
    pub path: &'static str,
    /// The least role that may call it.
    pub role: Role,
    /// How it is served.
    pub handling: Handling,
}

const fn route(method: Method, path: &'static str, role: Role, handling: Handling) -> Route {
    Route {
        method,
        path,
        role,
        handling,
    }
}

use Handling::{Forward, Local, Stream};
use Role::{Admin, Operator, Viewer};

/// Every authenticated route. The agent-only scheduler routes (`/nodes/heartbeat`,
/// `/nodes/{id}/status`) are deliberately absent: users never reach them.
pub const ROUTES: &[Route] = &[
    route(Method::GET, "/workloads", Viewer, Forward),
    route(Method::POST, "/workloads", Operator, Forward),
    route(Method::POST, "/workloads/schedule", Operator, Forward),
    route(Method::GET, "/workloads/{id}", Viewer, Forward),
    route(Method::DELETE, "/workloads/{id}", Operator, Forward),
    route(Method::POST, "/workloads/{id}/stop", Operator, Forward),
    route(Method::POST, "/workloads/{id}/start", Operator, Forward),
    route(Method::POST, "/workloads/{id}/redeploy", Operator, Forward),
    route(Method::GET, "/workloads/{id}/logs", Viewer, Stream),
    route(Method::GET, "/workloads/{id}/placement", Viewer, Forward),
    route(Method::GET, "/services", Viewer, Forward),
    route(Method::POST, "/services", Operator, Forward),
    route(Method::GET, "/services/{id}", Viewer, Forward),
    route(Method::PUT, "/services/{id}", Operator, Forward),
    route(Method::DELETE, "/services/{id}", Operator, Forward),
    route(Method::POST, "/services/{id}/scale", Operator, Forward),
    route(Method::POST, "/services/{id}/undo", Operator, Forward),
    route(Method::GET, "/nodes", Viewer, Forward),
    route(Method::GET, "/nodes/{id}", Viewer, Forward),
    route(Method::POST, "/nodes/{id}/cordon", Admin, Forward),
    route(Method::POST, "/nodes/{id}/uncordon", Admin, Forward),
    route(Method::POST, "/nodes/{id}/drain", Admin, Forward),
    route(Method::DELETE, "/nodes/{id}", Admin, Forward),
    route(Method::GET, "/cluster/metrics", Viewer, Forward),
    route(Method::GET, "/cluster/policy", Viewer, Forward),
    route(Method::PUT, "/cluster/policy", Admin, Forward),
    // The whole state, secret values included (sealed): the admin's only.
    route(Method::GET, "/cluster/snapshot", Admin, Stream),
    route(Method::POST, "/cluster/restore", Admin, Forward),
    route(Method::GET, "/events", Viewer, Stream),
    route(Method::GET, "/tokens", Admin, Local),
    route(Method::POST, "/tokens", Admin, Local),
    route(Method::DELETE, "/tokens/{id}", Admin, Local),
];

/// The route for a method and matched path pattern. `HEAD` is a `GET` (axum answers
/// it with the `GET` handler), so it needs the same role.
pub fn find(method: &Method, pattern: &str) -> Option<&'static Route> {
    let method = if *method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|r| r.method == *method && r.path == pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(role: Role, method: Method, path: &str) -> bool {
        let r = find(&method, path).expect("route exists");
        role.allows(r.role)
    }

    /// The role matrix of the contract: viewer reads, operator runs workloads, admin
    /// controls nodes and tokens.
    #[test]
    fn role_matrix_matches_the_contract() {
        let reads = [
            "/workloads",
            "/workloads/{id}",
            "/workloads/{id}/logs",
            "/workloads/{id}/placement",
            "/nodes",
            "/nodes/{id}",
            "/cluster/metrics",
            "/cluster/policy",
            "/events",
            "/services",
            "/services/{id}",
        ];
        for path in reads {
            for role in [Viewer, Operator, Admin] {
                assert!(allowed(role, Method::GET, path), "{role} GET {path}");
            }
        }
        let workload_writes = [
            (Method::POST, "/workloads"),
            (Method::POST, "/workloads/schedule"),
            (Method::DELETE, "/workloads/{id}"),
            (Method::POST, "/workloads/{id}/stop"),
            (Method::POST, "/workloads/{id}/start"),
            (Method::POST, "/workloads/{id}/redeploy"),
            (Method::POST, "/services"),
            (Method::PUT, "/services/{id}"),
            (Method::DELETE, "/services/{id}"),
            (Method::POST, "/services/{id}/scale"),
            (Method::POST, "/services/{id}/undo"),
        ];
        for (m, path) in workload_writes {
            assert!(!allowed(Viewer, m.clone(), path), "viewer {m} {path}");
            assert!(allowed(Operator, m.clone(), path), "operator {m} {path}");
            assert!(allowed(Admin, m.clone(), path), "admin {m} {path}");
        }
        let admin_only = [
            (Method::POST, "/nodes/{id}/cordon"),
            (Method::POST, "/nodes/{id}/uncordon"),
            (Method::POST, "/nodes/{id}/drain"),
            (Method::DELETE, "/nodes/{id}"),
            (Method::PUT, "/cluster/policy"),
            (Method::GET, "/tokens"),
            (Method::POST, "/tokens"),
            (Method::DELETE, "/tokens/{id}"),
        ];
        for (m, path) in admin_only {
            assert!(!allowed(Viewer, m.clone(), path), "viewer {m} {path}");
            assert!(!allowed(Operator, m.clone(), path), "operator {m} {path}");
            assert!(allowed(Admin, m.clone(), path), "admin {m} {path}");
        }
    }

    #[test]
    fn head_needs_the_role_of_get() {
        let r = find(&Method::HEAD, "/workloads").expect("head");
        assert_eq!((r.method.clone(), r.role), (Method::GET, Viewer));
    }

    #[test]
    fn agent_only_scheduler_routes_are_not_exposed() {
        assert!(find(&Method::POST, "/nodes/heartbeat").is_none());
        assert!(find(&Method::POST, "/nodes/{id}/status").is_none());
    }

    #[test]
    fn every_route_is_listed_once() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }
}
