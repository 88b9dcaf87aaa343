//! `persys dev` for real: Debian's etcd, the built `persys-scheduler`, `persys-dns`,
//! `persys-gateway` and `persys-agent` (next to `persys`; `cargo build --workspace
//! --bins` first), the local Docker engine, and `dig` (dnsutils). What happens when a
//! child dies is in `dev_supervise.rs`.

mod dev_harness;

use dev_harness::{alive, children_of, persys, Dev};
use nix::sys::signal::{kill, Signal};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

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
    let names = ["etcd", "scheduler", "dns", "gateway", "agent-1"];
    for name in names {
        let pid = dev
            .child_pid(name)
            .unwrap_or_else(|| panic!("no pids/{name}.pid"));
        assert!(children.contains(&pid), "{name}: {pid} not in {children:?}");
    }
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
    for name in names {
        assert_eq!(dev.child_pid(name), None, "pids/{name}.pid removed");
    }
    assert!(
        dev.stderr().lines().all(|l| !l.contains("restart")),
        "nothing was restarted while stopping: {}",
        dev.stderr()
    );
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
