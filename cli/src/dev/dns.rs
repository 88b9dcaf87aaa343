//! The DNS responder of `persys dev`: `persys-dns` against the cluster's etcd (with
//! the etcd client certificate `persys dev` made, when it started etcd itself), for
//! the cluster domain, on a free 127.0.0.1 port it writes to `DIR/dns-addr`, and on that
//! same port when it is started again (the summary's `dig` line stays true). Skipped
//! with a warning when it is not built.

use super::child::Stage;
use super::{programs, Cluster, Flow};
use std::net::SocketAddr;
use std::path::Path;

/// Where the responder of a dev cluster is, if one runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dns {
    /// Not built: the cluster runs without it.
    Off,
    /// Answering at this address (UDP and TCP).
    At(SocketAddr),
}

/// The flags of `persys-dns` for a dev cluster, listening on `listen` (`127.0.0.1:0`
/// at the first start: a free port, chosen by the responder itself and written to the
/// file, with no race with another program between choosing and binding).
pub fn dns_args(
    etcd_endpoints: &str,
    etcd_flags: Vec<String>,
    domain: &str,
    listen: &str,
    addr_file: &Path,
) -> Vec<String> {
    let mut args = vec![
        "--etcd-endpoints".to_string(),
        etcd_endpoints.to_string(),
        "--domain".into(),
        domain.to_string(),
        "--listen".into(),
        listen.to_string(),
        "--addr-file".into(),
        addr_file.display().to_string(),
    ];
    args.extend(etcd_flags);
    args
}

/// The address in an addr file, once it has one.
pub fn read_addr(path: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Cluster<'_> {
    /// Start `persys-dns` and wait until it has bound its port (`None` if interrupted).
    pub(super) async fn start_dns(&mut self, etcd_endpoints: &str) -> anyhow::Result<Option<Dns>> {
        let Some(bin) = programs::find("persys-dns") else {
            crate::output::say(
                "warning: persys-dns is not built (build it with `cargo build -p persys-dns`); \
                 starting without a DNS responder",
            );
            return Ok(Some(Dns::Off));
        };
        let addr_file = self.layout.dns_addr();
        // An address of an earlier run is not this one's.
        match std::fs::remove_file(&addr_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot remove {}: {e}", addr_file.display()),
        }
        // Read access to /skydns/ is all it needs; etcd here has no roles, so the
        // scheduler's client certificate serves.
        let etcd_flags = self
            .etcd_pki
            .as_ref()
            .map(|pki| pki.client_flags(persys_certs::Role::Scheduler))
            .unwrap_or_default();
        let args = dns_args(
            etcd_endpoints,
            etcd_flags.clone(),
            &self.args.cluster_domain,
            "127.0.0.1:0",
            &addr_file,
        );
        crate::output::say(&format!(
            "starting persys-dns for {} on a free 127.0.0.1 port",
            self.args.cluster_domain
        ));
        self.sup.spawn("dns", Stage::Dns, &bin, &args, &[], "")?;
        let probe = addr_file.clone();
        let flow = self
            .wait_for("persys-dns", || {
                let ready = read_addr(&probe).is_some();
                async move { ready }
            })
            .await?;
        if let Flow::Interrupted = flow {
            return Ok(None);
        }
        let addr = read_addr(&addr_file)
            .ok_or_else(|| anyhow::anyhow!("cannot read {}", addr_file.display()))?;
        let again = dns_args(
            etcd_endpoints,
            etcd_flags,
            &self.args.cluster_domain,
            &addr.to_string(),
            &addr_file,
        );
        self.sup.set_args("dns", &again);
        Ok(Some(Dns::At(addr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_responder_gets_the_clusters_etcd_domain_and_a_free_port() {
        let args = dns_args(
            "https://127.0.0.1:2379",
            vec!["--etcd-cacert".into(), "/pki/ca.crt".into()],
            "cluster.local.dev",
            "127.0.0.1:0",
            Path::new("/dev-dir/dns-addr"),
        );
        assert_eq!(
            args,
            [
                "--etcd-endpoints",
                "https://127.0.0.1:2379",
                "--domain",
                "cluster.local.dev",
                "--listen",
                "127.0.0.1:0",
                "--addr-file",
                "/dev-dir/dns-addr",
                "--etcd-cacert",
                "/pki/ca.crt",
            ]
        );
    }

    #[test]
    fn an_addr_file_is_read_once_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dns-addr");
        assert_eq!(read_addr(&path), None);
        std::fs::write(&path, "127.0.0.1:").expect("write");
        assert_eq!(read_addr(&path), None);
        std::fs::write(&path, "127.0.0.1:40123\n").expect("write");
        assert_eq!(
            read_addr(&path),
            Some("127.0.0.1:40123".parse().expect("addr"))
        );
    }
}
