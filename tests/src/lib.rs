//! testkit: real processes, a real etcd, real Docker and real TLS for end-to-end tests.
//!
//! `Cluster::start()` spawns etcd and the built binaries on free ports; everything is
//! stopped (and every container removed) on drop. Build the binaries first
//! (`cargo build --workspace`); `.ci/run` does.
//!
//! Fault tests run agents as separate hosts (`ClusterOptions::netns`: a network
//! namespace and a veth pair each, see [`netns`]) and several scheduler replicas
//! (`ClusterOptions::schedulers`); they need root, iproute2 and, where the kernel has no
//! `netem` qdisc, iptables with NFQUEUE (see [`netem`]). A failed cluster test keeps its
//! logs in `<tmp>/persys-logs-<prefix>`.

pub mod api;
pub mod bench;
pub mod cluster;
pub mod dns;
pub mod docker;
pub mod etcd;
pub mod git;
pub mod netem;
pub mod netns;
pub mod process;

pub use api::Api;
pub use cluster::{AgentOptions, Cluster, ClusterOptions, SimFleet};
pub use etcd::Etcd;
pub use netns::{Host, NetemMode};

/// The image every test runs (built without a registry by `scripts/test-image.sh`).
pub const TEST_IMAGE: &str = "busybox:local";

/// Build the test image when it is absent.
pub fn ensure_test_image() -> anyhow::Result<()> {
    static ONCE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = ONCE.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    if *done {
        return Ok(());
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-image.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .arg(TEST_IMAGE)
        .status()?;
    anyhow::ensure!(status.success(), "building {TEST_IMAGE} failed");
    *done = true;
    Ok(())
}

/// Retry an async condition until it holds or the timeout passes (instead of sleeps).
#[macro_export]
macro_rules! assert_eventually {
    ($timeout:expr, $what:expr, $cond:expr) => {{
        let deadline = std::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if std::time::Instant::now() > deadline {
                panic!("not within {:?}: {}", $timeout, $what);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}
