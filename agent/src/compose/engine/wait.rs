//! `depends_on` conditions (`service_healthy`, `service_completed_successfully`),
//! followed on the engine's event stream of the dependency's containers: each event is
//! a prompt to look again, so nothing polls.

use crate::runtime::docker::map_err;
use bollard::container::InspectContainerOptions;
use bollard::models::HealthStatusEnum;
use bollard::system::EventsOptions;
use futures::StreamExt;
use persys_proto::compose::{ComposeService, DependsCondition};
use std::collections::HashMap;
use std::time::Duration;

/// How long a dependency without a health check timing may take.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(120);

/// How long `service` may take to become healthy: its start period and enough checks
/// to pass `retries` times over, with room for the engine (Docker's defaults where the
/// file says nothing: 30 s interval and timeout, 3 retries).
pub fn limit_for(service: &ComposeService) -> Duration {
    let Some(h) = &service.healthcheck else {
        return DEFAULT_LIMIT;
    };
    let interval = h.interval.unwrap_or(Duration::from_secs(30));
    let timeout = h.timeout.unwrap_or(Duration::from_secs(30));
    let retries = h.retries.unwrap_or(3) + 1;
    h.start_period.unwrap_or_default() + (interval + timeout) * retries + Duration::from_secs(10)
}

/// Whether every container in `ids` meets `condition`; `Err` when one never will.
async fn met(
    docker: &bollard::Docker,
    ids: &[String],
    condition: DependsCondition,
) -> Result<bool, String> {
    for id in ids {
        let i = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| map_err(e, id).to_string())?;
        let state = i.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        match condition {
            DependsCondition::Started => {}
            DependsCondition::Healthy => match state.health.and_then(|h| h.status) {
                Some(HealthStatusEnum::HEALTHY) => {}
                Some(HealthStatusEnum::UNHEALTHY) => return Err("it is unhealthy".into()),
                _ if !running => {
                    return Err(format!(
                        "it exited (code {}) before it was healthy",
                        state.exit_code.unwrap_or_default()
                    ))
                }
                _ => return Ok(false),
            },
            DependsCondition::CompletedSuccessfully => {
                if running {
                    return Ok(false);
                }
                match state.exit_code {
                    Some(0) => {}
                    code => return Err(format!("it exited with code {}", code.unwrap_or(-1))),
                }
            }
        }
    }
    Ok(true)
}

/// Wait until `ids` meet `condition`, at most `limit`.
pub(super) async fn until(
    docker: &bollard::Docker,
    ids: &[String],
    condition: DependsCondition,
    limit: Duration,
) -> Result<(), String> {
    if ids.is_empty() {
        return Err("it has no container".into());
    }
    // Subscribed before the first look, so a change between the two is not missed.
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("container".to_string(), ids.to_vec()),
    ]);
    let mut events = docker.events(Some(EventsOptions::<String> {
        filters,
        ..Default::default()
    }));
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if met(docker, ids, condition).await? {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("not {} within {} s", describe(condition), limit.as_secs()));
            }
            event = events.next() => {
                if let Some(Err(e)) = event {
                    return Err(format!("the engine's event stream failed: {e}"));
                }
                if event.is_none() {
                    return Err("the engine's event stream ended".into());
                }
            }
        }
    }
}

fn describe(c: DependsCondition) -> &'static str {
    match c {
        DependsCondition::Started => "started",
        DependsCondition::Healthy => "healthy",
        DependsCondition::CompletedSuccessfully => "completed successfully",
    }
}
