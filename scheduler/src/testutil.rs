//! Test helpers: a real etcd on free ports, killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A throwaway etcd server.
pub struct Etcd {
    child: Child,
    /// Client URL.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Etcd {
    /// Start etcd and wait until it answers.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let child = Command::new("/usr/bin/etcd")
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--listen-client-urls")
            .arg(&endpoint)
            .arg("--advertise-client-urls")
            .arg(&endpoint)
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{peer}"))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{peer}"))
            .arg("--initial-cluster")
            .arg(format!("default=http://127.0.0.1:{peer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let etcd = Self {
            child,
            endpoint,
            _dir: dir,
        };
        let store = etcd.store().await;
        for _ in 0..100 {
            if store.ping().await.is_ok() {
                return etcd;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("etcd did not come up");
    }

    /// A store client for this etcd.
    pub async fn store(&self) -> crate::store::Store {
        crate::store::Store::connect(std::slice::from_ref(&self.endpoint))
            .await
            .expect("etcd client")
    }

    /// Stop etcd now (to test outages).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
