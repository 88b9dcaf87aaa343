use super::*;
use crate::workload::RestartPolicy;
use std::time::Duration;

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_inline(yaml: &str) -> Result<ComposeProject, ComposeError> {
    parse(yaml, &BTreeMap::new(), ProjectDir::None)
}

const STACK: &str = r#"
services:
  web:
    image: busybox:local
    command: httpd -f -p 8080 -h "/srv/a b"
    ports: ["8080:8080", {target: 9090, published: 9091, protocol: udp}]
    environment:
      DB: db
      LEVEL: ${LEVEL:-info}
    depends_on:
      db: {condition: service_healthy}
    deploy:
      replicas: 2
      resources: {limits: {cpus: "0.5", memory: 256M}}
    labels: [tier=front]
    restart: on-failure:3
  db:
    image: busybox:local
    volumes: ["data:/var/lib/db:ro", "/scratch"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1m30s
      timeout: 500ms
      retries: 3
      start_period: 1.5s
    restart: always
volumes:
  data:
x-notes: ignored
"#;

#[test]
fn a_stack_is_ordered_by_dependencies_and_normalised() {
    let p = parse(STACK, &vars(&[("LEVEL", "debug")]), ProjectDir::None).unwrap();
    let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    let web = p.service("web").unwrap();
    assert_eq!(
        web.command.as_deref().unwrap(),
        ["httpd", "-f", "-p", "8080", "-h", "/srv/a b"]
    );
    assert_eq!(web.ports, ["8080:8080", "9091:9090/udp"]);
    assert_eq!(web.environment["LEVEL"], "debug");
    assert_eq!(web.replicas, 2);
    assert_eq!(web.limits.cpu, 500);
    assert_eq!(web.limits.memory, 256);
    assert_eq!(web.restart, RestartPolicy::OnFailure);
    assert_eq!(web.max_restarts, Some(3));
    assert_eq!(web.labels["tier"], "front");
    assert_eq!(
        web.depends_on,
        [Dependency {
            service: "db".into(),
            condition: DependsCondition::Healthy
        }]
    );
    let db = p.service("db").unwrap();
    let h = db.healthcheck.as_ref().unwrap();
    assert_eq!(h.test, ["CMD", "true"]);
    assert_eq!(h.interval, Some(Duration::from_secs(90)));
    assert_eq!(h.timeout, Some(Duration::from_millis(500)));
    assert_eq!(h.start_period, Some(Duration::from_millis(1500)));
    assert_eq!(h.retries, Some(3));
    assert_eq!(
        db.mounts[0],
        Mount {
            source: MountSource::Volume("data".into()),
            target: "/var/lib/db".into(),
            read_only: true
        }
    );
    assert_eq!(db.mounts[1].source, MountSource::Anonymous);
    assert_eq!(p.volumes, ["data"]);
    // Two web replicas of 500 millicores and 256 MB; db has no limits.
    assert_eq!(p.limits().cpu, 1000);
    assert_eq!(p.limits().memory, 512);
}

#[test]
fn the_default_applies_when_a_variable_is_unset() {
    let p = parse_inline(STACK).unwrap();
    assert_eq!(p.service("web").unwrap().environment["LEVEL"], "info");
}

#[test]
fn unsupported_keys_are_named_not_ignored() {
    for (yaml, key) in [
        (
            "services: {web: {image: a, privileged: true}}",
            "services.web.privileged",
        ),
        (
            "services: {web: {image: a, network_mode: host}}",
            "services.web.network_mode",
        ),
        (
            "services: {web: {image: a, cap_add: [SYS_ADMIN]}}",
            "services.web.cap_add",
        ),
        ("services: {web: {image: a}}\nnetworks: {n: {}}", "networks"),
        (
            "services: {web: {image: a, deploy: {resources: {reservations: {cpus: '1'}}}}}",
            "services.web.deploy.resources.reservations",
        ),
        (
            "services: {web: {image: a}}\nvolumes: {d: {external: true}}",
            "volumes.d.external",
        ),
    ] {
        let e = parse_inline(yaml).unwrap_err();
        assert_eq!(e.key, key, "{yaml}: {e}");
        assert!(e.message.contains("unsupported key"), "{e}");
    }
}

#[test]
fn bad_yaml_and_bad_references_are_clear_errors() {
    let e = parse_inline("services: [web").unwrap_err();
    assert!(e.message.starts_with("not valid YAML"), "{e}");
    let e = parse_inline("services: {web: {image: a, depends_on: [db]}}").unwrap_err();
    assert_eq!(e.key, "services.web.depends_on");
    assert!(e.message.contains("unknown service \"db\""), "{e}");
    let e =
        parse_inline("services: {a: {image: x, depends_on: [b]}, b: {image: x, depends_on: [a]}}")
            .unwrap_err();
    assert!(e.message.contains("cycle"), "{e}");
    let e = parse_inline(
        "services: {a: {image: x, depends_on: {b: {condition: service_healthy}}}, b: {image: x}}",
    )
    .unwrap_err();
    assert!(e.message.contains("needs a healthcheck"), "{e}");
    let e = parse_inline("services: {a: {image: x, volumes: ['d:/d']}}").unwrap_err();
    assert!(e.message.contains("not declared"), "{e}");
    let e = parse_inline("services: {a: {command: 'x'}}").unwrap_err();
    assert!(e.message.contains("needs `image` or `build`"), "{e}");
    let e =
        parse_inline("services: {a: {image: x, environment: {A: '${NOPE:?set it}'}}}").unwrap_err();
    assert_eq!(e.key, "services.a.environment.A");
    assert!(e.message.contains("NOPE is not set: set it"), "{e}");
    let e = parse_inline("services: {a: {image: x, ports: ['8000-8010:80']}}").unwrap_err();
    assert_eq!(e.key, "services.a.ports[0]");
}

#[test]
fn host_paths_never_reach_a_project() {
    for mount in ["/:/host", "/var/run/docker.sock:/s", "~/x:/x", "../..:/up"] {
        let yaml = format!("services: {{a: {{image: x, volumes: ['{mount}']}}}}");
        let e = parse(&yaml, &BTreeMap::new(), ProjectDir::Present).unwrap_err();
        assert!(e.message.contains("outside the project"), "{mount}: {e}");
    }
    let p = parse(
        "services: {a: {image: x, volumes: ['./conf/../etc:/etc/app:ro']}}",
        &BTreeMap::new(),
        ProjectDir::Present,
    )
    .unwrap();
    assert_eq!(
        p.services[0].mounts[0].source,
        MountSource::Bind("etc".into())
    );
    let e = parse(
        "services: {a: {build: {context: ../other}}}",
        &BTreeMap::new(),
        ProjectDir::Present,
    )
    .unwrap_err();
    assert!(e.message.contains("outside the project"), "{e}");
}

#[test]
fn what_needs_a_directory_is_refused_for_an_inline_file() {
    for yaml in [
        "services: {a: {build: .}}",
        "services: {a: {image: x, env_file: .env.a}}",
        "services: {a: {image: x, volumes: ['./d:/d']}}",
    ] {
        let e = parse_inline(yaml).unwrap_err();
        assert!(
            e.message.contains("needs the project's directory"),
            "{yaml}: {e}"
        );
        assert!(
            parse(yaml, &BTreeMap::new(), ProjectDir::Present).is_ok(),
            "{yaml}"
        );
    }
}

#[test]
fn interpolation_follows_compose() {
    let v = vars(&[("A", "1"), ("E", "")]);
    let i = |s: &str| interpolate(s, &v);
    assert_eq!(i("$A-${A}").unwrap(), "1-1");
    assert_eq!(i("$$A").unwrap(), "$A");
    assert_eq!(i("${E:-d} ${E-d} ${U-d}").unwrap(), "d  d");
    assert_eq!(i("${U:-${A}}").unwrap(), "1");
    assert_eq!(i("${A:+set}|${E:+set}|${E+set}").unwrap(), "set||set");
    assert_eq!(i("cost: 5$").unwrap(), "cost: 5$");
    assert!(i("${E:?}").unwrap_err().contains("E is not set"));
    assert!(i("${E?}").is_ok());
    assert!(i("${A").is_err());
}

#[test]
fn go_durations_parse() {
    assert_eq!(
        convert::go_duration("1h2m3s"),
        Some(Duration::from_secs(3723))
    );
    assert_eq!(
        convert::go_duration("250ms"),
        Some(Duration::from_millis(250))
    );
    assert_eq!(convert::go_duration("0"), Some(Duration::ZERO));
    assert_eq!(convert::go_duration("10"), None);
    assert_eq!(convert::go_duration("5 days"), None);
}
