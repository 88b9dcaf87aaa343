//! persys scheduler: the API, placement, the etcd store, dispatch to agents, liveness
//! and reconciliation. `run` is the whole service; `main.rs` only parses flags.

pub mod cache;
pub mod config;
pub mod store;

#[cfg(test)]
pub(crate) mod testutil;
