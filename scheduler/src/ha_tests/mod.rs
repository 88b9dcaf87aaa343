//! Scheduler replicas in one process on a real etcd, over real mTLS: election,
//! failover, fencing and forwarding.

mod batches;
mod election;
mod forwarding;

use crate::config::Config;
use crate::testutil::{wait_until, Etcd};
use crate::Running;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One started replica.
pub(super) struct Replica {
    pub running: Running,
    pub token: CancellationToken,
}

impl Replica {
    pub fn url(&self) -> String {
        format!("https://{}", self.running.api_addr)
    }

    pub fn bootstrap_url(&self) -> String {
        format!("https://{}", self.running.bootstrap_addr)
    }

    pub fn is_leader(&self) -> bool {
        self.running.ctx.leadership().is_leader()
    }

    /// Stop it (a graceful shutdown: loops stop, then it resigns) and wait.
    pub async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.running.wait()).await;
    }
}

/// Start a replica on `etcd` with the shared data dir `dir`.
pub(super) async fn replica(etcd: &Etcd, dir: &Path, id: Option<&str>) -> Replica {
    let mut config = Config::for_test(&etcd.endpoint, dir.to_path_buf());
    config.replica_id = id.map(String::from);
    let token = CancellationToken::new();
    let running = crate::start(config, token.clone())
        .await
        .expect("replica starts");
    Replica { running, token }
}

/// Which replicas lead now.
pub(super) fn leaders(replicas: &[&Replica]) -> Vec<usize> {
    replicas
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_leader())
        .map(|(i, _)| i)
        .collect()
}

/// Wait until exactly one of `replicas` leads and every one knows it; its index.
pub(super) async fn one_leader(replicas: &[&Replica], secs: f64) -> usize {
    let settled = wait_until(secs, || {
        let l = leaders(replicas);
        l.len() == 1 && {
            let id = &replicas[l[0]].running.ctx.leadership().me().id;
            replicas.iter().all(|r| {
                r.running
                    .ctx
                    .leadership()
                    .leader()
                    .is_some_and(|x| &x.id == id)
            })
        }
    })
    .await;
    assert!(settled, "no single agreed leader: {:?}", leaders(replicas));
    leaders(replicas)[0]
}

/// An mTLS client with the certificate `name.crt`/`name.key` of the shared data dir.
pub(super) fn client(dir: &Path, cert_pem: &str, key_pem: &str) -> reqwest::Client {
    let ca = std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
    let tls = persys_certs::client_config(
        &ca,
        Some((cert_pem, key_pem)),
        persys_certs::Expected::role(persys_certs::Role::Scheduler),
    )
    .expect("tls");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The admin client the scheduler wrote for the CLI.
pub(super) fn admin(dir: &Path) -> reqwest::Client {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("admin files");
    client(dir, &read("admin.crt"), &read("admin.key"))
}
