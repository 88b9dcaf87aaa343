//! The files of a `persys dev` cluster under its data dir, and the client configs it
//! writes.

use crate::config::{self, ConfigFile};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Paths under the data dir.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The data dir itself (absolute).
    pub root: PathBuf,
    /// `etcd/`: etcd's data.
    pub etcd: PathBuf,
    /// `scheduler/`: the scheduler's data dir (PKI, join token).
    pub scheduler: PathBuf,
    /// `logs/`: one log file per child.
    pub logs: PathBuf,
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
            logs: root.join("logs"),
            config: root.join("config.yaml"),
            root,
        };
        for d in [&layout.scheduler, &layout.logs] {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        Ok(layout)
    }

    /// Data dir of agent `i` (1-based).
    pub fn agent(&self, i: u16) -> PathBuf {
        self.root.join(format!("agent-{i}"))
    }

    /// The join token file the scheduler writes at first start.
    pub fn join_token(&self) -> PathBuf {
        self.scheduler.join("join-token")
    }

    /// The cluster CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.scheduler.join("ca.crt")
    }

    /// The client config for this cluster's admin identity.
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

/// Write `DIR/config.yaml` (always) and `~/.persys/config.yaml` (only if none exists).
pub fn write_configs(
    layout: &Layout,
    file: &ConfigFile,
    home: Option<&Path>,
) -> anyhow::Result<HomeConfig> {
    let yaml = config::to_yaml(file).context("cannot encode the client config")?;
    std::fs::write(&layout.config, &yaml)
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
        .open(&user)
        .and_then(|mut f| std::io::Write::write_all(&mut f, yaml.as_bytes()));
    match written {
        Ok(()) => Ok(HomeConfig::Written(user)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(HomeConfig::Kept(user)),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", user.display())),
    }
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
}
