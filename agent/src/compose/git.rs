//! A `git-compose` project's source: a shallow clone (depth 1; whole for `file://`,
//! which libgit2 cannot fetch shallow) of one branch, with a token for a private
//! HTTPS repository, through libgit2 (the `git2` crate).
//!
//! The token is handed to libgit2's credential callback, never put in the URL, so it
//! is not in the checkout's `.git/config`, a path, a log line or an error (messages
//! are scrubbed of it all the same). Only `https://`, `http://` and `file://` are
//! cloned: a URL from an API user must not use the node's own SSH keys.

use persys_proto::SecretString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest a clone or a remote listing may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a repository could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// The URL's scheme is not cloned here.
    #[error("repository {url}: only https://, http:// and file:// repositories are cloned")]
    Scheme {
        /// The URL.
        url: String,
    },
    /// The repository refused the credentials (or wants some).
    #[error("repository {url}: authentication failed (check gitToken)")]
    Auth {
        /// The URL.
        url: String,
    },
    /// The repository does not exist (or is not readable).
    #[error("repository {url} not found: {message}")]
    NotFound {
        /// The URL.
        url: String,
        /// libgit2's message.
        message: String,
    },
    /// The branch does not exist in the repository.
    #[error("repository {url} has no branch {branch:?}")]
    NoBranch {
        /// The URL.
        url: String,
        /// The branch.
        branch: String,
    },
    /// Anything else (libgit2's message, scrubbed).
    #[error("repository {url}: {message}")]
    Other {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
}

/// A checked-out revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// Its directory.
    pub dir: PathBuf,
    /// The commit (full sha).
    pub revision: String,
}

fn check_scheme(url: &str) -> Result<(), GitError> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("https" | "http" | "file") => Ok(()),
        _ => Err(GitError::Scheme {
            url: url.to_string(),
        }),
    }
}

/// Remote callbacks answering credentials with the token, once (libgit2 asks again
/// after a refusal, which would otherwise loop).
fn callbacks(token: Option<SecretString>) -> git2::RemoteCallbacks<'static> {
    let mut cb = git2::RemoteCallbacks::new();
    let mut asked = false;
    cb.credentials(move |_url, _user, _allowed| {
        if asked {
            return Err(git2::Error::from_str("authentication failed"));
        }
        asked = true;
        match &token {
            Some(t) => git2::Cred::userpass_plaintext("x-access-token", t.expose()),
            None => Err(git2::Error::from_str("authentication required")),
        }
    });
    cb
}

/// libgit2's error as a [`GitError`], with no trace of the token.
fn classify(e: &git2::Error, url: &str, branch: &str, token: Option<&SecretString>) -> GitError {
    let mut message = e.message().to_string();
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        message = message.replace(t.expose(), persys_proto::secret::REDACTED);
    }
    let url = url.to_string();
    let lower = message.to_ascii_lowercase();
    if e.code() == git2::ErrorCode::Auth
        || lower.contains("authentication")
        || lower.contains("401")
        || lower.contains("403")
    {
        GitError::Auth { url }
    } else if lower.contains("remote branch")
        || lower.contains(&format!("refs/remotes/origin/{branch}"))
    {
        GitError::NoBranch {
            url,
            branch: branch.to_string(),
        }
    } else if e.code() == git2::ErrorCode::NotFound
        || lower.contains("404")
        || lower.contains("not found")
        || lower.contains("does not exist")
        || lower.contains("could not find repository")
        || lower.contains("failed to resolve path")
    {
        GitError::NotFound { url, message }
    } else {
        GitError::Other { url, message }
    }
}

async fn blocking<T: Send + 'static>(
    url: &str,
    f: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, GitError> {
    match tokio::time::timeout(GIT_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(GitError::Other {
            url: url.to_string(),
            message: format!("the git task failed: {e}"),
        }),
        Err(_) => Err(GitError::Other {
            url: url.to_string(),
            message: format!("no answer within {} s", GIT_TIMEOUT.as_secs()),
        }),
    }
}

/// The commit `branch` of `url` points at now (a remote listing, nothing fetched).
pub async fn resolve(
    url: &str,
    branch: &str,
    token: Option<&SecretString>,
) -> Result<String, GitError> {
    check_scheme(url)?;
    let (u, b, t) = (url.to_string(), branch.to_string(), token.cloned());
    blocking(url, move || {
        let fail = |e: git2::Error| classify(&e, &u, &b, t.as_ref());
        let mut remote = git2::Remote::create_detached(u.as_str()).map_err(fail)?;
        let connection = remote
            .connect_auth(git2::Direction::Fetch, Some(callbacks(t.clone())), None)
            .map_err(fail)?;
        let wanted = format!("refs/heads/{b}");
        let found = connection
            .list()
            .map_err(fail)?
            .iter()
            .find(|h| h.name() == wanted)
            .map(|h| h.oid().to_string());
        found.ok_or(GitError::NoBranch {
            url: u.clone(),
            branch: b.clone(),
        })
    })
    .await
}

/// A shallow checkout of `branch` of `url` under `root` (`<root>/<sha>`, reused when
/// that revision is there already). Made in a temporary directory beside it and
/// renamed into place, so a half-made checkout is never used.
pub async fn checkout(
    url: &str,
    branch: &str,
    token: Option<&SecretString>,
    root: &Path,
) -> Result<Checkout, GitError> {
    check_scheme(url)?;
    let (u, b, t, root) = (
        url.to_string(),
        branch.to_string(),
        token.cloned(),
        root.to_path_buf(),
    );
    blocking(url, move || {
        let fail = |e: git2::Error| classify(&e, &u, &b, t.as_ref());
        let io = |e: std::io::Error| GitError::Other {
            url: u.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(&root).map_err(io)?;
        let tmp = root.join(format!(".clone-{}", uuid::Uuid::new_v4()));
        let mut fetch = git2::FetchOptions::new();
        fetch.remote_callbacks(callbacks(t.clone()));
        // libgit2's local transport cannot fetch shallow: a local repository is
        // cloned whole (its one branch still), a remote one at depth 1.
        if !u.starts_with("file://") {
            fetch.depth(1);
        }
        let refspec = format!("+refs/heads/{b}:refs/remotes/origin/{b}");
        let mut builder = git2::build::RepoBuilder::new();
        builder.branch(&b).fetch_options(fetch);
        builder.remote_create(move |repo, name, url| repo.remote_with_fetch(name, url, &refspec));
        let cloned = builder.clone(&u, &tmp);
        let repo = match cloned {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(fail(e));
            }
        };
        let revision = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map(|c| c.id().to_string())
            .map_err(fail)?;
        drop(repo);
        let dir = root.join(&revision);
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        } else {
            std::fs::rename(&tmp, &dir).map_err(io)?;
        }
        Ok(Checkout { dir, revision })
    })
    .await
}

/// Remove the checkouts under `root` but those of `keep`.
pub fn prune(root: &Path, keep: &[&str]) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name.as_str()) {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove an old checkout");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
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

    fn repo_with_commits(n: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q"]);
        for i in 0..n {
            std::fs::write(
                dir.path().join("compose.yaml"),
                format!("# {i}\nservices: {{}}\n"),
            )
            .expect("write");
            git(dir.path(), &["add", "."]);
            git(dir.path(), &["commit", "-qm", &format!("c{i}")]);
        }
        git(dir.path(), &["branch", "other"]);
        dir
    }

    #[tokio::test]
    async fn one_branch_is_cloned_and_its_revision_resolved() {
        let src = repo_with_commits(3);
        let url = format!("file://{}", src.path().display());
        let head = git(src.path(), &["rev-parse", "main"]);
        let root = tempfile::tempdir().expect("tempdir");
        let c = checkout(&url, "main", None, root.path())
            .await
            .expect("clone");
        assert_eq!(c.revision, head);
        assert!(c.dir.join("compose.yaml").is_file());
        let branches = git(&c.dir, &["branch", "-r"]);
        assert!(!branches.contains("other"), "only that branch: {branches}");
        assert_eq!(resolve(&url, "main", None).await.expect("resolve"), head);

        std::fs::write(
            src.path().join("compose.yaml"),
            "services: {a: {image: x}}\n",
        )
        .expect("write");
        git(src.path(), &["commit", "-qam", "next"]);
        let next = git(src.path(), &["rev-parse", "main"]);
        assert_eq!(resolve(&url, "main", None).await.expect("resolve"), next);
        let c2 = checkout(&url, "main", None, root.path())
            .await
            .expect("clone again");
        assert_eq!(c2.revision, next);
        assert_ne!(c2.dir, c.dir);
        prune(root.path(), &[next.as_str()]);
        assert!(!c.dir.exists() && c2.dir.exists());
    }

    #[tokio::test]
    async fn missing_branches_repositories_and_other_schemes_are_told_apart() {
        let src = repo_with_commits(1);
        let url = format!("file://{}", src.path().display());
        let root = tempfile::tempdir().expect("tempdir");
        let e = checkout(&url, "nope", None, root.path()).await.unwrap_err();
        assert!(matches!(e, GitError::NoBranch { .. }), "{e:?}");
        let e = resolve(&url, "nope", None).await.unwrap_err();
        assert!(matches!(e, GitError::NoBranch { .. }), "{e:?}");
        let e = checkout("file:///no/such/repo", "main", None, root.path())
            .await
            .unwrap_err();
        assert!(matches!(e, GitError::NotFound { .. }), "{e:?}");
        for url in [
            "ssh://git@example.com/a.git",
            "ext::sh -c id",
            "git@example.com:a",
        ] {
            let e = checkout(url, "main", None, root.path()).await.unwrap_err();
            assert!(matches!(e, GitError::Scheme { .. }), "{url}: {e:?}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(root.path())
            .expect("dir")
            .flatten()
            .collect();
        assert!(
            leftovers.is_empty(),
            "failed clones leave nothing: {leftovers:?}"
        );
    }

    #[test]
    fn the_token_is_scrubbed_from_messages() {
        let token = SecretString::new("tok-S3CRET");
        let e =
            git2::Error::from_str("request to https://x-access-token:tok-S3CRET@h/r failed: 401");
        let g = classify(&e, "https://h/r", "main", Some(&token));
        assert!(matches!(g, GitError::Auth { .. }), "{g:?}");
        let e = git2::Error::from_str("odd failure mentioning tok-S3CRET");
        let g = classify(&e, "https://h/r", "main", Some(&token));
        let shown = format!("{g} {g:?}");
        assert!(!shown.contains("tok-S3CRET"), "{shown}");
    }
}
