//! Autoscaling of services, with Kubernetes HPA semantics: the replicas' usage (the
//! agents sample it from the engine's stats) against a target share of what the
//! template asks for (`resources.cpu` millicores, `resources.memory` MB). The leader
//! scales up as soon as usage says so, down only once every recommendation of the
//! stabilization window agrees, and never outside `min..=max`. Each decision is kept on
//! the service record with the figures that caused it.

use crate::validate::ValidationError;
use crate::WorkloadSpec;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Default stabilization window of scale-downs, seconds (Kubernetes' default).
pub const DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS: u32 = 300;
/// Decisions a service keeps ([`crate::Service::scale_events`]).
pub const SCALE_EVENTS_KEPT: usize = 10;
/// Highest target share, percent.
pub const MAX_TARGET_PERCENT: u32 = 1000;

/// `autoscale` of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscale {
    /// Fewest replicas.
    pub min: u32,
    /// Most replicas.
    pub max: u32,
    /// Target average CPU use, percent of the template's `resources.cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu_percent: Option<u32>,
    /// Target average memory use, percent of the template's `resources.memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_memory_percent: Option<u32>,
    /// How long usage must stay low before replicas are removed: the highest
    /// recommendation of this window wins (default 300).
    #[serde(default = "default_window")]
    pub scale_down_stabilization_seconds: u32,
}

fn default_window() -> u32 {
    DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS
}

/// What an autoscaler measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ScaleMetric {
    /// CPU time against `resources.cpu`.
    Cpu,
    /// Memory in use against `resources.memory`.
    Memory,
}

impl std::fmt::Display for ScaleMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
        })
    }
}

impl Autoscale {
    /// The metric and its target percent.
    pub fn target(&self) -> (ScaleMetric, u32) {
        match (self.target_cpu_percent, self.target_memory_percent) {
            (Some(cpu), _) => (ScaleMetric::Cpu, cpu),
            (None, Some(mem)) => (ScaleMetric::Memory, mem),
            (None, None) => (ScaleMetric::Cpu, 100),
        }
    }

    /// `replicas` brought into `min..=max`.
    pub fn clamp(&self, replicas: u32) -> u32 {
        replicas.clamp(self.min, self.max)
    }

    /// Check the settings against the template they scale.
    pub fn validate(
        &self,
        template: &WorkloadSpec,
        max_replicas: u32,
    ) -> Result<(), ValidationError> {
        let err = |field: &str, message: String| ValidationError {
            field: format!("autoscale.{field}"),
            message,
        };
        if self.min == 0 || self.min > max_replicas {
            return Err(err("min", format!("must be 1-{max_replicas}")));
        }
        if self.max < self.min || self.max > max_replicas {
            return Err(err("max", format!("must be {}-{max_replicas}", self.min)));
        }
        if self.scale_down_stabilization_seconds > 3600 {
            return Err(err(
                "scaleDownStabilizationSeconds",
                "must be 0-3600".into(),
            ));
        }
        let (field, target, requested, what) =
            match (self.target_cpu_percent, self.target_memory_percent) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(err(
                        "targetCpuPercent",
                        "give exactly one of targetCpuPercent and targetMemoryPercent".into(),
                    ))
                }
                (Some(t), None) => ("targetCpuPercent", t, template.resources.cpu, "cpu"),
                (None, Some(t)) => (
                    "targetMemoryPercent",
                    t,
                    template.resources.memory,
                    "memory",
                ),
            };
        if target == 0 || target > MAX_TARGET_PERCENT {
            return Err(err(field, format!("must be 1-{MAX_TARGET_PERCENT}")));
        }
        if requested == 0 {
            return Err(err(
                field,
                format!("the template sets no resources.{what}: a percentage needs it"),
            ));
        }
        Ok(())
    }
}

/// One autoscaling decision, with the figures that caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ScaleEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// Replicas before.
    pub from: u32,
    /// Replicas after.
    pub to: u32,
    /// What was measured.
    pub metric: ScaleMetric,
    /// Average use of the measured replicas, percent of what each asks for.
    pub current_percent: u32,
    /// The target, percent.
    pub target_percent: u32,
    /// Replicas whose use was measured.
    pub measured_replicas: u32,
    /// The decision in words.
    pub reason: String,
}

/// `POST /nodes/usage`: what the calling node's containers use (identity from the
/// client certificate; only workloads placed on that node are taken).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// One sample per container measured.
    pub samples: Vec<UsageSample>,
}

/// What one workload's container uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSample {
    /// The workload.
    pub workload_id: String,
    /// CPU over the last sampling interval, millicores (1000 = one core busy).
    pub cpu_millicores: u64,
    /// Memory in use (page cache that can be dropped left out), bytes.
    pub memory_bytes: u64,
}

impl UsageSample {
    /// This sample's use as a percent of what `spec` asks for, by `metric`; `None`
    /// when the spec asks for none.
    pub fn percent_of(&self, spec: &WorkloadSpec, metric: ScaleMetric) -> Option<f64> {
        match metric {
            ScaleMetric::Cpu => (spec.resources.cpu > 0)
                .then(|| self.cpu_millicores as f64 * 100.0 / spec.resources.cpu as f64),
            ScaleMetric::Memory => (spec.resources.memory > 0).then(|| {
                self.memory_bytes as f64 * 100.0 / (spec.resources.memory as f64 * 1024.0 * 1024.0)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cpu: u64, memory: u64) -> WorkloadSpec {
        let mut s = WorkloadSpec::default();
        s.resources.cpu = cpu;
        s.resources.memory = memory;
        s
    }

    fn scale(json: serde_json::Value) -> Autoscale {
        serde_json::from_value(json).expect("parses")
    }

    #[test]
    fn settings_are_checked_against_the_template() {
        let ok = scale(serde_json::json!({"min": 1, "max": 3, "targetCpuPercent": 50}));
        assert_eq!(ok.scale_down_stabilization_seconds, 300);
        assert!(ok.validate(&spec(200, 0), 1000).is_ok());
        let field =
            |a: Autoscale, s: WorkloadSpec| a.validate(&s, 1000).expect_err("refused").field;
        assert_eq!(field(ok.clone(), spec(0, 64)), "autoscale.targetCpuPercent");
        assert_eq!(
            field(
                scale(serde_json::json!({"min": 0, "max": 3, "targetCpuPercent": 50})),
                spec(200, 0)
            ),
            "autoscale.min"
        );
        assert_eq!(
            field(
                scale(serde_json::json!({"min": 4, "max": 3, "targetCpuPercent": 50})),
                spec(200, 0)
            ),
            "autoscale.max"
        );
        assert_eq!(
            field(
                scale(
                    serde_json::json!({"min": 1, "max": 3, "targetCpuPercent": 50, "targetMemoryPercent": 50})
                ),
                spec(200, 64)
            ),
            "autoscale.targetCpuPercent"
        );
        let mem = scale(serde_json::json!({"min": 1, "max": 3, "targetMemoryPercent": 80}));
        assert_eq!(mem.target(), (ScaleMetric::Memory, 80));
        assert!(mem.validate(&spec(0, 64), 1000).is_ok());
        assert!(serde_json::from_value::<Autoscale>(
            serde_json::json!({"min": 1, "max": 2, "targetCpu": 5})
        )
        .is_err());
    }

    #[test]
    fn usage_is_a_percent_of_the_request() {
        let s = UsageSample {
            workload_id: "w".into(),
            cpu_millicores: 150,
            memory_bytes: 32 * 1024 * 1024,
        };
        assert_eq!(s.percent_of(&spec(200, 64), ScaleMetric::Cpu), Some(75.0));
        assert_eq!(
            s.percent_of(&spec(200, 64), ScaleMetric::Memory),
            Some(50.0)
        );
        assert_eq!(s.percent_of(&spec(0, 0), ScaleMetric::Cpu), None);
    }
}
