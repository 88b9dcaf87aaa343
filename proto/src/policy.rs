//! The cluster's admission policy: which host-level privileges a workload may ask for.
//! Stored in etcd at [`crate::keys::POLICY`], set by an admin (`PUT /cluster/policy`).
//! The default refuses all of them; named volumes, ordinary networks and ports are
//! always allowed. The scheduler applies it on every create (see its `admission`
//! module); the agent refuses the engine socket on its own as defence in depth.

use serde::{Deserialize, Serialize};

/// Host paths of container engine API sockets. Mounting one of them, or a directory
/// holding one, gives the container control of the host's engine: never allowed.
pub const ENGINE_SOCKETS: [&str; 6] = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock",
    "/var/run/podman/podman.sock",
    "/run/podman/podman.sock",
];

/// How a host path prefix may be mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MountMode {
    /// Read-only: the volume must say `:ro`.
    #[default]
    #[serde(rename = "ro")]
    ReadOnly,
    /// Read-write (or read-only).
    #[serde(rename = "rw")]
    ReadWrite,
}

/// One allowed host path prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPathRule {
    /// Absolute, normalized path; it and everything under it (by whole path
    /// components: `/data` covers `/data/x`, not `/database`).
    pub prefix: String,
    /// `ro` (default) or `rw`.
    #[serde(default)]
    pub mode: MountMode,
}

/// What workloads may ask for beyond an ordinary container. Everything is refused by
/// default. Unknown keys are refused (a misspelt flag must not look accepted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ClusterPolicy {
    /// Host path prefixes that `volumes` may bind mount.
    pub allowed_host_paths: Vec<HostPathRule>,
    /// `network: host`.
    pub allow_host_network: bool,
    /// `network: container:<id>` (joining another container's network namespace).
    pub allow_container_network: bool,
    /// `pidMode: host`.
    pub allow_host_pid: bool,
    /// `ipcMode: host`.
    pub allow_host_ipc: bool,
    /// `privileged: true`.
    pub allow_privileged: bool,
    /// Capabilities `capAdd` may name (without `CAP_`); `ALL` allows any.
    pub allowed_capabilities: Vec<String>,
    /// `devices` (host devices in the container).
    pub allow_devices: bool,
}

/// `path` with `.` and empty components removed, or `None` when it is not absolute or
/// has a `..` component (which could climb out of an allowed prefix).
pub fn normalize_host_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether normalized `path` is `prefix` or lies under it (whole components).
pub fn path_is_under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether mounting host path `path` exposes an engine socket: it is one, lies
/// under one's directory chain as an ancestor, or is any file named `docker.sock`.
pub fn exposes_engine_socket(path: &str) -> bool {
    let Some(p) = normalize_host_path(path) else {
        // Not a clean absolute path: the caller refuses it anyway; err on safety.
        return path.contains("docker.sock");
    };
    p.ends_with("/docker.sock")
        || p.ends_with("/containerd.sock")
        || ENGINE_SOCKETS.iter().any(|s| path_is_under(s, &p))
}

/// Canonical capability name: upper case without the `CAP_` prefix.
pub fn capability_name(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").map(str::to_string).unwrap_or(up)
}

impl ClusterPolicy {
    /// Check the policy itself; errors name the field.
    pub fn validate(&self) -> Result<(), crate::ValidationError> {
        for (i, r) in self.allowed_host_paths.iter().enumerate() {
            let field = format!("allowedHostPaths[{i}].prefix");
            let Some(p) = normalize_host_path(&r.prefix) else {
                return Err(crate::ValidationError {
                    field,
                    message: format!(
                        "{:?} must be an absolute path without '..' components",
                        r.prefix
                    ),
                });
            };
            if exposes_engine_socket(&p) {
                return Err(crate::ValidationError {
                    field,
                    message: format!(
                        "{:?} would expose the container engine's socket, which is never allowed",
                        r.prefix
                    ),
                });
            }
        }
        for (i, c) in self.allowed_capabilities.iter().enumerate() {
            if !is_capability_name(c) {
                return Err(crate::ValidationError {
                    field: format!("allowedCapabilities[{i}]"),
                    message: format!("{c:?} is not a capability name (e.g. NET_ADMIN or ALL)"),
                });
            }
        }
        Ok(())
    }
}

/// Whether `c` looks like a Linux capability name (`NET_ADMIN`, `CAP_SYS_TIME`, `ALL`).
pub fn is_capability_name(c: &str) -> bool {
    let n = capability_name(c);
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_normalize_and_dotdot_is_refused() {
        assert_eq!(normalize_host_path("/a//b/./c/").as_deref(), Some("/a/b/c"));
        assert_eq!(normalize_host_path("/").as_deref(), Some("/"));
        assert_eq!(normalize_host_path("/a/../etc"), None);
        assert_eq!(normalize_host_path("rel/x"), None);
    }

    #[test]
    fn prefixes_match_whole_components() {
        assert!(path_is_under("/data/x", "/data"));
        assert!(path_is_under("/data", "/data"));
        assert!(!path_is_under("/database", "/data"));
        assert!(path_is_under("/anything", "/"));
    }

    #[test]
    fn the_engine_socket_and_its_parents_are_exposing() {
        for p in [
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/",
            "/var",
            "/var/run",
            "/run",
            "/run/containerd",
            "/home/u/.docker/run/docker.sock",
            "//var/run/./docker.sock",
        ] {
            assert!(exposes_engine_socket(p), "{p}");
        }
        for p in ["/tmp", "/srv/www", "/var/lib/data", "/run-x"] {
            assert!(!exposes_engine_socket(p), "{p}");
        }
    }

    #[test]
    fn default_policy_allows_nothing_and_round_trips() {
        let p = ClusterPolicy::default();
        let v = serde_json::to_value(&p).expect("serializes");
        assert_eq!(v["allowedHostPaths"], serde_json::json!([]));
        assert_eq!(v["allowPrivileged"], false);
        let back: ClusterPolicy = serde_json::from_value(v).expect("parses");
        assert_eq!(back, p);
    }

    #[test]
    fn unknown_policy_keys_are_refused() {
        let e = serde_json::from_str::<ClusterPolicy>(r#"{"allowPrivilege":true}"#);
        assert!(e.is_err());
        let r: ClusterPolicy =
            serde_json::from_str(r#"{"allowedHostPaths":[{"prefix":"/tmp/x"}]}"#).expect("ok");
        assert_eq!(r.allowed_host_paths[0].mode, MountMode::ReadOnly);
    }

    #[test]
    fn policy_validation_names_the_field() {
        let mut p = ClusterPolicy::default();
        p.allowed_host_paths.push(HostPathRule {
            prefix: "/var/run".into(),
            mode: MountMode::ReadOnly,
        });
        assert_eq!(
            p.validate().expect_err("socket").field,
            "allowedHostPaths[0].prefix"
        );
        p.allowed_host_paths[0].prefix = "tmp".into();
        assert!(p.validate().is_err());
        p.allowed_host_paths[0].prefix = "/tmp/persys-x".into();
        assert!(p.validate().is_ok());
        p.allowed_capabilities = vec!["net admin".into()];
        assert_eq!(
            p.validate().expect_err("cap").field,
            "allowedCapabilities[0]"
        );
    }

    #[test]
    fn capability_names_drop_the_cap_prefix() {
        assert_eq!(capability_name("cap_net_admin"), "NET_ADMIN");
        assert!(is_capability_name("SYS_TIME"));
        assert!(!is_capability_name("SYS-TIME"));
    }
}
