//! Records `git describe` of the checkout as `PERSYS_GIT_DESCRIBE` for `persys version`,
//! unless the builder sets it. Outside a git checkout (a source tarball) nothing is set.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=PERSYS_GIT_DESCRIBE");
    if std::env::var_os("PERSYS_GIT_DESCRIBE").is_some() {
        // option_env! sees the builder's value directly.
        return;
    }
    let Some(describe) = git(&["describe", "--tags", "--always"]) else {
        return;
    };
    println!("cargo:rustc-env=PERSYS_GIT_DESCRIBE={describe}");
    // Describe again when HEAD moves: a checkout changes HEAD, a commit changes the
    // branch's ref (loose, or in packed-refs).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) {
        let branch = git(&["symbolic-ref", "-q", "HEAD"]);
        let watched = [Some("HEAD".to_string()), Some("packed-refs".into()), branch];
        // Only files that exist: cargo reruns a script every build for a missing one.
        for path in watched.into_iter().flatten().map(|p| dir.join(p)) {
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
