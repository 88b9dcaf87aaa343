//! Size limits shared by every hop, so that what the gateway and the scheduler accept
//! always fits what the agent accepts.
//!
//! A user request is at most [`MAX_REQUEST_BYTES`]; the record the scheduler stores
//! (request plus server-owned fields, and a copy of `labels` as `nodeSelector` on the
//! original route) must encode to at most [`MAX_WORKLOAD_BYTES`], else the create is
//! refused with 413. The agent accepts dispatches up to [`MAX_DISPATCH_BYTES`], twice the
//! record limit: a `RunRequest` carries a subset of the record's fields (see the test
//! in `wire`), so every accepted workload reaches its node.

/// Largest user request body (gateway and scheduler default), bytes.
pub const MAX_REQUEST_BYTES: usize = 512 * 1024;
/// Largest encoded workload record, bytes (well under etcd's default 1.5 MiB request).
pub const MAX_WORKLOAD_BYTES: usize = MAX_REQUEST_BYTES + 64 * 1024;
/// Largest scheduler→agent body (`POST /docker/run`), bytes.
pub const MAX_DISPATCH_BYTES: usize = 2 * MAX_WORKLOAD_BYTES;
