//! Helpers for the real-Docker tests: the local busybox image, unique names, and
//! removal of every container a test created (by its node label), even on panic.

#![allow(dead_code)] // each test file uses a different subset

pub mod scheduler;

use persys_agent::report::{ReportHandle, ReportInbox};
use persys_agent::runtime::docker::DockerRuntime;
use persys_agent::supervisor::ledger::Ledger;
use persys_agent::supervisor::Supervisor;
use persys_proto::{Command, Resources, RunRequest};
use std::process::{Command as Proc, Stdio};
use std::sync::{Arc, Once};

/// The test image, made locally (no registry is reachable).
pub const IMAGE: &str = "busybox:local";

/// Make `busybox:local` by importing a busybox rootfs unless it exists.
pub fn ensure_image() {
    logs();
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let present = Proc::new("docker")
            .args(["image", "inspect", IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if present {
            return;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("busybox is installed (apt: busybox-static)");
        let root = tempfile::tempdir().expect("tempdir");
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
        for applet in [
            "sh", "echo", "sleep", "cat", "ls", "printf", "true", "false",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink");
        }
        let mut tar = Proc::new("tar")
            .arg("-C")
            .arg(root.path())
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar runs");
        let tar_out = tar.stdout.take().expect("tar stdout");
        let status = Proc::new("docker")
            .args(["import", "-c", "CMD [\"/bin/sh\"]", "-", IMAGE])
            .stdin(tar_out)
            .stdout(Stdio::null())
            .status()
            .expect("docker import runs");
        assert!(status.success(), "docker import failed");
        tar.wait().expect("tar ends");
    });
}

/// Show the agent's logs in failing tests (`RUST_LOG` picks the level).
pub fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A node id no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Removes every container labelled with its node id when dropped.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let out = Proc::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label=persys.nodeId={}", self.0))
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Proc::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }
}

/// A Docker-backed supervisor for `node`, with its report inbox.
pub async fn supervisor(node: &str) -> (Arc<Supervisor<DockerRuntime>>, ReportInbox) {
    ensure_image();
    let rt = Arc::new(
        DockerRuntime::connect(None)
            .await
            .expect("docker reachable"),
    );
    let (handle, inbox) = ReportHandle::channel();
    (
        Arc::new(Supervisor::new(
            rt,
            node.to_string(),
            Ledger::open(None),
            handle,
        )),
        inbox,
    )
}

/// A run request for a busybox shell command.
pub fn request(workload: &str, generation: u64, shell: &str) -> RunRequest {
    RunRequest {
        workload_id: workload.into(),
        image: IMAGE.into(),
        name: workload.into(),
        display_name: "test".into(),
        command: Some(Command::Shell(shell.into())),
        env: Default::default(),
        ports: vec![],
        volumes: vec![],
        network: None,
        restart_policy: Default::default(),
        generation,
        resources: Resources::default(),
        labels: Default::default(),
        ..Default::default()
    }
}

/// Ids of the containers labelled with `node`.
pub fn docker_ids(node: &str) -> Vec<String> {
    let out = Proc::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=persys.nodeId={node}"))
        .output()
        .expect("docker ps runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}
