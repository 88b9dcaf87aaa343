//! Validation of client requests into specs. Every error names the field.
//!
//! - [`compose`]: the fields of `docker-compose` and `git-compose` workloads

use crate::policy::{capability_name, is_capability_name, normalize_host_path};
use crate::secret::{SecretEnv, REDACTED};
use crate::workload::{
    Command, Resources, ResourcesRequest, RestartPolicy, WorkloadRequest, WorkloadSpec,
    WorkloadType,
};
use std::fmt;

mod compose;

pub use compose::{repo_full_name, DEFAULT_BRANCH};

/// A request field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// JSON path of the field, e.g. `resources.cpu`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
    }
}

/// Longest accepted workload name (a DNS label).
pub const MAX_NAME_LEN: usize = 63;

/// Whether `s` is an RFC 1123 DNS label (lower-case letters, digits, '-').
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Keys with a security meaning that the API does not support. A request carrying one
/// is refused (400) rather than run without it. Compared after lower-casing and
/// dropping `_` and `-`.
pub const UNSUPPORTED_SECURITY_KEYS: &[&str] = &[
    "securityopt",
    "userns",
    "usernsmode",
    "capdrop",
    "cgroupparent",
    "cgroupns",
    "cgroupnsmode",
    "sysctls",
    "uts",
    "utsmode",
    "runtime",
    "volumesfrom",
    "mounts",
    "tmpfs",
    "hostconfig",
    "networkmode",
    "hostnetwork",
    "hostpid",
    "hostipc",
    "pid",
    "ipc",
    "user",
    "groupadd",
    "devicecgrouprules",
    "devicerequests",
    "oomkilldisable",
    "readonlyrootfs",
    "apparmor",
    "seccomp",
    "selinux",
];

/// Security-relevant supported keys by their folded form, so `cap_add` is told to be
/// `capAdd` instead of being ignored.
const SUPPORTED_SPELLINGS: &[(&str, &str)] = &[
    ("capadd", "capAdd"),
    ("pidmode", "pidMode"),
    ("ipcmode", "ipcMode"),
    ("privileged", "privileged"),
    ("devices", "devices"),
    ("secretenv", "secretEnv"),
];

fn fold_key(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Refuse other keys that must not be silently ignored.
fn check_other_keys<'a>(keys: impl Iterator<Item = &'a String>) -> Result<(), ValidationError> {
    for key in keys {
        let folded = fold_key(key);
        if let Some((_, real)) = SUPPORTED_SPELLINGS.iter().find(|(f, _)| *f == folded) {
            return Err(err(
                key.as_str(),
                format!("unknown key; the supported key is {real:?}"),
            ));
        }
        if UNSUPPORTED_SECURITY_KEYS.contains(&folded.as_str()) {
            return Err(err(
                key.as_str(),
                "is not supported by this API; the workload was not created",
            ));
        }
    }
    Ok(())
}

fn validate_env_name(field: &str, key: &str) -> Result<(), ValidationError> {
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        return Err(err(
            format!("{field}.{key}"),
            "name must be non-empty without '=' or NUL",
        ));
    }
    Ok(())
}

impl WorkloadRequest {
    /// Validate into a spec. An absent name is derived from the image.
    pub fn validate(self) -> Result<WorkloadSpec, ValidationError> {
        check_other_keys(self.other.keys())?;
        let kind = match self.kind.as_deref() {
            None | Some("") | Some("docker-container") => WorkloadType::DockerContainer,
            Some("docker-compose") => WorkloadType::DockerCompose,
            Some("git-compose") => WorkloadType::GitCompose,
            Some(t) => {
                return Err(err(
                    "type",
                    format!("unknown workload type {t:?}; expected \"docker-container\", \"docker-compose\" or \"git-compose\""),
                ))
            }
        };
        if kind.is_compose() {
            if self.health_check.is_some() {
                return Err(err(
                    "healthCheck",
                    "a Compose project's services carry their own healthcheck in the Compose file",
                ));
            }
            return compose::validate(self, kind);
        }
        compose::refuse_project_fields(&self)?;
        let image = self.image.trim().to_string();
        if image.is_empty() {
            return Err(err("image", "is required"));
        }
        if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(
                "image",
                format!("{image:?} is not a valid image reference"),
            ));
        }
        let name = if self.name.trim().is_empty() {
            name_from_image(&image)
        } else {
            self.name.trim().to_string()
        };
        if !is_valid_name(&name) {
            return Err(err(
                "name",
                format!("{name:?} must be 1-63 characters of letters, digits, '-', '_' or '.', starting with a letter or digit"),
            ));
        }
        let command = match self.command {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
            Some(serde_json::Value::String(s)) => Some(Command::Shell(s)),
            Some(serde_json::Value::Array(items)) => {
                let mut argv = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        serde_json::Value::String(s) => argv.push(s),
                        _ => return Err(err(format!("command[{i}]"), "must be a string")),
                    }
                }
                if argv.is_empty() {
                    None
                } else {
                    Some(Command::Exec(argv))
                }
            }
            Some(_) => return Err(err("command", "must be a string or an array of strings")),
        };
        for key in self.env_vars.keys() {
            validate_env_name("envVars", key)?;
        }
        for (key, value) in &self.secret_env {
            validate_env_name("secretEnv", key)?;
            if self.env_vars.contains_key(key) {
                return Err(err(
                    format!("secretEnv.{key}"),
                    "is also in envVars; give each variable once",
                ));
            }
            if value == REDACTED {
                return Err(err(
                    format!("secretEnv.{key}"),
                    format!("the value {REDACTED:?} is what answers show in place of a secret; send the real value"),
                ));
            }
        }
        let mut cap_add = Vec::with_capacity(self.cap_add.len());
        for (i, c) in self.cap_add.iter().enumerate() {
            if !is_capability_name(c) {
                return Err(err(
                    format!("capAdd[{i}]"),
                    format!("{c:?} is not a capability name (e.g. NET_ADMIN)"),
                ));
            }
            cap_add.push(capability_name(c));
        }
        for (i, d) in self.devices.iter().enumerate() {
            validate_device(d).map_err(|m| err(format!("devices[{i}]"), m))?;
        }
        let pid_mode = match self.pid_mode.as_deref().map(str::trim) {
            None | Some("") => None,
            Some("host") => Some("host".to_string()),
            Some(m) => {
                return Err(err(
                    "pidMode",
                    format!("{m:?} is not supported; only \"host\" (or absent)"),
                ))
            }
        };
        let ipc_mode = match self.ipc_mode.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(m @ ("private" | "shareable" | "none" | "host")) => Some(m.to_string()),
            Some(m) => {
                return Err(err(
                    "ipcMode",
                    format!("{m:?} is not one of private, shareable, none, host"),
                ))
            }
        };
        for (i, p) in self.ports.iter().enumerate() {
            validate_port(p).map_err(|m| err(format!("ports[{i}]"), m))?;
        }
        for (i, v) in self.volumes.iter().enumerate() {
            validate_volume(v).map_err(|m| err(format!("volumes[{i}]"), m))?;
        }
        let network = self.network.filter(|n| !n.trim().is_empty());
        let restart_policy = match self.restart_policy.as_deref() {
            None => RestartPolicy::No,
            Some(p) => RestartPolicy::parse(p).ok_or_else(|| {
                err(
                    "restartPolicy",
                    format!("{p:?} is not one of no, on-failure, always, unless-stopped"),
                )
            })?,
        };
        let resources = validate_resources(self.resources.unwrap_or_default())?;
        for (field, map) in [
            ("labels", &self.labels),
            ("nodeSelector", &self.node_selector),
        ] {
            for key in map.keys() {
                if key.is_empty() || key.len() > 253 {
                    return Err(err(field, "label keys must be 1-253 characters"));
                }
            }
        }
        if let Some(check) = &self.health_check {
            check.validate().map_err(|(field, message)| {
                let field = if field.is_empty() {
                    "healthCheck".to_string()
                } else {
                    format!("healthCheck.{field}")
                };
                err(field, message)
            })?;
        }
        Ok(WorkloadSpec {
            health_check: self.health_check.map(Box::new),
            name,
            kind,
            image,
            command,
            env_vars: self.env_vars,
            ports: self.ports,
            volumes: self.volumes,
            network,
            restart_policy,
            resources,
            labels: self.labels,
            node_selector: self.node_selector,
            secret_env: SecretEnv::new(self.secret_env),
            privileged: self.privileged,
            cap_add,
            devices: self.devices,
            pid_mode,
            ipc_mode,
            ..WorkloadSpec::default()
        })
    }
}

fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A name derived from an image reference: `docker.io/library/nginx:1.27` → `nginx`.
pub fn name_from_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let base = last.split(['@', ':']).next().unwrap_or(last);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "workload".to_string()
    } else {
        trimmed.chars().take(MAX_NAME_LEN).collect()
    }
}

fn validate_resources(r: ResourcesRequest) -> Result<Resources, ValidationError> {
    fn field(v: &serde_json::Value, name: &str) -> Result<u64, ValidationError> {
        match v {
            serde_json::Value::Null => Ok(0),
            serde_json::Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Ok(u)
                } else if n.as_i64().is_some() {
                    Err(err(name, "must not be negative"))
                } else {
                    // JSON has one number type: 570.0 is the whole number 570.
                    match n.as_f64() {
                        Some(f) if f < 0.0 => Err(err(name, "must not be negative")),
                        Some(f) if f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(f as u64),
                        _ => Err(err(name, "must be a whole number")),
                    }
                }
            }
            _ => Err(err(name, "must be an integer")),
        }
    }
    Ok(Resources {
        cpu: field(&r.cpu, "resources.cpu")?,
        memory: field(&r.memory, "resources.memory")?,
    })
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{s:?} is not a port number (1-65535)")),
    }
}

/// `[ip:]host:container[/tcp|udp]` or `container[/proto]`.
fn validate_port(p: &str) -> Result<(), String> {
    let (ports, proto) = match p.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (p, None),
    };
    if let Some(proto) = proto {
        if !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(format!("protocol {proto:?} must be tcp, udp or sctp"));
        }
    }
    let parts: Vec<&str> = ports.split(':').collect();
    match parts.as_slice() {
        [c] => parse_port(c).map(|_| ()),
        [h, c] => {
            parse_port(h)?;
            parse_port(c).map(|_| ())
        }
        [ip, h, c] => {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(format!("{ip:?} is not an IP address"));
            }
            if !h.is_empty() {
                parse_port(h)?;
            }
            parse_port(c).map(|_| ())
        }
        _ => Err(format!("{p:?} is not host:container[/proto]")),
    }
}

/// `host:container[:ro|rw]` with absolute container path, or a named volume.
fn validate_volume(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, None),
        [s, d, m] => (*s, *d, Some(*m)),
        _ => return Err(format!("{v:?} is not source:target[:ro|rw]")),
    };
    if src.is_empty() {
        return Err("source must not be empty".into());
    }
    if src.starts_with('/') {
        if normalize_host_path(src).is_none() {
            return Err(format!(
                "host path {src:?} must not contain '..' components"
            ));
        }
    } else if !is_volume_name(src) {
        return Err(format!(
            "source {src:?} must be an absolute host path or a volume name (letters, digits, '_', '.', '-')"
        ));
    }
    if !dst.starts_with('/') {
        return Err(format!("target {dst:?} must be an absolute path"));
    }
    if let Some(m) = mode {
        if !m.split(',').all(|o| matches!(o, "ro" | "rw" | "z" | "Z")) {
            return Err(format!("mode {m:?} must be ro or rw"));
        }
    }
    Ok(())
}

fn is_volume_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `host[:container[:perms]]`, both absolute, perms of `rwm`.
fn validate_device(d: &str) -> Result<(), String> {
    let parts: Vec<&str> = d.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, None, None),
        [h, c] => (*h, Some(*c), None),
        [h, c, p] => (*h, Some(*c), Some(*p)),
        _ => return Err(format!("{d:?} is not host[:container[:perms]]")),
    };
    if normalize_host_path(host).is_none() {
        return Err(format!("host device {host:?} must be an absolute path"));
    }
    if container.is_some_and(|c| !c.starts_with('/')) {
        return Err("the container path must be absolute".into());
    }
    if perms.is_some_and(|p| p.is_empty() || !p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))) {
        return Err("permissions must be of r, w, m".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> WorkloadRequest {
        serde_json::from_str(json).expect("request parses")
    }

    #[test]
    fn missing_image_names_the_field() {
        let e = req(r#"{"name":"x","type":"docker-container"}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "image");
    }

    #[test]
    fn unknown_type_is_refused_with_its_name() {
        let e = req(r#"{"image":"a","type":"vm"}"#).validate().unwrap_err();
        assert_eq!(e.field, "type");
        assert!(e.message.contains("vm"));
    }

    #[test]
    fn original_cli_server_owned_keys_are_ignored() {
        let spec = req(r#"{"id":"x","name":"web","type":"docker-container","image":"nginx:latest","gitBranch":"main","restartPolicy":"no","resources":{"cpu":0,"memory":0},"status":"","createdAt":"0001-01-01T00:00:00Z"}"#)
            .validate()
            .expect("valid");
        assert_eq!(spec.name, "web");
        assert_eq!(spec.restart_policy, RestartPolicy::No);
        assert_eq!(spec.resources, Resources::default());
    }

    #[test]
    fn string_command_is_shell_form_and_array_is_exec_form() {
        let s = req(r#"{"image":"a","command":"echo hi"}"#)
            .validate()
            .expect("valid");
        assert_eq!(s.command, Some(Command::Shell("echo hi".into())));
        assert_eq!(
            s.command.as_ref().map(Command::to_argv),
            Some(vec!["/bin/sh".to_string(), "-c".into(), "echo hi".into()])
        );
        let e = req(r#"{"image":"a","command":["sleep","1"]}"#)
            .validate()
            .expect("valid");
        assert_eq!(
            e.command,
            Some(Command::Exec(vec!["sleep".into(), "1".into()]))
        );
    }

    #[test]
    fn negative_resources_name_the_field() {
        let e = req(r#"{"image":"a","resources":{"cpu":-1}}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "resources.cpu");
        let ok = req(r#"{"image":"a","resources":{"cpu":570.0}}"#)
            .validate()
            .expect("valid");
        assert_eq!(ok.resources.cpu, 570);
        let e = req(r#"{"image":"a","resources":{"memory":1.5}}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "resources.memory");
    }

    #[test]
    fn bad_restart_policy_and_ports_and_volumes_name_the_field() {
        let e = req(r#"{"image":"a","restartPolicy":"sometimes"}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "restartPolicy");
        let e = req(r#"{"image":"a","ports":["80:80","x:1"]}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "ports[1]");
        let e = req(r#"{"image":"a","volumes":["/a:relative"]}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "volumes[0]");
    }

    #[test]
    fn name_defaults_from_image() {
        let s = req(r#"{"image":"docker.io/library/nginx:1.27"}"#)
            .validate()
            .expect("valid");
        assert_eq!(s.name, "nginx");
        assert_eq!(name_from_image("busybox:local"), "busybox");
    }

    #[test]
    fn valid_ports_and_volumes_are_accepted() {
        for p in ["80", "8080:80", "8443:443/tcp", "127.0.0.1:53:53/udp"] {
            assert!(validate_port(p).is_ok(), "{p}");
        }
        for v in ["/srv:/srv", "data:/data:ro"] {
            assert!(validate_volume(v).is_ok(), "{v}");
        }
        for v in ["/a/../etc:/x", "../x:/x", "~/x:/x"] {
            assert!(validate_volume(v).is_err(), "{v}");
        }
    }

    #[test]
    fn unsupported_security_keys_are_refused_by_name() {
        for (body, key) in [
            (
                r#"{"image":"a","securityOpt":["seccomp=unconfined"]}"#,
                "securityOpt",
            ),
            (r#"{"image":"a","userns":"host"}"#, "userns"),
            (r#"{"image":"a","cap_add":["SYS_ADMIN"]}"#, "cap_add"),
            (r#"{"image":"a","pid_mode":"host"}"#, "pid_mode"),
            (r#"{"image":"a","HostConfig":{}}"#, "HostConfig"),
        ] {
            let e = req(body).validate().expect_err(body);
            assert_eq!(e.field, key, "{body}");
        }
        // Unknown keys without a security meaning stay ignored (the original CLI).
        assert!(req(r#"{"image":"a","gitBranch":"main"}"#)
            .validate()
            .is_ok());
    }

    #[test]
    fn security_fields_are_validated_and_canonical() {
        let s = req(r#"{"image":"a","privileged":true,"capAdd":["cap_net_admin"],"devices":["/dev/fuse"],"pidMode":"host","ipcMode":"host"}"#)
            .validate()
            .expect("valid");
        assert!(s.privileged);
        assert_eq!(s.cap_add, vec!["NET_ADMIN".to_string()]);
        assert_eq!(s.pid_mode.as_deref(), Some("host"));
        let e = req(r#"{"image":"a","pidMode":"container:x"}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "pidMode");
        let e = req(r#"{"image":"a","devices":["fuse"]}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "devices[0]");
        let e = req(r#"{"image":"a","capAdd":["net admin"]}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "capAdd[0]");
    }

    #[test]
    fn secret_env_is_checked_without_echoing_values() {
        let e = req(r#"{"image":"a","envVars":{"K":"1"},"secretEnv":{"K":"hunter2"}}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "secretEnv.K");
        assert!(!e.to_string().contains("hunter2"));
        let e = req(r#"{"image":"a","secretEnv":{"K":"***"}}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "secretEnv.K");
        let s = req(r#"{"image":"a","secretEnv":{"DB_PASSWORD":"hunter2"}}"#)
            .validate()
            .expect("valid");
        assert_eq!(s.secret_env.names().collect::<Vec<_>>(), ["DB_PASSWORD"]);
    }

    proptest::proptest! {
        #[test]
        fn derived_names_are_always_valid(image in "[ -~]{0,80}") {
            let name = name_from_image(&image);
            proptest::prop_assert!(is_valid_name(&name), "{name:?}");
        }
    }
}
