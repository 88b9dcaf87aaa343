//! `persys node join-command`: the exact command a new node runs to join.
//!
//! No API hands out join tokens, so they are read where the scheduler keeps them: its
//! data dir (`join-token`, written at its first start, and `ca.crt`), given directly
//! or inside a `persys dev` data dir (`DIR/scheduler/`, with the scheduler's URLs in
//! `DIR/endpoints.json`). The token `PERSYS1.<sha256 of the CA>.<secret>` carries the
//! CA hash: the agent trusts only a bootstrap server whose chain has that CA, so no
//! separate hash flag exists. It goes in the environment, not argv, so `ps` on the new
//! node does not show it.

use crate::args::JoinCommandArgs;
use crate::dev::layout::{Endpoints, ENDPOINTS_FILE};
use crate::output::{print_data, print_text, say, Format};
use anyhow::{bail, Context};
use persys_certs::JoinToken;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The scheduler's default bootstrap port (`--bootstrap-listen 0.0.0.0:8084`).
pub const DEFAULT_BOOTSTRAP_PORT: u16 = 8084;
/// The environment variable the agent reads its join token from.
pub const TOKEN_ENV: &str = "PERSYS_JOIN_TOKEN";
/// The node id of a node joined to a `persys dev` cluster without `--node-id`.
pub const DEV_NODE_ID: &str = "joined-1";

/// Where the join token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A scheduler's data dir.
    Scheduler(PathBuf),
    /// A `persys dev` data dir (its scheduler's data dir is `scheduler/` inside).
    Dev(PathBuf),
}

impl Source {
    /// Which kind of dir `dir` is, by the files in it.
    pub fn find(dir: &Path) -> anyhow::Result<Self> {
        if dir.join("scheduler").join("join-token").is_file() {
            let root = dir
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", dir.display()))?;
            return Ok(Self::Dev(root));
        }
        if dir.join("join-token").is_file() {
            return Ok(Self::Scheduler(dir.to_path_buf()));
        }
        bail!(
            "no join token in {0} (neither {0}/join-token nor {0}/scheduler/join-token): pass \
             --data-dir with the scheduler's data dir (it writes join-token at its first \
             start) or a `persys dev` data dir",
            dir.display()
        )
    }

    /// The scheduler's data dir.
    pub fn scheduler_dir(&self) -> PathBuf {
        match self {
            Self::Scheduler(d) => d.clone(),
            Self::Dev(root) => root.join("scheduler"),
        }
    }
}

/// The join token of a scheduler data dir, checked against its CA certificate.
pub fn read_token(scheduler_dir: &Path) -> anyhow::Result<JoinToken> {
    let token_path = scheduler_dir.join("join-token");
    let text = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read {}", token_path.display()))?;
    let token = JoinToken::parse(&text)
        .with_context(|| format!("{} holds no join token", token_path.display()))?;
    let ca_path = scheduler_dir.join("ca.crt");
    if let Ok(pem) = std::fs::read_to_string(&ca_path) {
        let hash = persys_certs::fingerprint_pem(&pem)
            .with_context(|| format!("cannot read the CA certificate {}", ca_path.display()))?;
        if hash != token.ca_hash {
            bail!(
                "the join token in {} is for another CA than {} (sha256:{hash}); a node \
                 would refuse this scheduler",
                token_path.display(),
                ca_path.display()
            );
        }
    }
    Ok(token)
}

/// Each scheduler URL's scheme and host on the bootstrap port.
pub fn bootstrap_urls_of(scheduler_urls: &[String]) -> anyhow::Result<Vec<String>> {
    scheduler_urls
        .iter()
        .map(|u| {
            let mut url = reqwest::Url::parse(u).with_context(|| format!("{u:?} is not a URL"))?;
            url.set_port(Some(DEFAULT_BOOTSTRAP_PORT))
                .map_err(|()| anyhow::anyhow!("{u:?} has no host"))?;
            url.set_path("");
            Ok(url.as_str().trim_end_matches('/').to_string())
        })
        .collect()
}

/// What the new node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinCommand {
    /// The whole command, for a POSIX shell.
    pub command: String,
    /// The program.
    pub program: String,
    /// Its flags.
    pub args: Vec<String>,
    /// The environment it needs (the join token).
    pub env: std::collections::BTreeMap<String, String>,
    /// The scheduler API URLs.
    pub scheduler_urls: Vec<String>,
    /// The bootstrap URLs.
    pub bootstrap_urls: Vec<String>,
    /// `sha256:<hex>` of the cluster CA, which the token pins.
    pub ca_cert_hash: String,
}

/// Flags for a node on the `persys dev` host: its own data dir and a free port on
/// the address the dev cluster's agents use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// The address it listens on and is reached at.
    pub host: String,
}

/// The command for these URLs and this token.
pub fn build(
    scheduler_urls: &[String],
    bootstrap_urls: &[String],
    token: &JoinToken,
    node_id: Option<&str>,
    local: Option<&LocalNode>,
) -> JoinCommand {
    let program = "persys-agent".to_string();
    let mut args = vec![
        "--scheduler-url".to_string(),
        scheduler_urls.join(","),
        "--bootstrap-url".into(),
        bootstrap_urls.join(","),
    ];
    if let Some(id) = node_id {
        args.extend(["--node-id".to_string(), id.to_string()]);
    }
    if let Some(l) = local {
        args.extend([
            "--data-dir".to_string(),
            l.data_dir.display().to_string(),
            "--listen".into(),
            format!("{}:0", l.host),
            "--advertise-address".into(),
            l.host.clone(),
        ]);
    }
    let env = std::collections::BTreeMap::from([(TOKEN_ENV.to_string(), token.to_string())]);
    let words = env
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_words::quote(v)))
        .chain(std::iter::once(program.clone()))
        .chain(args.iter().map(|a| shell_words::quote(a).into_owned()));
    JoinCommand {
        command: words.collect::<Vec<_>>().join(" "),
        program,
        args,
        env,
        scheduler_urls: scheduler_urls.to_vec(),
        bootstrap_urls: bootstrap_urls.to_vec(),
        ca_cert_hash: format!("sha256:{}", token.ca_hash),
    }
}

/// The join command for these arguments.
pub fn resolve(args: &JoinCommandArgs) -> anyhow::Result<JoinCommand> {
    let source = Source::find(&args.data_dir)?;
    let token = read_token(&source.scheduler_dir())?;
    let dev = match &source {
        Source::Dev(root) => {
            let path = root.join(ENDPOINTS_FILE);
            // Absent for a cluster of an older `persys dev`: then the flags say.
            path.is_file()
                .then(|| Endpoints::read(&path))
                .transpose()?
                .map(|e| (root.clone(), e))
        }
        Source::Scheduler(_) => None,
    };
    let scheduler_urls = match (&args.scheduler_urls[..], &dev) {
        ([], Some((_, e))) => vec![e.scheduler_url.clone()],
        ([], None) => bail!(
            "pass --scheduler-url with the URL new nodes reach the scheduler at (e.g. \
             https://scheduler.example:8085)"
        ),
        (urls, _) => urls.to_vec(),
    };
    let bootstrap_urls = match (&args.bootstrap_urls[..], &dev) {
        ([], Some((_, e))) if args.scheduler_urls.is_empty() => vec![e.bootstrap_url.clone()],
        ([], _) => bootstrap_urls_of(&scheduler_urls)?,
        (urls, _) => urls.to_vec(),
    };
    for u in scheduler_urls.iter().chain(&bootstrap_urls) {
        let url = reqwest::Url::parse(u).with_context(|| format!("{u:?} is not a URL"))?;
        if url.scheme() != "https" {
            bail!("{u:?}: the scheduler serves https only");
        }
    }
    let (node_id, local) = match &dev {
        Some((root, e)) => {
            let id = args.node_id.clone().unwrap_or_else(|| DEV_NODE_ID.into());
            let local = LocalNode {
                data_dir: root.join(format!("agent-{id}")),
                host: e.agent_host.clone(),
            };
            (Some(id), Some(local))
        }
        None => (args.node_id.clone(), None),
    };
    Ok(build(
        &scheduler_urls,
        &bootstrap_urls,
        &token,
        node_id.as_deref(),
        local.as_ref(),
    ))
}

/// `persys node join-command`: the command on stdout (a note on stderr), or its parts
/// with `-o json|yaml`.
pub fn join_command(args: &JoinCommandArgs, format: Format) -> anyhow::Result<()> {
    let cmd = resolve(args)?;
    if format.is_data() {
        let value = serde_json::to_value(&cmd).context("cannot encode the join command")?;
        print_data(format, &value);
        return Ok(());
    }
    print_text(&format!("{}\n", cmd.command));
    say(&format!(
        "# run it on the new node; the token pins the cluster CA ({}) and lets anyone \
         holding it join a node: keep it private",
        cmd.ca_cert_hash
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> JoinToken {
        JoinToken::parse(&format!("PERSYS1.{}.s3cret_x-1", "ab".repeat(32))).expect("token")
    }

    #[test]
    fn the_command_has_the_agents_flags_and_the_token_in_its_environment() {
        let cmd = build(
            &["https://s1:8085".into(), "https://s2:8085".into()],
            &["https://s1:8084".into(), "https://s2:8084".into()],
            &token(),
            Some("edge-7"),
            None,
        );
        let hash = "ab".repeat(32);
        assert_eq!(
            cmd.command,
            format!(
                "PERSYS_JOIN_TOKEN=PERSYS1.{hash}.s3cret_x-1 persys-agent \
                 --scheduler-url https://s1:8085,https://s2:8085 \
                 --bootstrap-url https://s1:8084,https://s2:8084 --node-id edge-7"
            )
        );
        assert_eq!(cmd.ca_cert_hash, format!("sha256:{hash}"));
        assert_eq!(cmd.program, "persys-agent");
        assert!(
            !cmd.args.iter().any(|a| a.contains("s3cret")),
            "the secret is not in argv"
        );
        assert_eq!(
            cmd.env.get(TOKEN_ENV).map(String::as_str),
            Some(&*format!("PERSYS1.{hash}.s3cret_x-1"))
        );
    }

    #[test]
    fn a_dev_node_gets_its_own_data_dir_and_a_free_loopback_port_quoted_for_the_shell() {
        let local = LocalNode {
            data_dir: PathBuf::from("/home/me/my dev/agent-joined-1"),
            host: "127.0.0.1".into(),
        };
        let cmd = build(
            &["https://127.0.0.1:8085".into()],
            &["https://127.0.0.1:8084".into()],
            &token(),
            Some("joined-1"),
            Some(&local),
        );
        assert!(
            cmd.command.ends_with(
                "--node-id joined-1 --data-dir '/home/me/my dev/agent-joined-1' \
                 --listen 127.0.0.1:0 --advertise-address 127.0.0.1"
            ),
            "{}",
            cmd.command
        );
        assert_eq!(
            shell_words::split(&cmd.command).expect("splits")[1..],
            std::iter::once("persys-agent".to_string())
                .chain(cmd.args.iter().cloned())
                .collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn bootstrap_urls_default_to_the_schedulers_hosts_on_8084() {
        assert_eq!(
            bootstrap_urls_of(&[
                "https://sched.example:8085".into(),
                "https://10.0.0.2".into()
            ])
            .expect("urls"),
            ["https://sched.example:8084", "https://10.0.0.2:8084"]
        );
        assert!(bootstrap_urls_of(&["not a url".into()]).is_err());
    }

    fn scheduler_dir(dir: &Path) -> JoinToken {
        let ca = persys_certs::CertificateAuthority::generate("test ca").expect("ca");
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join("ca.crt"), ca.cert_pem()).expect("write");
        let t = JoinToken::generate(&ca.fingerprint());
        std::fs::write(dir.join("join-token"), format!("{t}\n")).expect("write");
        t
    }

    #[test]
    fn a_dev_dir_gives_its_endpoints_and_a_scheduler_dir_needs_the_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = dir.path().join("dev");
        let t = scheduler_dir(&dev.join("scheduler"));
        Endpoints {
            scheduler_url: "https://127.0.0.1:9085".into(),
            bootstrap_url: "https://127.0.0.1:9084".into(),
            agent_host: "127.0.0.1".into(),
        }
        .write(&dev.join(ENDPOINTS_FILE))
        .expect("write");
        let args = |d: &Path| JoinCommandArgs {
            data_dir: d.to_path_buf(),
            scheduler_urls: Vec::new(),
            bootstrap_urls: Vec::new(),
            node_id: None,
        };
        let cmd = resolve(&args(&dev)).expect("resolves");
        assert_eq!(cmd.scheduler_urls, ["https://127.0.0.1:9085"]);
        assert_eq!(cmd.bootstrap_urls, ["https://127.0.0.1:9084"]);
        assert_eq!(cmd.env[TOKEN_ENV], t.to_string());
        let root = dev.canonicalize().expect("canonical");
        assert!(cmd
            .args
            .contains(&root.join("agent-joined-1").display().to_string()));

        let sched = dev.join("scheduler");
        let e = resolve(&args(&sched)).expect_err("needs a URL");
        assert!(e.to_string().contains("--scheduler-url"), "{e}");
        let cmd = resolve(&JoinCommandArgs {
            scheduler_urls: vec!["https://sched.example:8085".into()],
            ..args(&sched)
        })
        .expect("resolves");
        assert_eq!(cmd.bootstrap_urls, ["https://sched.example:8084"]);
        assert!(!cmd.args.contains(&"--data-dir".to_string()));

        let http = resolve(&JoinCommandArgs {
            scheduler_urls: vec!["http://sched.example:8085".into()],
            ..args(&sched)
        });
        assert!(http.is_err());
        let e = resolve(&args(dir.path())).expect_err("no token");
        assert!(e.to_string().contains("no join token"), "{e}");
    }

    #[test]
    fn a_token_of_another_ca_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        scheduler_dir(dir.path());
        let other = persys_certs::CertificateAuthority::generate("test ca").expect("ca");
        std::fs::write(dir.path().join("ca.crt"), other.cert_pem()).expect("write");
        let e = read_token(dir.path()).expect_err("mismatch");
        assert!(e.to_string().contains("another CA"), "{e}");
    }
}
