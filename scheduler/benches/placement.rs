//! Placement decisions per second at 1,000 in-memory nodes.
//!
//! `cargo bench -p persys-scheduler --bench placement`
//!
//! The nodes are fakes (ids `fake-node-NNNN`) with varied labels, capacity and
//! status. Workloads keep arriving and, to hold the cluster at a steady state,
//! the oldest placements are released once `LIVE_WORKLOADS` are running.

use persys_proto::{Node, NodeStatus, Resources, RestartPolicy, WorkloadSpec, WorkloadType};
use persys_scheduler::placement::{place, Allocation, Candidate, Strategy};
use std::collections::{BTreeMap, VecDeque};
use std::hint::black_box;
use std::time::{Duration, Instant};

const NODES: usize = 1_000;
const DECISIONS: usize = 100_000;
const WARMUP: usize = 5_000;
const LIVE_WORKLOADS: usize = 5_000;
const REGIONS: [&str; 3] = ["eu", "us", "ap"];
const DISKS: [&str; 2] = ["ssd", "hdd"];

/// Deterministic xorshift so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn fake_nodes(rng: &mut Rng) -> Vec<Node> {
    (0..NODES)
        .map(|i| {
            let cores = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0][rng.below(6) as usize];
            let memory = [4_096, 8_192, 16_384, 65_536, 262_144][rng.below(5) as usize];
            let status = match rng.below(100) {
                0..=3 => NodeStatus::Inactive,
                4 => NodeStatus::Cordoned,
                _ => NodeStatus::Active,
            };
            let region = REGIONS[rng.below(3) as usize];
            let disk = DISKS[rng.below(2) as usize];
            let zone = format!("{region}-{}", rng.below(4));
            Node {
                node_id: format!("fake-node-{i:04}"),
                hostname: format!("fake-node-{i:04}"),
                ip_address: format!("10.0.{}.{}", i / 250, i % 250 + 1),
                agent_port: 8080,
                os_name: "linux".into(),
                kernel_version: "fake".into(),
                status,
                total_cpu: cores,
                total_memory: memory,
                available_cpu: cores,
                available_memory: memory,
                allocated_cpu: 0,
                allocated_memory: 0,
                labels: labels(&[
                    ("region", region),
                    ("zone", &zone),
                    ("disk", disk),
                    ("persys.dev/fake", "true"),
                ]),
                domain_name: String::new(),
                last_heartbeat: None,
                registered_at: chrono::DateTime::UNIX_EPOCH,
                cert_serial: None,
            }
        })
        .collect()
}

fn workload_specs() -> Vec<WorkloadSpec> {
    let spec = |cpu, memory, selector: &[(&str, &str)]| WorkloadSpec {
        name: "bench".into(),
        kind: WorkloadType::DockerContainer,
        image: "busybox:local".into(),
        command: None,
        env_vars: BTreeMap::new(),
        ports: Vec::new(),
        volumes: Vec::new(),
        network: None,
        restart_policy: RestartPolicy::No,
        resources: Resources { cpu, memory },
        labels: BTreeMap::new(),
        node_selector: labels(selector),
        ..Default::default()
    };
    vec![
        spec(0, 0, &[]),
        spec(250, 128, &[]),
        spec(500, 512, &[("region", "eu")]),
        spec(1_000, 2_048, &[("region", "us"), ("disk", "ssd")]),
        spec(2_000, 4_096, &[("disk", "ssd")]),
        spec(100, 64, &[("zone", "ap-1")]),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn run(strategy: Strategy) {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let nodes = fake_nodes(&mut rng);
    let specs = workload_specs();
    let mut candidates: Vec<Candidate<'_>> = nodes
        .iter()
        .map(|node| Candidate {
            node,
            allocated: Allocation::default(),
        })
        .collect();
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.node_id.as_str(), i))
        .collect();
    let mut live: VecDeque<(usize, usize)> = VecDeque::with_capacity(LIVE_WORKLOADS + 1);
    let mut latencies = Vec::with_capacity(DECISIONS);
    let mut unplaced = 0usize;
    let mut first_failure: Option<String> = None;

    for i in 0..WARMUP + DECISIONS {
        let which = rng.below(specs.len() as u64) as usize;
        let spec = &specs[which];
        let start = Instant::now();
        let decision = place(spec, black_box(&candidates), strategy);
        let elapsed = start.elapsed();
        match black_box(decision) {
            Ok(placement) => {
                // Bookkeeping is the caller's job, outside the timed decision.
                let node = index[placement.node_id.as_str()];
                candidates[node].allocated.add(&spec.resources);
                live.push_back((node, which));
                if live.len() > LIVE_WORKLOADS {
                    if let Some((old_node, old_spec)) = live.pop_front() {
                        candidates[old_node]
                            .allocated
                            .remove(&specs[old_spec].resources);
                    }
                }
            }
            Err(e) => {
                // Binpack can exhaust a small label pool (e.g. region=us,disk=ssd):
                // genuine behaviour, and it times the failure path too.
                first_failure.get_or_insert_with(|| e.to_string());
                unplaced += 1;
            }
        }
        if i == WARMUP {
            latencies.clear();
        }
        latencies.push(elapsed);
    }
    let measured: Duration = latencies.iter().sum();
    latencies.sort_unstable();
    let per_second = latencies.len() as f64 / measured.as_secs_f64();
    println!(
        "placement/{strategy}: {NODES} nodes, {} decisions: {per_second:.0} decisions/s, \
         p50 {:?}, p99 {:?}, max {:?} ({unplaced} unplaceable)",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    if let Some(reason) = first_failure {
        println!("  first unplaceable: {reason}");
    }
}

fn main() {
    for strategy in [Strategy::Spread, Strategy::Binpack] {
        run(strategy);
    }
}
