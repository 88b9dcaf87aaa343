//! The autoscaler (leader only), with Kubernetes HPA semantics. Every
//! `--autoscale-interval-ms` it looks at each autoscaled service: the average use of
//! its measured replicas against the target ([`recommend`]), scale-ups at once (at most
//! doubling, or +4, per look), scale-downs only to the highest recommendation of the
//! stabilization window ([`Window`]), never outside `min..=max`. A decision is written
//! on the service record with its figures (`scaleEvents`), counted in
//! `persys_autoscale_decisions_total`, logged, and handed to the service controller,
//! which adds or removes the replicas.

use super::replicas::{replicas_of, serving};
use crate::context::Ctx;
use crate::store::Updated;
use chrono::Utc;
use persys_proto::autoscale::{Autoscale, ScaleEvent};
use persys_proto::{keys, DesiredState, Service};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Usage within this fraction of the target changes nothing (Kubernetes' 0.1).
pub const TOLERANCE: f64 = 0.1;

/// The services that autoscale, as the service controller last saw them.
#[derive(Debug, Default)]
pub struct Autoscaled {
    names: Mutex<HashSet<String>>,
}

impl Autoscaled {
    /// Note whether service `name` autoscales (the controller, on each reconcile).
    pub fn note(&self, name: &str, autoscales: bool) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if autoscales {
            names.insert(name.to_string());
        } else {
            names.remove(name);
        }
    }

    fn names(&self) -> Vec<String> {
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<String> = names.iter().cloned().collect();
        v.sort();
        v
    }
}

/// What one look measured: the use of each measured replica (percent of its
/// request), and how many more replicas count without a measure (starting, not yet
/// placed, or not yet sampled).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measure {
    /// Use of each measured replica, percent.
    pub measured: Vec<f64>,
    /// Replicas without a measure.
    pub unmeasured: u32,
}

impl Measure {
    /// The average of the measured replicas, percent.
    pub fn average(&self) -> Option<f64> {
        (!self.measured.is_empty())
            .then(|| self.measured.iter().sum::<f64>() / self.measured.len() as f64)
    }
}

/// The replica count usage asks for, as the HPA computes it; `None` without any
/// measure. Replicas without a measure count as idle when usage says up and as at
/// the target when it says down, so neither direction overshoots on missing data.
pub fn recommend(current: u32, m: &Measure, target: f64) -> Option<u32> {
    let average = m.average()?;
    let ratio = average / target;
    if (ratio - 1.0).abs() <= TOLERANCE {
        return Some(current);
    }
    let mut desired_ratio = ratio;
    let mut counted = m.measured.len() as f64;
    if m.unmeasured > 0 {
        let fill = if ratio > 1.0 { 0.0 } else { target };
        let sum = m.measured.iter().sum::<f64>() + fill * f64::from(m.unmeasured);
        counted += f64::from(m.unmeasured);
        desired_ratio = sum / counted / target;
        // The missing ones turned the decision around, or into nothing.
        if (desired_ratio - 1.0).abs() <= TOLERANCE || (desired_ratio > 1.0) != (ratio > 1.0) {
            return Some(current);
        }
    }
    let desired = (desired_ratio * counted).ceil();
    Some(if desired <= 0.0 {
        0
    } else {
        u32::try_from(desired as u64).unwrap_or(u32::MAX)
    })
}

/// The recommendations of one service over its stabilization window.
#[derive(Debug)]
pub struct Window {
    since: Instant,
    recommendations: VecDeque<(Instant, u32)>,
}

impl Window {
    /// A window that starts now (a new term knows nothing of the last one's, so it
    /// scales down only once a whole window of its own agrees).
    pub fn new(now: Instant) -> Self {
        Self {
            since: now,
            recommendations: VecDeque::new(),
        }
    }

    /// The count to set, from `current` and this look's recommendation.
    pub fn decide(&mut self, now: Instant, current: u32, recommended: u32, a: &Autoscale) -> u32 {
        let window = Duration::from_secs(u64::from(a.scale_down_stabilization_seconds));
        self.recommendations.push_back((now, recommended));
        while let Some(&(at, _)) = self.recommendations.front() {
            if now.saturating_duration_since(at) > window {
                self.recommendations.pop_front();
            } else {
                break;
            }
        }
        let next = if recommended > current {
            // Up at once, at most doubling (or +4) per look.
            recommended.min(current.saturating_mul(2).max(current.saturating_add(4)))
        } else if recommended < current {
            if now.saturating_duration_since(self.since) < window {
                current
            } else {
                let highest = self
                    .recommendations
                    .iter()
                    .map(|&(_, r)| r)
                    .max()
                    .unwrap_or(current);
                highest.min(current)
            }
        } else {
            current
        };
        a.clamp(next)
    }
}

/// Measure service `service`'s replicas by `metric`.
fn measure(ctx: &Ctx, service: &Service, a: &Autoscale, now: Instant) -> Measure {
    let (metric, _) = a.target();
    let mut m = Measure::default();
    for w in replicas_of(ctx, &service.name) {
        if w.desired_state != DesiredState::Running {
            continue;
        }
        let percent = serving(&w)
            .and_then(|_| ctx.usage().get(&w.id, now))
            .and_then(|s| s.percent_of(&w.spec, metric));
        match percent {
            Some(p) => m.measured.push(p),
            None => m.unmeasured += 1,
        }
    }
    m
}

/// The autoscaler loop of one leader term.
pub async fn run(ctx: Arc<Ctx>, term: CancellationToken) {
    let every = Duration::from_millis(ctx.config().autoscale_interval_ms.max(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut windows: HashMap<String, Window> = HashMap::new();
    loop {
        tokio::select! {
            () = term.cancelled() => return,
            _ = tick.tick() => {}
        }
        let names = ctx.services().autoscaled().names();
        windows.retain(|name, _| names.contains(name));
        for name in names {
            if term.is_cancelled() {
                return;
            }
            if let Err(e) = look(&ctx, &name, &mut windows).await {
                tracing::warn!(service = %name, error = %e, "autoscaling the service failed; next look retries");
            }
        }
    }
}

/// One look at service `name`.
async fn look(
    ctx: &Arc<Ctx>,
    name: &str,
    windows: &mut HashMap<String, Window>,
) -> Result<(), crate::store::StoreError> {
    let Some(record) = ctx.store().get::<Service>(&keys::service(name)).await? else {
        ctx.services().autoscaled().note(name, false);
        return Ok(());
    };
    let service = record.value;
    let Some(a) = service.autoscale.clone() else {
        ctx.services().autoscaled().note(name, false);
        return Ok(());
    };
    let now = Instant::now();
    let (metric, target) = a.target();
    let m = measure(ctx, &service, &a, now);
    let window = windows
        .entry(name.to_string())
        .or_insert_with(|| Window::new(now));
    let Some(recommended) = recommend(service.replicas, &m, f64::from(target)) else {
        return Ok(());
    };
    let next = window.decide(now, service.replicas, recommended, &a);
    if next == service.replicas {
        return Ok(());
    }
    let average = m.average().unwrap_or(0.0);
    let event = ScaleEvent {
        at: Utc::now(),
        from: service.replicas,
        to: next,
        metric,
        current_percent: average.round().clamp(0.0, f64::from(u32::MAX)) as u32,
        target_percent: target,
        measured_replicas: u32::try_from(m.measured.len()).unwrap_or(u32::MAX),
        reason: format!(
            "{metric} at {average:.0}% of the {target}% target over {} measured replica(s){}: {} -> {next}",
            m.measured.len(),
            if m.unmeasured > 0 {
                format!(" ({} not measured)", m.unmeasured)
            } else {
                String::new()
            },
            service.replicas
        ),
    };
    let from = service.replicas;
    let out = super::update_service(ctx, &service, record.mod_revision, |cur| {
        // Only the count this look started from is changed: a concurrent apply or
        // scale wins, and the next look decides again.
        (cur.replicas == from && cur.autoscale.is_some()).then(|| {
            let mut next = cur.clone();
            next.record_scale(event.clone());
            next
        })
    })
    .await?;
    if let Updated::Written(_) = out {
        let direction = if next > from { "up" } else { "down" };
        ctx.metrics()
            .autoscale_decisions
            .with_label_values(&[name, direction])
            .inc();
        tracing::info!(service = %name, from, to = next, %metric, current_percent = event.current_percent, target_percent = target, measured = event.measured_replicas, "{}", event.reason);
        ctx.services().enqueue(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(measured: &[f64], unmeasured: u32) -> Measure {
        Measure {
            measured: measured.to_vec(),
            unmeasured,
        }
    }

    fn auto(min: u32, max: u32, window: u32) -> Autoscale {
        Autoscale {
            min,
            max,
            target_cpu_percent: Some(50),
            target_memory_percent: None,
            scale_down_stabilization_seconds: window,
        }
    }

    #[test]
    fn the_recommendation_is_the_hpa_ratio() {
        assert_eq!(recommend(1, &m(&[100.0], 0), 50.0), Some(2));
        assert_eq!(recommend(2, &m(&[150.0, 150.0], 0), 50.0), Some(6));
        assert_eq!(recommend(4, &m(&[10.0; 4], 0), 50.0), Some(1));
        assert_eq!(
            recommend(3, &m(&[52.0; 3], 0), 50.0),
            Some(3),
            "within tolerance"
        );
        assert_eq!(recommend(3, &m(&[], 3), 50.0), None, "nothing measured");
    }

    #[test]
    fn unmeasured_replicas_never_push_a_decision_further() {
        // Up: the two starting replicas count as idle: 200+0+0 over 3 → 67% → 4.
        assert_eq!(recommend(3, &m(&[200.0], 2), 50.0), Some(4));
        // 60+0 over 2 = 30%: the missing one turned "up" into "down": no change.
        assert_eq!(recommend(2, &m(&[60.0], 1), 50.0), Some(2));
        // Down: missing ones count as at the target: (10+50)/2 = 30% → 2.
        assert_eq!(recommend(3, &m(&[10.0], 1), 50.0), Some(2));
    }

    #[test]
    fn up_at_once_down_after_the_window_within_bounds() {
        let t0 = Instant::now();
        let a = auto(1, 10, 10);
        let mut w = Window::new(t0);
        assert_eq!(w.decide(t0, 1, 3, &a), 3, "up at once");
        assert_eq!(w.decide(t0, 1, 30, &a), 5, "at most +4 from 1");
        assert_eq!(w.decide(t0, 8, 40, &a), 10, "never above max");
        let s = |x: u64| t0 + Duration::from_secs(x);
        assert_eq!(
            w.decide(s(2), 3, 1, &a),
            3,
            "a young window does not scale down"
        );
        let mut w = Window::new(t0);
        w.decide(s(1), 3, 3, &a);
        w.decide(s(5), 3, 1, &a);
        assert_eq!(
            w.decide(s(10), 3, 1, &a),
            3,
            "3 was recommended within the window"
        );
        assert_eq!(w.decide(s(12), 3, 1, &a), 1, "the window agrees now");
        assert_eq!(w.decide(s(30), 1, 0, &a), 1, "never below min");
        let mut w = Window::new(t0);
        w.decide(s(1), 4, 2, &a);
        assert_eq!(w.decide(s(11), 4, 3, &a), 3, "the highest of the window");
    }
}
