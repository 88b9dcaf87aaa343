//! `persys version`: this CLI's version, and the git revision it was built from.

use crate::output::{print_data, print_text, Format};

/// `git describe` of the build, if it was built from a git checkout (set by build.rs,
/// or by whoever builds through `PERSYS_GIT_DESCRIBE`).
pub const GIT_DESCRIBE: Option<&str> = option_env!("PERSYS_GIT_DESCRIBE");

/// `persys 0.1.0 (git 1a2b3c4)`, or without the revision when unknown.
pub fn line(version: &str, git: Option<&str>) -> String {
    match git.filter(|g| !g.is_empty()) {
        Some(g) => format!("persys {version} (git {g})"),
        None => format!("persys {version}"),
    }
}

/// `persys version`.
pub fn version(format: Format) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    if format.is_data() {
        print_data(
            format,
            &serde_json::json!({ "version": version, "git": GIT_DESCRIBE }),
        );
    } else {
        print_text(&format!("{}\n", line(version, GIT_DESCRIBE)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_line_shows_git_only_when_known() {
        assert_eq!(
            line("0.1.0", Some("v0.1.0-3-gabc")),
            "persys 0.1.0 (git v0.1.0-3-gabc)"
        );
        assert_eq!(line("0.1.0", None), "persys 0.1.0");
        assert_eq!(line("0.1.0", Some("")), "persys 0.1.0");
    }
}
