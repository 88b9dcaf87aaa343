//! Leader failover time: `persys-scheduler` replicas as separate processes on one etcd,
//! sharing a data dir. Each trial kills the leader with SIGKILL (kill -9) at a random
//! moment and measures the time until another replica answers `GET /cluster/leader`
//! with `"self": true`, which a replica does only once its loops have started. The
//! killed replica is then restarted (it follows) before the next trial.
//!
//! `cargo bench -p persys-scheduler --bench failover`
//! (`PERSYS_BENCH_TRIALS`, default 20; `PERSYS_BENCH_REPLICAS`, default 2)

use anyhow::{bail, Context, Result};
use rand::Rng;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCHEDULER: &str = env!("CARGO_BIN_EXE_persys-scheduler");
/// How often the survivors are asked who leads.
const POLL: Duration = Duration::from_millis(10);

fn free_port() -> Result<u16> {
    Ok(persys_testports::free_port())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A child process killed (SIGKILL) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_etcd(dir: &Path) -> Result<(Proc, String)> {
    let (client, peer) = (free_port()?, free_port()?);
    let endpoint = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("/usr/bin/etcd")
        .arg("--data-dir")
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &endpoint])
        .args(["--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting /usr/bin/etcd")?;
    Ok((Proc(child), endpoint))
}

/// One replica: its ports, id and (while running) process.
struct Replica {
    id: String,
    api: u16,
    bootstrap: u16,
    proc: Option<Proc>,
}

impl Replica {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api)
    }

    fn start(&mut self, etcd: &str, dir: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.log", self.id)))?;
        let child = Command::new(SCHEDULER)
            .args(["--etcd-endpoints", etcd])
            .args(["--listen", &format!("127.0.0.1:{}", self.api)])
            .args([
                "--bootstrap-listen",
                &format!("127.0.0.1:{}", self.bootstrap),
            ])
            .arg("--data-dir")
            .arg(dir.join("scheduler"))
            .args(["--replica-id", &self.id])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting persys-scheduler")?;
        self.proc = Some(Proc(child));
        Ok(())
    }

    /// kill -9.
    fn kill(&mut self) {
        self.proc = None;
    }
}

/// The admin client (certificate written by the first replica).
async fn admin(dir: &Path) -> Result<reqwest::Client> {
    let d = dir.join("scheduler");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.join("admin.key").exists() {
        if Instant::now() > deadline {
            bail!("no admin certificate in {}", d.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let read = |f: &str| std::fs::read_to_string(d.join(f)).with_context(|| f.to_string());
    let tls = persys_certs::client_config(
        &read("ca.crt")?,
        Some((&read("admin.crt")?, &read("admin.key")?)),
        persys_certs::Expected::role(persys_certs::Role::Scheduler),
    )?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_millis(500))
        .build()?)
}

/// `GET /cluster/leader` of one replica: (leader id, self).
async fn ask(http: &reqwest::Client, r: &Replica) -> Option<(Option<String>, bool)> {
    let v: serde_json::Value = http
        .get(format!("{}/cluster/leader", r.url()))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some((v["leader"].as_str().map(String::from), v["self"] == true))
}

/// Wait until every running replica answers and agrees on one leader that says so;
/// its index.
async fn settled(http: &reqwest::Client, replicas: &[Replica], within: Duration) -> Result<usize> {
    let deadline = Instant::now() + within;
    loop {
        let mut views = Vec::new();
        for r in replicas.iter().filter(|r| r.proc.is_some()) {
            views.push(ask(http, r).await);
        }
        let leaders: Vec<usize> = replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.proc.is_some())
            .zip(&views)
            .filter(|(_, v)| v.as_ref().is_some_and(|(_, me)| *me))
            .map(|((i, _), _)| i)
            .collect();
        if let [l] = leaders[..] {
            let id = &replicas[l].id;
            if views.iter().all(|v| {
                v.as_ref()
                    .is_some_and(|(who, _)| who.as_deref() == Some(id))
            }) {
                return Ok(l);
            }
        }
        if Instant::now() > deadline {
            bail!("replicas did not agree on a leader within {within:?}: {views:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Kill the leader; time until a survivor leads with its loops started.
async fn trial(
    http: &reqwest::Client,
    replicas: &mut [Replica],
    leader: usize,
) -> Result<(Duration, usize)> {
    replicas[leader].kill();
    let killed = Instant::now();
    loop {
        for (i, r) in replicas.iter().enumerate() {
            if i != leader && matches!(ask(http, r).await, Some((_, true))) {
                return Ok((killed.elapsed(), i));
            }
        }
        if killed.elapsed() > Duration::from_secs(30) {
            bail!("no replica took over within 30 s");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run() -> Result<()> {
    let trials = env_usize("PERSYS_BENCH_TRIALS", 20).max(1);
    let count = env_usize("PERSYS_BENCH_REPLICAS", 2).max(2);
    let dir = tempfile::tempdir()?;
    let (_etcd, endpoint) = start_etcd(dir.path())?;
    let mut replicas = (0..count)
        .map(|i| {
            Ok(Replica {
                id: format!("r{i}"),
                api: free_port()?,
                bootstrap: free_port()?,
                proc: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for r in &mut replicas {
        r.start(&endpoint, dir.path())?;
    }
    let http = admin(dir.path()).await?;
    let mut leader = settled(&http, &replicas, Duration::from_secs(30)).await?;
    let mut times = Vec::with_capacity(trials);
    for n in 1..=trials {
        // Land the kill anywhere in the renewal period.
        let jitter = rand::thread_rng().gen_range(0..600);
        tokio::time::sleep(Duration::from_millis(500 + jitter)).await;
        let (took, next) = trial(&http, &mut replicas, leader).await?;
        println!(
            "trial {n:>3}: r{leader} killed, r{next} leads after {:.0} ms",
            ms(took)
        );
        times.push(took);
        replicas[leader].start(&endpoint, dir.path())?;
        leader = settled(&http, &replicas, Duration::from_secs(30)).await?;
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "leader failover (kill -9 → another replica leads with its loops started), {} replicas, {trials} trials: p50 {:.0} ms, p99 {:.0} ms, mean {:.0} ms, min {:.0} ms, max {:.0} ms (lease TTL {} s, renewals every {} ms; target ≤ 3000 ms)",
        count,
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 99.0)),
        ms(mean),
        ms(times[0]),
        ms(times[times.len() - 1]),
        persys_scheduler::leader::LEASE_TTL_SECS,
        persys_scheduler::leader::RENEW_EVERY.as_millis(),
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failover bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("failover bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
