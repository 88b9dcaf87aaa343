//! The deployment files (issue 13): the Kubernetes manifests of `deploy/k8s` and the
//! systemd units of `deploy/systemd`.
//!
//! Kubernetes: the base and each overlay are rendered with `kubectl kustomize` and
//! validated by `kubernetes-validate --strict` (PyPI, from `scripts/install-deps.sh`)
//! against the API schemas it ships; then the rendered objects are checked for what
//! docs/kubernetes.md promises: the security context of every container, probes on real
//! routes, the gateway's HPA and PDB, the NetworkPolicies, pinned images, and that every
//! flag and `PERSYS_*` variable given to a container is one its binary lists in `--help`.
//!
//! systemd: `systemd-analyze verify` and `systemd-analyze security` where
//! `systemd-analyze` exists, and everywhere a structural check of every unit: the
//! required keys, only known keys, ExecStart naming the real binary with flags its
//! `--help` lists, and env file examples naming only variables the binary reads.
//!
//! Offline and quick (a few seconds): no cluster, no network; the built binaries are
//! only asked for `--help`. A missing `kubectl` or `kubernetes-validate` fails the test.

use persys_tests::cluster::bin;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The Kubernetes version the manifests are validated against (the oldest we target).
const KUBERNETES_VERSION: &str = "1.30";
/// What is rendered: the base and every overlay.
const RENDERS: [&str; 3] = ["base", "overlays/dev", "overlays/production"];
/// The user and group of every persys container.
const POD_USER: u64 = 65532;
/// The namespace of the scheduler and the gateway (`restricted`).
const NS: &str = "persys";
/// The namespace of the agent (`privileged`: hostPath and hostPort).
const NODE_NS: &str = "persys-node";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

// ---------------------------------------------------------------- the binaries' flags

/// What a binary's `--help` lists: long flags, and each `PERSYS_*` twin with its flag.
#[derive(Debug)]
struct Help {
    flags: BTreeSet<String>,
    env: BTreeMap<String, String>,
}

fn parse_help(text: &str) -> Help {
    let mut flags = BTreeSet::new();
    let mut env = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        // Option lines (`  -h, --help`, `      --data-dir <DATA_DIR>`), not the
        // descriptions below them (indented further, may mention other flags).
        if indent <= 6 && trimmed.starts_with('-') {
            current = trimmed
                .split_whitespace()
                .map(|t| t.trim_end_matches(','))
                .find(|t| t.starts_with("--"))
                .map(|t| t.split('=').next().unwrap_or(t).to_string());
            if let Some(f) = &current {
                flags.insert(f.clone());
            }
        }
        if let Some(at) = line.find("[env: ") {
            let name: String = line[at + 6..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let flag = current
                .clone()
                .unwrap_or_else(|| panic!("{name} listed before any flag in:\n{text}"));
            env.insert(name, flag);
        }
    }
    Help { flags, env }
}

/// `<binary> --help`, parsed (once per binary). The environment is emptied so that a
/// `PERSYS_*` variable of the test's own environment cannot show up in the text.
fn help(binary: &str) -> &'static Help {
    static CACHE: OnceLock<BTreeMap<&'static str, Help>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        ["persys-scheduler", "persys-gateway", "persys-agent"]
            .into_iter()
            .map(|b| {
                let out = Command::new(bin(b))
                    .arg("--help")
                    .env_clear()
                    .output()
                    .unwrap_or_else(|e| panic!("{b} --help: {e}"));
                assert!(out.status.success(), "{b} --help failed");
                let h = parse_help(&String::from_utf8_lossy(&out.stdout));
                assert!(
                    h.flags.contains("--data-dir") || h.flags.contains("--scheduler-data-dir"),
                    "{b} --help parsed to nothing useful: {h:?}"
                );
                (b, h)
            })
            .collect()
    });
    all.get(binary)
        .unwrap_or_else(|| panic!("no such persys binary: {binary}"))
}

#[test]
fn help_parsing_finds_flags_and_their_env_twins() {
    let h = parse_help(
        "Options:\n      --etcd-endpoints <E>\n          etcd, like `--other-flag`\n          [env: PERSYS_ETCD_ENDPOINTS=] [default: x]\n  -h, --help\n          Print help\n",
    );
    assert_eq!(
        h.flags,
        BTreeSet::from(["--etcd-endpoints".to_string(), "--help".to_string()])
    );
    assert_eq!(h.env["PERSYS_ETCD_ENDPOINTS"], "--etcd-endpoints");
    let s = help("persys-scheduler");
    assert_eq!(s.env["PERSYS_ADVERTISE_URL"], "--advertise-url");
    assert_eq!(s.env["PERSYS_TLS_SANS"], "--tls-san");
    assert_eq!(help("persys-agent").env["DOCKER_HOST"], "--docker-host");
}

// ---------------------------------------------------------------- rendering

/// One `kubectl kustomize` output: its objects.
struct Rendered {
    name: &'static str,
    objects: Vec<Value>,
}

impl Rendered {
    fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Value> + 'a {
        let kind = kind.to_owned();
        self.objects.iter().filter(move |o| o["kind"] == *kind)
    }

    fn find(&self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.of_kind(kind)
            .find(|o| o["metadata"]["name"] == name && namespace_of(o) == namespace)
    }

    fn get(&self, kind: &str, namespace: &str, name: &str) -> &Value {
        self.find(kind, namespace, name)
            .unwrap_or_else(|| panic!("{}: no {kind} {namespace}/{name}", self.name))
    }

    /// Deployments and DaemonSets.
    fn workloads(&self) -> impl Iterator<Item = &Value> {
        self.objects.iter().filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("Deployment" | "DaemonSet" | "StatefulSet")
            )
        })
    }
}

fn namespace_of(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or("")
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

fn kubectl() -> PathBuf {
    let usual = PathBuf::from("/usr/bin/kubectl");
    if usual.exists() {
        usual
    } else {
        PathBuf::from("kubectl")
    }
}

fn render(dir: &str) -> String {
    let path = repo().join("deploy/k8s").join(dir);
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl could not be started ({e}): it renders deploy/k8s (kubectl kustomize, kustomize v5); install kubectl")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 YAML")
}

/// The documents of a multi-document YAML stream as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    let yaml = format!("\n{yaml}");
    yaml.split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_yaml_ng::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}:\n{d}")))
        .collect()
}

/// The base and every overlay, rendered and validated once for all the tests here.
fn rendered() -> &'static [Rendered] {
    static RENDERED: OnceLock<Vec<Rendered>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        RENDERS
            .iter()
            .map(|dir| {
                let yaml = render(dir);
                validate_schema(dir, &yaml);
                let objects = documents(&yaml);
                assert!(
                    objects.len() > 10,
                    "{dir} rendered only {} objects",
                    objects.len()
                );
                Rendered { name: dir, objects }
            })
            .collect()
    })
}

/// `kubernetes-validate --strict` against the schemas of [`KUBERNETES_VERSION`]
/// (shipped inside the package: no network): whether the YAML passed, and what it said.
fn run_validator(yaml: &str) -> (bool, String) {
    let mut child = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "--kubernetes-version", KUBERNETES_VERSION, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("kubernetes-validate could not be started ({e}): it validates the rendered manifests; install it with `python3 -m pip install kubernetes-validate` (scripts/install-deps.sh does)")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write manifests");
    let out = child.wait_with_output().expect("kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("ERROR"), text)
}

fn validate_schema(dir: &str, yaml: &str) {
    let (ok, text) = run_validator(yaml);
    assert!(
        ok,
        "{dir} does not validate against Kubernetes {KUBERNETES_VERSION}:\n{text}"
    );
}

#[test]
fn every_render_passes_the_kubernetes_schemas_in_strict_mode() {
    let all = rendered();
    assert_eq!(all.len(), RENDERS.len());
    for r in all {
        for kind in [
            "Namespace",
            "ServiceAccount",
            "Deployment",
            "DaemonSet",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ConfigMap",
        ] {
            assert!(r.of_kind(kind).next().is_some(), "{}: no {kind}", r.name);
        }
        // Secret material is never in the repository: the operator creates it.
        assert!(r.of_kind("Secret").next().is_none(), "{}: a Secret", r.name);
    }
}

#[test]
fn the_strict_validation_catches_a_wrong_field() {
    // The validator really is strict (and really runs): an unknown field fails.
    let bad = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  nmae: y\n";
    let (ok, text) = run_validator(bad);
    assert!(
        !ok && text.contains("nmae"),
        "kubernetes-validate accepted an unknown field:\n{text}"
    );
}

// ---------------------------------------------------------------- pods

/// Every container (init containers too) with its pod spec and workload.
fn containers(r: &Rendered) -> Vec<(&Value, &Value, &Value)> {
    let mut all = Vec::new();
    for w in r.workloads() {
        let pod = &w["spec"]["template"]["spec"];
        for list in ["initContainers", "containers"] {
            for c in pod[list].as_array().into_iter().flatten() {
                all.push((w, pod, c));
            }
        }
    }
    all
}

/// A container setting, else the pod's (runAsNonRoot, runAsUser, seccompProfile…).
fn effective<'a>(pod: &'a Value, c: &'a Value, key: &str) -> &'a Value {
    let own = &c["securityContext"][key];
    if own.is_null() {
        &pod["securityContext"][key]
    } else {
        own
    }
}

fn label<'a>(o: &'a Value, key: &str) -> &'a str {
    o["metadata"]["labels"][key].as_str().unwrap_or("")
}

#[test]
fn the_namespaces_carry_their_pod_security_levels() {
    for r in rendered() {
        let ns = r.get("Namespace", "", NS);
        assert_eq!(
            label(ns, "pod-security.kubernetes.io/enforce"),
            "restricted",
            "{}",
            r.name
        );
        let node = r.get("Namespace", "", NODE_NS);
        assert_eq!(
            label(node, "pod-security.kubernetes.io/enforce"),
            "privileged",
            "{}: the agent needs hostPath and hostPort, which baseline forbids",
            r.name
        );
        // Where everything runs.
        r.get("Deployment", NS, "persys-scheduler");
        r.get("Deployment", NS, "persys-gateway");
        r.get("DaemonSet", NODE_NS, "persys-agent");
        for w in r.workloads() {
            assert!(
                [NS, NODE_NS].contains(&namespace_of(w)),
                "{}: {} in namespace {:?}",
                r.name,
                name_of(w),
                namespace_of(w)
            );
            if namespace_of(w) == NODE_NS {
                assert_eq!(
                    name_of(w),
                    "persys-agent",
                    "{}: only the agent is privileged",
                    r.name
                );
            }
        }
    }
}

#[test]
fn every_container_runs_non_root_read_only_without_capabilities_under_seccomp() {
    for r in rendered() {
        let all = containers(r);
        assert!(all.len() >= 3, "{}: {} containers", r.name, all.len());
        for (w, pod, c) in all {
            let what = format!(
                "{}: {}/{} container {}",
                r.name,
                namespace_of(w),
                name_of(w),
                c["name"]
            );
            assert_eq!(
                effective(pod, c, "runAsNonRoot"),
                true,
                "{what}: runAsNonRoot"
            );
            assert_eq!(
                effective(pod, c, "runAsUser"),
                POD_USER,
                "{what}: runAsUser"
            );
            assert_eq!(
                effective(pod, c, "runAsGroup"),
                POD_USER,
                "{what}: runAsGroup"
            );
            assert_eq!(
                effective(pod, c, "seccompProfile")["type"],
                "RuntimeDefault",
                "{what}: seccompProfile"
            );
            let sc = &c["securityContext"];
            assert_eq!(
                sc["readOnlyRootFilesystem"], true,
                "{what}: readOnlyRootFilesystem"
            );
            assert_eq!(
                sc["allowPrivilegeEscalation"], false,
                "{what}: allowPrivilegeEscalation"
            );
            assert_ne!(sc["privileged"], true, "{what}: privileged");
            let drop: Vec<&str> = sc["capabilities"]["drop"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            assert!(drop.contains(&"ALL"), "{what}: capabilities.drop {drop:?}");
            assert!(
                sc["capabilities"]["add"]
                    .as_array()
                    .is_none_or(Vec::is_empty),
                "{what}: capabilities.add"
            );
            for key in ["requests", "limits"] {
                for res in ["cpu", "memory"] {
                    assert!(
                        c["resources"][key][res].is_string()
                            || c["resources"][key][res].is_number(),
                        "{what}: resources.{key}.{res}"
                    );
                }
            }
            // A writable /tmp, since the root file system is not.
            assert!(
                c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["mountPath"] == "/tmp"),
                "{what}: no /tmp mount"
            );
        }
    }
}

#[test]
fn pods_get_no_service_account_token_no_service_links_and_no_host_namespaces() {
    for r in rendered() {
        for w in r.workloads() {
            let what = format!("{}: {}/{}", r.name, namespace_of(w), name_of(w));
            let pod = &w["spec"]["template"]["spec"];
            assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
            assert_eq!(
                pod["enableServiceLinks"], false,
                "{what}: service links would set PERSYS_*_PORT variables"
            );
            for host in ["hostNetwork", "hostPID", "hostIPC"] {
                assert_ne!(pod[host], true, "{what}: {host}");
            }
            let sa = pod["serviceAccountName"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: serviceAccountName"));
            let account = r.get("ServiceAccount", namespace_of(w), sa);
            assert_eq!(
                account["automountServiceAccountToken"], false,
                "{what}: ServiceAccount {sa}"
            );
        }
    }
}

/// Volume types the `restricted` profile admits.
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn volumes(pod: &Value) -> Vec<(&str, &str, &Value)> {
    pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let obj = v.as_object().expect("volume object");
            let kind = obj
                .keys()
                .find(|k| k.as_str() != "name")
                .map_or("", String::as_str);
            (v["name"].as_str().unwrap_or(""), kind, &v[kind])
        })
        .collect()
}

fn host_ports(pod: &Value) -> Vec<u64> {
    pod["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|p| p["hostPort"].as_u64())
        .collect()
}

#[test]
fn scheduler_and_gateway_use_restricted_volumes_and_the_agent_only_its_two_host_paths() {
    for r in rendered() {
        for w in r.workloads().filter(|w| namespace_of(w) == NS) {
            let pod = &w["spec"]["template"]["spec"];
            for (name, kind, _) in volumes(pod) {
                assert!(
                    RESTRICTED_VOLUMES.contains(&kind),
                    "{}: {} volume {name} is a {kind}",
                    r.name,
                    name_of(w)
                );
            }
            assert!(
                host_ports(pod).is_empty(),
                "{}: {} has a hostPort",
                r.name,
                name_of(w)
            );
        }
        let agent = &r.get("DaemonSet", NODE_NS, "persys-agent")["spec"]["template"]["spec"];
        let host_paths: BTreeMap<&str, &str> = volumes(agent)
            .into_iter()
            .filter(|(_, kind, _)| *kind == "hostPath")
            .map(|(_, _, v)| {
                (
                    v["path"].as_str().unwrap_or(""),
                    v["type"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            host_paths,
            BTreeMap::from([
                ("/var/lib/persys/agent", "Directory"),
                ("/var/run/docker.sock", "Socket")
            ]),
            "{}: the agent's host paths",
            r.name
        );
        assert_eq!(
            host_ports(agent),
            [8080],
            "{}: the agent's hostPort",
            r.name
        );
        // In the engine socket's group, never root's.
        let groups: Vec<u64> = agent["securityContext"]["supplementalGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        assert!(
            !groups.is_empty() && !groups.contains(&0),
            "{}: supplementalGroups {groups:?}",
            r.name
        );
    }
}

// ---------------------------------------------------------------- probes

/// The port a probe names, as a number (a container port's name or the number itself).
fn probe_port(c: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().expect("probe port");
    c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// `.route("<path>"` somewhere in a crate's sources: the probe asks for a real route.
fn crate_serves(krate: &str, path: &str) -> bool {
    fn walk(dir: &Path, needle: &str) -> bool {
        std::fs::read_dir(dir).expect("read_dir").any(|e| {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, needle)
            } else {
                p.extension().is_some_and(|x| x == "rs")
                    && std::fs::read_to_string(&p).is_ok_and(|s| s.contains(needle))
            }
        })
    }
    walk(
        &repo().join(krate).join("src"),
        &format!(".route(\"{path}\""),
    )
}

#[test]
fn every_container_has_startup_liveness_and_readiness_probes_on_real_routes() {
    for r in rendered() {
        let mut paths: BTreeMap<String, BTreeSet<(String, u64)>> = BTreeMap::new();
        for (w, _, c) in containers(r) {
            let what = format!("{}: {} container {}", r.name, name_of(w), c["name"]);
            for kind in ["startupProbe", "livenessProbe", "readinessProbe"] {
                let probe = &c[kind];
                assert!(probe.is_object(), "{what}: no {kind}");
                if probe["httpGet"].is_object() {
                    // Every persys listener is TLS.
                    assert_eq!(probe["httpGet"]["scheme"], "HTTPS", "{what}: {kind} scheme");
                    let port = probe_port(c, &probe["httpGet"]["port"]);
                    let path = probe["httpGet"]["path"].as_str().expect("path").to_string();
                    paths
                        .entry(name_of(w).to_string())
                        .or_default()
                        .insert((path, port));
                } else {
                    assert!(
                        probe["tcpSocket"].is_object(),
                        "{what}: {kind} is neither httpGet nor tcpSocket"
                    );
                    probe_port(c, &probe["tcpSocket"]["port"]);
                }
            }
        }
        // The scheduler on its bootstrap port (no client certificate needed there).
        let want = |pairs: &[(&str, u64)]| -> BTreeSet<(String, u64)> {
            pairs.iter().map(|(p, n)| (p.to_string(), *n)).collect()
        };
        assert_eq!(
            paths["persys-scheduler"],
            want(&[("/healthz", 8084), ("/readyz", 8084)]),
            "{}",
            r.name
        );
        assert_eq!(
            paths["persys-gateway"],
            want(&[("/healthz", 8551), ("/readyz", 8551)]),
            "{}",
            r.name
        );
        assert!(
            !paths.contains_key("persys-agent"),
            "{}: the agent's API is mTLS only",
            r.name
        );
        let sched = r.get("Deployment", NS, "persys-scheduler")["spec"]["template"]["spec"]
            ["containers"][0]
            .clone();
        assert_eq!(
            sched["startupProbe"]["httpGet"]["path"], "/readyz",
            "{}",
            r.name
        );
        assert_eq!(
            sched["livenessProbe"]["httpGet"]["path"], "/healthz",
            "{}",
            r.name
        );
        let gw = r.get("Deployment", NS, "persys-gateway")["spec"]["template"]["spec"]
            ["containers"][0]
            .clone();
        assert_eq!(
            gw["readinessProbe"]["httpGet"]["path"], "/readyz",
            "{}",
            r.name
        );
    }
    for (krate, path) in [
        ("scheduler", "/healthz"),
        ("scheduler", "/readyz"),
        ("gateway", "/healthz"),
        ("gateway", "/readyz"),
    ] {
        assert!(crate_serves(krate, path), "{krate} has no route {path}");
    }
}

// ---------------------------------------------------------------- scaling

fn replicas(r: &Rendered, name: &str) -> u64 {
    r.get("Deployment", NS, name)["spec"]["replicas"]
        .as_u64()
        .unwrap_or(1)
}

fn selects(selector: &Value, pod_labels: &Value) -> bool {
    let wanted = selector["matchLabels"].as_object().expect("matchLabels");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| &pod_labels[k] == v)
}

#[test]
fn the_gateway_has_an_hpa_and_a_pdb_and_the_scheduler_its_replicas() {
    for r in rendered() {
        let gw = r.get("Deployment", NS, "persys-gateway");
        let gw_labels = &gw["spec"]["template"]["metadata"]["labels"];
        let hpa = r.get("HorizontalPodAutoscaler", NS, "persys-gateway");
        assert_eq!(hpa["apiVersion"], "autoscaling/v2", "{}", r.name);
        assert_eq!(
            hpa["spec"]["scaleTargetRef"]["kind"], "Deployment",
            "{}",
            r.name
        );
        assert_eq!(
            hpa["spec"]["scaleTargetRef"]["name"], "persys-gateway",
            "{}",
            r.name
        );
        let (min, max) = (
            hpa["spec"]["minReplicas"].as_u64().expect("minReplicas"),
            hpa["spec"]["maxReplicas"].as_u64().expect("maxReplicas"),
        );
        assert!(1 <= min && min <= max, "{}: HPA {min}..{max}", r.name);
        assert!(
            hpa["spec"]["metrics"]
                .as_array()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            r.name
        );
        let pdb = r.get("PodDisruptionBudget", NS, "persys-gateway");
        assert_eq!(pdb["apiVersion"], "policy/v1", "{}", r.name);
        assert!(
            selects(&pdb["spec"]["selector"], gw_labels),
            "{}: the gateway PDB selects no gateway",
            r.name
        );
        let sched = r.get("Deployment", NS, "persys-scheduler");
        let sched_pdb = r.get("PodDisruptionBudget", NS, "persys-scheduler");
        assert!(selects(
            &sched_pdb["spec"]["selector"],
            &sched["spec"]["template"]["metadata"]["labels"]
        ));
        assert!(
            !sched["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_null(),
            "{}: scheduler anti-affinity",
            r.name
        );
        // Services reach the pods they mean.
        for (svc, deploy) in [("persys-scheduler", sched), ("persys-gateway", gw)] {
            let s = r.get("Service", NS, svc);
            let sel = serde_json::json!({"matchLabels": s["spec"]["selector"]});
            assert!(
                selects(&sel, &deploy["spec"]["template"]["metadata"]["labels"]),
                "{}: Service {svc}",
                r.name
            );
        }
        match r.name {
            "base" => assert!(
                replicas(r, "persys-scheduler") >= 2,
                "base: scheduler replicas"
            ),
            "overlays/dev" => assert_eq!(
                replicas(r, "persys-scheduler"),
                1,
                "dev: scheduler replicas"
            ),
            "overlays/production" => {
                assert_eq!(
                    replicas(r, "persys-scheduler"),
                    3,
                    "production: scheduler replicas"
                );
                assert_eq!((min, max), (2, 10), "production: gateway HPA");
                assert_eq!(pdb["spec"]["minAvailable"], 1, "production: gateway PDB");
                assert!(
                    sched["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
                        ["requiredDuringSchedulingIgnoredDuringExecution"]
                        .is_array(),
                    "production: one scheduler per node, required"
                );
            }
            other => panic!("unexpected render {other}"),
        }
    }
}

#[test]
fn overlays_pin_the_persys_images_by_tag() {
    for r in rendered() {
        for (w, _, c) in containers(r) {
            let image = c["image"].as_str().expect("image");
            let binary = c["command"][0].as_str().unwrap_or("");
            let (repo_name, tag) = image.rsplit_once(':').unwrap_or((image, ""));
            assert_eq!(
                repo_name.replace('/', "-"),
                binary,
                "{}: {} runs {binary} from {image}",
                r.name,
                name_of(w)
            );
            if r.name.starts_with("overlays/") {
                assert!(
                    !tag.is_empty() && tag != "latest",
                    "{}: {image} is not pinned",
                    r.name
                );
            }
            if r.name == "overlays/production" {
                assert!(
                    tag.split('.')
                        .all(|p| !p.is_empty() && p.chars().all(|ch| ch.is_ascii_digit())),
                    "production: {image} is not a release tag"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- network policies

fn policies<'a>(r: &'a Rendered, ns: &'a str) -> Vec<&'a Value> {
    r.of_kind("NetworkPolicy")
        .filter(|p| namespace_of(p) == ns)
        .collect()
}

fn types(p: &Value) -> BTreeSet<&str> {
    p["spec"]["policyTypes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn rules<'a>(p: &'a Value, key: &str) -> Vec<&'a Value> {
    p["spec"][key].as_array().into_iter().flatten().collect()
}

fn ports(rule: &Value) -> BTreeSet<u64> {
    rule["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_u64())
        .collect()
}

/// The policies that select pods with these labels (not the namespace-wide ones).
fn policies_for<'a>(r: &'a Rendered, ns: &'a str, labels: &Value) -> Vec<&'a Value> {
    policies(r, ns)
        .into_iter()
        .filter(|p| {
            p["spec"]["podSelector"]["matchLabels"].is_object()
                && selects(&p["spec"]["podSelector"], labels)
        })
        .collect()
}

/// A peer of a rule: (namespace it names, or "" for the policy's own; the
/// `app.kubernetes.io/name` it selects).
fn peers(rule: &Value, own_ns: &str, key: &str) -> Vec<(String, String)> {
    rule[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|peer| {
            let ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                .as_str()
                .unwrap_or(own_ns)
                .to_string();
            let app = peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                .as_str()
                .unwrap_or("*")
                .to_string();
            (ns, app)
        })
        .collect()
}

#[test]
fn network_policies_deny_by_default_and_open_only_the_persys_paths() {
    for r in rendered() {
        for ns in [NS, NODE_NS] {
            let deny = policies(r, ns).into_iter().find(|p| {
                p["spec"]["podSelector"]
                    .as_object()
                    .is_some_and(|s| s.is_empty())
                    && types(p) == BTreeSet::from(["Ingress", "Egress"])
                    && rules(p, "ingress").is_empty()
                    && rules(p, "egress").is_empty()
            });
            assert!(deny.is_some(), "{}: no default deny in {ns}", r.name);
            // DNS out of every pod.
            assert!(
                policies(r, ns)
                    .iter()
                    .any(|p| rules(p, "egress").iter().any(|e| ports(e).contains(&53))),
                "{}: no DNS egress in {ns}",
                r.name
            );
        }
        let labels_of = |kind: &str, ns: &str, name: &str| {
            r.get(kind, ns, name)["spec"]["template"]["metadata"]["labels"].clone()
        };
        let gw = policies_for(r, NS, &labels_of("Deployment", NS, "persys-gateway"));
        let sched = policies_for(r, NS, &labels_of("Deployment", NS, "persys-scheduler"));
        let agent = policies_for(r, NODE_NS, &labels_of("DaemonSet", NODE_NS, "persys-agent"));
        for (what, ps) in [("gateway", &gw), ("scheduler", &sched), ("agent", &agent)] {
            assert!(!ps.is_empty(), "{}: no policy for the {what}", r.name);
        }
        // The gateway: its port from anywhere, nothing else in.
        let gw_in: Vec<&Value> = gw.iter().flat_map(|p| rules(p, "ingress")).collect();
        assert!(!gw_in.is_empty(), "{}", r.name);
        for rule in &gw_in {
            assert_eq!(
                ports(rule),
                BTreeSet::from([8551]),
                "{}: gateway ingress",
                r.name
            );
            assert!(
                rule["from"].is_null(),
                "{}: the gateway is for everyone",
                r.name
            );
        }
        // The scheduler: from the gateway, the agents and its own replicas only.
        let allowed: BTreeSet<(String, String)> = [
            (NS, "persys-gateway"),
            (NS, "persys-scheduler"),
            (NODE_NS, "persys-agent"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let sched_in: Vec<&Value> = sched.iter().flat_map(|p| rules(p, "ingress")).collect();
        assert!(!sched_in.is_empty(), "{}", r.name);
        for rule in &sched_in {
            let from = peers(rule, NS, "from");
            assert!(
                !from.is_empty(),
                "{}: scheduler ingress from anywhere",
                r.name
            );
            for peer in from {
                assert!(
                    allowed.contains(&peer),
                    "{}: scheduler ingress from {peer:?}",
                    r.name
                );
            }
            assert!(
                ports(rule).is_subset(&BTreeSet::from([8084, 8085])),
                "{}",
                r.name
            );
        }
        assert!(
            sched_in.iter().any(|rule| ports(rule).contains(&8085)
                && peers(rule, NS, "from").contains(&(NS.into(), "persys-gateway".into()))),
            "{}: the gateway cannot reach the scheduler API",
            r.name
        );
        // The agent API: schedulers only.
        let agent_in: Vec<&Value> = agent.iter().flat_map(|p| rules(p, "ingress")).collect();
        assert!(!agent_in.is_empty(), "{}", r.name);
        for rule in &agent_in {
            assert_eq!(
                peers(rule, NODE_NS, "from"),
                [(NS.to_string(), "persys-scheduler".to_string())],
                "{}",
                r.name
            );
            assert_eq!(ports(rule), BTreeSet::from([8080]), "{}", r.name);
        }
        // etcd from the scheduler and the gateway, not from the agent.
        for (what, ps) in [("gateway", &gw), ("scheduler", &sched)] {
            assert!(
                ps.iter()
                    .any(|p| rules(p, "egress").iter().any(|e| ports(e).contains(&2379))),
                "{}: the {what} cannot reach etcd",
                r.name
            );
        }
        assert!(
            !agent
                .iter()
                .any(|p| rules(p, "egress").iter().any(|e| ports(e).contains(&2379))),
            "{}: the agent has no business with etcd",
            r.name
        );
    }
}

// ---------------------------------------------------------------- flags of the pods

/// `$(NAME)` references in a string.
fn references(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("$(") {
        let tail = &rest[at + 2..];
        let end = tail.find(')').expect("unclosed $(");
        out.push(&tail[..end]);
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_flag_and_persys_variable_of_a_container_is_one_its_binary_takes() {
    for r in rendered() {
        for (w, _, c) in containers(r) {
            let what = format!("{}: {} container {}", r.name, name_of(w), c["name"]);
            let binary = c["command"][0]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no command"));
            assert_eq!(
                c["command"].as_array().map(Vec::len),
                Some(1),
                "{what}: command is the binary alone"
            );
            let h = help(binary);
            let mut defined: Vec<&str> = Vec::new();
            let mut set_flags: BTreeSet<String> = BTreeSet::new();
            for e in c["env"].as_array().into_iter().flatten() {
                let name = e["name"].as_str().expect("env name");
                for reference in references(e["value"].as_str().unwrap_or("")) {
                    assert!(
                        defined.contains(&reference),
                        "{what}: {name} uses $({reference}) before it is defined"
                    );
                }
                if name.starts_with("PERSYS_") || name == "DOCKER_HOST" {
                    let flag = h
                        .env
                        .get(name)
                        .unwrap_or_else(|| panic!("{what}: {binary} reads no {name}"));
                    assert!(set_flags.insert(flag.clone()), "{what}: {flag} set twice");
                }
                defined.push(name);
            }
            let ports: BTreeSet<u64> = c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["containerPort"].as_u64())
                .collect();
            for arg in c["args"].as_array().into_iter().flatten() {
                let arg = arg.as_str().expect("string arg");
                let (flag, value) = arg
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{what}: {arg:?}: write flags as --flag=value"));
                assert!(
                    h.flags.contains(flag),
                    "{what}: {binary} has no flag {flag}"
                );
                assert!(
                    set_flags.insert(flag.to_string()),
                    "{what}: {flag} set twice (flag and variable)"
                );
                for reference in references(value) {
                    assert!(
                        defined.contains(&reference),
                        "{what}: {flag} uses undefined $({reference})"
                    );
                }
                if flag.ends_with("listen") {
                    let port: u64 = value
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .expect("listen port");
                    assert!(
                        ports.contains(&port),
                        "{what}: {flag} port {port} is no containerPort"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------- systemd

/// A unit file: its sections with their keys in order (keys may repeat).
type Unit = BTreeMap<String, Vec<(String, String)>>;

fn parse_unit(path: &Path) -> Unit {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut unit = Unit::new();
    let mut section: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "{}:{}: no continued lines here",
            path.display(),
            n + 1
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            unit.entry(name.to_string()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}:{}: not key=value: {line}", path.display(), n + 1));
        let s = section
            .clone()
            .unwrap_or_else(|| panic!("{}:{}: a key before any section", path.display(), n + 1));
        unit.entry(s)
            .or_default()
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    unit
}

fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section)
        .into_iter()
        .flatten()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    let v = values(unit, section, key);
    assert_eq!(v.len(), 1, "[{section}] {key}: {v:?}");
    v[0]
}

/// The keys these units may use (systemd.unit(5), systemd.service(5), systemd.exec(5)):
/// a typo is a key systemd ignores with a warning, so an unknown one fails here.
fn known_keys(section: &str) -> &'static [&'static str] {
    match section {
        "Unit" => &[
            "Description",
            "Documentation",
            "After",
            "Before",
            "Wants",
            "Requires",
            "BindsTo",
            "PartOf",
            "ConditionPathExists",
            "StartLimitIntervalSec",
            "StartLimitBurst",
        ],
        "Service" => &[
            "Type",
            "User",
            "Group",
            "DynamicUser",
            "SupplementaryGroups",
            "EnvironmentFile",
            "Environment",
            "ExecStart",
            "ExecStartPre",
            "ExecReload",
            "Restart",
            "RestartSec",
            "TimeoutStartSec",
            "TimeoutStopSec",
            "KillMode",
            "KillSignal",
            "LimitNOFILE",
            "StateDirectory",
            "StateDirectoryMode",
            "ReadWritePaths",
            "ReadOnlyPaths",
            "UMask",
            "NoNewPrivileges",
            "CapabilityBoundingSet",
            "AmbientCapabilities",
            "ProtectSystem",
            "ProtectHome",
            "PrivateTmp",
            "PrivateDevices",
            "PrivateMounts",
            "PrivateUsers",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectKernelLogs",
            "ProtectControlGroups",
            "ProtectClock",
            "ProtectHostname",
            "ProtectProc",
            "ProcSubset",
            "RestrictAddressFamilies",
            "RestrictNamespaces",
            "RestrictRealtime",
            "RestrictSUIDSGID",
            "LockPersonality",
            "MemoryDenyWriteExecute",
            "RemoveIPC",
            "SystemCallArchitectures",
            "SystemCallFilter",
            "SystemCallErrorNumber",
        ],
        "Install" => &["WantedBy", "RequiredBy", "Alias"],
        _ => &[],
    }
}

/// `VAR=` names of an env file, commented-out examples (`#VAR=`) included.
fn env_file_names(path: &Path) -> (Vec<String>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names = Vec::new();
    let mut active = 0;
    for line in text.lines() {
        let line = line.trim();
        let commented = line.starts_with('#');
        let body = line.trim_start_matches('#').trim_start();
        let Some((name, _)) = body.split_once('=') else {
            continue;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        if !commented {
            active += 1;
        }
        names.push(name.to_string());
    }
    (names, active)
}

fn systemd_analyze() -> Option<PathBuf> {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("systemd-analyze"))
}

#[test]
fn systemd_units_are_hardened_and_start_the_binaries_with_real_flags() {
    let dir = repo().join("deploy/systemd");
    let sysusers =
        std::fs::read_to_string(dir.join("persys.sysusers.conf")).expect("persys.sysusers.conf");
    let analyze = systemd_analyze();
    if analyze.is_none() {
        eprintln!("systemd-analyze is not installed: the units get the structural checks only");
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    for role in ["scheduler", "gateway", "agent"] {
        let binary = format!("persys-{role}");
        let file = dir.join(format!("{binary}.service"));
        let unit = parse_unit(&file);
        let what = file.display().to_string();
        for (section, keys) in &unit {
            let known = known_keys(section);
            assert!(!known.is_empty(), "{what}: unexpected section [{section}]");
            for (k, _) in keys {
                assert!(
                    known.contains(&k.as_str()),
                    "{what}: [{section}] {k} is not a key these units use"
                );
            }
        }
        let after = values(&unit, "Unit", "After").join(" ");
        let wants = values(&unit, "Unit", "Wants").join(" ");
        assert!(
            after
                .split_whitespace()
                .any(|u| u == "network-online.target"),
            "{what}: After"
        );
        assert!(
            wants
                .split_whitespace()
                .any(|u| u == "network-online.target"),
            "{what}: Wants"
        );
        for (key, want) in [
            ("Type", "simple"),
            ("Restart", "on-failure"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("CapabilityBoundingSet", ""),
            ("AmbientCapabilities", ""),
            ("UMask", "0077"),
        ] {
            assert_eq!(one(&unit, "Service", key), want, "{what}: {key}");
        }
        assert!(
            ["yes", "read-only"].contains(&one(&unit, "Service", "ProtectHome")),
            "{what}: ProtectHome"
        );
        assert_eq!(
            one(&unit, "Install", "WantedBy"),
            "multi-user.target",
            "{what}"
        );
        // Who it runs as.
        let user = one(&unit, "Service", "User");
        assert_ne!(user, "root", "{what}");
        assert!(
            sysusers
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(user)),
            "{what}: user {user} is not in persys.sysusers.conf"
        );
        let groups = values(&unit, "Service", "SupplementaryGroups").join(" ");
        if role == "agent" {
            assert_eq!(
                groups, "docker",
                "{what}: the agent reaches the engine through the docker group"
            );
        } else {
            assert!(groups.is_empty(), "{what}: SupplementaryGroups {groups}");
        }
        // The state directory, writable, and the data dir the binary is given.
        let state = one(&unit, "Service", "StateDirectory");
        assert_eq!(state, format!("persys/{role}"), "{what}: StateDirectory");
        let state_path = format!("/var/lib/{state}");
        assert!(
            values(&unit, "Service", "ReadWritePaths")
                .iter()
                .any(|v| v.split_whitespace().any(|p| p == state_path)),
            "{what}: ReadWritePaths lacks {state_path}"
        );
        let nofile = one(&unit, "Service", "LimitNOFILE");
        if role == "scheduler" {
            assert!(
                nofile == "infinity" || nofile.parse::<u64>().is_ok_and(|n| n >= 65536),
                "{what}: the scheduler holds a connection per node: LimitNOFILE {nofile}"
            );
        }
        // ExecStart: the binary, and only flags its --help lists.
        let exec = one(&unit, "Service", "ExecStart");
        assert!(
            !exec.contains(['"', '\'']),
            "{what}: no quoting in ExecStart"
        );
        let words: Vec<&str> = exec.split_whitespace().collect();
        assert_eq!(
            words[0],
            format!("/usr/local/bin/{binary}"),
            "{what}: ExecStart"
        );
        let h = help(&binary);
        let mut given: BTreeMap<String, String> = BTreeMap::new();
        let mut i = 1;
        while i < words.len() {
            let word = words[i];
            assert!(
                word.starts_with("--"),
                "{what}: ExecStart word {word:?} is no flag"
            );
            let (flag, value) = match word.split_once('=') {
                Some((f, v)) => (f.to_string(), v.to_string()),
                None => {
                    i += 1;
                    (
                        word.to_string(),
                        words.get(i).map(|v| v.to_string()).unwrap_or_default(),
                    )
                }
            };
            assert!(
                h.flags.contains(&flag),
                "{what}: {binary} has no flag {flag}"
            );
            given.insert(flag, value);
            i += 1;
        }
        match role {
            "gateway" => {
                assert_eq!(
                    given.get("--scheduler-data-dir").map(String::as_str),
                    Some("/var/lib/persys/scheduler"),
                    "{what}"
                );
                let token = given.get("--admin-token-file").expect("--admin-token-file");
                assert!(
                    token.starts_with(&format!("{state_path}/")),
                    "{what}: the admin token outside the state dir"
                );
            }
            _ => assert_eq!(
                given.get("--data-dir"),
                Some(&state_path),
                "{what}: --data-dir"
            ),
        }
        // The env file and its example: only variables the binary reads, and none that a
        // flag of ExecStart overrides.
        let env_file = one(&unit, "Service", "EnvironmentFile");
        assert_eq!(
            env_file,
            format!("/etc/persys/{role}.env"),
            "{what}: EnvironmentFile"
        );
        let example = dir.join(format!("{role}.env.example"));
        let (names, active) = env_file_names(&example);
        assert!(active > 0, "{}: sets nothing", example.display());
        for name in names {
            let flag = h
                .env
                .get(&name)
                .unwrap_or_else(|| panic!("{}: {binary} reads no {name}", example.display()));
            assert!(
                !given.contains_key(flag),
                "{}: {name} is overridden by {flag} in ExecStart",
                example.display()
            );
        }
        // systemd's own verdict, where it is installed: the unit as it is, but with
        // ExecStart pointing at the built binary (verify checks that it exists).
        if let Some(analyze) = &analyze {
            let text = std::fs::read_to_string(&file).expect("unit");
            let built = bin(&binary);
            let copy = scratch.path().join(format!("{binary}.service"));
            std::fs::write(
                &copy,
                text.replace(
                    &format!("/usr/local/bin/{binary}"),
                    &built.display().to_string(),
                ),
            )
            .expect("write unit copy");
            let out = Command::new(analyze)
                .arg("verify")
                .arg(&copy)
                .output()
                .expect("systemd-analyze verify");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.trim().is_empty(),
                "systemd-analyze verify {what}:\n{stderr}{}",
                String::from_utf8_lossy(&out.stdout)
            );
            // Exposure 0..10 (shown), the threshold 0..100: at most 2.0, "OK".
            let out = Command::new(analyze)
                .args(["security", "--offline=yes", "--threshold=20"])
                .arg(&copy)
                .output()
                .expect("systemd-analyze security");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "systemd-analyze security {what}: exposure above 2.0:\n{}",
                stdout
                    .lines()
                    .filter(|l| l.contains('✗') || l.contains("Overall"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}
