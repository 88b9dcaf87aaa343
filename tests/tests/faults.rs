//! Fault tests of the self-healing issue: nodes are separate hosts (network namespaces
//! sharing the Docker engine), killed, partitioned, slowed; the leader scheduler and etcd
//! are killed; containers crash; nodes are drained; every binary gets SIGTERM.
//!
//! Needs root (ip netns, iptables) and the built binaries:
//! `cargo build --workspace --bins && cargo test -p persys-tests --test faults -- --test-threads=1`.

#[path = "faults/common.rs"]
mod common;
#[path = "faults/drain.rs"]
mod drain;
#[path = "faults/etcd_outage.rs"]
mod etcd_outage;
#[path = "faults/etcd_stall.rs"]
mod etcd_stall;
#[path = "faults/leader.rs"]
mod leader;
#[path = "faults/netem.rs"]
mod netem;
#[path = "faults/node_loss.rs"]
mod node_loss;
#[path = "faults/partition.rs"]
mod partition;
#[path = "faults/restarts.rs"]
mod restarts;
#[path = "faults/shutdown.rs"]
mod shutdown;
