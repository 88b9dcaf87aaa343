//! What the agent asks the engine to create, derived from a `RunRequest`. Pure.

use persys_proto::policy::exposes_engine_socket;
use persys_proto::{container_name, labels, RestartPolicy, RunRequest, SecretEnv};
use std::collections::HashMap;

pub use persys_proto::ports::PortMapping;

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container name: `<workload id>-g<generation>` (one name per generation, so an
    /// old copy and its replacement can coexist on one engine).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Cmd (the image's own when `None`).
    pub cmd: Option<Vec<String>>,
    /// `K=V` environment entries (not secret).
    pub env: Vec<String>,
    /// Secret environment entries, merged into the container's environment at create
    /// time only (`Debug` shows names only).
    pub secret_env: SecretEnv,
    /// Labels, including the persys ones.
    pub labels: HashMap<String, String>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Bind mounts `src:dst[:mode]`.
    pub binds: Vec<String>,
    /// Network mode.
    pub network: Option<String>,
    /// Engine restart policy.
    pub restart_policy: RestartPolicy,
    /// CPU limit in nano CPUs (0 = none).
    pub nano_cpus: i64,
    /// Memory limit in bytes (0 = none).
    pub memory_bytes: i64,
    /// Privileged (admitted by the cluster policy).
    pub privileged: bool,
    /// Added capabilities.
    pub cap_add: Vec<String>,
    /// Host devices.
    pub devices: Vec<DeviceMapping>,
    /// PID namespace mode.
    pub pid_mode: Option<String>,
    /// IPC namespace mode.
    pub ipc_mode: Option<String>,
}

/// One host device `host[:container[:perms]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMapping {
    /// Device path on the host.
    pub host: String,
    /// Path in the container (the host path when absent).
    pub container: String,
    /// cgroup permissions (`rwm` when absent).
    pub permissions: String,
}

impl DeviceMapping {
    /// Parse `host[:container[:perms]]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let host = parts.next().unwrap_or_default().to_string();
        if !host.starts_with('/') {
            return Err(format!("device {s:?}: the host path must be absolute"));
        }
        let container = parts.next().map_or_else(|| host.clone(), str::to_string);
        let permissions = parts.next().unwrap_or("rwm").to_string();
        Ok(Self {
            host,
            container,
            permissions,
        })
    }
}

/// Defence in depth behind the scheduler's admission: no bind of the container
/// engine's socket (or a directory holding it), whatever the request says.
fn check_binds(binds: &[String]) -> Result<(), String> {
    for b in binds {
        let source = b.split(':').next().unwrap_or_default();
        if source.starts_with('/') && exposes_engine_socket(source) {
            return Err(format!(
                "volume {b:?}: host path {source:?} exposes the container engine's socket; this agent never mounts it"
            ));
        }
    }
    Ok(())
}

impl ContainerSpec {
    /// The spec for a run request on node `node_id`. Fails on a malformed port.
    pub fn from_request(req: &RunRequest, node_id: &str) -> Result<Self, String> {
        // Workload labels first so that no workload can forge the persys ones.
        let mut l: HashMap<String, String> = req
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        l.insert(labels::WORKLOAD_ID.into(), req.workload_id.clone());
        l.insert(labels::DISPLAY_NAME.into(), req.display_name.clone());
        l.insert(labels::GENERATION.into(), req.generation.to_string());
        l.insert(labels::NODE_ID.into(), node_id.to_string());
        l.insert(labels::MANAGED.into(), "true".into());
        l.remove(labels::HEALTH_CHECK);
        if let Some(check) = &req.health_check {
            let json = serde_json::to_string(check).map_err(|e| format!("healthCheck: {e}"))?;
            l.insert(labels::HEALTH_CHECK.into(), json);
        }
        let ports = req
            .ports
            .iter()
            .map(|p| PortMapping::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        check_binds(&req.volumes)?;
        let devices = req
            .devices
            .iter()
            .map(|d| DeviceMapping::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        let cpu = i64::try_from(req.resources.cpu).unwrap_or(i64::MAX / 1_000_000);
        let mem = i64::try_from(req.resources.memory).unwrap_or(i64::MAX / (1 << 20));
        Ok(Self {
            name: container_name(&req.workload_id, req.generation),
            image: req.image.clone(),
            cmd: req
                .command
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|c| c.to_argv()),
            env: req.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            secret_env: req.secret_env.clone(),
            labels: l,
            ports,
            binds: req.volumes.clone(),
            network: req.network.clone().filter(|n| !n.trim().is_empty()),
            restart_policy: req.restart_policy,
            nano_cpus: cpu.saturating_mul(1_000_000),
            memory_bytes: mem.saturating_mul(1 << 20),
            privileged: req.privileged,
            cap_add: req.cap_add.clone(),
            devices,
            pid_mode: req.pid_mode.clone(),
            ipc_mode: req.ipc_mode.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persys_proto::{Command, Resources};

    fn request() -> RunRequest {
        RunRequest {
            workload_id: "w1".into(),
            image: "busybox:local".into(),
            name: "w1".into(),
            display_name: "web".into(),
            command: Some(Command::Shell("echo hi && sleep 5".into())),
            env: [("MODE".to_string(), "prod".to_string())].into(),
            ports: vec!["8080:80".into(), "127.0.0.1::53/udp".into()],
            volumes: vec!["/data:/data:ro".into()],
            network: Some("bridge".into()),
            restart_policy: RestartPolicy::OnFailure,
            generation: 7,
            resources: Resources {
                cpu: 250,
                memory: 64,
            },
            labels: [
                (labels::NODE_ID.to_string(), "forged".to_string()),
                ("team".into(), "web".into()),
            ]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn shell_command_runs_in_the_containers_own_shell() {
        let spec = ContainerSpec::from_request(&request(), "n1").expect("valid");
        assert_eq!(
            spec.cmd,
            Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo hi && sleep 5".into()
            ])
        );
    }

    #[test]
    fn persys_labels_are_set_and_cannot_be_forged_by_the_workload() {
        let spec = ContainerSpec::from_request(&request(), "n1").expect("valid");
        assert_eq!(spec.labels[labels::NODE_ID], "n1");
        assert_eq!(spec.labels[labels::GENERATION], "7");
        assert_eq!(spec.labels[labels::WORKLOAD_ID], "w1");
        assert_eq!(spec.labels[labels::DISPLAY_NAME], "web");
        assert_eq!(spec.labels[labels::MANAGED], "true");
        assert_eq!(spec.labels["team"], "web");
        assert_eq!(spec.name, "w1-g7", "one name per generation");
    }

    #[test]
    fn resources_become_engine_limits_and_zero_means_none() {
        let spec = ContainerSpec::from_request(&request(), "n1").expect("valid");
        assert_eq!(spec.nano_cpus, 250_000_000);
        assert_eq!(spec.memory_bytes, 64 * 1024 * 1024);
        let mut req = request();
        req.resources = Resources::default();
        let spec = ContainerSpec::from_request(&req, "n1").expect("valid");
        assert_eq!((spec.nano_cpus, spec.memory_bytes), (0, 0));
    }

    #[test]
    fn ports_parse_in_all_forms() {
        let p = PortMapping::parse("8080:80").expect("valid");
        assert_eq!(
            (p.host_port, p.container_port, p.key().as_str()),
            (Some(8080), 80, "80/tcp")
        );
        let p = PortMapping::parse("127.0.0.1::53/udp").expect("valid");
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!((p.host_port, p.key().as_str()), (None, "53/udp"));
        let p = PortMapping::parse("9000").expect("valid");
        assert_eq!((p.host_port, p.container_port), (None, 9000));
        assert!(PortMapping::parse("x:80").is_err());
        assert!(PortMapping::parse("80/icmp").is_err());
        assert!(PortMapping::parse("1:2:3:4").is_err());
    }

    #[test]
    fn engine_socket_binds_are_refused_whatever_the_request() {
        for v in ["/var/run/docker.sock:/s", "/:/host", "/run:/r:ro"] {
            let mut req = request();
            req.volumes = vec![v.into()];
            let e = ContainerSpec::from_request(&req, "n1").expect_err(v);
            assert!(e.contains("engine's socket"), "{e}");
        }
    }

    #[test]
    fn secret_env_stays_apart_and_is_not_in_debug() {
        let mut req = request();
        req.secret_env = SecretEnv::new([("DB_PASSWORD".into(), "hunter2".into())].into());
        let spec = ContainerSpec::from_request(&req, "n1").expect("valid");
        assert_eq!(spec.env, vec!["MODE=prod".to_string()]);
        assert!(!format!("{spec:?}").contains("hunter2"));
        assert_eq!(
            spec.secret_env.expose().collect::<Vec<_>>(),
            [("DB_PASSWORD", "hunter2")]
        );
    }

    #[test]
    fn devices_parse_with_defaults() {
        let d = DeviceMapping::parse("/dev/fuse").expect("valid");
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/fuse", "rwm")
        );
        let d = DeviceMapping::parse("/dev/a:/dev/b:r").expect("valid");
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/b", "r")
        );
        assert!(DeviceMapping::parse("fuse").is_err());
    }

    #[test]
    fn a_bad_port_fails_the_spec() {
        let mut req = request();
        req.ports = vec!["nope".into()];
        assert!(ContainerSpec::from_request(&req, "n1").is_err());
    }
}
