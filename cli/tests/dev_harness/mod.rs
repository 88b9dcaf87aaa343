//! A real `persys dev` for the binary tests: Debian's etcd, the built
//! `persys-scheduler`, `persys-dns`, `persys-gateway` and `persys-agent` (next to
//! `persys`; `cargo build --workspace --bins` first), on free ports, in a temporary home
//! and data dir.

#![allow(dead_code)] // each test file uses a different subset

use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use persys_testports::free_port;

/// A built binary of the workspace, next to `persys`.
pub fn bin(name: &str) -> PathBuf {
    let persys = PathBuf::from(env!("CARGO_BIN_EXE_persys"));
    let p = persys.with_file_name(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A running `persys dev` in a temporary home and data dir.
pub struct Dev {
    pub child: Child,
    pub home: tempfile::TempDir,
    pub data: PathBuf,
    pub scheduler_port: u16,
    pub gateway_port: u16,
    /// What it printed once the cluster was up.
    pub summary: String,
}

impl Dev {
    /// Start it with one agent and wait until it says the cluster is up.
    pub fn start() -> Dev {
        Dev::start_with(&["--agents", "1"])
    }

    /// Start it with `nodes` (e.g. `--sim-nodes 5`) and wait until it says the cluster
    /// is up.
    pub fn start_with(nodes: &[&str]) -> Dev {
        bin("persys-scheduler");
        bin("persys-dns");
        bin("persys-gateway");
        bin("persys-agent");
        let home = tempfile::tempdir().expect("tempdir");
        let data = home.path().join("cluster");
        let scheduler_port = free_port();
        let gateway_port = free_port();
        let stderr = std::fs::File::create(home.path().join("dev.err")).expect("stderr file");
        let mut child = Command::new(bin("persys"))
            .arg("dev")
            .arg("--data-dir")
            .arg(&data)
            .args(nodes)
            .args(["--scheduler-port", &scheduler_port.to_string()])
            .args(["--gateway-port", &gateway_port.to_string()])
            .args(["--bootstrap-port", &free_port().to_string()])
            .args(["--agent-port", &free_port().to_string()])
            .env("HOME", home.path())
            .env_remove("PERSYS_CONFIG")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("persys dev starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut summary = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("Press Ctrl-C to stop.") => break,
                Ok(line) if line.contains("cluster is up") || !summary.is_empty() => {
                    summary.push_str(&line);
                    summary.push('\n');
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let logs = std::fs::read_dir(data.join("logs"))
                        .map(|d| {
                            d.flatten()
                                .map(|e| e.path().display().to_string())
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    let err =
                        std::fs::read_to_string(home.path().join("dev.err")).unwrap_or_default();
                    panic!("persys dev did not come up; stderr:\n{err}\nlogs: {logs:?}");
                }
            }
        }
        Dev {
            child,
            home,
            data,
            scheduler_port,
            gateway_port,
            summary,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"))
    }

    /// The client config it wrote.
    pub fn config(&self) -> PathBuf {
        self.data.join("config.yaml")
    }

    /// What it said on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.home.path().join("dev.err")).unwrap_or_default()
    }

    /// Wait until its stderr contains `text`, at most `timeout`.
    pub fn wait_for_stderr(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let err = self.stderr();
            if err.contains(text) {
                return err;
            }
            assert!(
                Instant::now() < deadline,
                "persys dev did not say {text:?} within {timeout:?}; stderr:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid in `DIR/pids/<child>.pid`, if the file holds one.
    pub fn child_pid(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.data.join(format!("pids/{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Wait for exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pids whose parent is `parent`, from /proc.
pub fn children_of(parent: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the ")" that closes the command name: state, ppid, ...
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let ppid = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); its stat state is 'Z'.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next());
    !stat.is_empty() && state != Some("Z")
}

/// The command line of `pid`, its arguments joined by spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// `persys --config CONFIG ARGS...`.
pub fn persys(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("persys"))
        .env_remove("PERSYS_TOKEN")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("persys runs")
}

/// `persys ... -o json`, which must succeed.
pub fn persys_json(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = persys(config, &all);
    assert!(
        out.status.success(),
        "persys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}
