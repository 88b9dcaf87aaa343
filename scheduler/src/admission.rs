//! Admission: whether the cluster policy lets a validated workload have what it asks
//! of the host (bind mounts, host namespaces, privileges, devices). Pure; the policy
//! is read by the caller. Every refusal names the field and the policy rule.

use persys_proto::policy::{exposes_engine_socket, normalize_host_path, path_is_under};
use persys_proto::{ClusterPolicy, MountMode, WorkloadSpec};
use std::fmt;

/// Why the policy refuses a workload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Denied {
    /// JSON path of the field, e.g. `volumes[0]`.
    pub field: String,
    /// The policy rule that would allow it (`allowedHostPaths`, `allowPrivileged`, ...),
    /// or `engineSocket` for what no policy allows.
    pub rule: &'static str,
    /// What is refused.
    pub what: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rule == ENGINE_SOCKET {
            write!(
                f,
                "{}: {} exposes the container engine's socket, which the cluster never allows (engineSocket)",
                self.field, self.what
            )
        } else {
            write!(
                f,
                "{}: {} is not allowed by the cluster policy ({})",
                self.field, self.what, self.rule
            )
        }
    }
}

/// Rule name of the engine socket, which no policy allows.
pub const ENGINE_SOCKET: &str = "engineSocket";

fn deny(field: impl Into<String>, rule: &'static str, what: impl Into<String>) -> Denied {
    Denied {
        field: field.into(),
        rule,
        what: what.into(),
    }
}

/// Check `spec` against `policy`; the first refusal, in field order.
pub fn admit(spec: &WorkloadSpec, policy: &ClusterPolicy) -> Result<(), Denied> {
    for (i, v) in spec.volumes.iter().enumerate() {
        check_volume(&format!("volumes[{i}]"), v, policy)?;
    }
    if let Some(dir) = &spec.local_path {
        // The project's services may bind any part of its directory read-write and
        // its builds read all of it: it is a read-write host path.
        check_volume("localPath", &format!("{dir}:/project:rw"), policy)?;
    }
    if let Some(n) = spec.network.as_deref().map(str::trim) {
        if n == "host" && !policy.allow_host_network {
            return Err(deny("network", "allowHostNetwork", "network \"host\""));
        }
        if n.starts_with("container:") && !policy.allow_container_network {
            return Err(deny(
                "network",
                "allowContainerNetwork",
                format!("network {n:?}"),
            ));
        }
    }
    if spec.pid_mode.as_deref() == Some("host") && !policy.allow_host_pid {
        return Err(deny("pidMode", "allowHostPid", "pidMode \"host\""));
    }
    if spec.ipc_mode.as_deref() == Some("host") && !policy.allow_host_ipc {
        return Err(deny("ipcMode", "allowHostIpc", "ipcMode \"host\""));
    }
    if spec.privileged && !policy.allow_privileged {
        return Err(deny(
            "privileged",
            "allowPrivileged",
            "a privileged container",
        ));
    }
    let any_cap = policy
        .allowed_capabilities
        .iter()
        .any(|c| persys_proto::policy::capability_name(c) == "ALL");
    for (i, c) in spec.cap_add.iter().enumerate() {
        let allowed = any_cap
            || policy
                .allowed_capabilities
                .iter()
                .any(|a| persys_proto::policy::capability_name(a) == *c);
        if !allowed {
            return Err(deny(
                format!("capAdd[{i}]"),
                "allowedCapabilities",
                format!("capability {c:?}"),
            ));
        }
    }
    if !spec.devices.is_empty() && !policy.allow_devices {
        return Err(deny(
            "devices[0]",
            "allowDevices",
            format!("host device {:?}", spec.devices[0]),
        ));
    }
    Ok(())
}

/// A volume `source:target[:mode]`: a named volume (no leading `/`) is always allowed;
/// a host path needs an allowed prefix of a fitting mode, and never the engine socket.
fn check_volume(field: &str, volume: &str, policy: &ClusterPolicy) -> Result<(), Denied> {
    let mut parts = volume.split(':');
    let source = parts.next().unwrap_or_default();
    if !source.starts_with('/') {
        return Ok(());
    }
    let read_only = parts
        .nth(1)
        .is_some_and(|m| m.split(',').any(|o| o == "ro"));
    let what = format!("host path {source:?}");
    // Validation refuses `..`; an unnormalizable path is refused here too.
    let Some(path) = normalize_host_path(source) else {
        return Err(deny(field, "allowedHostPaths", what));
    };
    if exposes_engine_socket(&path) {
        return Err(deny(field, ENGINE_SOCKET, what));
    }
    let mut covered = false;
    for rule in &policy.allowed_host_paths {
        let Some(prefix) = normalize_host_path(&rule.prefix) else {
            continue;
        };
        if path_is_under(&path, &prefix) {
            covered = true;
            if read_only || rule.mode == MountMode::ReadWrite {
                return Ok(());
            }
        }
    }
    if covered {
        return Err(deny(
            field,
            "allowedHostPaths",
            format!("{what} read-write (the policy allows it read-only: add \":ro\")"),
        ));
    }
    Err(deny(field, "allowedHostPaths", what))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_compose_local_path_is_a_read_write_host_path() {
        use persys_proto::{HostPathRule, WorkloadRequest};
        let spec = serde_json::from_str::<WorkloadRequest>(
            r#"{"type":"docker-compose","localPath":"/srv/shop"}"#,
        )
        .unwrap()
        .validate()
        .unwrap();
        let e = super::admit(&spec, &ClusterPolicy::default()).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.rule),
            ("localPath", "allowedHostPaths")
        );
        let ro = ClusterPolicy {
            allowed_host_paths: vec![HostPathRule {
                prefix: "/srv".into(),
                mode: MountMode::ReadOnly,
            }],
            ..Default::default()
        };
        assert!(super::admit(&spec, &ro).is_err());
        let rw = ClusterPolicy {
            allowed_host_paths: vec![HostPathRule {
                prefix: "/srv".into(),
                mode: MountMode::ReadWrite,
            }],
            ..Default::default()
        };
        assert!(super::admit(&spec, &rw).is_ok());
    }

    use super::*;
    use persys_proto::{HostPathRule, WorkloadRequest};

    fn spec(json: &str) -> WorkloadSpec {
        serde_json::from_str::<WorkloadRequest>(json)
            .expect("parses")
            .validate()
            .expect("valid")
    }

    fn allow(prefix: &str, mode: MountMode) -> ClusterPolicy {
        ClusterPolicy {
            allowed_host_paths: vec![HostPathRule {
                prefix: prefix.into(),
                mode,
            }],
            ..Default::default()
        }
    }

    fn refused(json: &str, policy: &ClusterPolicy) -> Denied {
        admit(&spec(json), policy).expect_err(json)
    }

    #[test]
    fn an_ordinary_workload_is_admitted_by_the_default_policy() {
        let s = spec(
            r#"{"image":"a","volumes":["data:/data","cache:/c:ro"],"network":"bridge","ports":["80:80"]}"#,
        );
        assert_eq!(admit(&s, &ClusterPolicy::default()), Ok(()));
    }

    #[test]
    fn host_root_is_refused_by_default_naming_field_and_rule() {
        let d = refused(
            r#"{"image":"a","volumes":["data:/d","/:/host"]}"#,
            &ClusterPolicy::default(),
        );
        assert_eq!((d.field.as_str(), d.rule), ("volumes[1]", ENGINE_SOCKET));
        let d = refused(
            r#"{"image":"a","volumes":["/etc:/host-etc"]}"#,
            &ClusterPolicy::default(),
        );
        assert_eq!(
            d.to_string(),
            "volumes[0]: host path \"/etc\" is not allowed by the cluster policy (allowedHostPaths)"
        );
    }

    #[test]
    fn the_engine_socket_is_refused_even_under_an_allowed_prefix() {
        let p = allow("/var/lib", MountMode::ReadWrite);
        let d = refused(
            r#"{"image":"a","volumes":["/var/run/docker.sock:/var/run/docker.sock"]}"#,
            &p,
        );
        assert_eq!(d.rule, ENGINE_SOCKET);
        let d = refused(r#"{"image":"a","volumes":["/run:/r:ro"]}"#, &p);
        assert_eq!(d.rule, ENGINE_SOCKET);
    }

    #[test]
    fn an_allowed_prefix_admits_paths_under_it_by_whole_components() {
        let p = allow("/tmp/persys-x", MountMode::ReadOnly);
        let ok = spec(r#"{"image":"a","volumes":["/tmp/persys-x/sub:/d:ro"]}"#);
        assert_eq!(admit(&ok, &p), Ok(()));
        let ok = spec(r#"{"image":"a","volumes":["/tmp/persys-x:/d:ro"]}"#);
        assert_eq!(admit(&ok, &p), Ok(()));
        let d = refused(r#"{"image":"a","volumes":["/tmp/persys-xy:/d:ro"]}"#, &p);
        assert_eq!(d.rule, "allowedHostPaths");
        let d = refused(r#"{"image":"a","volumes":["/tmp:/d:ro"]}"#, &p);
        assert_eq!(d.rule, "allowedHostPaths");
    }

    #[test]
    fn a_read_only_rule_refuses_read_write_mounts() {
        let p = allow("/tmp/persys-x", MountMode::ReadOnly);
        for v in ["/tmp/persys-x:/d", "/tmp/persys-x:/d:rw"] {
            let d = refused(&format!(r#"{{"image":"a","volumes":["{v}"]}}"#), &p);
            assert!(d.to_string().contains("read-only"), "{d}");
        }
        let rw = allow("/tmp/persys-x", MountMode::ReadWrite);
        let ok = spec(r#"{"image":"a","volumes":["/tmp/persys-x:/d"]}"#);
        assert_eq!(admit(&ok, &rw), Ok(()));
    }

    #[test]
    fn host_and_container_networks_need_their_flags() {
        let d = refused(
            r#"{"image":"a","network":"host"}"#,
            &ClusterPolicy::default(),
        );
        assert_eq!((d.field.as_str(), d.rule), ("network", "allowHostNetwork"));
        let d = refused(
            r#"{"image":"a","network":"container:abc"}"#,
            &ClusterPolicy::default(),
        );
        assert_eq!(d.rule, "allowContainerNetwork");
        let p = ClusterPolicy {
            allow_host_network: true,
            allow_container_network: true,
            ..Default::default()
        };
        for n in ["host", "container:abc"] {
            let s = spec(&format!(r#"{{"image":"a","network":"{n}"}}"#));
            assert_eq!(admit(&s, &p), Ok(()));
        }
    }

    #[test]
    fn host_namespaces_privileged_and_devices_need_their_flags() {
        let none = ClusterPolicy::default();
        for (json, field, rule) in [
            (
                r#"{"image":"a","pidMode":"host"}"#,
                "pidMode",
                "allowHostPid",
            ),
            (
                r#"{"image":"a","ipcMode":"host"}"#,
                "ipcMode",
                "allowHostIpc",
            ),
            (
                r#"{"image":"a","privileged":true}"#,
                "privileged",
                "allowPrivileged",
            ),
            (
                r#"{"image":"a","devices":["/dev/sda"]}"#,
                "devices[0]",
                "allowDevices",
            ),
        ] {
            let d = refused(json, &none);
            assert_eq!((d.field.as_str(), d.rule), (field, rule), "{json}");
        }
        let all = ClusterPolicy {
            allow_host_pid: true,
            allow_host_ipc: true,
            allow_privileged: true,
            allow_devices: true,
            ..Default::default()
        };
        let s = spec(
            r#"{"image":"a","pidMode":"host","ipcMode":"host","privileged":true,"devices":["/dev/fuse"]}"#,
        );
        assert_eq!(admit(&s, &all), Ok(()));
        // A private IPC namespace is no privilege.
        assert_eq!(
            admit(&spec(r#"{"image":"a","ipcMode":"private"}"#), &none),
            Ok(())
        );
    }

    #[test]
    fn capabilities_are_allowed_one_by_one_or_all() {
        let d = refused(
            r#"{"image":"a","capAdd":["NET_ADMIN"]}"#,
            &ClusterPolicy::default(),
        );
        assert_eq!(
            (d.field.as_str(), d.rule),
            ("capAdd[0]", "allowedCapabilities")
        );
        let some = ClusterPolicy {
            allowed_capabilities: vec!["cap_net_admin".into()],
            ..Default::default()
        };
        assert_eq!(
            admit(&spec(r#"{"image":"a","capAdd":["NET_ADMIN"]}"#), &some),
            Ok(())
        );
        let d = refused(r#"{"image":"a","capAdd":["NET_ADMIN","SYS_ADMIN"]}"#, &some);
        assert_eq!(d.field, "capAdd[1]");
        let all = ClusterPolicy {
            allowed_capabilities: vec!["ALL".into()],
            ..Default::default()
        };
        assert_eq!(
            admit(&spec(r#"{"image":"a","capAdd":["SYS_ADMIN"]}"#), &all),
            Ok(())
        );
    }
}
