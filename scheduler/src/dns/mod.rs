//! CoreDNS (skydns) records: `/skydns/<reversed domain labels>/<name>` for nodes, and
//! for workloads and services ([`workloads`]: what each workload should have,
//! [`controller`]: the leader loop that keeps etcd so). The record type and the key
//! layout are `persys_proto::dns`, shared with `persys-dns`, which serves them.

pub mod controller;
pub mod workloads;

pub use persys_proto::dns::{node_fqdn, node_key, DnsRecord, TTL};
