//! `persys dev` for real: Debian's etcd, the built `persys-scheduler`, `persys-dns`,
//! `persys-gateway` and `persys-agent` (next to `persys`; `cargo build --workspace
//! --bins` first), the local Docker engine, and `dig` (dnsutils).

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn bin(name: &str) -> PathBuf {
    let persys = PathBuf::from(env!("CARGO_BIN_EXE_persys"));
    let p = persys.with_file_name(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

use persys_testports::free_port;

/// A running `persys dev` in a temporary home and data dir.
struct Dev {
    child: Child,
    home: tempfile::TempDir,
    data: PathBuf,
    scheduler_port: u16,
    gateway_port: u16,
    /// What it printed once the cluster was up.
    summary: String,
}

impl Dev {
    /// Start it with one agent and wait until it says the cluster is up.
    fn start() -> Dev {
        Dev::start_with(&["--agents", "1"])
    }

    /// Start it with `nodes` (e.g. `--sim-nodes 5`) and wait until it says the cluster
    /// is up.
    fn start_with(nodes: &[&str]) -> Dev {
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

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"))
    }

    /// Wait for exit, at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
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
fn children_of(parent: u32) -> Vec<i32> {
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

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); its stat state is 'Z'.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next());
    !stat.is_empty() && state != Some("Z")
}

fn persys(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("persys"))
        .env_remove("PERSYS_TOKEN")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("persys runs")
}

#[test]
fn dev_runs_a_usable_cluster_and_stops_it_cleanly_on_sigterm() {
    let mut dev = Dev::start();
    let config = dev.data.join("config.yaml");
    let out = persys(&config, &["node", "list", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(nodes[0]["nodeId"], "node-1");
    assert_eq!(nodes[0]["status"], "Active");
    let home_config =
        std::fs::read_to_string(dev.home.path().join(".persys/config.yaml")).expect("home config");
    assert!(
        home_config.contains(&format!("https://127.0.0.1:{}", dev.gateway_port)),
        "the config points at the gateway: {home_config}"
    );
    assert!(
        home_config.contains("token: persys_"),
        "with the admin token"
    );
    let out = persys(&config, &["token", "list", "-o", "json"]);
    assert!(
        out.status.success(),
        "the admin token works through the gateway: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(tokens[0]["role"], "admin");
    // persys-dns answers the cluster's names where the summary says.
    let dig = dev
        .summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("dig @"))
        .unwrap_or_else(|| panic!("no dig line in:\n{}", dev.summary))
        .to_string();
    let words: Vec<&str> = dig.split_whitespace().collect();
    assert_eq!(words.len(), 4, "dig @IP -p PORT hello.<domain>: {dig}");
    assert_eq!(words[3], "hello.cluster.local.dev");
    let addr_file = dev.data.join("dns-addr");
    assert_eq!(
        std::fs::read_to_string(&addr_file)
            .expect("dns-addr")
            .trim(),
        format!("{}:{}", words[0], words[2])
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("dig")
            .arg(format!("@{}", words[0]))
            .args(["-p", words[2], "+short", "+tries=1", "+time=2"])
            .arg("node-1.cluster.local.dev")
            .output()
            .expect("dig runs (apt-get install dnsutils)");
        if String::from_utf8_lossy(&out.stdout).trim() == "127.0.0.1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node-1 not answered: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for name in ["etcd", "scheduler", "dns", "gateway", "agent-1"] {
        assert!(
            dev.data.join(format!("logs/{name}.log")).is_file(),
            "{name}.log"
        );
    }

    let children = children_of(dev.child.id());
    assert_eq!(
        children.len(),
        5,
        "etcd, scheduler, persys-dns, gateway, one agent: {children:?}"
    );
    kill(dev.pid(), Signal::SIGTERM).expect("sigterm");
    let status = dev
        .wait(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(children.iter().all(|p| !alive(*p)), "children stopped");
    assert!(
        TcpListener::bind(("127.0.0.1", dev.scheduler_port)).is_ok(),
        "scheduler port released"
    );
    assert!(
        TcpListener::bind(("127.0.0.1", dev.gateway_port)).is_ok(),
        "gateway port released"
    );
    assert!(!addr_file.exists(), "persys-dns removed its address file");
}

#[test]
fn killing_dev_with_sigkill_leaves_no_child_behind() {
    let mut dev = Dev::start();
    let children = children_of(dev.child.id());
    assert_eq!(children.len(), 5, "{children:?}");
    kill(dev.pid(), Signal::SIGKILL).expect("sigkill");
    dev.wait(Duration::from_secs(5)).expect("dies");
    let deadline = Instant::now() + Duration::from_secs(5);
    while children.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<i32> = children.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "children left behind: {left:?}");
}

#[test]
fn dead_child_stops_dev_with_its_name_and_a_non_zero_exit() {
    let mut dev = Dev::start();
    // The agent is the child started last; killing it is a crash from dev's point of view.
    let children = children_of(dev.child.id());
    let agent = children
        .iter()
        .copied()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("persys-agent"))
        })
        .expect("agent child");
    kill(Pid::from_raw(agent), Signal::SIGKILL).expect("kill agent");
    let status = dev.wait(Duration::from_secs(30)).expect("dev exits");
    assert_eq!(status.code(), Some(1));
    let err = std::fs::read_to_string(dev.home.path().join("dev.err")).expect("stderr");
    assert!(err.contains("error: agent-1 exited unexpectedly"), "{err}");
    assert!(
        children.iter().all(|p| !alive(*p)),
        "the others were stopped"
    );
}

#[test]
fn dev_with_sim_nodes_runs_a_simulated_fleet_and_stops_it_with_the_rest() {
    let mut dev = Dev::start_with(&["--sim-nodes", "5"]);
    let config = dev.data.join("config.yaml");
    let out = persys(&config, &["node", "list", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut ids: Vec<&str> = nodes
        .as_array()
        .expect("array")
        .iter()
        .filter(|n| n["status"] == "Active")
        .filter_map(|n| n["nodeId"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["sim-0", "sim-1", "sim-2", "sim-3", "sim-4"],
        "no real agent by default"
    );

    let out = persys(
        &config,
        &[
            "run",
            "--name",
            "hello",
            "--wait",
            "busybox:local",
            "--",
            "sh",
            "-c",
            "echo hello",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = persys(&config, &["logs", "hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("command: sh -c echo hello"), "{logs}");
    assert!(logs.contains("started (image busybox:local)"), "{logs}");

    let children = children_of(dev.child.id());
    assert_eq!(
        children.len(),
        5,
        "etcd, scheduler, persys-dns, gateway, sim: {children:?}"
    );
    assert!(dev.data.join("logs/sim.log").is_file());
    kill(dev.pid(), Signal::SIGTERM).expect("sigterm");
    let status = dev
        .wait(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(children.iter().all(|p| !alive(*p)), "children stopped");
}
