//! The files of a `persys dev` cluster under its data dir, and the client configs it
//! writes.

use crate::config::{self, ConfigFile};
use anyhow::Context;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The name of the endpoints file in a dev data dir.
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// Where a dev cluster's scheduler answers: what `persys dev` writes to
/// `DIR/endpoints.json` and `persys node join-command` reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// The scheduler's mTLS API (agents' `--scheduler-url`).
    pub scheduler_url: String,
    /// Its bootstrap port (agents' `--bootstrap-url`).
    pub bootstrap_url: String,
    /// The address agents of this cluster listen and are reached on.
    pub agent_host: String,
}

impl Endpoints {
    /// Write them to `path` (replacing an earlier run's).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self).context("cannot encode the endpoints")?;
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Read them from `path`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
    }
}

/// Paths under the data dir.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The data dir itself (absolute).
    pub root: PathBuf,
    /// `etcd/`: etcd's data.
    pub etcd: PathBuf,
    /// `scheduler/`: the scheduler's data dir (PKI, join token).
    pub scheduler: PathBuf,
    /// `gateway/`: the gateway's bootstrap admin token.
    pub gateway: PathBuf,
    /// `logs/`: one log file per child.
    pub logs: PathBuf,
    /// `pids/`: `<child>.pid` while each child runs.
    pub pids: PathBuf,
    /// `config.yaml`: the client config.
    pub config: PathBuf,
}

impl Layout {
    /// Create the data dir and its fixed subdirectories; all paths absolute.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        let root = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve data dir {}", dir.display()))?;
        let layout = Self {
            etcd: root.join("etcd"),
            scheduler: root.join("scheduler"),
            gateway: root.join("gateway"),
            logs: root.join("logs"),
            pids: root.join("pids"),
            config: root.join("config.yaml"),
            root,
        };
        for d in [
            &layout.scheduler,
            &layout.gateway,
            &layout.logs,
            &layout.pids,
        ] {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        layout.clear_pid_files()?;
        Ok(layout)
    }

    /// Remove the pid files an earlier run left (it was killed): their pids are not
    /// this run's children.
    fn clear_pid_files(&self) -> anyhow::Result<()> {
        let entries = std::fs::read_dir(&self.pids)
            .with_context(|| format!("cannot read {}", self.pids.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".pid") || name.ends_with(".pid.tmp") {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Data dir of agent `i` (1-based).
    pub fn agent(&self, i: u16) -> PathBuf {
        self.root.join(format!("agent-{i}"))
    }

    /// Root of the simulated fleet's data (`sim/<node id>/` per node).
    pub fn sim(&self) -> PathBuf {
        self.root.join("sim")
    }

    /// The join token file the scheduler writes at first start.
    pub fn join_token(&self) -> PathBuf {
        self.scheduler.join("join-token")
    }

    /// The cluster CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.scheduler.join("ca.crt")
    }

    /// Where the scheduler is, for `persys node join-command`.
    pub fn endpoints(&self) -> PathBuf {
        self.root.join(ENDPOINTS_FILE)
    }

    /// The file `persys-dns` writes its address to.
    pub fn dns_addr(&self) -> PathBuf {
        self.root.join("dns-addr")
    }

    /// The admin token file the gateway writes at its first start.
    pub fn admin_token(&self) -> PathBuf {
        self.gateway.join("admin-token")
    }

    /// The client config through the gateway: the admin token, and the admin
    /// certificate too, so the same file also works straight at the scheduler.
    pub fn gateway_client_config(&self, gateway_port: u16, token: &str) -> ConfigFile {
        ConfigFile {
            api_endpoint: format!("https://127.0.0.1:{gateway_port}"),
            token: Some(token.to_string()),
            ..self.client_config(0)
        }
    }

    /// The client config for this cluster's admin identity, straight at the scheduler.
    pub fn client_config(&self, scheduler_port: u16) -> ConfigFile {
        ConfigFile {
            api_endpoint: format!("https://127.0.0.1:{scheduler_port}"),
            ca_cert_path: Some(self.ca_cert()),
            cert_path: Some(self.scheduler.join("admin.crt")),
            key_path: Some(self.scheduler.join("admin.key")),
            token: None,
        }
    }
}

/// Where the user-wide config was, or was not, written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeConfig {
    /// Written now (there was none).
    Written(PathBuf),
    /// One exists already with the same content.
    Same(PathBuf),
    /// One exists already with other content and was left alone.
    Kept(PathBuf),
    /// No home directory.
    NoHome,
}

/// Write `DIR/config.yaml` (always) and `~/.persys/config.yaml` (only if none exists),
/// both readable by the owner only: they may hold an admin token.
pub fn write_configs(
    layout: &Layout,
    file: &ConfigFile,
    home: Option<&Path>,
) -> anyhow::Result<HomeConfig> {
    let yaml = config::to_yaml(file).context("cannot encode the client config")?;
    write_private(&layout.config, &yaml)
        .with_context(|| format!("cannot write {}", layout.config.display()))?;
    let Some(home) = home else {
        return Ok(HomeConfig::NoHome);
    };
    let user = home.join(config::DEFAULT_RELATIVE);
    if user.exists() {
        let same = std::fs::read_to_string(&user).is_ok_and(|existing| existing == yaml);
        return Ok(if same {
            HomeConfig::Same(user)
        } else {
            HomeConfig::Kept(user)
        });
    }
    if let Some(parent) = user.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // create_new: never clobber a config that appeared meanwhile.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&user)
        .and_then(|mut f| f.write_all(yaml.as_bytes()));
    match written {
        Ok(()) => Ok(HomeConfig::Written(user)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(HomeConfig::Kept(user)),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", user.display())),
    }
}

/// Replace `path` with `text`, mode 0600 (also when it existed with wider modes).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_points_at_the_schedulers_admin_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::create(&dir.path().join("d")).expect("layout");
        let f = layout.client_config(9085);
        assert_eq!(f.api_endpoint, "https://127.0.0.1:9085");
        assert_eq!(f.key_path, Some(layout.root.join("scheduler/admin.key")));
        assert!(layout.root.is_absolute());
    }

    #[test]
    fn stale_pid_files_are_removed_and_endpoints_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::create(&dir.path().join("d")).expect("layout");
        std::fs::write(layout.pids.join("agent-1.pid"), "123\n").expect("write");
        std::fs::write(layout.pids.join("keep.txt"), "x").expect("write");
        let layout = Layout::create(&dir.path().join("d")).expect("layout");
        assert!(!layout.pids.join("agent-1.pid").exists());
        assert!(layout.pids.join("keep.txt").exists());
        let e = Endpoints {
            scheduler_url: "https://127.0.0.1:8085".into(),
            bootstrap_url: "https://127.0.0.1:8084".into(),
            agent_host: "127.0.0.1".into(),
        };
        e.write(&layout.endpoints()).expect("write");
        assert_eq!(Endpoints::read(&layout.endpoints()).expect("read"), e);
        let text = std::fs::read_to_string(layout.endpoints()).expect("read");
        assert!(
            text.contains("\"schedulerUrl\": \"https://127.0.0.1:8085\""),
            "{text}"
        );
    }

    #[test]
    fn home_config_is_written_once_and_then_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        let layout = Layout::create(&dir.path().join("d")).expect("layout");
        let f = layout.client_config(8085);
        let first = write_configs(&layout, &f, Some(&home)).expect("writes");
        assert!(matches!(first, HomeConfig::Written(_)));
        let again = write_configs(&layout, &f, Some(&home)).expect("writes");
        assert!(matches!(again, HomeConfig::Same(_)));
        let second =
            write_configs(&layout, &layout.client_config(9999), Some(&home)).expect("writes");
        assert!(matches!(second, HomeConfig::Kept(_)));
        let kept = std::fs::read_to_string(home.join(".persys/config.yaml")).expect("read");
        assert!(kept.contains("8085"), "{kept}");
        let local = config::read(&layout.config, "--config", None).expect("reads");
        assert_eq!(local.file.api_endpoint, "https://127.0.0.1:9999");
    }

    #[test]
    fn gateway_config_carries_the_token_and_the_admin_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::create(&dir.path().join("d")).expect("layout");
        let f = layout.gateway_client_config(8551, "persys_abc");
        assert_eq!(f.api_endpoint, "https://127.0.0.1:8551");
        assert_eq!(f.token.as_deref(), Some("persys_abc"));
        assert_eq!(f.ca_cert_path, Some(layout.ca_cert()));
        assert_eq!(f.cert_path, Some(layout.root.join("scheduler/admin.crt")));
        assert_eq!(
            layout.admin_token(),
            layout.root.join("gateway/admin-token")
        );
        assert!(layout.gateway.is_dir());
    }

    #[test]
    fn configs_holding_a_token_are_private_to_the_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        let layout = Layout::create(&dir.path().join("d")).expect("layout");
        std::fs::write(&layout.config, "old").expect("write");
        std::fs::set_permissions(&layout.config, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let f = layout.gateway_client_config(8551, "persys_abc");
        write_configs(&layout, &f, Some(&home)).expect("writes");
        for p in [layout.config.clone(), home.join(".persys/config.yaml")] {
            let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
        let back = config::read(&layout.config, "--config", None).expect("reads");
        assert_eq!(back.file.token.as_deref(), Some("persys_abc"));
    }
}
