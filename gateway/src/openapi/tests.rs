use super::*;
use chrono::Utc;
use persys_proto::{
    ClusterMetrics, Node, NodeList, NodeStatus, ScheduleResponse, Workload, WorkloadRequest,
};
use serde_json::Value;

fn doc() -> Value {
    document()
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    &doc["components"]["schemas"][name]
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// Every key the real type serializes is described, and every described required key
/// is produced: the mirror schemas cannot drift from `persys_proto`.
fn assert_matches(doc: &Value, name: &str, value: &Value) {
    let s = schema(doc, name);
    let props = s["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has no properties: {s}"));
    let obj = value.as_object().expect("object");
    for key in obj.keys() {
        assert!(props.contains_key(key), "{name}.{key} is not in the schema");
    }
    for req in s["required"].as_array().into_iter().flatten() {
        let req = req.as_str().expect("string");
        assert!(
            obj.contains_key(req),
            "{name}.{req} is required but not produced"
        );
    }
}

fn sample_workload() -> Workload {
    let spec = serde_json::from_value::<WorkloadRequest>(serde_json::json!({
        "name": "web", "image": "busybox:local", "command": ["sleep", "1"],
        "network": "bridge", "resources": {"cpu": 100, "memory": 16},
        "labels": {"persys.io/repo": "acme/web"}, "nodeSelector": {"zone": "a"}
    }))
    .expect("request")
    .validate()
    .expect("valid");
    let mut w = Workload::new("id".into(), spec, Utc::now());
    w.node_id = Some("node-1".into());
    w.exit_code = Some(3);
    w.status_reason = Some("why".into());
    w.container_id = Some("c".into());
    w
}

fn sample_node() -> Node {
    Node {
        node_id: "node-1".into(),
        hostname: "h".into(),
        ip_address: "127.0.0.1".into(),
        agent_port: 8080,
        os_name: "linux".into(),
        kernel_version: "6".into(),
        status: NodeStatus::Active,
        total_cpu: 2.0,
        total_memory: 1024,
        available_cpu: 1.5,
        available_memory: 512,
        allocated_cpu: 100,
        allocated_memory: 16,
        labels: Default::default(),
        domain_name: "node-1.cluster.local.dev".into(),
        last_heartbeat: Some(Utc::now()),
        registered_at: Utc::now(),
        cert_serial: None,
    }
}

#[test]
fn document_is_openapi_3_with_bearer_security() {
    let d = doc();
    assert!(d["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert_eq!(
        d["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    assert_eq!(d["security"][0]["bearerAuth"], serde_json::json!([]));
}

#[test]
fn every_gateway_route_is_documented_with_its_auth_errors() {
    let d = doc();
    for r in routes::ROUTES {
        let op = &d["paths"][r.path][r.method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{} {} is not documented", r.method, r.path);
        for status in ["401", "403", "429", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "{} {} lacks {status}",
                r.method,
                r.path
            );
        }
        let ok = op["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .any(|k| k.starts_with('2'));
        assert!(ok, "{} {} has no success answer", r.method, r.path);
    }
    for public in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/webhooks/github",
    ] {
        assert!(d["paths"][public].is_object(), "{public}");
    }
}

#[test]
fn every_reference_resolves() {
    let d = doc();
    let mut refs = Vec::new();
    collect_refs(&d, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(schema(&d, name).is_object(), "{r} does not resolve");
    }
}

#[test]
fn schemas_describe_the_real_wire_types() {
    let d = doc();
    let w = sample_workload();
    assert_matches(&d, "Workload", &serde_json::to_value(&w).expect("w"));
    assert_matches(
        &d,
        "ScheduleResponse",
        &serde_json::to_value(ScheduleResponse::from(&w)).expect("s"),
    );
    assert_matches(&d, "Node", &serde_json::to_value(sample_node()).expect("n"));
    let mut secret = w.clone();
    secret.spec.secret_env =
        persys_proto::SecretEnv::new([("DB_PASSWORD".into(), "x".into())].into());
    secret.spec.privileged = true;
    secret.spec.cap_add = vec!["NET_ADMIN".into()];
    secret.spec.devices = vec!["/dev/fuse".into()];
    secret.spec.pid_mode = Some("host".into());
    secret.spec.ipc_mode = Some("host".into());
    assert_matches(
        &d,
        "Workload",
        &serde_json::to_value(persys_proto::Public::new(secret)).expect("w"),
    );
    let policy = persys_proto::ClusterPolicy {
        allowed_host_paths: vec![persys_proto::HostPathRule {
            prefix: "/tmp/x".into(),
            mode: persys_proto::MountMode::ReadOnly,
        }],
        ..Default::default()
    };
    assert_matches(
        &d,
        "ClusterPolicy",
        &serde_json::to_value(policy).expect("p"),
    );
    assert_matches(
        &d,
        "NodeList",
        &serde_json::to_value(NodeList {
            nodes: vec![sample_node()],
        })
        .expect("nl"),
    );
    let metrics = ClusterMetrics {
        nodes: vec![sample_node()],
        ..Default::default()
    };
    assert_matches(
        &d,
        "ClusterMetrics",
        &serde_json::to_value(metrics).expect("m"),
    );
    let explained = persys_proto::PlacementExplanation {
        workload_id: w.id.clone(),
        name: w.spec.name.clone(),
        status: w.status,
        node_id: w.node_id.clone(),
        strategy: "spread".into(),
        request: w.spec.resources,
        node_selector: w.spec.node_selector.clone(),
        nodes: vec![persys_proto::NodeVerdict {
            node_id: "node-1".into(),
            verdict: persys_proto::Verdict::Rejected,
            filter: Some(persys_proto::PlacementFilter::Resources),
            reason: Some("needs 600m CPU, 400m free".into()),
            score: Some(0.5),
            allocated_cpu: 1,
            allocated_memory: 2,
            available_cpu: 3,
            available_memory: 4,
            workloads: 5,
        }],
        winner: Some("node-1".into()),
        hint: Some("h".into()),
    };
    let explained = serde_json::to_value(explained).expect("x");
    assert_matches(&d, "PlacementExplanation", &explained);
    assert_matches(&d, "NodeVerdict", &explained["nodes"][0]);
    let err = persys_proto::ApiError {
        error: "e".into(),
        code: "c".into(),
        request_id: "r".into(),
    };
    assert_matches(&d, "ApiError", &serde_json::to_value(err).expect("e"));
}

#[test]
fn every_answer_documents_the_request_id_header() {
    let d = doc();
    let op = &d["paths"]["/workloads/{id}"]["get"];
    for (status, resp) in op["responses"].as_object().expect("responses") {
        assert!(
            resp["headers"]["X-Request-Id"].is_object(),
            "{status} lacks X-Request-Id"
        );
    }
}
