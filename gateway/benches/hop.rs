//! The added latency of the gateway hop: `GET /workloads/{id}` straight to a stand-in
//! scheduler over mTLS vs. through the gateway (bearer token, TLS, auth, rate-limit
//! check, mTLS forward), p50/p99 over sequential calls, and requests/s under
//! concurrency. Everything (client, gateway, stand-in, etcd) shares this machine.
//!
//! `cargo bench -p persys-gateway --bench hop` (env `HOP_REQUESTS`, `HOP_SECONDS`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::{client, scheduler, Etcd, Gateway, Pki};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn sequential(c: &reqwest::Client, url: &str, token: Option<&str>, n: u64) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let mut req = c.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let started = Instant::now();
        let resp = req.send().await.expect("answer");
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.bytes().await.expect("body");
        out.push(started.elapsed());
    }
    out.sort();
    out
}

async fn throughput(
    c: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    workers: usize,
    secs: u64,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (c, url, token) = (c.clone(), url.to_string(), token.map(String::from));
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let mut req = c.get(&url);
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let resp = req.send().await.expect("answer");
                assert!(resp.status().is_success());
                resp.bytes().await.expect("body");
                done += 1;
            }
            done
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("worker");
    }
    total as f64 / started.elapsed().as_secs_f64().max(secs as f64)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let n = env_or("HOP_REQUESTS", 2000);
    let secs = env_or("HOP_SECONDS", 5);
    let pki = Pki::new();
    let etcd = Etcd::start(pki.dir.path()).await;
    let sched = scheduler::start(&pki.ca).await;
    let gw = Gateway::start(
        &pki,
        &etcd.endpoint,
        &[sched.url()],
        &["--rate-limit-per-second", "0"],
    )
    .await;
    let token = gw.admin_token().await;
    let direct = client(&pki, Some(&pki.client_cert("admin")));
    let through = client(&pki, None);
    let direct_url = format!("{}/workloads/w-main", sched.url());
    let gw_url = gw.url("/workloads/w-main");

    // Warm up connections, caches and the allocator on both paths.
    sequential(&direct, &direct_url, None, 200).await;
    sequential(&through, &gw_url, Some(&token), 200).await;

    let d = sequential(&direct, &direct_url, None, n).await;
    let g = sequential(&through, &gw_url, Some(&token), n).await;
    let (d50, d99, g50, g99) = (
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        percentile(&g, 0.5),
        percentile(&g, 0.99),
    );
    println!("GET /workloads/{{id}}, {n} sequential requests each (keep-alive, TLS):");
    println!(
        "  direct (mTLS to the scheduler): p50 {:.3} ms  p99 {:.3} ms",
        ms(d50),
        ms(d99)
    );
    println!(
        "  through the gateway:            p50 {:.3} ms  p99 {:.3} ms",
        ms(g50),
        ms(g99)
    );
    println!(
        "  added by the hop:               p50 {:.3} ms  p99 {:.3} ms",
        ms(g50.saturating_sub(d50)),
        ms(g99.saturating_sub(d99))
    );
    for workers in [1usize, 16] {
        let rd = throughput(&direct, &direct_url, None, workers, secs).await;
        let rg = throughput(&through, &gw_url, Some(&token), workers, secs).await;
        println!("  requests/s with {workers:>2} concurrent clients, {secs} s: direct {rd:.0}  through the gateway {rg:.0}");
    }
    gw.shutdown.cancel();
    let _ = gw.done.await;
}
