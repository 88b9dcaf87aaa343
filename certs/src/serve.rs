//! Serving an axum `Router` over TLS, exposing the client certificate's identity
//! to handlers as an `Extension<PeerIdentity>`.

use crate::identity::PeerIdentity;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight connections may take to finish after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS connections on `listener` and serves `router` on them (HTTP/1.1 and
/// HTTP/2) until `shutdown` is cancelled; then stops accepting and gives in-flight
/// connections up to 10 s to finish. Each request carries `Extension<PeerIdentity>`
/// when the client presented a certificate with a persys identity, and `ConnectInfo<SocketAddr>`.
/// Handshake failures are logged at debug and never stop the loop.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let graceful = GracefulShutdown::new();
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
        connections.spawn(serve_connection(
            tcp,
            remote,
            acceptor.clone(),
            router.clone(),
            graceful.watcher(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    tracing::debug!(open = connections.len(), "tls server draining");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("tls server drain timed out; closing remaining connections");
    }
    connections.shutdown().await;
    Ok(())
}

async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    watcher: Watcher,
    shutdown: CancellationToken,
) {
    // A connection still in its handshake has no request in flight: on shutdown it
    // is dropped at once rather than holding the drain for the handshake timeout.
    let handshake = tokio::select! {
        () = shutdown.cancelled() => return,
        handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => handshake,
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "tls handshake failed");
            return;
        }
        Err(_) => {
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
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo(remote));
        if let Some(peer) = &peer {
            extensions.insert(peer.clone());
        }
        router.clone().oneshot(request)
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .into_owned();
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%remote, %error, "connection ended with error");
    }
}
