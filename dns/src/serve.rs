//! The listeners: UDP and TCP on one address (with port 0, one free port for both),
//! the address written to `--addr-file`, and the hickory server on them until
//! shutdown.

use crate::error::DnsError;
use crate::handler::Handler;
use hickory_server::Server;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// Answers queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Tries to find a port free for both UDP and TCP when `--listen` asks for port 0.
const FREE_PORT_TRIES: usize = 16;

/// A UDP socket and a TCP listener on the same address.
#[derive(Debug)]
pub struct Listeners {
    /// UDP.
    pub udp: UdpSocket,
    /// TCP.
    pub tcp: TcpListener,
    /// The address both are bound to.
    pub addr: SocketAddr,
}

/// Bind UDP and TCP on `addr`. Port 0: a port free for both (UDP picks, TCP follows;
/// another try when TCP finds it taken).
pub async fn bind(addr: SocketAddr) -> Result<Listeners, DnsError> {
    let bind_err = |a: SocketAddr| {
        move |source| DnsError::Bind {
            addr: a.to_string(),
            source,
        }
    };
    let tries = if addr.port() == 0 { FREE_PORT_TRIES } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr).await.map_err(bind_err(addr))?;
        let bound = udp.local_addr().map_err(bind_err(addr))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => {
                return Ok(Listeners {
                    udp,
                    tcp,
                    addr: bound,
                })
            }
            Err(e) => last = Some((bound, e)),
        }
    }
    match last {
        Some((a, e)) => Err(bind_err(a)(e)),
        None => Err(DnsError::Serve("no listener was tried".into())),
    }
}

/// Write `addr` to `path` (whole or not at all: a reader never sees half of it).
pub fn write_addr_file(path: &Path, addr: SocketAddr) -> Result<(), DnsError> {
    let err = |source| DnsError::AddrFile {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n")).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Serve DNS on `listeners` until `shutdown`.
pub async fn serve(
    listeners: Listeners,
    handler: Handler,
    tcp_idle_timeout: Duration,
    shutdown: CancellationToken,
) -> Result<(), DnsError> {
    let mut server = Server::new(handler);
    server.register_socket(listeners.udp);
    server.register_listener(listeners.tcp, tcp_idle_timeout, TCP_RESPONSE_BUFFER);
    tokio::select! {
        () = shutdown.cancelled() => {}
        // The listeners only end on their own after a fatal socket error.
        r = server.block_until_done() => {
            return r.map_err(|e| DnsError::Serve(e.to_string()));
        }
    }
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| DnsError::Serve(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_gets_one_port_for_udp_and_tcp() {
        let l = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        assert_ne!(l.addr.port(), 0);
        assert_eq!(l.udp.local_addr().expect("udp"), l.addr);
        assert_eq!(l.tcp.local_addr().expect("tcp"), l.addr);
        // A taken address is an error naming it.
        let e = bind(l.addr).await.expect_err("taken");
        assert!(e.to_string().contains(&l.addr.to_string()), "{e}");
    }

    #[test]
    fn the_addr_file_holds_the_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dns.addr");
        write_addr_file(&path, "127.0.0.1:5353".parse().expect("addr")).expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "127.0.0.1:5353\n"
        );
    }
}
