//! Compose projects on this node: a workload of type `docker-compose` or `git-compose`
//! run through the Docker API itself (no `docker compose` CLI on nodes).
//!
//! - [`engine`]: networks, volumes, builds and the services' containers over bollard
//! - [`git`]: the source of a git-compose project (shallow, one branch)
//! - [`source`]: a project directory's Compose file and `.env`
//! - [`project`]: the projects of this node: run, state, stop, remove, logs, resume

pub mod engine;
pub mod git;
pub mod project;
pub mod source;

pub use project::{ProjectError, Projects};
