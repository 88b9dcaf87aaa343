//! The fields of Compose workloads: `docker-compose` (`compose`, base64, and/or
//! `localPath`) and `git-compose` (`gitRepo`, `gitBranch`, `gitToken`, `composeFile`).
//! An inline Compose file is parsed here, so a bad one is a 400 naming the Compose key;
//! a file that lives on the node or in a repository is parsed by the agent.

use super::{err, is_valid_name, validate_env_name, validate_resources, ValidationError};
use crate::compose::{self, ProjectDir};
use crate::policy::normalize_host_path;
use crate::secret::{SecretString, REDACTED};
use crate::workload::{RestartPolicy, WorkloadRequest, WorkloadSpec, WorkloadType};
use base64::Engine;

/// Largest decoded `compose` content.
pub const MAX_COMPOSE_BYTES: usize = 256 * 1024;

/// The branch a `git-compose` workload follows when none is given.
pub const DEFAULT_BRANCH: &str = "main";

fn set(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.trim().is_empty())
}

/// A `docker-container` carries no project field (the original CLI always sends
/// `gitBranch`, which is ignored).
pub(super) fn refuse_project_fields(r: &WorkloadRequest) -> Result<(), ValidationError> {
    for (field, value) in [
        ("compose", &r.compose),
        ("localPath", &r.local_path),
        ("gitRepo", &r.git_repo),
        ("gitToken", &r.git_token),
        ("composeFile", &r.compose_file),
    ] {
        if set(value) {
            return Err(err(
                field,
                "is for workloads of type \"docker-compose\" or \"git-compose\"",
            ));
        }
    }
    Ok(())
}

/// Validate a Compose workload into a spec.
pub(super) fn validate(
    r: WorkloadRequest,
    kind: WorkloadType,
) -> Result<WorkloadSpec, ValidationError> {
    // What a single container takes is set in the Compose file instead; ignoring it
    // would run something other than what was asked.
    let container_fields = [
        (
            "command",
            r.command
                .as_ref()
                .is_some_and(|c| !c.is_null() && c.as_str() != Some("")),
        ),
        ("ports", !r.ports.is_empty()),
        ("volumes", !r.volumes.is_empty()),
        ("network", set(&r.network)),
        ("secretEnv", !r.secret_env.is_empty()),
        ("privileged", r.privileged),
        ("capAdd", !r.cap_add.is_empty()),
        ("devices", !r.devices.is_empty()),
        ("pidMode", set(&r.pid_mode)),
        ("ipcMode", set(&r.ipc_mode)),
    ];
    if let Some((field, _)) = container_fields.iter().find(|(_, present)| *present) {
        return Err(err(
            *field,
            format!(
                "is not used by {} workloads; set it in the Compose file",
                kind.as_str()
            ),
        ));
    }
    for key in r.env_vars.keys() {
        validate_env_name("envVars", key)?;
    }
    let restart_policy = match r.restart_policy.as_deref() {
        None | Some("") => RestartPolicy::No,
        Some(p) => RestartPolicy::parse(p).ok_or_else(|| {
            err(
                "restartPolicy",
                format!("{p:?} is not one of no, on-failure, always, unless-stopped"),
            )
        })?,
    };
    let mut resources = validate_resources(r.resources.clone().unwrap_or_default())?;
    let compose_file = match r.compose_file.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(f) => Some(
            compose::inside_project(f)
                .filter(|p| p != ".")
                .ok_or_else(|| {
                    err(
                        "composeFile",
                        format!("{f:?} must be a file path inside the project"),
                    )
                })?,
        ),
    };
    let mut spec = WorkloadSpec {
        kind,
        env_vars: r.env_vars.clone(),
        restart_policy,
        labels: r.labels.clone(),
        node_selector: r.node_selector.clone(),
        compose_file,
        ..WorkloadSpec::default()
    };
    match kind {
        WorkloadType::DockerCompose => {
            for (field, value) in [("gitRepo", &r.git_repo), ("gitToken", &r.git_token)] {
                if set(value) {
                    return Err(err(field, "is for workloads of type \"git-compose\""));
                }
            }
            spec.local_path = match r.local_path.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(p) => Some(normalize_host_path(p).ok_or_else(|| {
                    err(
                        "localPath",
                        format!("{p:?} must be an absolute path on the node"),
                    )
                })?),
            };
            if let Some(encoded) = r
                .compose
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
            {
                let yaml = decode(encoded)?;
                let dir = if spec.local_path.is_some() {
                    ProjectDir::Present
                } else {
                    ProjectDir::None
                };
                let project = compose::parse(&yaml, &spec.env_vars, dir)
                    .map_err(|e| err("compose", e.to_string()))?;
                if resources.cpu == 0 && resources.memory == 0 {
                    resources = project.limits();
                }
                // Stored as base64 whichever form came, so nodes read one form.
                spec.compose = Some(base64::engine::general_purpose::STANDARD.encode(&yaml));
            } else if spec.local_path.is_none() {
                return Err(err(
                    "compose",
                    "a docker-compose workload needs `compose` (the Compose file, base64) or `localPath`",
                ));
            }
            if spec.compose.is_some() && spec.compose_file.is_some() {
                return Err(err(
                    "composeFile",
                    "is not used with `compose` (the file is given)",
                ));
            }
        }
        WorkloadType::GitCompose => {
            for (field, value) in [("compose", &r.compose), ("localPath", &r.local_path)] {
                if set(value) {
                    return Err(err(field, "is for workloads of type \"docker-compose\""));
                }
            }
            let repo = r.git_repo.as_deref().map(str::trim).unwrap_or_default();
            check_repo_url(repo)?;
            let branch = match r.git_branch.as_deref().map(str::trim) {
                None | Some("") => DEFAULT_BRANCH.to_string(),
                Some(b) => b.to_string(),
            };
            if !is_branch_name(&branch) {
                return Err(err("gitBranch", format!("{branch:?} is not a branch name")));
            }
            let token = r.git_token.clone().unwrap_or_default();
            if token == REDACTED {
                return Err(err(
                    "gitToken",
                    format!("the value {REDACTED:?} is what answers show in place of the token; send the real one"),
                ));
            }
            if token.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(err(
                    "gitToken",
                    "must not contain spaces or control characters",
                ));
            }
            // A push to this repository and branch redeploys it (the gateway's webhook
            // follows these labels), unless the user labelled it otherwise.
            if let Some(full_name) = repo_full_name(repo) {
                spec.labels
                    .entry(crate::labels::REPO.to_string())
                    .or_insert(full_name);
                spec.labels
                    .entry(crate::labels::BRANCH.to_string())
                    .or_insert_with(|| branch.clone());
            }
            spec.git_repo = Some(repo.to_string());
            spec.git_branch = Some(branch);
            spec.git_token = SecretString::new(token);
        }
        WorkloadType::DockerContainer => {}
    }
    spec.resources = resources;
    spec.name = name(&r, &spec)?;
    Ok(spec)
}

/// The Compose file of `compose`: base64 as the original CLI sends it, or the YAML
/// itself (its `--compose` takes either).
fn decode(encoded: &str) -> Result<String, ValidationError> {
    let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    let text = match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
        Ok(bytes) => String::from_utf8(bytes)
            .map_err(|_| err("compose", "is not UTF-8 text once decoded"))?,
        Err(_) if encoded.contains(':') => encoded.to_string(),
        Err(e) => {
            return Err(err(
                "compose",
                format!("is neither base64 ({e}) nor a Compose file"),
            ))
        }
    };
    if text.len() > MAX_COMPOSE_BYTES {
        return Err(err(
            "compose",
            format!(
                "is {} bytes decoded; at most {MAX_COMPOSE_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// `https://`, `http://` or `file://`, without credentials in it: a URL from an API
/// user must not make the node run a command (`ext::`) or use the node's own keys
/// (`ssh://`), and a token goes in `gitToken`, which answers never show.
fn check_repo_url(repo: &str) -> Result<(), ValidationError> {
    if repo.is_empty() {
        return Err(err("gitRepo", "is required for a git-compose workload"));
    }
    let Some((scheme, rest)) = repo.split_once("://") else {
        return Err(err(
            "gitRepo",
            format!("{repo:?} must be an https://, http:// or file:// URL"),
        ));
    };
    if !matches!(scheme, "https" | "http" | "file") {
        return Err(err(
            "gitRepo",
            format!("scheme {scheme:?} is not supported; use https://, http:// or file://"),
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(err(
            "gitRepo",
            "must not carry credentials; give the token in gitToken",
        ));
    }
    if repo.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(
            "gitRepo",
            "must not contain spaces or control characters",
        ));
    }
    Ok(())
}

/// `owner/name` of a repository URL (its last two path segments, without `.git`), as
/// GitHub's push events name it.
pub fn repo_full_name(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let path = rest.split_once('/').map(|(_, p)| p).unwrap_or_default();
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut segments = path.rsplit('/').filter(|s| !s.is_empty());
    let name = segments.next()?;
    let owner = segments.next()?;
    Some(format!("{owner}/{name}"))
}

/// A git branch name as `git check-ref-format --branch` would take it (the rules
/// that matter here: nothing an argument parser could read as an option).
fn is_branch_name(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 255
        && !b.starts_with('-')
        && !b.starts_with('/')
        && !b.ends_with('/')
        && !b.ends_with(".lock")
        && !b.contains("..")
        && !b.contains("//")
        && !b.contains("@{")
        && !b
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
}

/// The given name, else the repository's or `compose`.
fn name(r: &WorkloadRequest, spec: &WorkloadSpec) -> Result<String, ValidationError> {
    let name = if !r.name.trim().is_empty() {
        r.name.trim().to_string()
    } else if let Some(repo) = &spec.git_repo {
        let last = repo
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        super::name_from_image(last.trim_end_matches(".git"))
    } else {
        "compose".to_string()
    };
    if !is_valid_name(&name) {
        return Err(err(
            "name",
            format!("{name:?} must be 1-63 characters of letters, digits, '-', '_' or '.', starting with a letter or digit"),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> WorkloadRequest {
        serde_json::from_str(json).expect("request json")
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn an_inline_project_is_parsed_and_reserves_its_limits() {
        let yaml = "services:\n  web:\n    image: busybox:local\n    deploy: {replicas: 2, resources: {limits: {cpus: '0.25', memory: 64M}}}\n";
        let body = format!(
            r#"{{"name":"shop","type":"docker-compose","compose":"{}"}}"#,
            b64(yaml)
        );
        let spec = req(&body).validate().expect("valid");
        assert_eq!(spec.kind, WorkloadType::DockerCompose);
        assert_eq!(spec.resources.cpu, 500);
        assert_eq!(spec.resources.memory, 128);
        assert_eq!(spec.compose.as_deref(), Some(b64(yaml).as_str()));
    }

    #[test]
    fn a_bad_inline_project_names_the_field_and_the_compose_key() {
        let body = format!(
            r#"{{"type":"docker-compose","compose":"{}"}}"#,
            b64("services: {web: {image: a, privileged: true}}")
        );
        let e = req(&body).validate().unwrap_err();
        assert_eq!(e.field, "compose");
        assert!(
            e.message
                .starts_with("services.web.privileged: unsupported key"),
            "{e}"
        );
        let e = req(r#"{"type":"docker-compose","compose":"%%%"}"#)
            .validate()
            .unwrap_err();
        assert!(e.message.contains("neither base64"), "{e}");
        let raw =
            r#"{"type":"docker-compose","compose":"services:\n  web: {image: busybox:local}\n"}"#;
        assert!(
            req(raw).validate().is_ok(),
            "raw YAML is taken as the CLI's --compose allows"
        );
        let e = req(r#"{"type":"docker-compose"}"#).validate().unwrap_err();
        assert_eq!(e.field, "compose");
        let e = req(r#"{"type":"docker-compose","localPath":"/srv/app","ports":["80:80"]}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "ports");
    }

    #[test]
    fn git_compose_defaults_the_branch_and_keeps_the_token_secret() {
        let spec = req(r#"{"type":"git-compose","gitRepo":"https://example.com/acme/shop.git","gitToken":"ghp_s3cret"}"#)
            .validate()
            .expect("valid");
        assert_eq!(spec.name, "shop");
        assert_eq!(spec.git_branch.as_deref(), Some("main"));
        assert_eq!(spec.git_token.expose(), "ghp_s3cret");
        assert_eq!(spec.labels[crate::labels::REPO], "acme/shop");
        assert_eq!(spec.labels[crate::labels::BRANCH], "main");
        assert_eq!(
            repo_full_name("file:///tmp/r/acme/shop/").as_deref(),
            Some("acme/shop")
        );
        assert_eq!(repo_full_name("https://example.com/shop"), None);
        assert!(!format!("{spec:?}").contains("ghp_s3cret"));
        let mut w = crate::Workload::new("id".into(), spec, chrono::Utc::now());
        crate::Redact::redact(&mut w);
        let shown = serde_json::to_string(&w).expect("json");
        assert!(
            !shown.contains("ghp_s3cret") && shown.contains("\"gitToken\":\"***\""),
            "{shown}"
        );
    }

    #[test]
    fn git_urls_that_could_run_or_leak_something_are_refused() {
        for url in [
            "ssh://git@example.com/a.git",
            "ext::sh -c touch% /tmp/x",
            "https://user:tok@example.com/a.git",
            "git@example.com:a.git",
            "",
        ] {
            let body = serde_json::json!({"type": "git-compose", "gitRepo": url}).to_string();
            let e = req(&body).validate().unwrap_err();
            assert_eq!(e.field, "gitRepo", "{url}: {e}");
            assert!(!e.message.contains("tok@"), "{e}");
        }
        for branch in ["-x", "a..b", "a b", "x.lock"] {
            let body = serde_json::json!({"type": "git-compose", "gitRepo": "file:///r", "gitBranch": branch}).to_string();
            assert_eq!(
                req(&body).validate().unwrap_err().field,
                "gitBranch",
                "{branch}"
            );
        }
    }

    #[test]
    fn a_container_carries_no_project_field_but_the_original_git_branch_is_ignored() {
        let e = req(r#"{"image":"a","gitRepo":"https://x/y"}"#)
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "gitRepo");
        assert!(req(r#"{"image":"a","gitBranch":"main"}"#)
            .validate()
            .is_ok());
    }
}
