//! Serving an axum `Router` over TLS, exposing the client certificate's identity
//! to handlers as an `Extension<PeerIdentity>`, with the [`ConnectionLimits`] of
//! every persys listener: a TLS-handshake timeout, an HTTP/1.1 header-read timeout,
//! an idle timeout (no request in flight; streamed answers are in flight), HTTP/2
//! keep-alive pings, and a cap on open connections beyond which new ones are closed
//! at once. Unread request bodies are drained (bounded, see [`crate::drain`]) so
//! that early error answers reach HTTP/2 clients whole.

use crate::activity::{Activity, Idle, TrackedBody};
use crate::drain::DrainOnDrop;
use crate::identity::PeerIdentity;
use crate::limits::{Closed, ConnectionLimits, ListenerMetrics};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long in-flight connections may take to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keep-alive: a ping this often on a connection, so a vanished peer of a
/// long stream is noticed...
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...when it does not answer within this.
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How [`serve_tls_with`] treats connections.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Timeouts and the connection cap.
    pub limits: ConnectionLimits,
    /// Where open and server-closed connections are counted.
    pub metrics: ListenerMetrics,
}

/// The TLS configuration a server uses for its next handshakes. A renewal sends a new
/// one (a `watch`, as linkerd2-proxy does): connections already open keep the session
/// they have, new ones get the new certificate, nothing is dropped.
#[derive(Debug, Clone)]
pub struct ServerTls(tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>);

/// The handle that replaces a [`ServerTls`]'s configuration.
pub type ServerTlsSender = tokio::sync::watch::Sender<Arc<rustls::ServerConfig>>;

impl ServerTls {
    /// A configuration that can be replaced, and the handle that replaces it.
    pub fn reloadable(config: Arc<rustls::ServerConfig>) -> (ServerTlsSender, Self) {
        let (tx, rx) = tokio::sync::watch::channel(config);
        (tx, Self(rx))
    }

    fn current(&self) -> Arc<rustls::ServerConfig> {
        self.0.borrow().clone()
    }
}

impl From<Arc<rustls::ServerConfig>> for ServerTls {
    /// A configuration that never changes.
    fn from(config: Arc<rustls::ServerConfig>) -> Self {
        Self::reloadable(config).1
    }
}

/// [`serve_tls_with`] with the default limits and no metrics.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_tls_with(listener, config, router, shutdown, ServeOptions::default()).await
}

/// Accepts TLS connections on `listener` and serves `router` on them (HTTP/1.1 and
/// HTTP/2) until `shutdown` is cancelled; then stops accepting and gives in-flight
/// connections up to 10 s to finish. Each request carries `Extension<PeerIdentity>`
/// when the client presented a certificate, and `ConnectInfo<SocketAddr>`.
/// Handshake failures are logged at debug and never stop the loop.
pub async fn serve_tls_with(
    listener: TcpListener,
    config: impl Into<ServerTls>,
    router: Router,
    shutdown: CancellationToken,
    options: ServeOptions,
) -> std::io::Result<()> {
    let tls: ServerTls = config.into();
    let permits = Arc::new(Semaphore::new(options.limits.max_connections));
    let options = Arc::new(options);
    let mut connections = JoinSet::new();
    loop {
        let (tcp, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            // Reap finished connection tasks so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Per-connection errors (e.g. EMFILE, ECONNABORTED) must not kill the server.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the cap: closed unread, so an idle flood costs one accept each.
            options.metrics.closed(Closed::Refused);
            tracing::debug!(%remote, max = options.limits.max_connections, "connection refused: too many open connections");
            drop(tcp);
            continue;
        };
        connections.spawn(serve_connection(
            tcp,
            remote,
            permit,
            // The configuration of this handshake: the latest one sent.
            TlsAcceptor::from(tls.current()),
            router.clone(),
            options.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    tracing::debug!(open = connections.len(), "tls server draining");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("tls server drain timed out; closing remaining connections");
    }
    connections.shutdown().await;
    Ok(())
}

/// Counts a connection as open while it lives.
struct OpenConnection {
    options: Arc<ServeOptions>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.options.metrics.ended();
    }
}

async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
    acceptor: TlsAcceptor,
    router: Router,
    options: Arc<ServeOptions>,
    shutdown: CancellationToken,
) {
    options.metrics.opened();
    let _open = OpenConnection {
        options: options.clone(),
        _permit: permit,
    };
    let limits = options.limits;
    // A connection still in its handshake has no request in flight: on shutdown it
    // is dropped at once rather than holding the drain for the handshake timeout.
    let handshake = tokio::select! {
        () = shutdown.cancelled() => return,
        handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)) => handshake,
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "tls handshake failed");
            return;
        }
        Err(_) => {
            options.metrics.closed(Closed::HandshakeTimeout);
            tracing::debug!(%remote, "tls handshake timed out");
            return;
        }
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| PeerIdentity::of_certificate(leaf));
    let activity = Activity::new();
    let service = {
        let activity = activity.clone();
        let shutdown = shutdown.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = activity.start();
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(ConnectInfo(remote));
            if let Some(peer) = &peer {
                parts.extensions.insert(peer.clone());
            }
            let request = Request::from_parts(parts, DrainOnDrop::new(body, shutdown.clone()));
            let answer = router.clone().oneshot(request);
            async move {
                let response = answer.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| TrackedBody::new(body, in_flight)),
                )
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    if is_header_timeout(error.as_ref()) {
                        options.metrics.closed(Closed::HeaderTimeout);
                    }
                    tracing::debug!(%remote, %error, "connection ended with error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            // Before its first request a client gets the header-read timeout (the
            // protocol is not even known yet), afterwards the idle timeout.
            idle = activity.idle(limits.header_read_timeout, limits.idle_timeout), if !closing => {
                closing = true;
                let why = match idle {
                    Idle::BeforeFirstRequest => Closed::HeaderTimeout,
                    Idle::AfterRequests => Closed::Idle,
                };
                options.metrics.closed(why);
                tracing::debug!(%remote, reason = why.as_str(), "closing idle connection");
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Whether a connection error is hyper's header-read timeout.
fn is_header_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        current = e.source();
    }
    false
}
