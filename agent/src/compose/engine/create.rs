//! The engine's create body for one replica of a service.

use super::{ComposeEngineError, ProjectRef};
use crate::runtime::docker::{restart_policy, NO_NEW_PRIVILEGES};
use crate::runtime::PortMapping;
use bollard::container::{Config, NetworkingConfig};
use bollard::models::{
    EndpointSettings, HealthConfig, HostConfig, Mount, MountTypeEnum, PortBinding,
};
use persys_proto::compose::{ComposeService, MountSource};
use persys_proto::labels;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn nanos(d: Option<Duration>) -> Option<i64> {
    d.and_then(|d| i64::try_from(d.as_nanos()).ok())
}

/// `env_file`s (in order) below `environment`, as `K=V` entries.
pub(super) async fn environment(
    service: &ComposeService,
    dir: Option<&Path>,
) -> Result<Vec<String>, ComposeEngineError> {
    let mut env: std::collections::BTreeMap<String, String> = Default::default();
    for file in &service.env_files {
        let dir = dir.ok_or_else(|| {
            ComposeEngineError::Project("env_file: the project has no directory".into())
        })?;
        let path = inside(dir, file)?;
        let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
            ComposeEngineError::Project(format!("env_file {file:?} of {:?}: {e}", service.name))
        })?;
        for item in dotenvy::from_read_iter(text.as_bytes()) {
            let (k, v) = item.map_err(|e| {
                ComposeEngineError::Project(format!("env_file {file:?} of {:?}: {e}", service.name))
            })?;
            env.insert(k, v);
        }
    }
    env.extend(service.environment.clone());
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// `rel` under `dir`, refusing what resolves outside it (a symbolic link in a
/// repository could point anywhere on the node) or to the engine's socket.
pub(super) fn inside(dir: &Path, rel: &str) -> Result<PathBuf, ComposeEngineError> {
    let root = std::fs::canonicalize(dir).map_err(|e| {
        ComposeEngineError::Project(format!("project directory {}: {e}", dir.display()))
    })?;
    let joined = root.join(rel);
    // A path that does not exist yet is made by the engine as given (inside: the
    // parser refused `..`); one that exists must resolve inside the project.
    let resolved = std::fs::canonicalize(&joined).unwrap_or_else(|_| joined.clone());
    if !resolved.starts_with(&root) {
        return Err(ComposeEngineError::Project(format!(
            "{rel:?} resolves outside the project directory"
        )));
    }
    if persys_proto::policy::exposes_engine_socket(&resolved.to_string_lossy()) {
        return Err(ComposeEngineError::Project(format!(
            "{rel:?} exposes the container engine's socket"
        )));
    }
    Ok(resolved)
}

/// The create body of `replica` of `service`, running `image`.
pub(super) fn config(
    p: &ProjectRef,
    service: &ComposeService,
    replica: u32,
    image: &str,
    env: &[String],
    dir: Option<&Path>,
) -> Result<Config<String>, ComposeEngineError> {
    let mut container_labels: HashMap<String, String> = service
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    container_labels.extend(p.labels());
    container_labels.insert(labels::SERVICE.into(), service.name.clone());
    container_labels.insert(labels::REPLICA.into(), replica.to_string());

    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &service.ports {
        let m = PortMapping::parse(port).map_err(|e| {
            ComposeEngineError::Project(format!("service {:?} port {port:?}: {e}", service.name))
        })?;
        exposed.insert(m.key(), HashMap::new());
        bindings
            .entry(m.key())
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: m.host_ip.clone(),
                host_port: Some(m.host_port.map(|h| h.to_string()).unwrap_or_default()),
            });
    }

    let mut mounts = Vec::with_capacity(service.mounts.len());
    for m in &service.mounts {
        let (typ, source) = match &m.source {
            MountSource::Volume(name) => (MountTypeEnum::VOLUME, Some(p.volume(name))),
            MountSource::Anonymous => (MountTypeEnum::VOLUME, None),
            MountSource::Bind(rel) => {
                let dir = dir.ok_or_else(|| {
                    ComposeEngineError::Project("bind mount: the project has no directory".into())
                })?;
                let path = inside(dir, rel)?;
                (
                    MountTypeEnum::BIND,
                    Some(path.to_string_lossy().into_owned()),
                )
            }
        };
        mounts.push(Mount {
            target: Some(m.target.clone()),
            source,
            typ: Some(typ),
            read_only: Some(m.read_only),
            ..Default::default()
        });
    }

    let mut policy = restart_policy(service.restart);
    policy.maximum_retry_count = service.max_restarts.map(i64::from);
    let network = p.network();
    let host_config = HostConfig {
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        network_mode: Some(network.clone()),
        restart_policy: Some(policy),
        nano_cpus: (service.limits.cpu > 0).then(|| {
            i64::try_from(service.limits.cpu.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
        }),
        memory: (service.limits.memory > 0).then(|| {
            i64::try_from(service.limits.memory.saturating_mul(1 << 20)).unwrap_or(i64::MAX)
        }),
        security_opt: Some(vec![NO_NEW_PRIVILEGES.to_string()]),
        ..Default::default()
    };
    let healthcheck = service.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: nanos(h.interval),
        timeout: nanos(h.timeout),
        retries: h.retries.map(i64::from),
        start_period: nanos(h.start_period),
        ..Default::default()
    });
    // Services reach each other by name on the project's network.
    let endpoint = EndpointSettings {
        aliases: Some(vec![service.name.clone()]),
        ..Default::default()
    };
    Ok(Config {
        image: Some(image.to_string()),
        cmd: service.command.clone(),
        entrypoint: service.entrypoint.clone(),
        env: (!env.is_empty()).then(|| env.to_vec()),
        labels: Some(container_labels),
        working_dir: service.working_dir.clone(),
        hostname: Some(if service.replicas > 1 {
            format!("{}-{replica}", service.name)
        } else {
            service.name.clone()
        })
        .filter(|h| h.len() <= 63),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: HashMap::from([(network, endpoint)]),
        }),
        ..Default::default()
    })
}
