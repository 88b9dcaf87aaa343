//! Access control through a real gateway: API tokens in a real etcd, client
//! certificates over real TLS, the role matrix, revocation, and log hygiene.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use support::{client, eventually, scheduler, Etcd, Gateway, Pki};

/// Everything every test's gateway logged.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .map_err(|_| std::io::ErrorKind::Other)?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("persys_gateway=debug,info")
            .with_writer(|| Capture)
            .with_ansi(false)
            .try_init();
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().expect("logs")).into_owned()
}

async fn call(
    c: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = c.request(method.parse().expect("method"), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answer");
    let status = resp.status();
    (status, resp.text().await.expect("text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_created_hashed_checked_by_role_and_revoked() {
    capture_logs();
    let pki = Pki::new();
    let etcd = Etcd::start(pki.dir.path()).await;
    let sched = scheduler::start(&pki.ca).await;
    let gw = Gateway::start(&pki, &etcd.endpoint, &[sched.url()], &[]).await;
    let admin = gw.admin_token().await;
    assert!(admin.starts_with("persys_"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&gw.admin_token_file)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let c = client(&pki, None);
    let url = |p: &str| gw.url(p);

    // Create a viewer and an operator; the secret is in the creation answer only.
    let mut secrets = vec![admin.clone()];
    let mut ids = std::collections::HashMap::new();
    for (name, role) in [("ci-viewer", "viewer"), ("ci-operator", "operator")] {
        let (st, body) = call(
            &c,
            "POST",
            &url("/tokens"),
            Some(&admin),
            Some(json!({"name": name, "role": role})),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["role"], role);
        let secret = v["token"].as_str().expect("token").to_string();
        assert!(secret.starts_with("persys_"));
        ids.insert(role, v["id"].as_str().expect("id").to_string());
        secrets.push(secret);
    }
    let (viewer, operator) = (secrets[1].clone(), secrets[2].clone());

    let (st, list) = call(&c, "GET", &url("/tokens"), Some(&admin), None).await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<String> = serde_json::from_str::<Value>(&list).expect("json")["tokens"]
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names, ["bootstrap-admin", "ci-viewer", "ci-operator"]);
    for s in &secrets {
        assert!(!list.contains(s.as_str()), "a secret is listed");
    }

    // etcd holds hashes as keys and no secret anywhere.
    let mut kv = etcd.client().await;
    let stored = kv
        .get(
            "/persys/tokens/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("get");
    assert_eq!(stored.kvs().len(), 3);
    for entry in stored.kvs() {
        let key = entry.key_str().expect("key");
        let hash = key.strip_prefix("/persys/tokens/").expect("prefix");
        assert_eq!(hash.len(), 64);
        let value = entry.value_str().expect("value");
        assert!(value.contains("\"kind\":\"api\""), "{value}");
        for s in &secrets {
            assert!(!value.contains(s.as_str()) && !key.contains(s.as_str()));
        }
    }

    // The role matrix over HTTPS.
    let cases: &[(&str, &str, &str, StatusCode)] = &[
        (&viewer, "GET", "/workloads", StatusCode::OK),
        (&viewer, "GET", "/workloads/w-main", StatusCode::OK),
        (&viewer, "POST", "/workloads", StatusCode::FORBIDDEN),
        (
            &viewer,
            "POST",
            "/nodes/node-1/cordon",
            StatusCode::FORBIDDEN,
        ),
        (&viewer, "GET", "/tokens", StatusCode::FORBIDDEN),
        (&operator, "POST", "/workloads", StatusCode::CREATED),
        (
            &operator,
            "POST",
            "/nodes/node-1/cordon",
            StatusCode::FORBIDDEN,
        ),
        (&operator, "POST", "/tokens", StatusCode::FORBIDDEN),
        (&admin, "POST", "/nodes/node-1/cordon", StatusCode::OK),
        (&admin, "GET", "/workloads/nope", StatusCode::NOT_FOUND),
        (
            "persys_not-a-real-token",
            "GET",
            "/workloads",
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (token, method, path, want) in cases {
        let body = (*method == "POST").then(|| json!({"image": "busybox:local"}));
        let (st, text) = call(&c, method, &url(path), Some(token), body).await;
        assert_eq!(st, *want, "{method} {path}: {text}");
        if st == StatusCode::FORBIDDEN || st == StatusCode::UNAUTHORIZED {
            let v: Value = serde_json::from_str(&text).expect("json error");
            assert!(v["requestId"].as_str().is_some_and(|r| !r.is_empty()));
            assert!(v["code"] == "forbidden" || v["code"] == "unauthenticated");
        }
    }
    let (st, _) = call(&c, "GET", &url("/workloads"), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // A join token shares the prefix but is not an API credential.
    let join_secret = "0123456789abcdef0123456789abcdef";
    let key = format!("/persys/tokens/{}", persys_certs::hash_secret(join_secret));
    kv.put(
        key,
        r#"{"kind":"join","createdAt":"2024-01-01T00:00:00Z"}"#,
        None,
    )
    .await
    .expect("put");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, _) = call(&c, "GET", &url("/workloads"), Some(join_secret), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Anyone who can write to etcd writes an admin API token record, with no MAC or a
    // made-up one: it mints nothing (the records are signed with the CA-derived key).
    for (i, mac) in ["", r#","mac":"00ff""#].iter().enumerate() {
        let forged = format!("persys_{}", format!("{i:x}").repeat(64));
        let key = format!("/persys/tokens/{}", persys_certs::hash_secret(&forged));
        kv.put(
            key,
            format!(
                r#"{{"id":"f{i}","name":"evil{i}","role":"admin","kind":"api","createdAt":"2024-01-01T00:00:00Z"{mac}}}"#
            ),
            None,
        )
        .await
        .expect("put");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (st, text) = call(&c, "GET", &url("/tokens"), Some(&forged), None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "forged token {i}: {text}");
    }

    // Bad input to /tokens.
    let (st, _) = call(
        &c,
        "POST",
        &url("/tokens"),
        Some(&admin),
        Some(json!({"name": "ci-viewer", "role": "viewer"})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, text) = call(
        &c,
        "POST",
        &url("/tokens"),
        Some(&admin),
        Some(json!({"name": "x", "role": "root"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(text.contains("role"), "{text}");

    // Revocation takes effect at once.
    let (st, _) = call(
        &c,
        "DELETE",
        &url(&format!("/tokens/{}", ids["viewer"])),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(&c, "GET", &url("/workloads"), Some(&viewer), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = call(
        &c,
        "DELETE",
        &url(&format!("/tokens/{}", ids["viewer"])),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A token revoked behind the gateway's back (another gateway, etcdctl) stops too.
    let mut kv2 = etcd.client().await;
    kv2.delete(
        format!("/persys/tokens/{}", persys_certs::hash_secret(&operator)),
        None,
    )
    .await
    .expect("delete");
    let gone = eventually(Duration::from_secs(5), || {
        let c = c.clone();
        let (u, t) = (url("/workloads"), operator.clone());
        async move { call(&c, "GET", &u, Some(&t), None).await.0 == StatusCode::UNAUTHORIZED }
    })
    .await;
    assert!(gone, "watch did not remove the deleted token");

    // The scheduler never saw a credential; decisions were logged; no secret was.
    assert!(sched.seen.authorizations.lock().expect("lock").is_empty());
    let text = logs();
    assert!(
        text.contains("access denied") && text.contains("access granted"),
        "{text}"
    );
    assert!(
        text.contains("decision=\"forbidden\"") || text.contains("decision=forbidden"),
        "{text}"
    );
    for s in secrets.iter().map(String::as_str).chain([join_secret]) {
        assert!(!text.contains(s), "a token appears in the logs");
    }
    gw.shutdown.cancel();
    gw.done.await.expect("join").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_certificates_authenticate_and_component_certificates_do_not() {
    capture_logs();
    let pki = Pki::new();
    let etcd = Etcd::start(pki.dir.path()).await;
    let sched = scheduler::start(&pki.ca).await;
    let gw = Gateway::start(&pki, &etcd.endpoint, &[sched.url()], &[]).await;
    let admin = client(&pki, Some(&pki.client_cert("admin")));
    let alice = client(&pki, Some(&pki.client_cert("alice")));
    let (st, _) = call(&admin, "POST", &gw.url("/nodes/node-1/cordon"), None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(
        &alice,
        "POST",
        &gw.url("/workloads"),
        None,
        Some(json!({"image": "busybox:local"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = call(&alice, "POST", &gw.url("/nodes/node-1/cordon"), None, None).await;
    // A cluster component's certificate is no user credential (row 6 of the audit):
    // a node, the scheduler, the gateway's own.
    for component in [
        persys_certs::Identity::node("node-1"),
        persys_certs::Identity::scheduler(),
        persys_certs::Identity::gateway(),
    ] {
        let as_component = client(&pki, Some(&pki.component_cert(&component)));
        for (method, path) in [("GET", "/workloads"), ("POST", "/nodes/node-1/cordon")] {
            let (st, text) = call(&as_component, method, &gw.url(path), None, None).await;
            assert_eq!(
                st,
                StatusCode::UNAUTHORIZED,
                "{component} {method} {path}: {text}"
            );
        }
    }
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The original client's calls answer exactly 200.
    for path in ["/workloads", "/nodes"] {
        let (st, _) = call(&admin, "GET", &gw.url(path), None, None).await;
        assert_eq!(st, StatusCode::OK, "{path}");
    }

    // A certificate of another CA is refused during the handshake.
    let other = Pki::new();
    let foreign = other.client_cert("admin");
    let tls = persys_certs::client_config(
        pki.ca.cert_pem(),
        Some((foreign.cert_pem.as_str(), foreign.key_pem.as_str())),
        persys_certs::Expected::role(persys_certs::Role::Gateway),
    )
    .expect("tls");
    let intruder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client");
    assert!(intruder.get(gw.url("/workloads")).send().await.is_err());
    gw.shutdown.cancel();
    gw.done.await.expect("join").expect("clean stop");
}
