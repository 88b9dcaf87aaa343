//! The keys persys runs. Anything else is refused by name: a project that asks for
//! `privileged`, `network_mode: host` or a resource reservation must not start without
//! it. Extension keys (`x-…`) are ignored, as Compose ignores them.

use super::ComposeError;
use serde_yaml_ng::{Mapping, Value};

const TOP: &[&str] = &["version", "name", "services", "volumes"];
const SERVICE: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "depends_on",
    "healthcheck",
    "restart",
    "deploy",
    "labels",
    "working_dir",
    "expose",
];
const BUILD: &[&str] = &["context", "dockerfile", "args"];
const DEPLOY: &[&str] = &["replicas", "resources", "mode"];
const RESOURCES: &[&str] = &["limits"];
const LIMITS: &[&str] = &["cpus", "memory"];
const HEALTHCHECK: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "disable",
];
const DEPENDENCY: &[&str] = &["condition"];
const MOUNT: &[&str] = &["type", "source", "target", "read_only"];
const PORT: &[&str] = &["target", "published", "protocol", "host_ip"];
const VOLUME: &[&str] = &[];

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Refuse the keys of `map` (at `path`) that are not in `allowed`.
fn only(map: &Mapping, allowed: &[&str], path: &str) -> Result<(), ComposeError> {
    for key in map.keys() {
        let Some(key) = key.as_str() else {
            return Err(ComposeError::new(path, "keys must be strings"));
        };
        if key.starts_with("x-") || allowed.contains(&key) {
            continue;
        }
        return Err(ComposeError::new(
            join(path, key),
            "unsupported key (persys runs only what it supports; see docs/compose.md)",
        ));
    }
    Ok(())
}

fn mapping<'a>(value: &'a Value, path: &str) -> Result<&'a Mapping, ComposeError> {
    value
        .as_mapping()
        .ok_or_else(|| ComposeError::new(path, "must be a mapping"))
}

/// Check every key of a parsed (and interpolated) Compose file.
pub(super) fn check(root: &Value) -> Result<(), ComposeError> {
    let top = mapping(root, "")?;
    only(top, TOP, "")?;
    let services = top
        .get("services")
        .ok_or_else(|| ComposeError::new("services", "is required"))?;
    let services = mapping(services, "services")?;
    if services.is_empty() {
        return Err(ComposeError::new(
            "services",
            "must name at least one service",
        ));
    }
    for (name, service) in services {
        let path = join("services", name.as_str().unwrap_or("?"));
        if service.is_null() {
            continue;
        }
        let service = mapping(service, &path)?;
        only(service, SERVICE, &path)?;
        check_service(service, &path)?;
    }
    if let Some(volumes) = top.get("volumes").filter(|v| !v.is_null()) {
        for (name, volume) in mapping(volumes, "volumes")? {
            let path = join("volumes", name.as_str().unwrap_or("?"));
            if let Some(volume) = volume.as_mapping() {
                only(volume, VOLUME, &path)?;
            } else if !volume.is_null() {
                return Err(ComposeError::new(path, "must be empty or a mapping"));
            }
        }
    }
    Ok(())
}

fn check_service(service: &Mapping, path: &str) -> Result<(), ComposeError> {
    if let Some(build) = service.get("build").and_then(Value::as_mapping) {
        only(build, BUILD, &join(path, "build"))?;
    }
    if let Some(deploy) = service.get("deploy") {
        let deploy_path = join(path, "deploy");
        let deploy = mapping(deploy, &deploy_path)?;
        only(deploy, DEPLOY, &deploy_path)?;
        if let Some(mode) = deploy.get("mode").and_then(Value::as_str) {
            if mode != "replicated" {
                return Err(ComposeError::new(
                    join(&deploy_path, "mode"),
                    format!("{mode:?} is not supported; use \"replicated\""),
                ));
            }
        }
        if let Some(resources) = deploy.get("resources") {
            let res_path = join(&deploy_path, "resources");
            let resources = mapping(resources, &res_path)?;
            only(resources, RESOURCES, &res_path)?;
            if let Some(limits) = resources.get("limits") {
                let limits_path = join(&res_path, "limits");
                only(mapping(limits, &limits_path)?, LIMITS, &limits_path)?;
            }
        }
    }
    if let Some(health) = service.get("healthcheck") {
        let health_path = join(path, "healthcheck");
        only(mapping(health, &health_path)?, HEALTHCHECK, &health_path)?;
    }
    if let Some(deps) = service.get("depends_on").and_then(Value::as_mapping) {
        for (dep, condition) in deps {
            let dep_path = join(&join(path, "depends_on"), dep.as_str().unwrap_or("?"));
            only(mapping(condition, &dep_path)?, DEPENDENCY, &dep_path)?;
        }
    }
    for (list, allowed) in [("volumes", MOUNT), ("ports", PORT)] {
        if let Some(items) = service.get(list).and_then(Value::as_sequence) {
            for (i, item) in items.iter().enumerate() {
                if let Some(item) = item.as_mapping() {
                    only(item, allowed, &format!("{}[{i}]", join(path, list)))?;
                }
            }
        }
    }
    Ok(())
}
