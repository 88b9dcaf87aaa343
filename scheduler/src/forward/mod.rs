//! Writes reach the leader, and ride through short etcd stalls and leader changes.
//!
//! Every request that is not a read (any method but GET/HEAD/OPTIONS: workload and
//! node changes, status pushes, registrations) runs under a deadline
//! (`--write-deadline-ms`, 5 s by default). On the leader it is handled here, its etcd
//! operations retried until the deadline (`crate::store::within`); on a follower it is
//! forwarded to the leader ([`leader::send`]). An answer that says the request was not
//! applied and may be sent again (leadership changed, no leader yet, the leader cannot
//! be reached: [`RETRY_HEADER`]) is retried with backoff, at once when this replica's
//! view of the leader changes, until the deadline; only then is the 503 (with
//! `Retry-After`) the answer.
//!
//! Retrying applies nothing twice: each request has one write id ([`WriteId`], kept
//! across replicas in [`WRITE_ID_HEADER`]) from which a create takes its record id, and
//! the other writes are compare-and-swap updates that re-read the record. Heartbeats
//! get one attempt: the agent sends the next one anyway.

mod leader;

pub use leader::{retry_on_leader, unavailable, ForwardSetupError, Forwarder};

use crate::context::Ctx;
use std::sync::Arc;

/// What the middleware gets: the shared state.
type AppState = Arc<Ctx>;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use backon::{BackoffBuilder, ExponentialBuilder};
use persys_certs::{Identity, PeerIdentity, Role};
use std::time::Duration;
use tokio::time::Instant;

/// The original caller's identity on a forwarded request: `<identity URI> <serial>`.
pub const PEER_HEADER: &str = "x-persys-peer";
/// Replica id of the follower that forwarded a request (a request is forwarded once).
pub const FORWARDED_BY_HEADER: &str = "x-persys-forwarded-by";
/// The write id of a forwarded request.
pub const WRITE_ID_HEADER: &str = "x-persys-write-id";
/// The agents' long-lived heartbeat stream (see `api::agent::heartbeat_stream`).
const HEARTBEAT_STREAM: &str = "/nodes/heartbeat/stream";
/// Milliseconds the forwarding replica still waits for the answer.
pub const DEADLINE_HEADER: &str = "x-persys-deadline-ms";
/// On an answer between replicas: the request was not applied; send it again to the
/// leader. Never leaves the scheduler.
pub const RETRY_HEADER: &str = "x-persys-retry";

/// First and largest pause between two attempts of a request.
const MIN_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// The id of one client request, the same on every attempt and replica. A create
/// names its record with it, so a repeated attempt finds the record instead of making
/// a second one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteId(pub String);

/// The address a request came from: the TCP peer, or for a request forwarded by a
/// replica, its caller's ([`SOURCE_HEADER`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The caller's address on a forwarded request.
pub const SOURCE_HEADER: &str = "x-persys-source";

/// How a request reached this replica.
struct Arrival {
    /// Forwarded by a follower that believed we lead: it retries, not us.
    forwarded: bool,
    /// The caller's identity ([`peer_header`]).
    identity: Option<String>,
    /// The write id given by a forwarding replica.
    write_id: Option<String>,
    /// What a forwarding replica still waits.
    budget: Option<Duration>,
    /// The caller's address.
    source: Option<String>,
}

/// How a caller's identity travels to the leader.
pub fn peer_header(peer: &PeerIdentity) -> String {
    format!("{} {}", peer.identity.uri(), peer.serial)
}

fn parse_peer_header(value: &str) -> Option<PeerIdentity> {
    let (uri, serial) = value.split_once(' ').unwrap_or((value, ""));
    Some(PeerIdentity {
        identity: Identity::parse_uri(uri)?,
        serial: serial.to_string(),
    })
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The internal headers of `req`, removed: believed only from another replica.
fn arrival(req: &mut Request) -> Arrival {
    let from_replica = req
        .extensions()
        .get::<PeerIdentity>()
        .is_some_and(|p| p.identity.role == Role::Scheduler);
    let h = req.headers_mut();
    let mut take = |name: &str| {
        h.remove(name)
            .filter(|_| from_replica)
            .and_then(|v| v.to_str().ok().map(String::from))
            .filter(|s| !s.is_empty())
    };
    let claimed = take(PEER_HEADER);
    let forwarded = take(FORWARDED_BY_HEADER).is_some();
    let write_id = take(WRITE_ID_HEADER).filter(|s| s.len() <= 64);
    let budget = take(DEADLINE_HEADER)
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_millis);
    let forwarded_source = take(SOURCE_HEADER).and_then(|s| s.parse().ok());
    let tcp_source = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(addr) = forwarded_source.or(tcp_source) {
        req.extensions_mut().insert(ClientAddr(addr));
    }
    if from_replica {
        // The replica speaks for its caller, or for nobody (a request of its own).
        match claimed.as_deref().and_then(parse_peer_header) {
            Some(peer) => req.extensions_mut().insert(peer),
            None => req.extensions_mut().remove::<PeerIdentity>(),
        };
    }
    let identity = req.extensions().get::<PeerIdentity>().map(peer_header);
    let source = req
        .extensions()
        .get::<ClientAddr>()
        .map(|a| a.0.to_string());
    Arrival {
        source,
        forwarded,
        identity,
        write_id,
        budget,
    }
}

/// Middleware of the mTLS API.
pub async fn api(State(ctx): State<AppState>, mut req: Request, next: Next) -> Response {
    let arrival = arrival(&mut req);
    // Before anything is read or forwarded: a refused caller costs nothing more.
    let peer = req.extensions().get::<PeerIdentity>();
    if let Err(refused) = crate::authz::check(&ctx, req.method(), req.uri().path(), peer) {
        return refused.into_response();
    }
    if is_read(req.method()) {
        return next.run(req).await;
    }
    if req.uri().path() == HEARTBEAT_STREAM {
        // Never buffered or forwarded: it lasts as long as the agent, on the leader.
        if ctx.leadership().is_leader() {
            return next.run(req).await;
        }
        return finish(
            retry_on_leader("heartbeat streams go to the leader; this replica follows"),
            false,
        );
    }
    // A lost heartbeat or usage report is followed by the next one: not retried.
    let once = matches!(req.uri().path(), "/nodes/heartbeat" | "/nodes/usage");
    ride(&ctx, req, next, arrival, once, |l| l.url.clone()).await
}

/// Middleware of the bootstrap port: registrations go to the leader's bootstrap port.
pub async fn bootstrap(State(ctx): State<AppState>, mut req: Request, next: Next) -> Response {
    let arrival = arrival(&mut req);
    if is_read(req.method()) {
        return next.run(req).await;
    }
    ride(&ctx, req, next, arrival, false, |l| l.bootstrap_url.clone()).await
}

/// Handle or forward `req` until it is answered for good or its deadline passes.
async fn ride(
    ctx: &AppState,
    req: Request,
    next: Next,
    arrival: Arrival,
    once: bool,
    base: impl Fn(&persys_proto::LeaderRecord) -> String,
) -> Response {
    let most = ctx.config().write_deadline();
    let deadline = Instant::now() + arrival.budget.map_or(most, |b| b.min(most));
    let (parts, body) = req.into_parts();
    // A part of a snapshot may be larger than any other request.
    let max = if parts.uri.path() == "/cluster/restore" {
        persys_proto::snapshot::MAX_RESTORE_PART_BYTES
    } else {
        ctx.config().max_body_bytes
    };
    let body = match leader::buffer(body, max).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let write_id = arrival
        .write_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // A redeploy makes a new generation each time it is applied: sent again only when
    // it surely did not reach the leader.
    let repeatable = !parts.uri.path().ends_with("/redeploy");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut pauses = ExponentialBuilder::default()
        .with_min_delay(MIN_PAUSE)
        .with_max_delay(MAX_PAUSE)
        .with_jitter()
        .without_max_times()
        .build();
    let mut roles = ctx.leadership().subscribe();
    loop {
        roles.borrow_and_update();
        let resp = if ctx.leadership().is_leader() {
            let mut req = Request::from_parts(parts.clone(), Body::from(body.clone()));
            req.extensions_mut().insert(WriteId(write_id.clone()));
            crate::store::within(deadline, next.clone().run(req)).await
        } else if arrival.forwarded {
            // The sender believed we lead; it waits for the leader, not us.
            retry_on_leader("this scheduler replica is no longer the leader; try again")
        } else if let Some(l) = ctx.leadership().leader() {
            let hop = leader::Hop {
                identity: arrival.identity.as_deref(),
                source: arrival.source.as_deref(),
                write_id: &write_id,
                deadline,
            };
            let url = format!("{}{path}", base(&l));
            leader::send(ctx, &l, url, &parts, body.clone(), &hop, repeatable).await
        } else {
            retry_on_leader("no scheduler replica is the leader right now; try again")
        };
        if once || arrival.forwarded || !may_retry(&resp) {
            return finish(resp, arrival.forwarded);
        }
        let pause = pauses.next().unwrap_or(MAX_PAUSE);
        if Instant::now() + pause >= deadline {
            tracing::info!(%path, "no leader answered before the request's deadline");
            return finish(resp, false);
        }
        // Sooner when another replica is known to lead (or this one).
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = roles.changed() => {}
        }
    }
}

fn may_retry(resp: &Response) -> bool {
    resp.status() == StatusCode::SERVICE_UNAVAILABLE && resp.headers().contains_key(RETRY_HEADER)
}

/// The answer as it leaves: the retry mark only towards the replica that forwarded the
/// request; every 503 asks to come back in a second.
fn finish(mut resp: Response, to_replica: bool) -> Response {
    if !to_replica {
        resp.headers_mut().remove(RETRY_HEADER);
    }
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static("1"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_served_locally() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(is_read(&m), "{m}");
        }
        for m in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH] {
            assert!(!is_read(&m), "{m}");
        }
    }

    #[test]
    fn internal_headers_are_believed_only_from_a_replica() {
        let mut req = Request::new(Body::empty());
        for (k, v) in [
            (PEER_HEADER, "spiffe://persys/node/node-1 ab"),
            (FORWARDED_BY_HEADER, "r1"),
            (WRITE_ID_HEADER, "chosen"),
            (SOURCE_HEADER, "10.9.9.9"),
            (DEADLINE_HEADER, "100000"),
        ] {
            req.headers_mut().insert(k, HeaderValue::from_static(v));
        }
        req.extensions_mut()
            .insert(PeerIdentity::new(Identity::node("node-7")));
        let a = arrival(&mut req);
        assert!(!a.forwarded);
        assert_eq!(a.identity.as_deref(), Some("spiffe://persys/node/node-7 "));
        assert!(a.write_id.is_none() && a.budget.is_none());
        assert!(req.headers().is_empty(), "internal headers go no further");

        let mut req = Request::new(Body::empty());
        req.headers_mut()
            .insert(WRITE_ID_HEADER, HeaderValue::from_static("w-1"));
        req.headers_mut()
            .insert(FORWARDED_BY_HEADER, HeaderValue::from_static("r1"));
        req.headers_mut().insert(
            PEER_HEADER,
            HeaderValue::from_static("spiffe://persys/node/node-1 0a"),
        );
        req.extensions_mut()
            .insert(PeerIdentity::new(Identity::scheduler()));
        let a = arrival(&mut req);
        assert!(a.forwarded);
        assert_eq!(
            req.extensions().get::<PeerIdentity>(),
            Some(&PeerIdentity {
                identity: Identity::node("node-1"),
                serial: "0a".into()
            })
        );
        assert_eq!(
            a.identity.as_deref(),
            Some("spiffe://persys/node/node-1 0a")
        );
        assert_eq!(a.write_id.as_deref(), Some("w-1"));
    }

    #[tokio::test]
    async fn the_retry_mark_stays_between_replicas() {
        let resp = retry_on_leader("no leader");
        assert!(may_retry(&resp));
        let out = finish(resp, false);
        assert!(!out.headers().contains_key(RETRY_HEADER));
        assert_eq!(out.headers()[header::RETRY_AFTER], "1");
        assert!(finish(retry_on_leader("x"), true)
            .headers()
            .contains_key(RETRY_HEADER));
    }
}
