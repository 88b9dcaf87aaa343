//! Finding the programs `persys dev` starts.

use std::path::{Path, PathBuf};

/// The directory of the running executable (where `cargo build` and installs put the
/// other persys binaries).
fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
}

/// `name` next to the current executable, else on `PATH`; `None` if neither has it.
pub fn find(name: &str) -> Option<PathBuf> {
    find_in(
        name,
        exe_dir().as_deref(),
        std::env::var_os("PATH").as_deref(),
    )
}

/// [`find`] with its inputs given, for tests.
pub fn find_in(
    name: &str,
    beside: Option<&Path>,
    path: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    let candidates = beside
        .map(Path::to_path_buf)
        .into_iter()
        .chain(path.into_iter().flat_map(std::env::split_paths));
    candidates.map(|d| d.join(name)).find(|p| p.is_file())
}

/// A program next to the current executable, else by name on PATH; with a hint for
/// when it is missing.
pub fn locate(name: &str) -> (PathBuf, String) {
    let dir = exe_dir();
    let hint = format!(
        "not next to {} nor on PATH; build it with `cargo build -p {name}`",
        dir.as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "persys".into())
    );
    match dir.map(|d| d.join(name)) {
        Some(p) if p.is_file() => (p, hint),
        _ => (PathBuf::from(name), hint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_beside_wins_then_path_then_none() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        std::fs::write(b.path().join("tool"), "").expect("write");
        let path = std::env::join_paths([b.path()]).expect("PATH");
        assert_eq!(
            find_in("tool", Some(a.path()), Some(&path)),
            Some(b.path().join("tool"))
        );
        std::fs::write(a.path().join("tool"), "").expect("write");
        assert_eq!(
            find_in("tool", Some(a.path()), Some(&path)),
            Some(a.path().join("tool"))
        );
        assert_eq!(find_in("absent", Some(a.path()), Some(&path)), None);
    }
}
