//! Child processes of `persys dev`: spawned with their output in a log file, tied to
//! our lifetime, watched for unexpected exits, and stopped in reverse start order.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

/// Start order; shutdown goes the other way (agents, gateway, DNS, scheduler, etcd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// etcd.
    Store,
    /// The scheduler.
    Scheduler,
    /// The DNS responder.
    Dns,
    /// The gateway.
    Gateway,
    /// The agents.
    Agents,
}

/// A child that exited while the cluster was meant to be running.
#[derive(Debug, thiserror::Error)]
#[error("{name} exited unexpectedly ({status}){last_line}; see {log}")]
pub struct ChildDied {
    /// Which child.
    pub name: String,
    /// How it ended.
    pub status: String,
    /// `; last log line: ...` or empty.
    pub last_line: String,
    /// Its log file.
    pub log: String,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program is not installed where we looked.
    #[error("{program} not found: {hint}")]
    NotFound {
        /// What was run.
        program: String,
        /// What to do about it.
        hint: String,
    },
    /// Anything else (permissions, log file).
    #[error("cannot start {name}: {reason}")]
    Io {
        /// Which child.
        name: String,
        /// The I/O error.
        reason: std::io::Error,
    },
}

struct Proc {
    name: String,
    stage: Stage,
    log: PathBuf,
    child: Child,
}

/// The children of one `persys dev`.
pub struct Supervisor {
    logs_dir: PathBuf,
    procs: Vec<Proc>,
}

impl Supervisor {
    /// A supervisor writing `<logs_dir>/<name>.log`.
    pub fn new(logs_dir: PathBuf) -> Self {
        Self {
            logs_dir,
            procs: Vec::new(),
        }
    }

    /// Whether any child was started.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Where the log files are.
    pub fn logs_dir(&self) -> &Path {
        &self.logs_dir
    }

    /// The log file of a child name.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs_dir.join(format!("{name}.log"))
    }

    /// Start `program args...` as child `name`, stdout and stderr appended to its log,
    /// in its own process group (so a terminal's Ctrl-C reaches only us and we stop the
    /// children in order), killed by the kernel if we die.
    pub fn spawn<S: AsRef<OsStr>>(
        &mut self,
        name: &str,
        stage: Stage,
        program: &Path,
        args: &[S],
        envs: &[(&str, &str)],
        not_found_hint: &str,
    ) -> Result<(), SpawnError> {
        let io_err = |reason| SpawnError::Io {
            name: name.to_string(),
            reason,
        };
        let log = self.log_path(name);
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_err)?;
        writeln!(
            out,
            "--- persys dev: starting {name} at {} ---",
            chrono::Utc::now().to_rfc3339()
        )
        .map_err(io_err)?;
        let err = out.try_clone().map_err(io_err)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // Log files are read by people with `less`; no colour codes in them.
            .env("NO_COLOR", "1")
            .process_group(0);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|reason| {
            if reason.kind() == std::io::ErrorKind::NotFound {
                SpawnError::NotFound {
                    program: program.display().to_string(),
                    hint: not_found_hint.to_string(),
                }
            } else {
                io_err(reason)
            }
        })?;
        tracing::debug!(name, pid = child.id(), "started");
        self.procs.push(Proc {
            name: name.to_string(),
            stage,
            log,
            child,
        });
        Ok(())
    }

    /// Fail if any child has exited.
    pub fn check_alive(&mut self) -> Result<(), ChildDied> {
        for p in &mut self.procs {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(died(p, status.to_string()));
            }
        }
        Ok(())
    }

    /// Wait until some child exits (forever if there are none).
    pub async fn wait_any_exit(&mut self) -> ChildDied {
        if self.procs.is_empty() {
            return std::future::pending().await;
        }
        let (result, index) = {
            let waits = self.procs.iter_mut().map(|p| Box::pin(p.child.wait()));
            let (result, index, _rest) = futures::future::select_all(waits).await;
            (result, index)
        };
        let status = match result {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        match self.procs.get(index) {
            Some(p) => died(p, status),
            None => ChildDied {
                name: "a child".into(),
                status,
                last_line: String::new(),
                log: self.logs_dir.display().to_string(),
            },
        }
    }

    /// Stop every child, latest stage first: SIGTERM, then SIGKILL after `grace` (or at
    /// once when `hurry` changes, i.e. a second Ctrl-C).
    pub async fn shutdown(&mut self, grace: Duration, hurry: &mut watch::Receiver<u32>) {
        let mut stages: Vec<Stage> = self.procs.iter().map(|p| p.stage).collect();
        stages.sort();
        stages.dedup();
        for stage in stages.into_iter().rev() {
            let deadline = Instant::now() + grace;
            for p in self.procs.iter().filter(|p| p.stage == stage) {
                if let Some(pid) = p.child.id().and_then(|id| i32::try_from(id).ok()) {
                    // ESRCH (already gone) is fine: wait() below reaps it.
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
            }
            for p in self.procs.iter_mut().filter(|p| p.stage == stage) {
                let graceful = tokio::select! {
                    r = tokio::time::timeout_at(deadline, p.child.wait()) => r.is_ok(),
                    _ = hurry.changed() => false,
                };
                if !graceful {
                    tracing::warn!(name = %p.name, "did not stop in time; killing it");
                    let _ = p.child.kill().await;
                }
            }
        }
        self.procs.clear();
    }
}

fn died(p: &Proc, status: String) -> ChildDied {
    let last_line = last_log_line(&p.log)
        .map(|l| format!("; last log line: {l}"))
        .unwrap_or_default();
    ChildDied {
        name: p.name.clone(),
        status,
        last_line,
        log: p.log.display().to_string(),
    }
}

/// The last non-empty line of a log file, without colour codes, at most 300 characters.
fn last_log_line(path: &Path) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let tail = &text[text.len().saturating_sub(64 * 1024)..];
    let text = String::from_utf8_lossy(tail);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(strip_ansi(line).trim().chars().take(300).collect())
}

/// Remove `ESC [ ... letter` sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Ask the kernel to SIGKILL the child when we die, so `kill -9` of `persys dev` leaves
/// no etcd, scheduler or agent behind. This is the crate's one unsafe block: `pre_exec`
/// is unsafe because its closure runs between fork and exec, where only
/// async-signal-safe calls are allowed. The closure calls `prctl` and `getppid` (both
/// plain syscalls) and allocates nothing. The signal fires when the *thread* that
/// spawned the child exits; the CLI runs a current-thread runtime, so that thread is
/// the main thread and lives as long as the process.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // A pid always fits pid_t; the cast only changes the integer type.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: see above; the closure only makes async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // We may have died between fork and prctl: then nobody would kill the child.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colour_codes_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2024\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m boom"),
            "2024 ERROR boom"
        );
    }

    #[test]
    fn last_log_line_skips_blank_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.log");
        std::fs::write(&p, "first\nlast words\n\n").expect("write");
        assert_eq!(last_log_line(&p).as_deref(), Some("last words"));
    }

    #[tokio::test]
    async fn child_exit_is_reported_with_its_name_and_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sup = Supervisor::new(dir.path().to_path_buf());
        sup.spawn(
            "quitter",
            Stage::Agents,
            Path::new("/bin/sh"),
            &["-c", "echo going away; exit 3"],
            &[],
            "",
        )
        .expect("spawns");
        let died = sup.wait_any_exit().await;
        assert_eq!(died.name, "quitter");
        assert!(died.status.contains('3'), "{}", died.status);
        assert!(
            died.to_string().contains("last log line: going away"),
            "{died}"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_children_with_sigterm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sup = Supervisor::new(dir.path().to_path_buf());
        sup.spawn(
            "sleeper",
            Stage::Store,
            Path::new("sleep"),
            &["30"],
            &[],
            "",
        )
        .expect("spawns");
        sup.check_alive().expect("alive");
        let (_tx, mut hurry) = watch::channel(0);
        let started = Instant::now();
        sup.shutdown(Duration::from_secs(10), &mut hurry).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(sup.is_empty());
    }

    #[test]
    fn missing_program_is_not_found_with_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sup = Supervisor::new(dir.path().to_path_buf());
        let e = sup
            .spawn::<&str>(
                "x",
                Stage::Agents,
                Path::new("/nonexistent/bin"),
                &[],
                &[],
                "install it",
            )
            .expect_err("missing");
        assert_eq!(e.to_string(), "/nonexistent/bin not found: install it");
    }
}
