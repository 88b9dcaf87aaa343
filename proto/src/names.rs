//! Names every crate must spell the same way: the identities the cluster CA issues to
//! its own components, the request-id header, and the roles of API tokens. Each is
//! defined here once so that a rename cannot leave one side of a connection behind.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Header carrying the request id: taken from the client (or generated), passed from
/// the gateway to the scheduler and on to agents, echoed on every answer and put in
/// every error body (`requestId`).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Name (certificate CN and identity name) of the scheduler; all replicas share it.
pub const SCHEDULER_NAME: &str = "persys-scheduler";
/// Name of the gateway's identity.
pub const GATEWAY_NAME: &str = "persys-gateway";
/// Name of the administrator's user identity (the scheduler writes `admin.crt`).
pub const ADMIN_NAME: &str = "admin";

/// What an API token may do at the gateway. Ordered: each role includes the ones below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read workloads, nodes, cluster metrics, events and logs.
    Viewer,
    /// Viewer, plus create, stop, start, redeploy and delete workloads.
    Operator,
    /// Everything: node cordon/drain/uncordon and API tokens too.
    Admin,
}

impl Role {
    /// Every role, least to most powerful.
    pub const ALL: [Role; 3] = [Self::Viewer, Self::Operator, Self::Admin];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may call a route that requires `required`.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_are_ordered() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_value(r).expect("serializes"),
                serde_json::json!(r.as_str())
            );
        }
        assert_eq!(Role::parse("root"), None);
        assert!(Role::Admin.allows(Role::Operator));
        assert!(!Role::Viewer.allows(Role::Operator));
    }
}
