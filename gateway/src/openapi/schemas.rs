//! Schemas of answers the gateway itself builds. Every wire type of the cluster
//! (workloads, nodes, policy, errors) derives its schema in `persys_proto` (feature
//! `openapi`), so the document describes the very types that are serialized.

use serde::Serialize;
use utoipa::ToSchema;

/// Answer of `/healthz` and `/readyz`.
#[derive(ToSchema, Serialize)]
#[schema(as = Health)]
#[allow(dead_code)] // The field exists only to be described.
pub struct HealthDoc {
    /// `ok` or `ready`.
    status: String,
}
