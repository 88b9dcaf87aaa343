//! `persys-agent sim`: many simulated nodes in one process, real to the scheduler.
//!
//! Each node is a whole agent ([`crate::run_with`]): its own key and CSR registered
//! with the join token on the bootstrap port, its own certificate, mTLS API listener,
//! heartbeats, event follower and status reports, over its own [`FakeRuntime`]. What
//! the nodes share is what carries no identity: the tokio runtime, the rustls crypto
//! provider, the host facts (detected once) and the process's metrics. Registrations
//! go through a semaphore (`--max-concurrent-joins`) so that a thousand nodes do not
//! hit the bootstrap port as one herd.

use crate::config::{RuntimeKind, SimArgs};
use crate::host::HostFacts;
use crate::runtime::fake::FakeRuntime;
use crate::{ensure_data_dir, run_with, AgentError, Config, NodeHooks};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Progress is logged every this many registered nodes (and at the last).
const PROGRESS_EVERY: u32 = 100;

/// The flags of simulated node `i`.
pub fn node_config(args: &SimArgs, i: u32) -> Result<Config, AgentError> {
    let node_id = args.node_id(i);
    let listen = args.listen(i).ok_or_else(|| {
        AgentError::Usage(format!(
            "--base-port {} leaves no port for node {i} of {}",
            args.base_port, args.nodes
        ))
    })?;
    Ok(Config {
        data_dir: args.agent.data_dir.join(&node_id),
        node_id: Some(node_id),
        listen,
        runtime: RuntimeKind::Fake,
        docker_host: None,
        ..args.agent.clone()
    })
}

/// Run `args.nodes` simulated nodes until `shutdown`. A node that fails (e.g. its
/// registration refused) is logged and the others run on: one lost node must not end
/// a benchmark of a thousand. The result names the failures, if any.
pub async fn run(args: SimArgs, shutdown: CancellationToken) -> Result<(), AgentError> {
    if args.agent.node_id.is_some() {
        tracing::warn!("--node-id does not apply to sim (nodes are <prefix><i>); ignored");
    }
    // Fail on a bad port range before any node registers.
    let configs = (0..args.nodes)
        .map(|i| node_config(&args, i))
        .collect::<Result<Vec<_>, _>>()?;
    ensure_data_dir(&args.agent.data_dir)?;
    raise_fd_limit();
    let facts = HostFacts::detect(args.agent.cpu, args.agent.memory_mb);
    let permits = Arc::new(Semaphore::new(args.max_concurrent_joins as usize));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    tracing::info!(
        nodes = args.nodes,
        max_concurrent_joins = args.max_concurrent_joins,
        "starting simulated nodes"
    );
    let mut nodes = JoinSet::new();
    for (i, config) in (0_u64..).zip(configs) {
        let node_id = config.node_id.clone().unwrap_or_default();
        let runtime = Arc::new(FakeRuntime::with_options(config.fake.options(i)));
        let hooks = NodeHooks {
            join_permits: Some(permits.clone()),
            // Node lists then tell the simulated nodes apart by host name too.
            facts: Some(HostFacts {
                hostname: node_id.clone(),
                ..facts.clone()
            }),
            ready: Some(ready_tx.clone()),
            // Simulated nodes have no engine to run Compose projects on.
            compose: None,
        };
        let span = tracing::info_span!("node", id = %node_id);
        let stop = shutdown.clone();
        nodes.spawn(
            async move {
                let result = run_with(config, runtime, hooks, stop).await;
                (node_id, result)
            }
            .instrument(span),
        );
    }
    drop(ready_tx);

    let mut ready = 0_u32;
    let mut failed: Vec<(String, AgentError)> = Vec::new();
    while !nodes.is_empty() {
        tokio::select! {
            Some(_) = ready_rx.recv() => {
                ready += 1;
                if ready == args.nodes {
                    tracing::info!(nodes = ready, elapsed_ms = started.elapsed().as_millis() as u64, "all simulated nodes registered and serving");
                } else if ready.is_multiple_of(PROGRESS_EVERY) {
                    tracing::info!(ready, of = args.nodes, elapsed_ms = started.elapsed().as_millis() as u64, "simulated nodes registered");
                }
            }
            Some(done) = nodes.join_next() => {
                let (node_id, error) = match done {
                    Ok((_, Ok(()))) => continue,
                    Ok((node_id, Err(e))) => (node_id, e),
                    Err(e) => ("?".to_string(), AgentError::SimTask(e.to_string())),
                };
                tracing::error!(node_id = %node_id, error = %error, running = nodes.len(), "simulated node failed; the others run on");
                failed.push((node_id, error));
            }
        }
    }
    tracing::info!(
        nodes = args.nodes,
        failed = failed.len(),
        "simulated nodes stopped"
    );
    let count = failed.len();
    match failed.into_iter().next() {
        None => Ok(()),
        Some((node_id, source)) => Err(AgentError::SimNodes {
            failed: count,
            node_id,
            source: Box::new(source),
        }),
    }
}

/// A thousand nodes hold a few thousand sockets (listeners, connections to and from
/// the scheduler); many systems start processes with a soft limit of 1024 open files.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open file limit"),
            Err(e) => tracing::warn!(error = %e, soft, "cannot raise the open file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open file limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn sim(args: &[&str]) -> SimArgs {
        let argv = ["persys-agent", "sim"]
            .into_iter()
            .chain(args.iter().copied());
        match crate::Cli::try_parse_from(argv).expect("parses").command {
            Some(crate::Command::Sim(s)) => s,
            None => panic!("sim expected"),
        }
    }

    #[test]
    fn each_node_gets_its_id_data_dir_port_and_the_fake_runtime() {
        let args = sim(&[
            "--nodes",
            "2",
            "--data-dir",
            "/tmp/fleet",
            "--base-port",
            "7000",
            "--node-prefix",
            "n",
            "--labels",
            "zone=a",
        ]);
        let c = node_config(&args, 1).expect("config");
        assert_eq!(c.node_id.as_deref(), Some("n1"));
        assert_eq!(c.data_dir, std::path::Path::new("/tmp/fleet/n1"));
        assert_eq!(c.listen.port(), 7001);
        assert_eq!(c.runtime, RuntimeKind::Fake);
        assert_eq!(c.labels["zone"], "a");
    }

    #[test]
    fn a_port_range_past_65535_is_refused_before_anything_starts() {
        let args = sim(&["--nodes", "10", "--base-port", "65530"]);
        let e = node_config(&args, 9).expect_err("no port");
        assert!(e.to_string().contains("--base-port 65530"), "{e}");
    }
}
