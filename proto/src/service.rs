//! Services: a workload template run as `replicas` copies, spread across nodes, with
//! rolling-update settings. Each replica is an ordinary workload record carrying the
//! service's name ([`Workload::service_id`](crate::Workload)), the service revision it
//! runs and its index; the scheduler's service controller keeps their number and
//! revision where the service says.

use crate::autoscale::{Autoscale, ScaleEvent, SCALE_EVENTS_KEPT};
use crate::secret::Redact;
use crate::validate::{is_dns_label, ValidationError};
use crate::{WorkloadRequest, WorkloadSpec};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most replicas one service may ask for.
pub const MAX_REPLICAS: u32 = 1000;
/// Revisions a service keeps in its history (for `rollout history` and `undo`).
pub const HISTORY_LIMIT: usize = 10;
/// Workload label carrying the service a replica belongs to (the replica's index lives
/// in the record; the label makes "replicas of a service" an index lookup).
pub const SERVICE_LABEL: &str = "persys.io/service";

/// How replicas are replaced during a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// The new replica starts (and becomes healthy) before the old one stops.
    #[default]
    StartFirst,
    /// The old replica stops before the new one starts.
    StopFirst,
}

/// What a failed rollout does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Go back to the previous revision, replacing only the new replicas.
    #[default]
    Rollback,
    /// Stop replacing replicas; the service stays half-rolled until changed.
    Pause,
}

/// `update` of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UpdateConfig {
    /// Replicas replaced at a time.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Start the new replica first, or stop the old one first.
    #[serde(default)]
    pub order: UpdateOrder,
    /// How long a new replica must stay healthy before it counts.
    #[serde(default)]
    pub min_healthy_seconds: u32,
    /// How long a new replica may take to become healthy before the rollout fails.
    #[serde(default = "default_deadline")]
    pub healthy_deadline_seconds: u32,
    /// What a failed rollout does.
    #[serde(default)]
    pub failure_action: FailureAction,
}

fn one() -> u32 {
    1
}
fn default_deadline() -> u32 {
    300
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            order: UpdateOrder::default(),
            min_healthy_seconds: 0,
            healthy_deadline_seconds: default_deadline(),
            failure_action: FailureAction::default(),
        }
    }
}

/// What a scheduled service does when a run is due while an earlier one is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConcurrencyPolicy {
    /// Start it anyway.
    #[default]
    Allow,
    /// Skip it.
    Forbid,
    /// Stop the active run and start the new one.
    Replace,
}

/// Default number of finished successful runs kept.
pub const DEFAULT_SUCCESSFUL_HISTORY: u32 = 3;
/// Default number of failed runs kept.
pub const DEFAULT_FAILED_HISTORY: u32 = 1;

/// The job part of a scheduled service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct JobSettings {
    /// Cron expression: 5 fields, or 6 with seconds first (UTC).
    pub schedule: String,
    /// A due run while one is active.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Finished successful runs kept (older ones are removed).
    pub successful_jobs_history: u32,
    /// Failed runs kept.
    pub failed_jobs_history: u32,
}

/// `POST /services` and `kind: Service` of `persys apply`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServiceRequest {
    /// `Service` when given (manifests carry it).
    #[serde(default)]
    pub kind: Option<String>,
    /// DNS label naming the service (and its replicas `<name>-<index>`).
    pub name: String,
    /// How many copies (default 1).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// The workload each replica runs.
    pub template: WorkloadRequest,
    /// Rolling-update settings.
    #[serde(default)]
    pub update: Option<UpdateConfig>,
    /// Run the template on this cron schedule (one new workload per run) instead of
    /// keeping replicas.
    #[serde(default)]
    pub schedule: Option<String>,
    /// With `schedule`: a due run while one is active (default `Allow`).
    #[serde(default)]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// With `schedule`: finished successful runs kept (default 3).
    #[serde(default)]
    pub successful_jobs_history: Option<u32>,
    /// With `schedule`: failed runs kept (default 1).
    #[serde(default)]
    pub failed_jobs_history: Option<u32>,
    /// Keep the replicas between `min` and `max` by their usage.
    #[serde(default)]
    pub autoscale: Option<Autoscale>,
}

/// A validated service request.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDesired {
    /// Name.
    pub name: String,
    /// Replicas.
    pub replicas: u32,
    /// Template.
    pub template: WorkloadSpec,
    /// Update settings.
    pub update: UpdateConfig,
    /// The schedule, for a scheduled service.
    pub job: Option<JobSettings>,
    /// Autoscaling.
    pub autoscale: Option<Autoscale>,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
    }
}

impl ServiceRequest {
    /// Check everything; the first problem names its field.
    pub fn validate(self) -> Result<ServiceDesired, ValidationError> {
        if let Some(k) = self.kind.as_deref() {
            if k != "Service" {
                return Err(err("kind", format!("{k:?} is not Service")));
            }
        }
        let name = self.name.trim().to_string();
        if !is_dns_label(&name) || name.len() > 50 {
            return Err(err(
                "name",
                format!("{name:?} must be 1-50 lowercase letters, digits or '-' (a DNS label)"),
            ));
        }
        let job = match &self.schedule {
            None => {
                if self.concurrency_policy.is_some()
                    || self.successful_jobs_history.is_some()
                    || self.failed_jobs_history.is_some()
                {
                    return Err(err(
                        "schedule",
                        "concurrencyPolicy and the job histories need a schedule",
                    ));
                }
                None
            }
            Some(expr) => {
                crate::schedule::CronSchedule::parse(expr).map_err(|m| err("schedule", m))?;
                if self.replicas.is_some() {
                    return Err(err(
                        "replicas",
                        "a scheduled service runs one workload per run; leave replicas out",
                    ));
                }
                let keep = |v: Option<u32>, d: u32, field: &str| match v.unwrap_or(d) {
                    n if n <= 100 => Ok(n),
                    _ => Err(err(field, "must be 0-100")),
                };
                Some(JobSettings {
                    schedule: expr.trim().to_string(),
                    concurrency_policy: self.concurrency_policy.unwrap_or_default(),
                    successful_jobs_history: keep(
                        self.successful_jobs_history,
                        DEFAULT_SUCCESSFUL_HISTORY,
                        "successfulJobsHistory",
                    )?,
                    failed_jobs_history: keep(
                        self.failed_jobs_history,
                        DEFAULT_FAILED_HISTORY,
                        "failedJobsHistory",
                    )?,
                })
            }
        };
        if self.autoscale.is_some() && job.is_some() {
            return Err(err(
                "autoscale",
                "a scheduled service runs one workload per run; it does not autoscale",
            ));
        }
        let replicas = match (&job, &self.autoscale) {
            (Some(_), _) => 0,
            // The autoscaler owns the count from here; a given one is where it starts.
            (None, Some(a)) => a.clamp(self.replicas.unwrap_or(a.min)),
            (None, None) => self.replicas.unwrap_or(1),
        };
        if replicas > MAX_REPLICAS {
            return Err(err("replicas", format!("must be 0-{MAX_REPLICAS}")));
        }
        let mut template = self.template.validate().map_err(|e| ValidationError {
            field: format!("template.{}", e.field),
            message: e.message,
        })?;
        if template.kind.is_compose() {
            return Err(err(
                "template.type",
                "a service's replicas are single containers",
            ));
        }
        // A replica's container that exits is started again; losing a node moves it.
        // A job's run is meant to end.
        if job.is_none() && template.restart_policy == crate::RestartPolicy::No {
            template.restart_policy = crate::RestartPolicy::Always;
        }
        template.name = name.clone();
        template
            .labels
            .insert(SERVICE_LABEL.to_string(), name.clone());
        if let Some(a) = &self.autoscale {
            a.validate(&template, MAX_REPLICAS)?;
        }
        let update = self.update.unwrap_or_default();
        if update.parallelism == 0 || update.parallelism > MAX_REPLICAS {
            return Err(err(
                "update.parallelism",
                format!("must be 1-{MAX_REPLICAS}"),
            ));
        }
        if update.healthy_deadline_seconds == 0 || update.healthy_deadline_seconds > 3600 {
            return Err(err("update.healthyDeadlineSeconds", "must be 1-3600"));
        }
        if update.min_healthy_seconds >= update.healthy_deadline_seconds {
            return Err(err(
                "update.minHealthySeconds",
                "must be shorter than healthyDeadlineSeconds",
            ));
        }
        Ok(ServiceDesired {
            name,
            replicas,
            template,
            update,
            job,
            autoscale: self.autoscale,
        })
    }
}

/// One revision of a service's template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServiceRevision {
    /// 1, 2, …
    pub revision: u64,
    /// The template of that revision.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub template: WorkloadSpec,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// Where a service's rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum RolloutState {
    /// Every replica runs the current revision.
    #[default]
    Complete,
    /// Replicas are being replaced.
    Progressing,
    /// A rollout failed and was paused (`failureAction: pause`).
    Paused,
    /// A rollout failed and the service went back to the previous revision.
    RolledBack,
}

/// A stored service record (`/persys/services/<name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Name (the record's key).
    pub name: String,
    /// Copies wanted.
    pub replicas: u32,
    /// The current revision's template.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub template: WorkloadSpec,
    /// Rolling-update settings.
    pub update: UpdateConfig,
    /// The current revision (1 at creation; each template change adds one).
    pub revision: u64,
    /// The last revisions, oldest first, the current one last.
    pub history: Vec<ServiceRevision>,
    /// Rollout state.
    #[serde(default)]
    pub rollout: RolloutState,
    /// Why the rollout is in its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_reason: Option<String>,
    /// The schedule of a scheduled service (flattened: `schedule`,
    /// `concurrencyPolicy`, `successfulJobsHistory`, `failedJobsHistory`). Not in the
    /// document's schema of a service: a flattened optional object has no OpenAPI
    /// form that also fits a service without it; the request's schema has the fields.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub job: Option<JobSettings>,
    /// Autoscaling settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
    /// The last autoscaling decisions, oldest first, each with its figures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_events: Vec<ScaleEvent>,
    /// The due time of the last run started (or skipped) of a scheduled service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Redact for Service {
    fn redact(&mut self) {
        self.template.secret_env.redact();
        for r in &mut self.history {
            r.template.secret_env.redact();
        }
    }
}

/// A service with its replicas: the answer of `GET /services/{name}` and of writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// The record.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub service: Service,
    /// Its live replicas.
    pub replica_workloads: Vec<crate::Workload>,
    /// How many of them serve (run, and are healthy when they have a check).
    pub ready_replicas: u32,
}

impl Redact for ServiceStatus {
    fn redact(&mut self) {
        self.service.redact();
        self.replica_workloads.redact();
    }
}

/// What `PUT /services/{name}` did, in kubectl's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ApplyResult {
    /// It did not exist.
    Created,
    /// It changed.
    Configured,
    /// It was already so.
    Unchanged,
}

/// The answer of `PUT /services/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServiceApplied {
    /// What the apply did.
    pub result: ApplyResult,
    /// The service after it.
    pub service: ServiceStatus,
}

impl Redact for ServiceApplied {
    fn redact(&mut self) {
        self.service.redact();
    }
}

/// `POST /services/{name}/scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ScaleRequest {
    /// Replicas wanted.
    pub replicas: u32,
}

impl Service {
    /// A new service at revision 1.
    pub fn new(desired: ServiceDesired, now: DateTime<Utc>) -> Self {
        Self {
            name: desired.name,
            replicas: desired.replicas,
            history: vec![ServiceRevision {
                revision: 1,
                template: desired.template.clone(),
                created_at: now,
            }],
            template: desired.template,
            update: desired.update,
            revision: 1,
            rollout: RolloutState::Complete,
            rollout_reason: None,
            job: desired.job,
            autoscale: desired.autoscale,
            scale_events: Vec::new(),
            last_schedule_time: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// This service changed as `desired` asks: `None` when nothing changes (`apply`
    /// of an unchanged manifest). A new template is a new revision, and starts a
    /// rollout.
    /// An autoscaled service keeps the count its autoscaler chose (within the new
    /// bounds): the manifest's `replicas` does not undo it.
    pub fn changed_to(&self, desired: ServiceDesired, now: DateTime<Utc>) -> Option<Self> {
        let replicas = match &desired.autoscale {
            Some(a) => a.clamp(self.replicas),
            None => desired.replicas,
        };
        if replicas == self.replicas
            && desired.template == self.template
            && desired.update == self.update
            && desired.job == self.job
            && desired.autoscale == self.autoscale
        {
            return None;
        }
        let mut next = self.clone();
        next.replicas = replicas;
        next.update = desired.update;
        next.job = desired.job;
        next.autoscale = desired.autoscale;
        if desired.template != self.template {
            next.set_template(desired.template, now);
        }
        next.updated_at = now;
        Some(next)
    }

    /// Make `template` the next revision and start rolling it out.
    pub fn set_template(&mut self, template: WorkloadSpec, now: DateTime<Utc>) {
        self.revision += 1;
        self.history.push(ServiceRevision {
            revision: self.revision,
            template: template.clone(),
            created_at: now,
        });
        if self.history.len() > HISTORY_LIMIT {
            let drop = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..drop);
        }
        self.template = template;
        self.rollout = RolloutState::Progressing;
        self.rollout_reason = None;
    }

    /// The template of revision `revision`, if still in the history.
    pub fn template_of(&self, revision: u64) -> Option<&WorkloadSpec> {
        self.history
            .iter()
            .find(|r| r.revision == revision)
            .map(|r| &r.template)
    }

    /// Record an autoscaling decision (the replicas it sets and its figures).
    pub fn record_scale(&mut self, event: ScaleEvent) {
        self.replicas = event.to;
        self.updated_at = event.at;
        self.scale_events.push(event);
        if self.scale_events.len() > SCALE_EVENTS_KEPT {
            let drop = self.scale_events.len() - SCALE_EVENTS_KEPT;
            self.scale_events.drain(..drop);
        }
    }

    /// The name of replica `index`.
    pub fn replica_name(&self, index: u32) -> String {
        format!("{}-{index}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> ServiceRequest {
        serde_json::from_value(json).expect("parses")
    }

    #[test]
    fn a_scheduled_service_has_a_valid_schedule_and_no_replicas() {
        let d = request(serde_json::json!({
            "name": "backup", "schedule": "0 2 * * *", "concurrencyPolicy": "Forbid",
            "template": {"image": "busybox:local"}
        }))
        .validate()
        .expect("valid");
        let job = d.job.clone().expect("a job");
        assert_eq!(job.concurrency_policy, ConcurrencyPolicy::Forbid);
        assert_eq!(job.successful_jobs_history, DEFAULT_SUCCESSFUL_HISTORY);
        assert_eq!(
            d.template.restart_policy,
            crate::RestartPolicy::No,
            "a run ends"
        );
        // The record keeps the schedule at the top level, and reads back the same.
        let record = Service::new(d.clone(), Utc::now());
        let json = serde_json::to_value(&record).expect("encodes");
        assert_eq!(json["schedule"], "0 2 * * *");
        assert_eq!(json["concurrencyPolicy"], "Forbid");
        let back: Service = serde_json::from_value(json).expect("decodes");
        assert_eq!(back, record);
        let plain = Service::new(web(1, "a"), Utc::now());
        let back: Service = serde_json::from_value(serde_json::to_value(&plain).expect("encodes"))
            .expect("decodes");
        assert_eq!(back.job, None);
        let bad = |v: serde_json::Value| request(v).validate().expect_err("refused").field;
        assert_eq!(
            bad(
                serde_json::json!({"name": "b", "schedule": "every night", "template": {"image": "x"}})
            ),
            "schedule"
        );
        assert_eq!(
            bad(
                serde_json::json!({"name": "b", "schedule": "0 2 * * *", "replicas": 2, "template": {"image": "x"}})
            ),
            "replicas"
        );
        assert_eq!(
            bad(
                serde_json::json!({"name": "b", "concurrencyPolicy": "Forbid", "template": {"image": "x"}})
            ),
            "schedule"
        );
    }

    fn web(replicas: u32, image: &str) -> ServiceDesired {
        request(serde_json::json!({
            "name": "web", "replicas": replicas, "template": {"image": image}
        }))
        .validate()
        .expect("valid")
    }

    #[test]
    fn replicas_restart_and_carry_the_service_label() {
        let d = web(3, "busybox:local");
        assert_eq!(d.replicas, 3);
        assert_eq!(d.template.restart_policy, crate::RestartPolicy::Always);
        assert_eq!(d.template.labels[SERVICE_LABEL], "web");
        assert_eq!(d.update, UpdateConfig::default());
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |v: serde_json::Value| request(v).validate().expect_err("refused").field;
        assert_eq!(
            bad(serde_json::json!({"name": "Web!", "template": {"image": "x"}})),
            "name"
        );
        assert_eq!(
            bad(serde_json::json!({"name": "web", "replicas": 5000, "template": {"image": "x"}})),
            "replicas"
        );
        assert_eq!(
            bad(serde_json::json!({"name": "web", "template": {}})),
            "template.image"
        );
        assert_eq!(
            bad(
                serde_json::json!({"name": "web", "template": {"image": "x"}, "update": {"parallelism": 0}})
            ),
            "update.parallelism"
        );
        assert_eq!(
            bad(serde_json::json!({"kind": "Job", "name": "web", "template": {"image": "x"}})),
            "kind"
        );
    }

    #[test]
    fn an_unchanged_request_changes_nothing_and_a_new_template_is_a_revision() {
        let now = Utc::now();
        let s = Service::new(web(2, "a"), now);
        assert_eq!(s.revision, 1);
        assert!(s.changed_to(web(2, "a"), now).is_none());
        let scaled = s.changed_to(web(4, "a"), now).expect("scaled");
        assert_eq!((scaled.replicas, scaled.revision), (4, 1));
        let updated = scaled.changed_to(web(4, "b"), now).expect("updated");
        assert_eq!(updated.revision, 2);
        assert_eq!(updated.rollout, RolloutState::Progressing);
        assert_eq!(updated.template_of(1).map(|t| t.image.as_str()), Some("a"));
        assert_eq!(updated.history.len(), 2);
    }

    #[test]
    fn an_autoscaled_service_keeps_its_count_across_applies() {
        let now = Utc::now();
        let auto = |replicas: Option<u32>, max: u32| {
            let mut v = serde_json::json!({
                "name": "web", "template": {"image": "a", "resources": {"cpu": 200}},
                "autoscale": {"min": 1, "max": max, "targetCpuPercent": 50}
            });
            if let Some(r) = replicas {
                v["replicas"] = r.into();
            }
            request(v).validate().expect("valid")
        };
        let d = auto(None, 4);
        assert_eq!(d.replicas, 1, "starts at min");
        assert_eq!(auto(Some(9), 4).replicas, 4, "a given count is clamped");
        let mut s = Service::new(d, now);
        s.record_scale(ScaleEvent {
            at: now,
            from: 1,
            to: 3,
            metric: crate::autoscale::ScaleMetric::Cpu,
            current_percent: 150,
            target_percent: 50,
            measured_replicas: 1,
            reason: "up".into(),
        });
        assert_eq!(s.replicas, 3);
        assert!(
            s.changed_to(auto(Some(1), 4), now).is_none(),
            "the manifest's replicas do not undo the autoscaler"
        );
        let lowered = s.changed_to(auto(None, 2), now).expect("new bounds");
        assert_eq!(lowered.replicas, 2, "clamped into the new bounds");
        let job = request(serde_json::json!({
            "name": "b", "schedule": "0 2 * * *", "template": {"image": "a", "resources": {"cpu": 1}},
            "autoscale": {"min": 1, "max": 2, "targetCpuPercent": 50}
        }));
        assert_eq!(job.validate().expect_err("refused").field, "autoscale");
    }

    #[test]
    fn history_keeps_the_last_revisions() {
        let now = Utc::now();
        let mut s = Service::new(web(1, "v0"), now);
        for i in 1..=15 {
            s.set_template(web(1, &format!("v{i}")).template, now);
        }
        assert_eq!(s.history.len(), HISTORY_LIMIT);
        assert_eq!(s.history.last().map(|r| r.revision), Some(16));
        assert_eq!(s.history.first().map(|r| r.revision), Some(7));
    }
}
