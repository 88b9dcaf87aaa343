//! `persys dev`: a whole local cluster in the foreground.
//!
//! etcd (Debian's `etcd`, unless `--etcd-endpoints`) → `persys-scheduler` (creates the
//! PKI and join token in `DIR/scheduler`) → `persys-dns` (answers the cluster's DNS
//! records on a free port it writes to `DIR/dns-addr`; skipped with a warning when it
//! is not built) → `persys-gateway` (writes an admin token to
//! `DIR/gateway/admin-token`; skipped with a warning when it is not built) →
//! `DIR/config.yaml` (pointing at the gateway) → N `persys-agent`s and, with
//! `--sim-nodes`, one `persys-agent sim` → wait until every node is Active → run until
//! Ctrl-C/SIGTERM, then stop the children in reverse order. Each child's pid is in
//! `DIR/pids/<name>.pid` while it runs. A child that dies during startup stops
//! `persys dev` with its error; once the cluster is up, a child that dies is reported
//! and started again with backoff ([`supervise`]) while the others keep running.

pub mod child;
pub mod dns;
mod gateway;
pub mod layout;
pub mod net;
pub mod programs;
pub mod summary;
pub mod supervise;

use crate::args::DevArgs;
use crate::client::ApiClient;
use crate::config::{self, Config};
use anyhow::{bail, Context};
use child::{Stage, Supervisor};
use layout::Layout;
use persys_proto::{NodeList, NodeStatus};
use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
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
/// Extra startup time per simulated node (they register a few dozen at a time).
const STARTUP_PER_SIM_NODE: Duration = Duration::from_millis(50);
/// Connections each scheduler listener accepts beyond one per simulated node (the
/// gateway, CLIs, real agents).
const SCHEDULER_SPARE_CONNECTIONS: u32 = 1024;
/// Node ids of the simulated fleet are `<this><i>`.
const SIM_PREFIX: &str = "sim-";

/// Run `persys dev` until interrupted (Ok) or until a child fails (Err).
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let gateway = programs::find("persys-gateway");
    if gateway.is_none() {
        crate::output::say(
            "warning: persys-gateway is not built (build it with `cargo build -p persys-gateway`); \
             starting without it, the config points at the scheduler",
        );
    }
    let plan = net::plan_ports(
        args.scheduler_port,
        args.bootstrap_port,
        gateway.is_some().then_some(args.gateway_port),
        args.agent_port,
        args.real_agents(),
    )
    .map_err(anyhow::Error::msg)?;
    net::ensure_free(&plan).map_err(anyhow::Error::msg)?;
    if args.sim_nodes > 0 {
        // Inherited by every child: the fleet and the scheduler each hold a few sockets
        // per simulated node, past the usual soft limit of 1024 open files.
        raise_fd_limit();
    }
    let layout = Layout::create(&args.data_dir)?;
    let mut signals = listen_for_signals().context("cannot install signal handlers")?;
    let mut sup = Supervisor::new(layout.logs.clone(), layout.pids.clone());
    let mut cluster = Cluster {
        args: &args,
        layout: &layout,
        sup: &mut sup,
        signals: &mut signals,
        etcd_pki: None,
    };
    let outcome = cluster.bring_up_and_serve(gateway.as_deref()).await;
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

/// The cluster being brought up: its arguments, files, children and the signals.
struct Cluster<'a> {
    args: &'a DevArgs,
    layout: &'a Layout,
    sup: &'a mut Supervisor,
    signals: &'a mut watch::Receiver<u32>,
    /// The PKI of the etcd this command started (TLS and client-certificate auth).
    etcd_pki: Option<persys_certs::etcd::EtcdPki>,
}

impl Cluster<'_> {
    async fn bring_up_and_serve(&mut self, gateway: Option<&Path>) -> anyhow::Result<()> {
        let (args, layout) = (self.args, self.layout);
        let etcd_endpoints = match &args.etcd_endpoints {
            Some(e) => {
                // Fail early and clearly rather than through the scheduler's retries.
                let first = e.split(',').next().unwrap_or_default().trim().to_string();
                let http = reqwest::Client::new();
                let what = format!("etcd at {first}");
                if let Flow::Interrupted = self
                    .wait_for(&what, || net::etcd_healthy(&http, &first))
                    .await?
                {
                    return Ok(());
                }
                e.clone()
            }
            None => match self.start_etcd().await? {
                (Flow::Ready, endpoint) => endpoint,
                (Flow::Interrupted, _) => return Ok(()),
            },
        };

        if let Flow::Interrupted = self.start_scheduler(&etcd_endpoints).await? {
            return Ok(());
        }
        let Some(dns) = self.start_dns(&etcd_endpoints).await? else {
            return Ok(());
        };
        let scheduler_url = format!("https://127.0.0.1:{}", args.scheduler_port);
        layout::Endpoints {
            scheduler_url: scheduler_url.clone(),
            bootstrap_url: format!("https://127.0.0.1:{}", args.bootstrap_port),
            agent_host: "127.0.0.1".into(),
        }
        .write(&layout.endpoints())?;
        let client_file = match gateway {
            Some(bin) => match self.start_gateway(bin, &etcd_endpoints).await? {
                Some(file) => file,
                None => return Ok(()),
            },
            None => layout.client_config(args.scheduler_port),
        };
        let home = layout::write_configs(layout, &client_file, config::home_dir().as_deref())?;
        let client = ApiClient::from_config(&Config {
            path: layout.config.clone(),
            file: client_file.clone(),
        })?;

        self.start_agents()?;
        self.start_sim()?;
        let mut expected: Vec<String> = (1..=args.real_agents()).map(|i| args.node_id(i)).collect();
        expected.extend((0..args.sim_nodes).map(|i| format!("{SIM_PREFIX}{i}")));
        let timeout = STARTUP_TIMEOUT + STARTUP_PER_SIM_NODE * args.sim_nodes;
        let flow = wait_for(self.sup, self.signals, "the nodes", timeout, || async {
            all_active(&client, &expected).await
        })
        .await?;
        if let Flow::Interrupted = flow {
            return Ok(());
        }

        let at = summary::Endpoints {
            api: &client_file.api_endpoint,
            scheduler: &scheduler_url,
            gateway: gateway.is_some(),
            etcd: &etcd_endpoints,
            dns,
            domain: &args.cluster_domain,
        };
        crate::output::print_text(&format!(
            "{}\n",
            summary::summary(layout, &at, args.real_agents(), args.sim_nodes, &home)
        ));
        supervise::keep_up(self.sup, self.signals).await;
        Ok(())
    }

    /// Start etcd on two free loopback ports and wait until it is healthy.
    async fn start_etcd(&mut self) -> anyhow::Result<(Flow, String)> {
        let args = self.args;
        let mut planned = vec![args.scheduler_port, args.bootstrap_port, args.gateway_port];
        planned.extend((0..args.real_agents()).filter_map(|i| args.agent_port.checked_add(i)));
        let (client_port, peer_port) =
            net::two_free_ports(&planned).context("cannot find free ports for etcd")?;
        let client_url = format!("https://127.0.0.1:{client_port}");
        let peer_url = format!("https://127.0.0.1:{peer_port}");
        // TLS only, and only clients with a certificate of etcd's own CA: a workload on
        // the host network cannot read or write the cluster's records.
        let pki = persys_certs::etcd::EtcdPki::load_or_create(
            &self.layout.root.join("etcd-pki"),
            &["127.0.0.1".into(), "localhost".into()],
        )
        .context("cannot create etcd's certificates")?;
        crate::output::say(&format!("starting etcd on {client_url}"));
        let mut etcd_args = vec![
            "--name".to_string(),
            "persys-dev".into(),
            "--data-dir".into(),
            self.layout.etcd.display().to_string(),
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
        etcd_args.extend(pki.server_flags());
        let hint =
            "install Debian's etcd-server (apt-get install etcd-server) or pass --etcd-endpoints";
        self.sup.spawn(
            "etcd",
            Stage::Store,
            Path::new("etcd"),
            &etcd_args,
            &[],
            hint,
        )?;
        let http = net::etcd_client(&pki)?;
        self.etcd_pki = Some(pki);
        let flow = self
            .wait_for("etcd", || net::etcd_healthy(&http, &client_url))
            .await?;
        Ok((flow, client_url))
    }

    /// Start the scheduler and wait until its bootstrap port answers.
    async fn start_scheduler(&mut self, etcd_endpoints: &str) -> anyhow::Result<Flow> {
        let (args, layout) = (self.args, self.layout);
        crate::output::say(&format!(
            "starting persys-scheduler on 127.0.0.1:{} (bootstrap {})",
            args.scheduler_port, args.bootstrap_port
        ));
        let mut scheduler_args = vec![
            "--data-dir".to_string(),
            layout.scheduler.display().to_string(),
            "--etcd-endpoints".into(),
            etcd_endpoints.to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", args.scheduler_port),
            "--bootstrap-listen".into(),
            format!("127.0.0.1:{}", args.bootstrap_port),
            "--cluster-domain".into(),
            args.cluster_domain.clone(),
            // Explicit: the agents' restart delay is chosen past it (see supervise).
            "--node-timeout-ms".into(),
            supervise::NODE_TIMEOUT.as_millis().to_string(),
        ];
        if let Some(pki) = &self.etcd_pki {
            scheduler_args.extend(pki.client_flags(persys_certs::Role::Scheduler));
        }
        if args.sim_nodes > 0 {
            // Every simulated node keeps a connection to the API listener.
            let cap = (args.sim_nodes + SCHEDULER_SPARE_CONNECTIONS).max(
                u32::try_from(persys_certs::limits::DEFAULT_MAX_CONNECTIONS_SCHEDULER)
                    .unwrap_or(u32::MAX),
            );
            scheduler_args.extend(["--max-connections".to_string(), cap.to_string()]);
        }
        let (bin, hint) = programs::locate("persys-scheduler");
        self.sup.spawn(
            "scheduler",
            Stage::Scheduler,
            &bin,
            &scheduler_args,
            &[],
            &hint,
        )?;
        let (token_path, ca_path) = (layout.join_token(), layout.ca_cert());
        self.wait_for("persys-scheduler", || async {
            token_path.is_file() && net::bootstrap_healthy(&ca_path, args.bootstrap_port).await
        })
        .await
    }

    /// Start the agents; they join with the token the scheduler wrote.
    fn start_agents(&mut self) -> anyhow::Result<()> {
        let (args, layout) = (self.args, self.layout);
        let token_path = layout.join_token();
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("cannot read {}", token_path.display()))?;
        let token = token.trim();
        let (agent_bin, agent_hint) = programs::locate("persys-agent");
        for i in 1..=args.real_agents() {
            let port = args.agent_port + (i - 1);
            let node_id = args.node_id(i);
            crate::output::say(&format!(
                "starting persys-agent {node_id} on 127.0.0.1:{port}"
            ));
            let agent_args = [
                "--node-id".to_string(),
                node_id,
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
            self.sup.spawn(
                &format!("agent-{i}"),
                Stage::Agents,
                &agent_bin,
                &agent_args,
                &envs,
                &agent_hint,
            )?;
        }
        Ok(())
    }

    /// Start the simulated fleet (`--sim-nodes`): one `persys-agent sim` whose nodes
    /// join with the same token, each on a free port of its own.
    fn start_sim(&mut self) -> anyhow::Result<()> {
        let (args, layout) = (self.args, self.layout);
        if args.sim_nodes == 0 {
            return Ok(());
        }
        let token_path = layout.join_token();
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("cannot read {}", token_path.display()))?;
        let (agent_bin, agent_hint) = programs::locate("persys-agent");
        crate::output::say(&format!(
            "starting {} simulated nodes ({SIM_PREFIX}0..{SIM_PREFIX}{}) in persys-agent sim",
            args.sim_nodes,
            args.sim_nodes - 1
        ));
        let sim_args = [
            "sim".to_string(),
            "--nodes".into(),
            args.sim_nodes.to_string(),
            "--node-prefix".into(),
            SIM_PREFIX.into(),
            "--listen-host".into(),
            "127.0.0.1".into(),
            "--data-dir".into(),
            layout.sim().display().to_string(),
            "--scheduler-url".into(),
            format!("https://127.0.0.1:{}", args.scheduler_port),
            "--bootstrap-url".into(),
            format!("https://127.0.0.1:{}", args.bootstrap_port),
        ];
        let envs = [("PERSYS_JOIN_TOKEN", token.trim())];
        self.sup.spawn(
            "sim",
            Stage::Agents,
            &agent_bin,
            &sim_args,
            &envs,
            &agent_hint,
        )?;
        Ok(())
    }

    /// Probe until `ready`, failing if a child dies or the startup timeout passes, and
    /// returning early on a signal.
    async fn wait_for<F, Fut>(&mut self, what: &str, ready: F) -> anyhow::Result<Flow>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        wait_for(self.sup, self.signals, what, STARTUP_TIMEOUT, ready).await
    }
}

/// Raise the soft open-file limit to the hard one (best effort: a refusal only means
/// a large fleet may run out of sockets, which its log then says).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::debug!(error = %e, "cannot raise the open file limit");
            }
        }
    }
}

/// Probe until `ready`, failing if a child dies or the startup timeout passes, and
/// returning early on a signal.
async fn wait_for<F, Fut>(
    sup: &mut Supervisor,
    signals: &mut watch::Receiver<u32>,
    what: &str,
    timeout: Duration,
    mut ready: F,
) -> anyhow::Result<Flow>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
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
                timeout.as_secs(),
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
        Ok(list) => {
            // A set: with a simulated fleet both lists hold thousands of nodes.
            let active: HashSet<&str> = list
                .nodes
                .iter()
                .filter(|n| n.status == NodeStatus::Active)
                .map(|n| n.node_id.as_str())
                .collect();
            expected.iter().all(|id| active.contains(id.as_str()))
        }
        Err(e) => {
            tracing::debug!(error = %e, "nodes not ready");
            false
        }
    }
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
