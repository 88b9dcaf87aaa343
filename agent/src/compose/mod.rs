//! Compose projects on this node: a workload of type `docker-compose` or `git-compose`
//! run through the Docker API itself (no `docker compose` CLI on nodes).
//!
//! - [`git`]: the project's source from a git repository (shallow, one branch)
//! - [`engine`]: networks, volumes, builds and the services' containers over bollard

pub mod engine;
pub mod git;
