//! Compose projects: a `docker-compose.yml` parsed with the `docker-compose-types`
//! crate, checked, and reduced to the part persys runs ([`ComposeProject`]).
//!
//! Every key persys does not run is refused by name (`services.web.privileged:
//! unsupported key`), never ignored: a project that asks for something it would not get
//! must not start without it. Values are interpolated first (`${VAR}`, `${VAR:-default}`,
//! `${VAR:?message}`, `$$`), from the workload's `envVars` and the project's `.env`.
//! Nothing here reads files: what needs the project's directory (`build`, `env_file`,
//! bind mounts) is checked to stay inside it and left to the agent, which has it.

mod convert;
mod error;
mod interpolate;
mod keys;
mod model;
#[cfg(test)]
mod tests;

pub use convert::{go_duration, inside_project, is_name as is_service_name};
pub use error::ComposeError;
pub use interpolate::interpolate;
pub use model::{
    Build, ComposeProject, ComposeService, Dependency, DependsCondition, HealthCheck, Mount,
    MountSource,
};

use std::collections::BTreeMap;

/// Where a project's files are, as far as parsing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectDir {
    /// The Compose file came alone (the `compose` field): nothing can be read beside it.
    None,
    /// The Compose file is in a directory (`localPath`, a git checkout): `build`,
    /// `env_file` and relative bind mounts may name files in it.
    Present,
}

/// Parse `yaml` into a project, interpolating with `vars` (unset variables become
/// empty, as Compose does).
pub fn parse(
    yaml: &str,
    vars: &BTreeMap<String, String>,
    dir: ProjectDir,
) -> Result<ComposeProject, ComposeError> {
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml)
        .map_err(|e| ComposeError::new("", format!("not valid YAML: {e}")))?;
    if !value.is_mapping() {
        return Err(ComposeError::new(
            "",
            "must be a YAML mapping with `services`",
        ));
    }
    interpolate::interpolate_tree(&mut value, vars, "")?;
    keys::check(&value)?;
    short_ports(&mut value);
    let compose: docker_compose_types::Compose = serde_yaml_ng::from_value(value)
        .map_err(|e| ComposeError::new("", format!("not a valid Compose file: {e}")))?;
    convert::project(compose, dir, vars)
}

/// Long-form `ports` entries as short strings: Compose lets a list mix both forms, the
/// typed model takes one form per list.
fn short_ports(root: &mut serde_yaml_ng::Value) {
    use serde_yaml_ng::Value;
    let Some(services) = root.get_mut("services").and_then(Value::as_mapping_mut) else {
        return;
    };
    for service in services.values_mut() {
        let Some(ports) = service.get_mut("ports").and_then(Value::as_sequence_mut) else {
            continue;
        };
        for port in ports.iter_mut() {
            let Some(long) = port.as_mapping() else {
                continue;
            };
            let text = |k: &str| match long.get(k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let mut short = String::new();
            if let Some(ip) = text("host_ip").filter(|ip| !ip.is_empty()) {
                short.push_str(&ip);
                short.push(':');
            }
            if let Some(published) = text("published") {
                short.push_str(&published);
                short.push(':');
            }
            short.push_str(&text("target").unwrap_or_default());
            if let Some(protocol) = text("protocol").filter(|p| !p.is_empty()) {
                short.push('/');
                short.push_str(&protocol);
            }
            *port = Value::String(short);
        }
    }
}
