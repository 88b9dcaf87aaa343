//! Unit tests of the Docker runtime's pure parts (create body, inspect mapping).

use super::*;
use crate::runtime::PortMapping;

fn spec() -> ContainerSpec {
    ContainerSpec {
        name: "w".into(),
        image: "busybox:local".into(),
        cmd: None,
        env: vec![],
        labels: HashMap::new(),
        ports: vec![
            PortMapping::parse("8080:80").expect("valid"),
            PortMapping::parse("8081:80").expect("valid"),
        ],
        binds: vec![],
        network: None,
        restart_policy: RestartPolicy::UnlessStopped,
        nano_cpus: 0,
        memory_bytes: 0,
        secret_env: persys_proto::SecretEnv::default(),
        privileged: false,
        cap_add: vec![],
        devices: vec![],
        pid_mode: None,
        ipc_mode: None,
    }
}

#[test]
fn every_container_gets_no_new_privileges_and_nothing_more_by_default() {
    let hc = create_config(&spec()).host_config.expect("host config");
    assert_eq!(hc.security_opt, Some(vec![NO_NEW_PRIVILEGES.to_string()]));
    assert_eq!(
        (hc.privileged, hc.cap_add, hc.devices, hc.pid_mode),
        (None, None, None, None)
    );
}

#[test]
fn admitted_privileges_and_secret_env_reach_the_engine() {
    let mut s = spec();
    s.env = vec!["MODE=prod".into()];
    s.secret_env = persys_proto::SecretEnv::new([("DB_PASSWORD".into(), "hunter2".into())].into());
    s.privileged = true;
    s.cap_add = vec!["NET_ADMIN".into()];
    s.pid_mode = Some("host".into());
    s.devices = vec![crate::runtime::spec::DeviceMapping::parse("/dev/fuse").expect("valid")];
    let c = create_config(&s);
    assert_eq!(
        c.env,
        Some(vec![
            "MODE=prod".to_string(),
            "DB_PASSWORD=hunter2".to_string()
        ])
    );
    let hc = c.host_config.expect("host config");
    assert_eq!(hc.privileged, Some(true));
    assert_eq!(hc.cap_add, Some(vec!["NET_ADMIN".to_string()]));
    assert_eq!(hc.pid_mode.as_deref(), Some("host"));
    assert_eq!(hc.devices.map(|d| d.len()), Some(1));
}

#[test]
fn a_bind_through_a_symlink_is_refused() {
    let dir = std::env::temp_dir().join(format!("persys-link-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    std::os::unix::fs::symlink("/etc", &dir).expect("symlink");
    let bind = format!("{}:/x:ro", dir.display());
    let r = check_bind_targets(&[bind]);
    let _ = std::fs::remove_file(&dir);
    assert!(matches!(r, Err(RuntimeError::Engine(m)) if m.contains("symbolic link")));
    assert!(check_bind_targets(&["/nonexistent-persys/x:/x".into(), "named:/n".into()]).is_ok());
}

#[test]
fn ports_bind_every_host_port_of_one_container_port() {
    let c = create_config(&spec());
    let hc = c.host_config.expect("host config");
    let b = hc.port_bindings.expect("bindings");
    assert_eq!(b["80/tcp"].as_ref().map(Vec::len), Some(2));
    assert!(c.exposed_ports.expect("exposed").contains_key("80/tcp"));
}

#[test]
fn run_time_is_finish_minus_start_and_absent_for_never() {
    assert_eq!(
        run_time(Some("2024-01-01T00:00:01.5Z"), Some("2024-01-01T00:00:04Z")),
        Some(Duration::from_millis(2500))
    );
    assert_eq!(
        run_time(Some("2024-01-01T00:00:01Z"), Some("0001-01-01T00:00:00Z")),
        None
    );
    assert_eq!(run_time(None, Some("2024-01-01T00:00:04Z")), None);
}

#[test]
fn zero_limits_are_left_unset_and_restart_policy_is_docker_spelled() {
    let hc = create_config(&spec()).host_config.expect("host config");
    assert_eq!((hc.nano_cpus, hc.memory), (None, None));
    let name = hc.restart_policy.and_then(|p| p.name).expect("policy");
    assert_eq!(name.to_string(), RestartPolicy::UnlessStopped.as_str());
}
