//! Workload safety through the gateway, on real etcd, TLS and Docker: the admission
//! policy (host takeover bodies refused, an admin's allowance let through exactly),
//! `no-new-privileges` on every container, secret env values never shown, one body
//! limit on every hop, and a failure's reason kept across reconciles.

use futures::StreamExt;
use persys_tests::{docker, AgentOptions, Api, Cluster, ClusterOptions, TEST_IMAGE};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn cluster_with_gateway(scheduler_args: &[&str]) -> Cluster {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        scheduler_args: scheduler_args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    c.start_gateway(&[], &[]).await.expect("gateway starts");
    c
}

async fn token(c: &Cluster, name: &str, role: &str) -> Api {
    let admin = c.gateway_admin().expect("admin");
    let (s, v) = admin
        .post("/tokens", &json!({"name": name, "role": role}))
        .await
        .expect("create token");
    assert_eq!(s, 201, "{v}");
    c.gateway_api(v["token"].as_str().expect("token"))
        .expect("client")
}

fn security_opt(container: &str) -> Vec<String> {
    let i = docker::inspect(container).expect("inspect");
    i["HostConfig"]["SecurityOpt"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

async fn running_container(c: &Cluster, id: &str) -> String {
    c.wait_status(id, "Running", Duration::from_secs(30))
        .await
        .expect("Running");
    let ids = docker::workload_containers(id);
    assert_eq!(ids.len(), 1, "one container for {id}: {ids:?}");
    ids[0].clone()
}

#[tokio::test]
async fn host_takeover_bodies_are_refused_for_an_operator_and_no_container_is_created() {
    let c = cluster_with_gateway(&[]).await;
    let operator = token(&c, "op", "operator").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let attacks = [
        (json!({"volumes": ["/:/host"]}), 403, "volumes[0]"),
        (
            json!({"volumes": ["data:/d", "/var/run/docker.sock:/var/run/docker.sock"]}),
            403,
            "volumes[1]",
        ),
        (json!({"volumes": ["/etc:/host-etc:ro"]}), 403, "volumes[0]"),
        (json!({"network": "host"}), 403, "network"),
        (json!({"network": "container:abc"}), 403, "network"),
        (json!({"privileged": true}), 403, "privileged"),
        (json!({"capAdd": ["SYS_ADMIN"]}), 403, "capAdd[0]"),
        (json!({"devices": ["/dev/sda"]}), 403, "devices[0]"),
        (json!({"pidMode": "host"}), 403, "pidMode"),
        (json!({"ipcMode": "host"}), 403, "ipcMode"),
        (json!({"cap_add": ["SYS_ADMIN"]}), 400, "cap_add"),
        (
            json!({"securityOpt": ["seccomp=unconfined"]}),
            400,
            "securityOpt",
        ),
        (json!({"userns": "host"}), 400, "userns"),
    ];
    for (extra, status, field) in attacks {
        let mut body =
            json!({"image": TEST_IMAGE, "command": "chroot /host sh", "labels": {"attack": run}});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        for path in ["/workloads", "/workloads/schedule"] {
            let (s, v) = operator.post(path, &body).await.expect("answer");
            assert_eq!(s, status, "{path} {extra}: {v}");
            let msg = v["error"].as_str().unwrap_or_default();
            assert!(msg.starts_with(&format!("{field}:")), "{extra}: {msg}");
            let code = if status == 403 {
                "policy_denied"
            } else {
                "invalid"
            };
            assert_eq!(v["code"], code, "{extra}: {v}");
            assert!(v["requestId"].is_string(), "{v}");
        }
        // The same template as a service's: refused on create and on apply, naming
        // the template's field.
        let service = json!({"name": "attack", "replicas": 2, "template": body});
        for (method, path) in [("POST", "/services"), ("PUT", "/services/attack")] {
            let (s, v) = if method == "POST" {
                operator.post(path, &service).await
            } else {
                operator.put(path, &service).await
            }
            .expect("answer");
            assert_eq!(s, status, "{method} {path} {extra}: {v}");
            let msg = v["error"].as_str().unwrap_or_default();
            assert!(
                msg.starts_with(&format!("template.{field}:")),
                "{extra}: {msg}"
            );
        }
    }
    let (_, list) = operator.get("/services").await.expect("list");
    assert_eq!(list, json!([]), "no service was stored");
    let (_, list) = operator.get("/workloads").await.expect("list");
    assert_eq!(list, json!([]), "nothing was stored");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        docker::containers_with_label("attack", &run).is_empty(),
        "no container was created"
    );
}

#[tokio::test]
async fn an_admin_policy_lets_exactly_the_allowed_read_only_mount_through() {
    let c = cluster_with_gateway(&[]).await;
    let admin = c.gateway_admin().expect("admin");
    let operator = token(&c, "op", "operator").await;
    let viewer = token(&c, "viewer", "viewer").await;
    let dir = std::env::temp_dir().join(format!("persys-x-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let prefix = dir.display().to_string();
    let policy = json!({"allowedHostPaths": [{"prefix": prefix, "mode": "ro"}]});

    let (s, v) = operator.put("/cluster/policy", &policy).await.expect("put");
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, v) = admin.put("/cluster/policy", &policy).await.expect("put");
    assert_eq!(s, 200, "{v}");
    let (s, v) = viewer.get("/cluster/policy").await.expect("get");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["allowedHostPaths"][0]["prefix"], prefix.as_str());

    let body =
        |volume: String| json!({"image": TEST_IMAGE, "command": "sleep 3600", "volumes": [volume]});
    for refused in [
        format!("{prefix}:/data"),
        format!("{prefix}:/data:rw"),
        format!("{prefix}-other:/data:ro"),
        "/tmp:/data:ro".to_string(),
    ] {
        let (s, v) = operator
            .post("/workloads", &body(refused.clone()))
            .await
            .expect("post");
        assert_eq!(s, 403, "{refused}: {v}");
        assert_eq!(v["code"], "policy_denied");
    }
    let (s, w) = operator
        .post("/workloads", &body(format!("{prefix}:/data:ro")))
        .await
        .expect("post");
    assert_eq!(s, 201, "{w}");
    let id = w["id"].as_str().expect("id");
    let cid = running_container(&c, id).await;
    let inspect = docker::inspect(&cid).expect("inspect");
    let mounts = inspect["Mounts"].as_array().expect("mounts");
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["Source"], prefix.as_str());
    assert_eq!(mounts[0]["Destination"], "/data");
    assert_eq!(mounts[0]["RW"], false, "mounted read-only: {mounts:?}");
    assert!(security_opt(&cid).iter().any(|o| o == "no-new-privileges"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn secret_env_values_are_never_shown_to_any_role_but_reach_the_container() {
    let c = cluster_with_gateway(&[]).await;
    let admin = c.gateway_admin().expect("admin");
    let viewer = token(&c, "viewer", "viewer").await;
    let secret = format!("pw-{}", uuid::Uuid::new_v4().simple());

    let mut streams = Vec::new();
    for api in [&viewer, &admin] {
        let r = api
            .client()
            .get(api.url("/events"))
            .send()
            .await
            .expect("events");
        assert_eq!(r.status(), 200);
        streams.push(r.bytes_stream());
    }
    let (s, created) = admin
        .post(
            "/workloads",
            &json!({"image": TEST_IMAGE, "command": "sleep 3600",
                    "envVars": {"MODE": "prod"}, "secretEnv": {"DB_PASSWORD": secret}}),
        )
        .await
        .expect("post");
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["secretEnv"]["DB_PASSWORD"], "***");
    let id = created["id"].as_str().expect("id").to_string();
    let (s, scheduled) = admin
        .post(
            "/workloads/schedule",
            &json!({"image": TEST_IMAGE, "command": "sleep 3600", "secretEnv": {"DB_PASSWORD": secret}}),
        )
        .await
        .expect("schedule");
    assert_eq!(s, 200, "{scheduled}");
    let cid = running_container(&c, &id).await;

    // The container really has the value, and no-new-privileges.
    let inspect = docker::inspect(&cid).expect("inspect");
    let env: Vec<&str> = inspect["Config"]["Env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&format!("DB_PASSWORD={secret}").as_str()),
        "{env:?}"
    );
    assert!(env.contains(&"MODE=prod"), "{env:?}");
    assert!(security_opt(&cid).iter().any(|o| o == "no-new-privileges"));

    let mut seen = vec![created.to_string(), scheduled.to_string()];
    for api in [&viewer, &admin] {
        let (_, one) = api.get(&format!("/workloads/{id}")).await.expect("get");
        assert_eq!(one["secretEnv"]["DB_PASSWORD"], "***", "{one}");
        let (_, list) = api.get("/workloads").await.expect("list");
        seen.push(one.to_string());
        seen.push(list.to_string());
    }
    let (s, stopped) = admin
        .post(&format!("/workloads/{id}/stop"), &json!({}))
        .await
        .expect("stop");
    assert_eq!(s, 200, "{stopped}");
    seen.push(stopped.to_string());

    // Read both event streams for a while (they saw the create, Running and the stop).
    for mut stream in streams {
        let mut text = String::new();
        let until = Instant::now() + Duration::from_secs(3);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, stream.next()).await {
                Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => break,
            }
        }
        assert!(
            text.contains(&id) && text.contains("DB_PASSWORD"),
            "the stream carried the workload: {text}"
        );
        seen.push(text);
    }
    // The agent's own answer (`/docker/list`), as the scheduler sees it.
    let d = c.scheduler_dir();
    let agent = Api::new(
        &format!("https://127.0.0.1:{}", c.agents[0].port),
        &d.join("ca.crt"),
        Some((&d.join("scheduler.crt"), &d.join("scheduler.key"))),
    )
    .expect("agent client");
    let (s, listed) = agent.get("/docker/list").await.expect("agent list");
    assert_eq!(s, 200, "{listed}");
    assert!(listed.to_string().contains(&id), "{listed}");
    seen.push(listed.to_string());

    for (i, text) in seen.iter().enumerate() {
        assert!(
            !text.contains(&secret),
            "answer {i} shows the secret: {text}"
        );
    }
    assert!(
        !c.all_logs().contains(&secret),
        "a scheduler, gateway or agent log line shows the secret"
    );
}

#[tokio::test]
async fn a_one_megabyte_workload_gets_413_at_the_gateway_and_one_under_the_limit_runs() {
    let c = cluster_with_gateway(&[]).await;
    let operator = token(&c, "op", "operator").await;
    let env_of = |vars: usize, size: usize| -> Value {
        (0..vars)
            .map(|i| (format!("V{i}"), Value::String("x".repeat(size))))
            .collect::<serde_json::Map<String, Value>>()
            .into()
    };
    let big = json!({"image": TEST_IMAGE, "command": "sleep 3600", "envVars": env_of(100, 10_000)});
    let (s, v) = operator.post("/workloads", &big).await.expect("answer");
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["code"], "too_large", "{v}");
    assert!(v["requestId"].is_string(), "a JSON error: {v}");
    let limit = persys_proto::limits::MAX_REQUEST_BYTES;
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|m| m.contains(&limit.to_string())),
        "the answer names the limit: {v}"
    );
    let gateway_log = std::fs::read_to_string(&c.gateway.as_ref().expect("gw").log).expect("log");
    let scheduler_saw_it = c
        .all_logs()
        .lines()
        .any(|l| l.contains("persys_scheduler") && l.contains("status=413"));
    assert!(
        !scheduler_saw_it && !gateway_log.is_empty(),
        "refused at the gateway"
    );
    let (_, list) = operator.get("/workloads").await.expect("list");
    assert_eq!(list, json!([]), "nothing was stored");

    // Just under the request limit: accepted by every hop and running on the agent.
    let vars = 40;
    let size = (limit - 4096) / vars - 16;
    let near = json!({"image": TEST_IMAGE, "command": "sleep 3600", "envVars": env_of(vars, size)});
    let len = serde_json::to_vec(&near).expect("encodes").len();
    assert!(len > limit - 8192 && len < limit, "{len}");
    let (s, w) = operator.post("/workloads", &near).await.expect("answer");
    assert_eq!(
        s,
        201,
        "{}",
        w.to_string().chars().take(300).collect::<String>()
    );
    let id = w["id"].as_str().expect("id");
    running_container(&c, id).await;
}

#[tokio::test]
async fn an_invalid_image_keeps_failed_and_its_reason_across_reconciles() {
    let c = cluster_with_gateway(&["--monitor-interval-ms", "300"]).await;
    let operator = token(&c, "op", "operator").await;
    let (s, w) = operator
        .post(
            "/workloads",
            &json!({"image": "UPPER/Case:local", "command": "sleep 3600"}),
        )
        .await
        .expect("post");
    assert_eq!(s, 201, "{w}");
    let id = w["id"].as_str().expect("id").to_string();
    let failed = c
        .wait_workload(&id, Duration::from_secs(30), "Failed", |w| {
            w["status"] == "Failed" || w["status"] == "ImagePullBackOff"
        })
        .await
        .expect("failed");
    // Not ImagePullBackOff: the engine refused the reference itself, no container exists.
    assert_eq!(failed["status"], "Failed", "{failed}");
    assert!(failed["containerId"].is_null(), "{failed}");
    let status = failed["status"].clone();
    let reason = failed["statusReason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !reason.is_empty(),
        "the engine's reason is recorded: {failed}"
    );
    // The grace before Missing is 2 s and reconciles come every 300 ms: 4 s is 10+.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let (_, now) = operator
            .get(&format!("/workloads/{id}"))
            .await
            .expect("get");
        assert_eq!(now["status"], status, "status kept: {now}");
        assert_eq!(now["statusReason"], reason.as_str(), "reason kept: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
