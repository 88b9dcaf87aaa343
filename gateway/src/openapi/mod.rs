//! `GET /openapi.json`: the OpenAPI document of the public API, generated from the
//! code (utoipa): operations in [`paths`], schemas derived on the wire types themselves
//! (`persys_proto` with its `openapi` feature, plus the gateway's own in [`schemas`]),
//! and the errors every operation shares added by [`CommonResponses`] from the route
//! table.

pub mod paths;
mod refine;
pub mod schemas;

use crate::routes;
use axum::http::Method;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "persys API",
        description = "The persys cluster API, served by the gateway (persys-gateway). Authenticate with `Authorization: Bearer <API token>` or with a client certificate of the cluster CA (CN `admin` is an admin, any other CN an operator). Roles: viewer (reads), operator (workloads), admin (nodes, tokens). Every answer carries `X-Request-Id`.",
        license(name = "Apache-2.0")
    ),
    paths(
        paths::list_workloads, paths::create_workload, paths::schedule_workload,
        paths::get_workload, paths::delete_workload, paths::stop_workload,
        paths::start_workload, paths::redeploy_workload, paths::workload_logs,
        paths::explain_placement,
        paths::list_services, paths::create_service, paths::get_service, paths::apply_service,
        paths::delete_service, paths::scale_service, paths::undo_service,
        paths::list_nodes, paths::get_node, paths::cordon_node, paths::uncordon_node,
        paths::remove_node, paths::drain_node, paths::cluster_metrics,
        paths::get_cluster_policy, paths::set_cluster_policy, paths::save_snapshot, paths::restore_snapshot, paths::events, paths::list_tokens,
        paths::create_token, paths::revoke_token, paths::github_webhook,
        paths::healthz, paths::readyz, paths::metrics, paths::openapi,
    ),
    components(schemas(persys_proto::ApiError)),
    modifiers(&CommonResponses),
    security(("bearerAuth" = [])),
    tags(
        (name = "workloads", description = "containers the cluster runs"),
        (name = "services", description = "replicated workloads with health-checked rolling updates"),
        (name = "nodes", description = "machines running an agent"),
        (name = "cluster", description = "cluster-wide views and the event stream"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "webhooks", description = "signed deliveries from GitHub"),
        (name = "health", description = "liveness, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "serializing the OpenAPI document failed");
        serde_json::Value::Null
    });
    refine::refine(&mut doc);
    doc
}

/// Adds the bearer security scheme, the error answers every authenticated operation
/// can give (from the route table), and the `X-Request-Id` header to every answer.
pub struct CommonResponses;

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiError")))
                .build(),
        )
        .build()
}

fn add_missing(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| error_response(description).into());
}

fn add_common(method: &Method, path: &str, op: &mut Operation) {
    if routes::find(method, path).is_some() {
        add_missing(op, "401", "no credential, or an invalid or revoked token");
        add_missing(op, "403", "the credential's role may not do this");
        add_missing(
            op,
            "429",
            "rate limit of this credential exceeded (see Retry-After)",
        );
        add_missing(op, "502", "the scheduler's answer broke off");
        add_missing(op, "503", "no scheduler (or etcd) is reachable");
        add_missing(op, "504", "the scheduler did not answer in time");
    }
    if op.request_body.is_some() {
        add_missing(
            op,
            "400",
            "the body is not valid JSON of this shape, or a field is invalid",
        );
        add_missing(op, "413", "the body is larger than the limit");
    }
    let request_id = HeaderBuilder::new()
        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::String))
        .description(Some("the request id (the client's, or generated)"))
        .build();
    for resp in op.responses.responses.values_mut() {
        if let utoipa::openapi::RefOr::T(r) = resp {
            r.headers
                .insert("X-Request-Id".to_string(), request_id.clone());
        }
    }
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "an API token (`persys_...`) from POST /tokens or the bootstrap admin token file",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                (Method::GET, item.get.as_mut()),
                (Method::POST, item.post.as_mut()),
                (Method::PUT, item.put.as_mut()),
                (Method::DELETE, item.delete.as_mut()),
                (Method::PATCH, item.patch.as_mut()),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    add_common(&method, path, op);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
