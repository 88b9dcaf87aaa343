//! `persys dev`: a whole local cluster in the foreground.
//!
//! etcd (Debian's `etcd`, unless `--etcd-endpoints`) → `persys-scheduler` (creates the
//! PKI and join token in `DIR/scheduler`) → `DIR/config.yaml` → N `persys-agent`s →
//! wait until every node is Active → run until Ctrl-C/SIGTERM, then stop the children
//! in reverse order. A child that dies meanwhile stops the cluster with an error.

pub mod child;
pub mod layout;
pub mod net;

use crate::args::DevArgs;
use crate::client::ApiClient;
use crate::config::{self, Config};
use anyhow::{bail, Context};
use child::{Stage, Supervisor};
use layout::{HomeConfig, Layout};
use persys_proto::{NodeList, NodeStatus};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long each child may take to become ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long children get between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// Run `persys dev` until interrupted (Ok) or until a child fails (Err).
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let plan = net::plan_ports(
        args.scheduler_port,
        args.bootstrap_port,
        args.agent_port,
        args.agents,
    )
    .map_err(anyhow::Error::msg)?;
    net::ensure_free(&plan).map_err(anyhow::Error::msg)?;
    let layout = Layout::create(&args.data_dir)?;
    let mut signals = listen_for_signals().context("cannot install signal handlers")?;
    let mut sup = Supervisor::new(layout.logs.clone());
    let outcome = bring_up_and_serve(&args, &layout, &mut sup, &mut signals).await;
    if !sup.is_empty() {
        // Only a signal after this point means "hurry" (SIGKILL without waiting).
        signals.borrow_and_update();
        crate::output::say("stopping the cluster...");
        sup.shutdown(STOP_GRACE, &mut signals).await;
    }
    if outcome.is_ok() {
        crate::output::say(&format!("stopped; state kept in {}", layout.root.display()));
    }
    outcome
}

/// Whether startup ran to the end or was interrupted by a signal.
enum Flow {
    Ready,
    Interrupted,
}

async fn bring_up_and_serve(
    args: &DevArgs,
    layout: &Layout,
    sup: &mut Supervisor,
    signals: &mut watch::Receiver<u32>,
) -> anyhow::Result<()> {
    let etcd_endpoints = match &args.etcd_endpoints {
        Some(e) => {
            // Fail early and clearly rather than through the scheduler's retries.
            let first = e.split(',').next().unwrap_or_default().trim().to_string();
            let http = reqwest::Client::new();
            let what = format!("etcd at {first}");
            if let Flow::Interrupted =
                wait_for(sup, signals, &what, || net::etcd_healthy(&http, &first)).await?
            {
                return Ok(());
            }
            e.clone()
        }
        None => match start_etcd(layout, sup, signals).await? {
            (Flow::Ready, endpoint) => endpoint,
            (Flow::Interrupted, _) => return Ok(()),
        },
    };

    crate::output::say(&format!(
        "starting persys-scheduler on 127.0.0.1:{} (bootstrap {})",
        args.scheduler_port, args.bootstrap_port
    ));
    let scheduler_args = [
        "--data-dir".to_string(),
        layout.scheduler.display().to_string(),
        "--etcd-endpoints".into(),
        etcd_endpoints.clone(),
        "--listen".into(),
        format!("127.0.0.1:{}", args.scheduler_port),
        "--bootstrap-listen".into(),
        format!("127.0.0.1:{}", args.bootstrap_port),
    ];
    let (bin, hint) = locate("persys-scheduler");
    sup.spawn(
        "scheduler",
        Stage::Scheduler,
        &bin,
        &scheduler_args,
        &[],
        &hint,
    )?;
    let (token_path, ca_path) = (layout.join_token(), layout.ca_cert());
    let flow = wait_for(sup, signals, "persys-scheduler", || async {
        token_path.is_file() && net::bootstrap_healthy(&ca_path, args.bootstrap_port).await
    })
    .await?;
    if let Flow::Interrupted = flow {
        return Ok(());
    }

    let client_file = layout.client_config(args.scheduler_port);
    let home = layout::write_configs(layout, &client_file, config::home_dir().as_deref())?;
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read {}", token_path.display()))?;
    let token = token.trim();

    let (agent_bin, agent_hint) = locate("persys-agent");
    for i in 1..=args.agents {
        let port = args.agent_port + (i - 1);
        crate::output::say(&format!(
            "starting persys-agent node-{i} on 127.0.0.1:{port}"
        ));
        let agent_args = [
            "--node-id".to_string(),
            format!("node-{i}"),
            "--data-dir".into(),
            layout.agent(i).display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--advertise-address".into(),
            "127.0.0.1".into(),
            "--scheduler-url".into(),
            format!("https://127.0.0.1:{}", args.scheduler_port),
            "--bootstrap-url".into(),
            format!("https://127.0.0.1:{}", args.bootstrap_port),
        ];
        // The token goes by environment, not argv, so `ps` does not show it.
        let envs = [("PERSYS_JOIN_TOKEN", token)];
        sup.spawn(
            &format!("agent-{i}"),
            Stage::Agents,
            &agent_bin,
            &agent_args,
            &envs,
            &agent_hint,
        )?;
    }

    let client = ApiClient::from_config(&Config {
        path: layout.config.clone(),
        file: client_file.clone(),
    })?;
    let expected: Vec<String> = (1..=args.agents).map(|i| format!("node-{i}")).collect();
    let flow = wait_for(sup, signals, "the agents", || async {
        all_active(&client, &expected).await
    })
    .await?;
    if let Flow::Interrupted = flow {
        return Ok(());
    }

    crate::output::print_text(&format!(
        "{}\n",
        summary(
            layout,
            &client_file.api_endpoint,
            &etcd_endpoints,
            args.agents,
            &home
        )
    ));
    tokio::select! {
        _ = signals.changed() => Ok(()),
        died = sup.wait_any_exit() => Err(died.into()),
    }
}

/// Start etcd on two free loopback ports and wait until it is healthy.
async fn start_etcd(
    layout: &Layout,
    sup: &mut Supervisor,
    signals: &mut watch::Receiver<u32>,
) -> anyhow::Result<(Flow, String)> {
    let (client_port, peer_port) =
        net::two_free_ports().context("cannot find free ports for etcd")?;
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    crate::output::say(&format!("starting etcd on {client_url}"));
    let etcd_args = [
        "--name".to_string(),
        "persys-dev".into(),
        "--data-dir".into(),
        layout.etcd.display().to_string(),
        "--listen-client-urls".into(),
        client_url.clone(),
        "--advertise-client-urls".into(),
        client_url.clone(),
        "--listen-peer-urls".into(),
        peer_url.clone(),
        "--initial-advertise-peer-urls".into(),
        peer_url.clone(),
        "--initial-cluster".into(),
        format!("persys-dev={peer_url}"),
    ];
    let hint =
        "install Debian's etcd-server (apt-get install etcd-server) or pass --etcd-endpoints";
    sup.spawn(
        "etcd",
        Stage::Store,
        Path::new("etcd"),
        &etcd_args,
        &[],
        hint,
    )?;
    let http = reqwest::Client::new();
    let flow = wait_for(sup, signals, "etcd", || {
        net::etcd_healthy(&http, &client_url)
    })
    .await?;
    Ok((flow, client_url))
}

/// Probe until `ready`, failing if a child dies or the startup timeout passes, and
/// returning early on a signal.
async fn wait_for<F, Fut>(
    sup: &mut Supervisor,
    signals: &mut watch::Receiver<u32>,
    what: &str,
    mut ready: F,
) -> anyhow::Result<Flow>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        sup.check_alive()?;
        if *signals.borrow() > 0 {
            return Ok(Flow::Interrupted);
        }
        if ready().await {
            return Ok(Flow::Ready);
        }
        if Instant::now() >= deadline {
            bail!(
                "{what} did not become ready within {}s; see the logs in {}",
                STARTUP_TIMEOUT.as_secs(),
                sup.logs_dir().display()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = signals.changed() => {}
        }
    }
}

/// Whether every expected node is registered and Active.
async fn all_active(client: &ApiClient, expected: &[String]) -> bool {
    match client.get::<NodeList>("/nodes").await {
        Ok(list) => expected.iter().all(|id| {
            list.nodes
                .iter()
                .any(|n| &n.node_id == id && n.status == NodeStatus::Active)
        }),
        Err(e) => {
            tracing::debug!(error = %e, "nodes not ready");
            false
        }
    }
}

/// A program next to the current executable (how `cargo build` and installs lay them
/// out), else by name on PATH; with a hint for when it is missing.
fn locate(name: &str) -> (PathBuf, String) {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)));
    let hint = format!(
        "not next to {} nor on PATH; build it with `cargo build -p {name}`",
        beside
            .as_ref()
            .and_then(|p| p.parent())
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "persys".into())
    );
    match beside {
        Some(p) if p.is_file() => (p, hint),
        _ => (PathBuf::from(name), hint),
    }
}

/// What a person needs once the cluster is up.
fn summary(layout: &Layout, endpoint: &str, etcd: &str, agents: u16, home: &HomeConfig) -> String {
    let home_line = match home {
        HomeConfig::Written(p) => format!("\n  also written:   {} (none existed)", p.display()),
        HomeConfig::Same(p) => format!("\n  also in:        {}", p.display()),
        HomeConfig::Kept(p) => format!(
            "\n  left alone:     {} (points elsewhere; use PERSYS_CONFIG)",
            p.display()
        ),
        HomeConfig::NoHome => String::new(),
    };
    format!(
        "persys dev cluster is up: {agents} node(s) Active\n\
         \x20 API endpoint:   {endpoint}\n\
         \x20 client config:  {}{home_line}\n\
         \x20 etcd:           {etcd}\n\
         \x20 logs:           {}\n\
         \n\
         \x20 export PERSYS_CONFIG={}\n\
         \x20 persys run --name hello --wait busybox:local -- sh -c 'echo hello; sleep 3600'\n\
         \x20 persys workload list\n\
         \n\
         Press Ctrl-C to stop.",
        layout.config.display(),
        layout.logs.display(),
        layout.config.display(),
    )
}

/// A counter of SIGINT/SIGTERM/SIGHUP received: 1 means stop, 2 means hurry.
fn listen_for_signals() -> std::io::Result<watch::Receiver<u32>> {
    let (tx, rx) = watch::channel(0u32);
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            tx.send_modify(|n| *n += 1);
        }
    });
    Ok(rx)
}
