//! git-compose on real Docker and a real git repository the test makes: the agent
//! clones the branch, builds what the project builds, waits for `service_healthy`, and
//! a signed GitHub push through the gateway rolls the project to the new commit. The
//! token of the repository appears in no answer and no log.

use persys_tests::git::{commit_files, git};
use persys_tests::{docker, AgentOptions, Cluster, ClusterOptions};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-S3CRET-never-shown-42";
const WEBHOOK_SECRET: &str = "compose-webhook-secret";

const COMPOSE: &str = r#"
services:
  db:
    image: busybox:local
    command: ["sh", "-c", "sleep 2; touch /tmp/ready; sleep 3600"]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 500ms
      retries: 40
  app:
    build: ./app
    depends_on:
      db: {condition: service_healthy}
    environment:
      GREETING: ${GREETING}
    command: ["sh", "-c", "cat /message.txt; echo greeting=$$GREETING; sleep 3600"]
"#;

/// `<tmp>/acme/shop`: a repository whose last two path segments name it as GitHub would.
fn make_repo(root: &Path, message: &str) -> std::path::PathBuf {
    let repo = root.join("acme").join("shop");
    std::fs::create_dir_all(&repo).expect("repository directory");
    commit_files(
        &repo,
        &[
            ("compose.yaml", COMPOSE),
            (".env", "GREETING=hello-from-dotenv\n"),
            (
                "app/Dockerfile",
                "FROM busybox:local\nCOPY message.txt /message.txt\n",
            ),
            ("app/message.txt", message),
        ],
        "first",
    );
    repo
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn logs(c: &Cluster, id: &str, service: &str, needle: &str) -> String {
    let api = c.api().expect("api");
    let url = api.url(&format!("/workloads/{id}/logs?service={service}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = match api.client().get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn generations_running(id: &str) -> Vec<(String, String)> {
    docker::running_workload_labels(id)
        .iter()
        .map(|l| {
            (
                l["persys.service"].as_str().unwrap_or_default().to_string(),
                l["persys.generation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_repository_is_built_run_and_rolled_forward_by_a_signed_push() {
    let mut c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    c.start_gateway(&[], &["--github-webhook-secret", WEBHOOK_SECRET])
        .await
        .expect("gateway starts");
    let admin = c.gateway_admin().expect("admin");
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = make_repo(tmp.path(), "message v1");
    let url = format!("file://{}", repo.display());
    let (s, w) = admin
        .post(
            "/workloads",
            &json!({"name": "shop", "type": "git-compose", "gitRepo": url, "gitToken": TOKEN}),
        )
        .await
        .expect("post");
    assert_eq!(s, 201, "{w}");
    let id = w["id"].as_str().expect("id").to_string();
    assert_eq!(w["gitToken"], "***", "{w}");
    assert_eq!(w["gitBranch"], "main");

    let head1 = git(&repo, &["rev-parse", "HEAD"]);
    let running = c
        .wait_workload(
            &id,
            Duration::from_secs(90),
            "Running at the first commit",
            |w| w["status"] == "Running" && w["revision"] == head1.as_str(),
        )
        .await
        .expect("Running");
    let gen1 = running["generation"].as_u64().expect("generation");
    let app = logs(&c, &id, "app", "greeting=").await;
    assert!(
        app.contains("message v1"),
        "built from the repository: {app:?}"
    );
    assert!(
        app.contains("greeting=hello-from-dotenv"),
        ".env interpolated: {app:?}"
    );

    // A new commit and GitHub's signed push: the project moves to it.
    std::fs::write(repo.join("app/message.txt"), "message v2").expect("write");
    git(&repo, &["commit", "-qam", "second"]);
    let head2 = git(&repo, &["rev-parse", "HEAD"]);
    let push =
        json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/shop"}, "after": head2});
    let body = serde_json::to_vec(&push).expect("json");
    let r = admin
        .client()
        .post(admin.url("/webhooks/github"))
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign(WEBHOOK_SECRET, &body))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["redeployed"], json!([id.clone()]), "{answer}");
    let after = c
        .wait_workload(
            &id,
            Duration::from_secs(90),
            "Running at the second commit",
            |w| w["status"] == "Running" && w["revision"] == head2.as_str(),
        )
        .await
        .expect("rolled forward");
    let gen2 = after["generation"].as_u64().expect("generation");
    assert!(gen2 > gen1, "a new generation");
    let app = logs(&c, &id, "app", "message v2").await;
    assert!(
        app.contains("message v2"),
        "rebuilt from the new commit: {app:?}"
    );
    // Exactly one copy of each service, all of the new generation; the old are gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut running = generations_running(&id);
        running.sort();
        let want = vec![
            ("app".to_string(), gen2.to_string()),
            ("db".to_string(), gen2.to_string()),
        ];
        if running == want && docker::workload_containers(&id).len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old containers gone: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The token: in no answer, no event and no log line of any component.
    for path in [format!("/workloads/{id}"), "/workloads".to_string()] {
        let (_, v) = admin.get(&path).await.expect("get");
        assert!(!v.to_string().contains(TOKEN), "{path} shows the token");
    }
    assert!(
        !c.all_logs().contains(TOKEN),
        "a log line carries the token"
    );
    assert!(
        !docker::workload_containers(&id)
            .iter()
            .filter_map(|c| docker::inspect(c))
            .any(|v| v.to_string().contains(TOKEN)),
        "a container carries the token"
    );
}

#[tokio::test]
async fn a_repository_that_does_not_exist_fails_with_its_reason_and_runs_nothing() {
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let w = c
        .submit(json!({"type": "git-compose", "gitRepo": "file:///nonexistent/acme/repo.git", "gitToken": TOKEN}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let failed = c
        .wait_status(&id, "Failed", Duration::from_secs(60))
        .await
        .expect("Failed");
    let reason = failed["statusReason"].as_str().unwrap_or_default();
    assert!(reason.contains("not found"), "{reason}");
    assert!(!failed.to_string().contains(TOKEN), "{failed}");
    assert!(docker::workload_containers(&id).is_empty());
}

/// A private repository over smart HTTP (`git http-backend` behind Basic auth, as
/// GitHub takes a token): cloned shallow with the token, which shows nowhere; a wrong
/// token fails the project with an authentication error that does not carry it.
#[tokio::test]
async fn a_private_repository_over_http_is_cloned_shallow_with_its_token_and_the_token_shows_nowhere(
) {
    const PRIVATE_TOKEN: &str = "ghp_private-HTTP-token-77";
    let c = Cluster::start(ClusterOptions {
        agents: vec![AgentOptions::default()],
        ..Default::default()
    })
    .await
    .expect("cluster starts");
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    commit_files(
        &work,
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: busybox:local\n    command: [\"sh\", \"-c\", \"echo private-up; sleep 3600\"]\n",
        )],
        "first",
    );
    // A second commit, so that a shallow clone has history to leave out.
    let head = commit_files(&work, &[("README", "private\n")], "second");
    let served = tmp.path().join("served");
    std::fs::create_dir_all(served.join("acme")).expect("served dir");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().expect("utf-8"),
            served.join("acme/private.git").to_str().expect("utf-8"),
        ],
    );
    let port = persys_tests::process::free_port();
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/git-http-server.py"
    ))
    .arg(port.to_string())
    .arg(&served)
    .arg(PRIVATE_TOKEN);
    let server_log = tmp.path().join("git-http.log");
    let server = persys_tests::process::Process::spawn("git-http", cmd, &server_log)
        .expect("git server starts");
    let url = format!("http://127.0.0.1:{port}/acme/private.git");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "git server listens");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let w = c
        .submit(json!({"name": "private", "type": "git-compose", "gitRepo": url, "gitToken": PRIVATE_TOKEN}))
        .await
        .expect("submitted");
    let id = w["id"].as_str().expect("id").to_string();
    let running = c
        .wait_workload(&id, Duration::from_secs(60), "Running at HEAD", |w| {
            w["status"] == "Running" && w["revision"] == head.as_str()
        })
        .await
        .expect("Running");
    assert_eq!(running["labels"]["persys.io/repo"], "acme/private");
    let served_log = server.log();
    assert!(
        served_log.contains("refused"),
        "asked without credentials first: {served_log}"
    );
    assert!(
        served_log.contains("git-upload-pack ok"),
        "fetched with the token: {served_log}"
    );
    // Shallow: the checkout knows it lacks history.
    let checkout = c.agents[0]
        .data_dir
        .join("projects")
        .join(&id)
        .join("git")
        .join(&head);
    assert!(
        checkout.join(".git/shallow").exists(),
        "a depth-1 clone at {}",
        checkout.display()
    );

    let bad = c
        .submit(json!({"name": "private-bad", "type": "git-compose", "gitRepo": url, "gitToken": "ghp_wrong-token-00"}))
        .await
        .expect("submitted");
    let bad_id = bad["id"].as_str().expect("id").to_string();
    let failed = c
        .wait_status(&bad_id, "Failed", Duration::from_secs(60))
        .await
        .expect("Failed");
    let reason = failed["statusReason"].as_str().unwrap_or_default();
    assert!(reason.contains("authentication failed"), "{reason}");
    assert!(
        !failed.to_string().contains("ghp_wrong-token-00"),
        "{failed}"
    );
    assert!(docker::workload_containers(&bad_id).is_empty());

    let api = c.api().expect("api");
    for path in [format!("/workloads/{id}"), "/workloads".to_string()] {
        let (_, v) = api.get(&path).await.expect("get");
        assert!(
            !v.to_string().contains(PRIVATE_TOKEN),
            "{path} shows the token"
        );
    }
    let logs = c.all_logs();
    assert!(
        !logs.contains(PRIVATE_TOKEN),
        "a log line carries the token"
    );
    assert!(
        !logs.contains("ghp_wrong-token-00"),
        "a log line carries the wrong token"
    );
    drop(server);
}
