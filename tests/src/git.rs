//! Real git repositories for tests of git-compose: made with the git CLI in a
//! directory the test owns, committed by a fixed test identity on branch `main`.

use std::path::Path;
use std::process::Command;

/// Run `git ARGS` in `dir` with the test identity; its trimmed stdout. Panics with
/// git's stderr when it fails (a test helper: the test cannot go on without it).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=persys-test",
            "-c",
            "user.email=test@persys.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Write `files` (path inside the repository, content) under `repo`, then commit them
/// all (initialising the repository first when it is new). Returns the commit's sha.
pub fn commit_files(repo: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (path, content) in files {
        let file = repo.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("repository directories");
        }
        std::fs::write(&file, content).expect("repository file");
    }
    if !repo.join(".git").exists() {
        git(repo, &["init", "-q"]);
    }
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", message]);
    git(repo, &["rev-parse", "HEAD"])
}
