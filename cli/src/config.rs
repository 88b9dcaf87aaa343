//! The client configuration file (YAML), with the original persysctl keys.
//!
//! ```yaml
//! api_endpoint: https://127.0.0.1:8085
//! ca_cert_path: /path/ca.crt
//! cert_path: /path/admin.crt
//! key_path: /path/admin.key
//! token: optional-bearer-token   # for the gateway, later
//! ```
//!
//! The file is chosen by `--config`, else `PERSYS_CONFIG`, else `~/.persys/config.yaml`.
//! Relative paths inside it are relative to the file's own directory, so a config
//! written next to its certificates can be moved with them.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Environment variable that selects the config file when `--config` is absent.
pub const CONFIG_ENV: &str = "PERSYS_CONFIG";
/// Default location under the home directory.
pub const DEFAULT_RELATIVE: &str = ".persys/config.yaml";

/// A config that could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `--config`, no `PERSYS_CONFIG` and no home directory to look in.
    #[error(
        "no config file: pass --config FILE or set PERSYS_CONFIG (no home directory to look in)"
    )]
    NoLocation,
    /// The chosen file does not exist.
    #[error("config file {path} not found (from {source_of}); pass --config FILE, set PERSYS_CONFIG, or start a local cluster with `persys dev`")]
    NotFound {
        /// The path looked at.
        path: PathBuf,
        /// Which rule chose it.
        source_of: &'static str,
    },
    /// The file exists but cannot be read.
    #[error("cannot read config file {path}: {reason}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        reason: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape.
    #[error("config file {path} is invalid: {reason}")]
    Invalid {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The YAML file as written (original persysctl keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Base URL of the scheduler or gateway, e.g. `https://127.0.0.1:8085`.
    pub api_endpoint: String,
    /// CA certificate (PEM) that the server's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_path: Option<PathBuf>,
    /// Client certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<PathBuf>,
    /// Client private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// Bearer token (sent as `Authorization: Bearer`), for the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A loaded config: the file's content with paths made absolute, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its content, paths resolved.
    pub file: ConfigFile,
}

/// Which file to read: `--config` wins, then `PERSYS_CONFIG` (if not empty), then
/// `<home>/.persys/config.yaml`. Returns the path and the rule that chose it.
pub fn resolve_path(
    flag: Option<&Path>,
    env: Option<&str>,
    home: Option<&Path>,
) -> Result<(PathBuf, &'static str), ConfigError> {
    if let Some(p) = flag {
        return Ok((p.to_path_buf(), "--config"));
    }
    if let Some(e) = env.filter(|e| !e.trim().is_empty()) {
        return Ok((PathBuf::from(e), CONFIG_ENV));
    }
    match home {
        Some(h) => Ok((h.join(DEFAULT_RELATIVE), "the default location")),
        None => Err(ConfigError::NoLocation),
    }
}

/// The current user's home directory (`$HOME`).
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Find and read the config the way the CLI does (flag, env, home).
pub fn load(flag: Option<&Path>) -> Result<Config, ConfigError> {
    let env = std::env::var(CONFIG_ENV).ok();
    let home = home_dir();
    let (path, source_of) = resolve_path(flag, env.as_deref(), home.as_deref())?;
    read(&path, source_of, home.as_deref())
}

/// Read and parse one config file, resolving `~/` and relative paths.
pub fn read(
    path: &Path,
    source_of: &'static str,
    home: Option<&Path>,
) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NotFound {
                path: path.to_path_buf(),
                source_of,
            })
        }
        Err(reason) => {
            return Err(ConfigError::Unreadable {
                path: path.to_path_buf(),
                reason,
            })
        }
    };
    let mut file = parse(&text).map_err(|reason| ConfigError::Invalid {
        path: path.to_path_buf(),
        reason,
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    for p in [
        &mut file.ca_cert_path,
        &mut file.cert_path,
        &mut file.key_path,
    ]
    .into_iter()
    .flatten()
    {
        *p = resolve_file_path(p, base, home);
    }
    Ok(Config {
        path: path.to_path_buf(),
        file,
    })
}

/// Parse the YAML text and check what can be checked without I/O.
pub fn parse(text: &str) -> Result<ConfigFile, String> {
    let file: ConfigFile = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let endpoint = file.api_endpoint.trim();
    if endpoint.is_empty() {
        return Err("api_endpoint is required".into());
    }
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(format!(
            "api_endpoint {endpoint:?} must start with https:// (or http://)"
        ));
    }
    if file.cert_path.is_some() != file.key_path.is_some() {
        return Err("cert_path and key_path must be given together".into());
    }
    Ok(file)
}

/// `~/x` is under the home directory; a relative path is relative to the config file.
fn resolve_file_path(p: &Path, base: &Path, home: Option<&Path>) -> PathBuf {
    if let (Ok(rest), Some(home)) = (p.strip_prefix("~"), home) {
        return home.join(rest);
    }
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Serialize a config file as YAML (used by `persys dev`).
pub fn to_yaml(file: &ConfigFile) -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_wins_over_env_and_home() {
        let (p, from) = resolve_path(
            Some(Path::new("/flag.yaml")),
            Some("/env.yaml"),
            Some(Path::new("/home/u")),
        )
        .expect("resolves");
        assert_eq!(p, PathBuf::from("/flag.yaml"));
        assert_eq!(from, "--config");
    }

    #[test]
    fn env_wins_over_home() {
        let (p, from) =
            resolve_path(None, Some("/env.yaml"), Some(Path::new("/home/u"))).expect("resolves");
        assert_eq!(p, PathBuf::from("/env.yaml"));
        assert_eq!(from, CONFIG_ENV);
    }

    #[test]
    fn empty_env_falls_back_to_home() {
        let (p, _) = resolve_path(None, Some(""), Some(Path::new("/home/u"))).expect("resolves");
        assert_eq!(p, PathBuf::from("/home/u/.persys/config.yaml"));
    }

    #[test]
    fn no_flag_env_or_home_is_an_error() {
        assert!(matches!(
            resolve_path(None, None, None),
            Err(ConfigError::NoLocation)
        ));
    }

    #[test]
    fn original_persysctl_keys_parse() {
        let f = parse(
            "api_endpoint: https://10.0.0.1:8551\nca_cert_path: /c/ca.crt\ncert_path: /c/a.crt\nkey_path: /c/a.key\n",
        )
        .expect("parses");
        assert_eq!(f.api_endpoint, "https://10.0.0.1:8551");
        assert_eq!(f.key_path, Some(PathBuf::from("/c/a.key")));
        assert_eq!(f.token, None);
    }

    #[test]
    fn token_key_is_accepted() {
        let f =
            parse("api_endpoint: https://x:1\nca_cert_path: ca.crt\ntoken: abc\n").expect("parses");
        assert_eq!(f.token.as_deref(), Some("abc"));
    }

    #[test]
    fn missing_endpoint_is_refused() {
        let e = parse("ca_cert_path: /x\n").expect_err("refused");
        assert!(e.contains("api_endpoint"), "{e}");
    }

    #[test]
    fn endpoint_without_scheme_is_refused() {
        let e = parse("api_endpoint: 127.0.0.1:8085\n").expect_err("refused");
        assert!(e.contains("https://"), "{e}");
    }

    #[test]
    fn cert_without_key_is_refused() {
        let e = parse("api_endpoint: https://x:1\ncert_path: /a\n").expect_err("refused");
        assert!(e.contains("together"), "{e}");
    }

    #[test]
    fn relative_and_home_paths_are_resolved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            "api_endpoint: https://x:1\nca_cert_path: certs/ca.crt\ncert_path: ~/a.crt\nkey_path: /abs/a.key\n",
        )
        .expect("write");
        let c = read(&path, "--config", Some(Path::new("/home/u"))).expect("reads");
        assert_eq!(c.file.ca_cert_path, Some(dir.path().join("certs/ca.crt")));
        assert_eq!(c.file.cert_path, Some(PathBuf::from("/home/u/a.crt")));
        assert_eq!(c.file.key_path, Some(PathBuf::from("/abs/a.key")));
    }

    #[test]
    fn missing_file_names_the_path_and_the_rule() {
        let e = read(Path::new("/nonexistent/persys.yaml"), CONFIG_ENV, None).expect_err("missing");
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/persys.yaml"), "{msg}");
        assert!(msg.contains(CONFIG_ENV), "{msg}");
    }

    #[test]
    fn written_config_reads_back() {
        let f = ConfigFile {
            api_endpoint: "https://127.0.0.1:8085".into(),
            ca_cert_path: Some("/d/ca.crt".into()),
            cert_path: Some("/d/admin.crt".into()),
            key_path: Some("/d/admin.key".into()),
            token: None,
        };
        let text = to_yaml(&f).expect("yaml");
        assert!(!text.contains("token"));
        assert_eq!(parse(&text).expect("parses"), f);
    }
}
