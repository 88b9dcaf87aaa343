//! Test helpers: a real etcd on free ports, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A throwaway etcd server.
pub struct Etcd {
    child: Child,
    /// Client URL.
    pub endpoint: String,
    peer: u16,
    dir: tempfile::TempDir,
}

use persys_testports::free_port;

fn spawn_etcd(dir: &std::path::Path, endpoint: &str, peer: u16) -> Child {
    Command::new("/usr/bin/etcd")
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen-client-urls")
        .arg(endpoint)
        .arg("--advertise-client-urls")
        .arg(endpoint)
        .arg("--listen-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-advertise-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-cluster")
        .arg(format!("default=http://127.0.0.1:{peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts")
}

impl Etcd {
    /// Start etcd and wait until it answers.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let child = spawn_etcd(dir.path(), &endpoint, peer);
        let etcd = Self {
            child,
            endpoint,
            peer,
            dir,
        };
        etcd.wait_ready().await;
        etcd
    }

    async fn wait_ready(&self) {
        let store = self.store().await;
        for _ in 0..100 {
            if store.ping().await.is_ok() {
                return;
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

    /// Freeze etcd (SIGSTOP) for `stall`, then thaw it: connections stay open and
    /// nothing answers meanwhile, as when etcd stalls on a slow disk or a busy core.
    pub fn stall(&self, stall: Duration) -> std::thread::JoinHandle<()> {
        let pid = self.child.id().to_string();
        let signal = |sig: &str| {
            let ok = std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} {pid}");
        };
        signal("-STOP");
        std::thread::spawn(move || {
            std::thread::sleep(stall);
            let ok = std::process::Command::new("kill")
                .args(["-CONT", &pid])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -CONT {pid}");
        })
    }

    /// Start the killed etcd again on the same address and data, and wait until it
    /// answers (the end of an outage).
    pub async fn restart(&mut self) {
        self.kill();
        self.child = spawn_etcd(self.dir.path(), &self.endpoint, self.peer);
        self.wait_ready().await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A scheduler context on a real etcd, without listeners: drive `api::router` with
/// `oneshot`. The cache follows the etcd watch.
pub struct TestApp {
    /// Shared state.
    pub ctx: std::sync::Arc<crate::context::Ctx>,
    /// The etcd (kill it to test outages).
    pub etcd: Etcd,
    /// Cancels the background tasks.
    pub shutdown: tokio_util::sync::CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Start etcd, make a PKI, load the cache and follow the watch.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// As [`TestApp::start`], adjusting the configuration first.
    pub async fn start_with(adjust: impl FnOnce(&mut crate::config::Config)) -> Self {
        let etcd = Etcd::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = crate::config::Config::for_test(&etcd.endpoint, dir.path().to_path_buf());
        adjust(&mut config);
        let pki = crate::pki::Pki::load_or_create(dir.path(), &[], None).expect("pki");
        let store = etcd.store().await;
        pki.publish_token(&store).await.expect("token stored");
        let cache = std::sync::Arc::new(crate::cache::Cache::new());
        let rev = cache.load(&store).await.expect("load");
        let agents =
            crate::agent_client::AgentClient::new(pki.ca.cert_pem(), &pki.cert_pem, &pki.key_pem)
                .expect("agent client");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let ctx = std::sync::Arc::new(crate::context::Ctx::new(
            config,
            store.clone(),
            cache.clone(),
            pki,
            agents,
            crate::placement::Strategy::Spread,
            shutdown.clone(),
        ));
        let token = shutdown.clone();
        tokio::spawn(async move { cache.run(store, rev, token).await });
        Self {
            ctx,
            etcd,
            shutdown,
            _dir: dir,
        }
    }

    /// The join token agents present.
    pub fn join_token(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("join-token"))
            .expect("token file")
            .trim()
            .to_string()
    }

    /// Put a node record directly (as a registration would), Active, with `cores` and
    /// `memory_mb` and labels.
    pub async fn add_node(&self, id: &str, cores: f64, memory_mb: u64, labels: &[(&str, &str)]) {
        let node = persys_proto::Node {
            node_id: id.into(),
            hostname: id.into(),
            ip_address: "127.0.0.1".into(),
            agent_port: 1,
            os_name: String::new(),
            kernel_version: String::new(),
            status: persys_proto::NodeStatus::Active,
            total_cpu: cores,
            total_memory: memory_mb,
            available_cpu: cores,
            available_memory: memory_mb,
            allocated_cpu: 0,
            allocated_memory: 0,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            domain_name: String::new(),
            last_heartbeat: None,
            registered_at: chrono::Utc::now(),
            cert_serial: None,
        };
        self.ctx
            .records()
            .create_node(&node)
            .await
            .expect("put node")
            .expect("new node");
        self.ctx.liveness().grace(id, tokio::time::Instant::now());
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Wait until `cond` holds (polling every 20 ms), failing after `secs` seconds.
#[macro_export]
macro_rules! assert_eventually {
    ($secs:expr, $cond:expr) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64($secs as f64);
        loop {
            if $cond {
                break;
            }
            if std::time::Instant::now() > deadline {
                panic!("condition not met within {}s: {}", $secs, stringify!($cond));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

/// Poll `cond` every 20 ms for up to `secs` seconds; whether it held.
pub async fn wait_until(secs: f64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
