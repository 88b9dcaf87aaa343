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
    }
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
