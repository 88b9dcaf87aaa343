//! `/services` routes: the service records; the controller ([`crate::services`]) makes
//! their replicas. Every write kicks the controller.

use super::error::AppError;
use super::extract::JsonBody;
use super::AppState;
use crate::services::replicas_of;
use crate::store::Updated;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use persys_proto::{
    keys, ApplyResult, Public, ScaleRequest, Service, ServiceApplied, ServiceRequest, ServiceStatus,
};
use serde_json::Value;

fn view(ctx: &AppState, service: Service) -> ServiceStatus {
    let replicas: Vec<_> = replicas_of(ctx, &service.name);
    let ready = replicas
        .iter()
        .filter(|w| crate::services::replicas::serving(w).is_some())
        .count();
    ServiceStatus {
        replica_workloads: replicas.iter().map(|w| (**w).clone()).collect(),
        ready_replicas: u32::try_from(ready).unwrap_or(u32::MAX),
        service,
    }
}

/// The cluster policy's verdict on a service template, naming the field as
/// `template.<field>`.
fn admit_template(
    template: &persys_proto::WorkloadSpec,
    policy: &persys_proto::ClusterPolicy,
) -> Result<(), AppError> {
    crate::admission::admit(template, policy).map_err(|mut d| {
        d.field = format!("template.{}", d.field);
        AppError::policy_denied(&d)
    })
}

fn not_found(name: &str) -> AppError {
    AppError::not_found(format!("service {name} not found"))
}

fn parse(body: Value) -> Result<ServiceRequest, AppError> {
    serde_json::from_value(body).map_err(|e| AppError::invalid_field("body", e))
}

/// `POST /services`: 201 with the new record; 409 when the name is taken.
pub async fn create(
    State(ctx): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<Public<ServiceStatus>>), AppError> {
    let desired = parse(body)?.validate().map_err(|e| AppError::invalid(&e))?;
    let policy = super::workloads::current_policy(&ctx).await?;
    admit_template(&desired.template, &policy)?;
    let service = Service::new(desired, Utc::now());
    let stored = ctx
        .store()
        .put_if_absent(&keys::service(&service.name), &service)
        .await?;
    if stored.is_none() {
        return Err(AppError::conflict(format!(
            "service {} already exists; update it with PUT /services/{}",
            service.name, service.name
        )));
    }
    ctx.services().enqueue(&service.name);
    Ok((StatusCode::CREATED, Json(Public::new(view(&ctx, service)))))
}

/// `PUT /services/{name}`: create or update (a new template is a new revision and
/// starts a rollout; the same service again changes nothing).
pub async fn apply(
    State(ctx): State<AppState>,
    Path(name): Path<String>,
    JsonBody(mut body): JsonBody<Value>,
) -> Result<Json<Public<ServiceApplied>>, AppError> {
    if let Some(obj) = body.as_object_mut() {
        match obj.get("name").and_then(Value::as_str) {
            Some(n) if n != name => {
                return Err(AppError::invalid_field(
                    "name",
                    format!("{n:?} differs from the path's {name:?}"),
                ))
            }
            _ => {
                obj.insert("name".into(), Value::String(name.clone()));
            }
        }
    }
    let desired = parse(body)?.validate().map_err(|e| AppError::invalid(&e))?;
    let policy = super::workloads::current_policy(&ctx).await?;
    admit_template(&desired.template, &policy)?;
    let key = keys::service(&name);
    let now = Utc::now();
    let fresh = Service::new(desired.clone(), now);
    if ctx.store().put_if_absent(&key, &fresh).await?.is_some() {
        ctx.services().enqueue(&name);
        return Ok(Json(Public::new(ServiceApplied {
            result: ApplyResult::Created,
            service: view(&ctx, fresh),
        })));
    }
    let out = ctx
        .store()
        .update::<Service, _>(&key, |cur| cur.changed_to(desired.clone(), now))
        .await?;
    let (result, service) = match out {
        Updated::Written(v) => (ApplyResult::Configured, v.value),
        Updated::Unchanged(v) => (ApplyResult::Unchanged, v.value),
        Updated::Missing => return Err(not_found(&name)),
    };
    ctx.services().enqueue(&name);
    Ok(Json(Public::new(ServiceApplied {
        result,
        service: view(&ctx, service),
    })))
}

/// `GET /services`.
pub async fn list(
    State(ctx): State<AppState>,
) -> Result<Json<Vec<Public<ServiceStatus>>>, AppError> {
    let (all, _) = ctx.store().list::<Service>(keys::SERVICES).await?;
    Ok(Json(
        all.into_iter()
            .map(|(_, v)| Public::new(view(&ctx, v.value)))
            .collect(),
    ))
}

/// `GET /services/{name}`.
pub async fn get_one(
    State(ctx): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Public<ServiceStatus>>, AppError> {
    let v = ctx
        .store()
        .get::<Service>(&keys::service(&name))
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(Public::new(view(&ctx, v.value))))
}

/// `POST /services/{name}/scale`.
pub async fn scale(
    State(ctx): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ScaleRequest>,
) -> Result<Json<Public<ServiceStatus>>, AppError> {
    if body.replicas > persys_proto::service::MAX_REPLICAS {
        return Err(AppError::invalid_field(
            "replicas",
            format!("must be 0-{}", persys_proto::service::MAX_REPLICAS),
        ));
    }
    let mut autoscaled = None;
    let out = ctx
        .store()
        .update::<Service, _>(&keys::service(&name), |cur| {
            // The autoscaler owns the count of an autoscaled service; a manual scale
            // would be undone at its next look.
            if let Some(a) = &cur.autoscale {
                autoscaled = Some((a.min, a.max));
                return None;
            }
            (cur.replicas != body.replicas).then(|| {
                let mut next = cur.clone();
                next.replicas = body.replicas;
                next.updated_at = Utc::now();
                next
            })
        })
        .await?;
    let service = match out {
        Updated::Written(v) | Updated::Unchanged(v) => v.value,
        Updated::Missing => return Err(not_found(&name)),
    };
    if let Some((min, max)) = autoscaled {
        return Err(AppError::conflict(format!(
            "service {name} is autoscaled ({min}-{max} replicas); change its autoscale bounds instead"
        )));
    }
    ctx.services().enqueue(&name);
    Ok(Json(Public::new(view(&ctx, service))))
}

/// `POST /services/{name}/undo`: the previous revision's template becomes a new
/// revision (as `kubectl rollout undo`), and rolls out.
pub async fn undo(
    State(ctx): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Public<ServiceStatus>>, AppError> {
    let mut nothing_before = false;
    let out = ctx
        .store()
        .update::<Service, _>(&keys::service(&name), |cur| {
            let previous = cur
                .history
                .iter()
                .rev()
                .find(|r| r.revision < cur.revision && r.template != cur.template);
            let Some(previous) = previous else {
                nothing_before = true;
                return None;
            };
            let mut next = cur.clone();
            next.set_template(previous.template.clone(), Utc::now());
            next.updated_at = Utc::now();
            Some(next)
        })
        .await?;
    let service = match out {
        Updated::Written(v) => v.value,
        Updated::Unchanged(_) if nothing_before => {
            return Err(AppError::conflict(format!(
                "service {name} has no earlier revision to go back to"
            )))
        }
        Updated::Unchanged(v) => v.value,
        Updated::Missing => return Err(not_found(&name)),
    };
    ctx.services().enqueue(&name);
    Ok(Json(Public::new(view(&ctx, service))))
}

/// `DELETE /services/{name}`: the record goes, then (controller) its replicas.
pub async fn delete(
    State(ctx): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Public<ServiceStatus>>, AppError> {
    let key = keys::service(&name);
    let v = ctx
        .store()
        .get::<Service>(&key)
        .await?
        .ok_or_else(|| not_found(&name))?;
    ctx.store().delete(&key).await?;
    ctx.services().enqueue(&name);
    Ok(Json(Public::new(view(&ctx, v.value))))
}
