//! Who a certificate speaks for. Every leaf the cluster CA issues carries exactly one
//! identity as a URI SAN, `spiffe://persys/<role>/<name>` (SPIFFE-style, as Nomad and
//! Consul put the role in their certificate names), chosen by the CA and never by the
//! requester. Authority comes only from it: a certificate of the CA without one is
//! trusted for nothing, and each peer accepts only the roles it expects on the other
//! end (an agent only the scheduler, the CLI only the gateway or the scheduler, the
//! scheduler on agent connections only the node it dials).

use std::fmt;

/// Scheme and trust domain of persys identities.
pub const URI_PREFIX: &str = "spiffe://persys/";

/// The part a certificate holder plays in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A scheduler replica (API server, client of agents and of other replicas).
    Scheduler,
    /// The gateway (HTTPS front door, client of schedulers).
    Gateway,
    /// An agent: client and server for its own node only.
    Node,
    /// A person or program using the API with a client certificate (e.g. `admin`).
    User,
    /// etcd's server (certificates of etcd's own CA, see [`crate::etcd`]).
    Etcd,
}

impl Role {
    /// The path segment of the identity URI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduler => "scheduler",
            Self::Gateway => "gateway",
            Self::Node => "node",
            Self::User => "user",
            Self::Etcd => "etcd",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduler" => Self::Scheduler,
            "gateway" => Self::Gateway,
            "node" => Self::Node,
            "user" => Self::User,
            "etcd" => Self::Etcd,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role and the name within it (node id, user name, component name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// What it is.
    pub role: Role,
    /// Which one.
    pub name: String,
}

/// The names of the cluster's own identities, defined once in `persys_proto` (the
/// crates that check a peer's name need not depend on the PKI to spell it).
pub use persys_proto::names::{ADMIN_NAME, GATEWAY_NAME, SCHEDULER_NAME};

impl Identity {
    /// `role`/`name`.
    pub fn new(role: Role, name: impl Into<String>) -> Self {
        Self {
            role,
            name: name.into(),
        }
    }

    /// The scheduler.
    pub fn scheduler() -> Self {
        Self::new(Role::Scheduler, SCHEDULER_NAME)
    }

    /// The gateway.
    pub fn gateway() -> Self {
        Self::new(Role::Gateway, GATEWAY_NAME)
    }

    /// Node `id`.
    pub fn node(id: impl Into<String>) -> Self {
        Self::new(Role::Node, id)
    }

    /// User `name`.
    pub fn user(name: impl Into<String>) -> Self {
        Self::new(Role::User, name)
    }

    /// The administrator.
    pub fn admin() -> Self {
        Self::user(ADMIN_NAME)
    }

    /// Whether this is the administrator's certificate.
    pub fn is_admin(&self) -> bool {
        self.role == Role::User && self.name == ADMIN_NAME
    }

    /// `spiffe://persys/<role>/<name>`.
    pub fn uri(&self) -> String {
        format!("{URI_PREFIX}{}/{}", self.role, self.name)
    }

    /// Parse an identity URI; `None` for anything else.
    pub fn parse_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(URI_PREFIX)?;
        let (role, name) = rest.split_once('/')?;
        let valid = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return None;
        }
        Some(Self::new(Role::parse(role)?, name))
    }

    /// The identity of a DER certificate: its one persys URI SAN. `None` when it has
    /// none or several (a certificate speaks for one identity only).
    pub fn of_certificate(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        let mut found = san.value.general_names.iter().filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) if u.starts_with(URI_PREFIX) => {
                Some(Self::parse_uri(u))
            }
            _ => None,
        });
        match (found.next(), found.next()) {
            (Some(one), None) => one,
            _ => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.role, self.name)
    }
}

/// Hex serial number of a DER certificate (lower case, no leading zero bytes).
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(hex::encode(cert.serial.to_bytes_be()))
}

/// Who is on the other end of a connection, from its verified client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The certificate's identity.
    pub identity: Identity,
    /// The certificate's serial (hex), to tell a node's current certificate from an
    /// older one.
    pub serial: String,
}

impl PeerIdentity {
    /// The identity of the leaf certificate `der`, if it has one.
    pub fn of_certificate(der: &[u8]) -> Option<Self> {
        Some(Self {
            identity: Identity::of_certificate(der)?,
            serial: serial_of(der).unwrap_or_default(),
        })
    }

    /// A peer with `identity` (tests, and identities carried between replicas).
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            serial: String::new(),
        }
    }
}

/// The identities a client accepts on the server it talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Any of these roles.
    Roles(Vec<Role>),
    /// Exactly this identity.
    Exactly(Identity),
}

impl Expected {
    /// One role.
    pub fn role(role: Role) -> Self {
        Self::Roles(vec![role])
    }

    /// Whether `found` is acceptable.
    pub fn admits(&self, found: &Identity) -> bool {
        match self {
            Self::Roles(roles) => roles.contains(&found.role),
            Self::Exactly(id) => id == found,
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Roles(roles) => {
                let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                write!(f, "a {} certificate", names.join(" or "))
            }
            Self::Exactly(id) => write!(f, "the certificate of {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_and_strangers_do_not_parse() {
        for id in [
            Identity::scheduler(),
            Identity::gateway(),
            Identity::node("node-1"),
            Identity::admin(),
        ] {
            assert_eq!(Identity::parse_uri(&id.uri()), Some(id.clone()), "{id}");
        }
        assert_eq!(
            Identity::node("n1").uri(),
            "spiffe://persys/node/n1".to_string()
        );
        for bad in [
            "spiffe://persys/root/x",
            "spiffe://other/node/x",
            "spiffe://persys/node/",
            "spiffe://persys/node/a/b",
            "spiffe://persys/node",
            "https://persys/node/x",
        ] {
            assert_eq!(Identity::parse_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn expectations_admit_only_their_roles_or_identity() {
        let sched = Expected::role(Role::Scheduler);
        assert!(sched.admits(&Identity::scheduler()));
        assert!(!sched.admits(&Identity::node("persys-scheduler")));
        let n1 = Expected::Exactly(Identity::node("n1"));
        assert!(n1.admits(&Identity::node("n1")));
        assert!(!n1.admits(&Identity::node("n2")));
        let api = Expected::Roles(vec![Role::Gateway, Role::Scheduler]);
        assert!(api.admits(&Identity::gateway()));
        assert!(!api.admits(&Identity::node("n1")));
        assert!(!api.admits(&Identity::admin()));
    }
}
