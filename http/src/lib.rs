//! What the persys binaries used to copy from one another: the shutdown signal of each
//! `main.rs`, the JSON error answer of every API, the hop-by-hop header rules of the
//! proxies, the SANs of a server certificate, and streamed bodies that end cleanly. Small on purpose: no I/O beyond
//! signals and reading the host name.

pub mod error;
pub mod headers;
pub mod logging;
pub mod sans;
pub mod shutdown;
pub mod stream;

pub use error::{current_request_id, ErrorResponse, REQUEST_ID};
pub use sans::{hostname, server_sans};
pub use shutdown::cancel_on_signal;
