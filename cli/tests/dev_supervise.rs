//! `persys dev` keeps the cluster up when a child dies, and `persys node join-command`
//! prints a command that joins a node to it; with the real binaries, etcd and Docker
//! (see `dev.rs`).

mod dev_harness;

use dev_harness::{alive, bin, cmdline, persys, persys_json, Dev};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Poll `f` every 100 ms until it gives a value, at most `timeout`.
fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills a process group when the test ends, however it ends.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(-self.0), Signal::SIGKILL);
    }
}

/// `docker ps -aq` of the containers with all these labels.
fn containers(labels: &[String]) -> Vec<String> {
    let mut cmd = Command::new("docker");
    cmd.args(["ps", "-aq", "--no-trunc"]);
    for l in labels {
        cmd.args(["--filter", &format!("label={l}")]);
    }
    let out = cmd.output().expect("docker runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Removes every container of a workload when the test ends, however it ends.
struct WorkloadContainers(String);

impl Drop for WorkloadContainers {
    fn drop(&mut self) {
        let ids = containers(&[format!("persys.workloadId={}", self.0)]);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .stdout(Stdio::null())
                .output();
        }
    }
}

fn node_status(config: &std::path::Path, id: &str) -> Option<String> {
    let nodes = persys_json(config, &["node", "list"]);
    nodes
        .as_array()?
        .iter()
        .find(|n| n["nodeId"] == id)
        .and_then(|n| n["status"].as_str())
        .map(str::to_string)
}

#[test]
fn a_killed_agent_is_restarted_and_rejoins_after_its_workload_moved_to_the_other_node() {
    // A prefix of its own: agents only touch containers of their node id, and other
    // dev clusters on this Docker engine have a node-1 too.
    let prefix = format!("sup{}-", std::process::id());
    let mut dev = Dev::start_with(&["--agents", "2", "--node-prefix", &prefix]);
    let config = dev.config();
    let out = persys(
        &config,
        &[
            "run",
            "--name",
            "mover",
            "--restart",
            "always",
            "--wait",
            "busybox:local",
            "--",
            "sleep",
            "3600",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let _cleanup = WorkloadContainers(id.clone());
    let w = persys_json(&config, &["get", &id]);
    assert_eq!(w["status"], "Running", "{w}");
    let victim = w["nodeId"].as_str().expect("placed").to_string();
    let index: u16 = victim
        .strip_prefix(&prefix)
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("node id {victim}"));
    let survivor = format!("{prefix}{}", 3 - index);
    let agent = format!("agent-{index}");
    let old_container = containers(&[format!("persys.workloadId={id}")]);
    assert_eq!(old_container.len(), 1, "{old_container:?}");

    // The agent's pid, from the pid file persys dev keeps.
    let pid = dev
        .child_pid(&agent)
        .unwrap_or_else(|| panic!("no pids/{agent}.pid"));
    assert!(
        cmdline(pid).contains(&format!("--node-id {victim}")),
        "{}",
        cmdline(pid)
    );
    // The workload's changes, as they happen (a status reason lasts only until the
    // next report).
    let events_file = dev.home.path().join("events.json");
    let mut events = Command::new(bin("persys"))
        .arg("--config")
        .arg(&config)
        .args(["events", "--workload", &id, "-o", "json"])
        .env_remove("PERSYS_TOKEN")
        .stdout(std::fs::File::create(&events_file).expect("events file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("persys events");
    std::thread::sleep(Duration::from_millis(500));
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill the agent");
    let err = dev.wait_for_stderr(
        &format!("{agent} exited unexpectedly (signal: 9 (SIGKILL))"),
        Duration::from_secs(10),
    );
    assert!(
        err.contains("restarting it in "),
        "says when it comes back: {err}"
    );

    // The node is lost and the workload moves before the agent is back.
    let moved = eventually(
        "the workload runs on the other node",
        Duration::from_secs(30),
        || {
            let w = persys_json(&config, &["get", &id]);
            (w["nodeId"] == survivor.as_str() && w["status"] == "Running").then_some(w)
        },
    );
    assert_ne!(moved["generation"], w["generation"], "a new copy: {moved}");
    let reason = format!("moved from lost node {victim}");
    eventually("the move in the events", Duration::from_secs(10), || {
        std::fs::read_to_string(&events_file)
            .unwrap_or_default()
            .contains(&reason)
            .then_some(())
    });
    let _ = events.kill();
    let _ = events.wait();

    // Then the agent is started again and rejoins as the same node.
    let err = dev.wait_for_stderr(&format!("restarted {agent} (pid "), Duration::from_secs(30));
    let line = err
        .lines()
        .find(|l| l.contains(&format!("restarted {agent}")))
        .unwrap_or_default()
        .to_string();
    assert!(line.ends_with("restart 1)"), "{line}");
    let new_pid = dev.child_pid(&agent).expect("a new pid file");
    assert_ne!(new_pid, pid);
    assert!(alive(new_pid));
    assert!(line.contains(&format!("(pid {new_pid};")), "{line}");
    eventually("the node is Active again", Duration::from_secs(30), || {
        (node_status(&config, &victim).as_deref() == Some("Active")).then_some(())
    });
    assert!(
        dev.child.try_wait().expect("try_wait").is_none(),
        "persys dev still runs"
    );
    let log = std::fs::read_to_string(dev.data.join(format!("logs/{agent}.log"))).expect("log");
    assert_eq!(
        log.matches(&format!("--- persys dev: starting {agent} at"))
            .count(),
        2,
        "one log, two runs"
    );

    // The copy left on the lost node is removed once it is back; one copy runs.
    eventually(
        // By the scheduler's backstop reconcile, every 30 s.
        "the old copy on the rejoined node is removed",
        Duration::from_secs(60),
        || {
            containers(&[
                format!("persys.workloadId={id}"),
                format!("persys.nodeId={victim}"),
            ])
            .is_empty()
            .then_some(())
        },
    );
    let now = containers(&[format!("persys.workloadId={id}")]);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, old_container);
    let w = persys_json(&config, &["get", &id]);
    assert_eq!(w["nodeId"], survivor.as_str());
    assert_eq!(w["status"], "Running");

    let out = persys(&config, &["rm", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill(dev.pid(), Signal::SIGTERM).expect("sigterm");
    let status = dev
        .wait(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", dev.stderr());
    assert!(!alive(new_pid), "the restarted agent was stopped too");
    assert_eq!(
        dev.stderr().matches("restarted ").count(),
        1,
        "no restart while stopping: {}",
        dev.stderr()
    );
}

#[test]
fn join_command_prints_a_command_whose_node_joins_the_dev_cluster() {
    // A simulated node only: no Docker, and the joined node runs `--runtime fake`.
    let mut dev = Dev::start_with(&["--sim-nodes", "1"]);
    let config = dev.config();
    let data = dev.data.display().to_string();
    assert!(
        dev.summary
            .contains(&format!("persys node join-command --data-dir {data}")),
        "{}",
        dev.summary
    );
    let out = persys(&config, &["node", "join-command", "--data-dir", &data]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let command = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(command.lines().count(), 1, "one line: {command}");
    let token = std::fs::read_to_string(dev.data.join("scheduler/join-token")).expect("token");
    assert!(
        command.starts_with(&format!("PERSYS_JOIN_TOKEN={} persys-agent ", token.trim())),
        "{command}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pins the cluster CA (sha256:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every flag it uses is one of the agent's.
    let help = Command::new(bin("persys-agent"))
        .arg("--help")
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    let flags: Vec<&str> = command
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(flags.len() >= 4, "{flags:?}");
    for flag in flags {
        assert!(
            help.contains(&format!("{flag} ")),
            "persys-agent has no {flag}"
        );
    }

    // Its parts, for scripts.
    let parts = persys_json(&config, &["node", "join-command", "--data-dir", &data]);
    assert_eq!(parts["command"], command.as_str());
    let hash = token.trim().split('.').nth(1).expect("hash");
    assert_eq!(parts["caCertHash"], format!("sha256:{hash}"));
    assert_eq!(
        parts["schedulerUrls"][0],
        format!("https://127.0.0.1:{}", dev.scheduler_port)
    );

    // And it joins: the node registers and is Active.
    let agent_dir = bin("persys-agent")
        .parent()
        .expect("dir")
        .display()
        .to_string();
    let path = format!("{agent_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let log = std::fs::File::create(dev.home.path().join("joined.log")).expect("log");
    let mut joined = Command::new("sh")
        .arg("-c")
        // As a person pastes it (plus the in-memory engine); in a process group of
        // its own, stopped as one below.
        .arg(format!("{command} --runtime fake"))
        .process_group(0)
        .env("PATH", path)
        .env_remove("PERSYS_JOIN_TOKEN")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("the printed command runs");
    let _group = Group(i32::try_from(joined.id()).expect("pid"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if node_status(&config, "joined-1").as_deref() == Some("Active") {
            break;
        }
        let exited = joined.try_wait().expect("try_wait");
        if exited.is_some() || Instant::now() >= deadline {
            let log =
                std::fs::read_to_string(dev.home.path().join("joined.log")).unwrap_or_default();
            panic!("the joined node is not Active ({exited:?}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dev.data.join("agent-joined-1/node.crt").is_file());
    let group = Pid::from_raw(-i32::try_from(joined.id()).expect("pid"));
    kill(group, Signal::SIGTERM).expect("stop the joined node");
    let _ = joined.wait();

    // A scheduler's own data dir needs the URL new nodes reach it at.
    let out = persys(
        &config,
        &[
            "node",
            "join-command",
            "--data-dir",
            &format!("{data}/scheduler"),
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--scheduler-url"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill(dev.pid(), Signal::SIGTERM).expect("sigterm");
    let status = dev
        .wait(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
}
