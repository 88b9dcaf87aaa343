//! Leader election among scheduler replicas (etcd lease + create-if-absent of
//! `/persys/leader`). The leader runs placement and the loops (dispatch, liveness,
//! pending, backstop reconcile) for one *term*, the create revision of the leader key;
//! followers serve reads from their cache and forward writes (see `crate::forward`).
//!
//! Safety: a term ends when the lease may have expired (the earliest expiry etcd's own
//! answers allow, less [`EXPIRY_MARGIN`]), the key changes, or etcd says the lease is
//! gone; never merely because etcd answers slowly, so a stall shorter than the lease
//! costs no term. The loops are cancelled at once and every record write carries a
//! fence on the term (`Store::fence_to_term`), so a deposed leader's late writes fail
//! in etcd.

mod term;

pub use term::{run, EXPIRY_MARGIN, LEASE_TTL_SECS, RENEW_EVERY};

use persys_proto::{LeaderInfo, LeaderRecord};
use std::net::SocketAddr;
use tokio::sync::watch;

/// What this replica is doing in the election.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// No election (one in-process scheduler without replicas, e.g. handler tests):
    /// always acts as the leader.
    Standalone,
    /// Leading the term with this create revision of the leader key; the loops run.
    Leader {
        /// The term (fencing token).
        term: i64,
    },
    /// Following `leader`; `None` while nobody is known to lead.
    Follower {
        /// The current leader, if known.
        leader: Option<LeaderRecord>,
    },
}

/// This replica's identity and its view of the election. Held in [`Ctx`].
#[derive(Debug)]
pub struct Leadership {
    me: LeaderRecord,
    role: watch::Sender<Role>,
    /// Client towards the leader (`None` for a standalone scheduler).
    pub forwarder: Option<crate::forward::Forwarder>,
}

impl Leadership {
    /// A scheduler that is always the leader (no election).
    pub fn standalone() -> Self {
        Self {
            me: LeaderRecord {
                id: "standalone".into(),
                url: String::new(),
                bootstrap_url: String::new(),
            },
            role: watch::channel(Role::Standalone).0,
            forwarder: None,
        }
    }

    /// A replica taking part in the election as `me`; a follower until it wins.
    pub fn replica(me: LeaderRecord, forwarder: crate::forward::Forwarder) -> Self {
        Self {
            me,
            role: watch::channel(Role::Follower { leader: None }).0,
            forwarder: Some(forwarder),
        }
    }

    /// This replica's id and URLs.
    pub fn me(&self) -> &LeaderRecord {
        &self.me
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Changes of the role.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Whether this replica may act as the leader now.
    pub fn is_leader(&self) -> bool {
        matches!(*self.role.borrow(), Role::Standalone | Role::Leader { .. })
    }

    /// The current leader (this replica when it leads), if any.
    pub fn leader(&self) -> Option<LeaderRecord> {
        match &*self.role.borrow() {
            Role::Standalone | Role::Leader { .. } => Some(self.me.clone()),
            Role::Follower { leader } => leader.clone(),
        }
    }

    /// The answer of `GET /cluster/leader`.
    pub fn info(&self) -> LeaderInfo {
        let leader = self.leader();
        LeaderInfo {
            is_self: self.is_leader(),
            url: leader.as_ref().map(|l| l.url.clone()),
            leader: leader.map(|l| l.id),
        }
    }

    fn set(&self, role: Role) {
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
    }
}

/// This replica's election record from the flags and the bound addresses: id
/// `--replica-id` or `<host>:<api port>`, URLs from `--advertise-url` and
/// `--advertise-bootstrap-url` or derived from the ports.
pub fn identity(
    replica_id: Option<&str>,
    advertise_url: Option<&str>,
    advertise_bootstrap_url: Option<&str>,
    api: SocketAddr,
    bootstrap: SocketAddr,
) -> Result<LeaderRecord, String> {
    let id = nonempty(replica_id).map(String::from).unwrap_or_else(|| {
        let host = crate::pki::hostname().unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", api.port())
    });
    let url = match nonempty(advertise_url) {
        Some(u) => checked_url(u, "--advertise-url")?,
        None => format!("https://127.0.0.1:{}", api.port()),
    };
    let bootstrap_url = match nonempty(advertise_bootstrap_url) {
        Some(u) => checked_url(u, "--advertise-bootstrap-url")?,
        None => {
            let mut u = reqwest::Url::parse(&url).map_err(|e| format!("{url}: {e}"))?;
            u.set_port(Some(bootstrap.port()))
                .map_err(|()| format!("{url}: cannot carry a port"))?;
            u.as_str().trim_end_matches('/').to_string()
        }
    };
    Ok(LeaderRecord {
        id,
        url,
        bootstrap_url,
    })
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

fn checked_url(u: &str, flag: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(u).map_err(|e| format!("{flag} {u:?}: {e}"))?;
    if parsed.scheme() != "https" || parsed.host_str().is_none() {
        return Err(format!("{flag} {u:?}: must be https://host:port"));
    }
    Ok(u.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], port))
    }

    #[test]
    fn identity_defaults_to_loopback_urls_of_the_bound_ports() {
        let me = identity(None, None, None, addr(8085), addr(8084)).expect("identity");
        assert_eq!(me.url, "https://127.0.0.1:8085");
        assert_eq!(me.bootstrap_url, "https://127.0.0.1:8084");
        assert!(me.id.ends_with(":8085"), "{}", me.id);
    }

    #[test]
    fn bootstrap_url_follows_the_advertised_host() {
        let me = identity(
            Some("a"),
            Some("https://10.0.0.5:9085/"),
            None,
            addr(8085),
            addr(8084),
        )
        .expect("identity");
        assert_eq!(me.id, "a");
        assert_eq!(me.url, "https://10.0.0.5:9085");
        assert_eq!(me.bootstrap_url, "https://10.0.0.5:8084");
    }

    #[test]
    fn advertised_urls_must_be_https() {
        let err = identity(None, Some("http://x:1"), None, addr(1), addr(2)).expect_err("http");
        assert!(err.contains("--advertise-url"), "{err}");
        assert!(identity(None, None, Some("nonsense"), addr(1), addr(2)).is_err());
    }

    #[test]
    fn a_standalone_scheduler_always_leads() {
        let l = Leadership::standalone();
        assert!(l.is_leader());
        assert!(l.info().is_self);
    }
}
