//! What the persys binaries used to copy from one another: the shutdown signal of each
//! `main.rs`, the hop-by-hop header rules of the proxies, and the SANs of a server
//! certificate. Small on purpose: no I/O beyond signals and reading the host name.

pub mod headers;
pub mod sans;
pub mod shutdown;

pub use sans::{hostname, server_sans};
pub use shutdown::cancel_on_signal;
