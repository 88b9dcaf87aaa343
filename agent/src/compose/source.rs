//! Files of a project directory: which Compose file it uses and its `.env`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The names Compose looks for, in its order.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The Compose file of the project in `dir`: `path` (relative, and resolving inside
/// `dir` even through symbolic links), else the first default name present.
pub fn compose_file(dir: &Path, path: Option<&str>) -> Result<PathBuf, String> {
    let root = std::fs::canonicalize(dir)
        .map_err(|e| format!("project directory {}: {e}", dir.display()))?;
    let Some(path) = path else {
        return DEFAULT_FILES
            .iter()
            .map(|f| root.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "no Compose file in {} (looked for {})",
                    dir.display(),
                    DEFAULT_FILES.join(", ")
                )
            });
    };
    let rel = persys_proto::compose::inside_project(path)
        .ok_or_else(|| format!("composeFile {path:?} is outside the project directory"))?;
    let resolved =
        std::fs::canonicalize(root.join(&rel)).map_err(|e| format!("composeFile {path:?}: {e}"))?;
    if !resolved.starts_with(&root) {
        return Err(format!(
            "composeFile {path:?} resolves outside the project directory"
        ));
    }
    Ok(resolved)
}

/// The variables of `<dir>/.env` (none when it is absent or unreadable), parsed
/// without touching this process's environment.
pub fn dotenv_vars(dir: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(dir.join(".env")) else {
        return BTreeMap::new();
    };
    dotenvy::from_read_iter(text.as_bytes())
        .filter_map(|item| match item {
            Ok(kv) => Some(kv),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "a line of the project's .env is ignored");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compose_file_stays_inside_the_project() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("docker-compose.yml"), "services: {}").expect("write");
        std::fs::write(dir.path().join("compose.yaml"), "services: {}").expect("write");
        let found = compose_file(dir.path(), None).expect("default");
        assert!(found.ends_with("compose.yaml"), "{}", found.display());
        assert!(compose_file(dir.path(), Some("../x.yml")).is_err());
        assert!(compose_file(dir.path(), Some("/etc/passwd")).is_err());
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link.yml")).expect("link");
        let e = compose_file(dir.path(), Some("link.yml")).unwrap_err();
        assert!(e.contains("outside"), "{e}");
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(compose_file(empty.path(), None)
            .unwrap_err()
            .contains("no Compose file"));
    }

    #[test]
    fn dotenv_is_read_without_the_process_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(".env"),
            "# c\nTAG=1.2\nexport NAME=\"a b\"\n",
        )
        .expect("write");
        let vars = dotenv_vars(dir.path());
        assert_eq!(vars["TAG"], "1.2");
        assert_eq!(vars["NAME"], "a b");
        assert!(std::env::var("TAG").is_err());
    }
}
