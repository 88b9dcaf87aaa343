//! Child processes of `persys dev`: spawned with their output in a log file and their
//! pid in a pid file, tied to our lifetime, watched for exits, started again on request
//! (with the same program, flags and environment), and stopped in reverse start order.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::ffi::{OsStr, OsString};
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

/// A child's exit seen by [`Supervisor::wait_any_exit`].
#[derive(Debug)]
pub struct Exit {
    /// Which child, for [`Supervisor::restart`].
    pub index: usize,
    /// Its name, how it ended, its last log line.
    pub died: ChildDied,
    /// How long it had been running.
    pub uptime: Duration,
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

/// How to start a child (again).
#[derive(Debug, Clone)]
struct Spec {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    not_found_hint: String,
}

struct Proc {
    name: String,
    stage: Stage,
    log: PathBuf,
    pid_file: PathBuf,
    spec: Spec,
    /// `None` once it exited (until it is restarted).
    child: Option<Child>,
    started: Instant,
}

/// The children of one `persys dev`.
pub struct Supervisor {
    logs_dir: PathBuf,
    pids_dir: PathBuf,
    procs: Vec<Proc>,
}

impl Supervisor {
    /// A supervisor writing `<logs_dir>/<name>.log` and `<pids_dir>/<name>.pid`.
    pub fn new(logs_dir: PathBuf, pids_dir: PathBuf) -> Self {
        Self {
            logs_dir,
            pids_dir,
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

    /// The pid file of a child name: its pid and a newline while it runs.
    pub fn pid_path(&self, name: &str) -> PathBuf {
        self.pids_dir.join(format!("{name}.pid"))
    }

    /// The name of child `index`.
    pub fn name(&self, index: usize) -> &str {
        self.procs.get(index).map_or("a child", |p| p.name.as_str())
    }

    /// The stage of child `index`.
    pub fn stage(&self, index: usize) -> Option<Stage> {
        self.procs.get(index).map(|p| p.stage)
    }

    /// The pid of the running child `name`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.child.as_ref())
            .and_then(Child::id)
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
        let spec = Spec {
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.as_ref().to_os_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            not_found_hint: not_found_hint.to_string(),
        };
        let log = self.log_path(name);
        let pid_file = self.pid_path(name);
        let child = start(name, &spec, &log, &pid_file)?;
        self.procs.push(Proc {
            name: name.to_string(),
            stage,
            log,
            pid_file,
            spec,
            child: Some(child),
            started: Instant::now(),
        });
        Ok(())
    }

    /// Replace the flags child `name` gets when it is started again (e.g. the port it
    /// chose at its first start). Unknown names are ignored.
    pub fn set_args<S: AsRef<OsStr>>(&mut self, name: &str, args: &[S]) {
        if let Some(p) = self.procs.iter_mut().find(|p| p.name == name) {
            p.spec.args = args.iter().map(|a| a.as_ref().to_os_string()).collect();
        }
    }

    /// Start child `index` again, as it was first started; its new pid. A child that is
    /// still running is left alone.
    pub fn restart(&mut self, index: usize) -> Result<u32, SpawnError> {
        let Some(p) = self.procs.get_mut(index) else {
            return Err(SpawnError::Io {
                name: format!("child {index}"),
                reason: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        };
        if let Some(pid) = p.child.as_ref().and_then(Child::id) {
            return Ok(pid);
        }
        let child = start(&p.name, &p.spec, &p.log, &p.pid_file)?;
        let pid = child.id().unwrap_or_default();
        p.child = Some(child);
        p.started = Instant::now();
        Ok(pid)
    }

    /// Fail if any running child has exited.
    pub fn check_alive(&mut self) -> Result<(), ChildDied> {
        for p in &mut self.procs {
            let Some(child) = p.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                p.child = None;
                remove_pid_file(&p.pid_file);
                return Err(died(p, status.to_string()));
            }
        }
        Ok(())
    }

    /// Wait until some running child exits (forever if none runs); it stays stopped
    /// until [`Supervisor::restart`].
    pub async fn wait_any_exit(&mut self) -> Exit {
        let (result, index) = {
            let waits: Vec<_> = self
                .procs
                .iter_mut()
                .enumerate()
                .filter_map(|(i, p)| {
                    p.child
                        .as_mut()
                        .map(|c| Box::pin(async move { (i, c.wait().await) }))
                })
                .collect();
            if waits.is_empty() {
                return std::future::pending().await;
            }
            let ((index, result), _, _rest) = futures::future::select_all(waits).await;
            (result, index)
        };
        let status = match result {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        match self.procs.get_mut(index) {
            Some(p) => {
                p.child = None;
                remove_pid_file(&p.pid_file);
                Exit {
                    index,
                    died: died(p, status),
                    uptime: p.started.elapsed(),
                }
            }
            None => Exit {
                index,
                died: ChildDied {
                    name: "a child".into(),
                    status,
                    last_line: String::new(),
                    log: self.logs_dir.display().to_string(),
                },
                uptime: Duration::ZERO,
            },
        }
    }

    /// Stop every running child, latest stage first: SIGTERM, then SIGKILL after
    /// `grace` (or at once when `hurry` changes, i.e. a second Ctrl-C).
    pub async fn shutdown(&mut self, grace: Duration, hurry: &mut watch::Receiver<u32>) {
        let mut stages: Vec<Stage> = self.procs.iter().map(|p| p.stage).collect();
        stages.sort();
        stages.dedup();
        for stage in stages.into_iter().rev() {
            let deadline = Instant::now() + grace;
            for p in self.procs.iter().filter(|p| p.stage == stage) {
                let pid = p.child.as_ref().and_then(Child::id);
                if let Some(pid) = pid.and_then(|id| i32::try_from(id).ok()) {
                    // ESRCH (already gone) is fine: wait() below reaps it.
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
            }
            for p in self.procs.iter_mut().filter(|p| p.stage == stage) {
                let Some(child) = p.child.as_mut() else {
                    continue;
                };
                let graceful = tokio::select! {
                    r = tokio::time::timeout_at(deadline, child.wait()) => r.is_ok(),
                    _ = hurry.changed() => false,
                };
                if !graceful {
                    tracing::warn!(name = %p.name, "did not stop in time; killing it");
                    let _ = child.kill().await;
                }
                p.child = None;
                remove_pid_file(&p.pid_file);
            }
        }
        self.procs.clear();
    }
}

/// Start one child from its spec, writing a start line to its log and its pid file.
fn start(name: &str, spec: &Spec, log: &Path, pid_file: &Path) -> Result<Child, SpawnError> {
    let io_err = |reason| SpawnError::Io {
        name: name.to_string(),
        reason,
    };
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err)?;
    writeln!(
        out,
        "{START_LINE}{name} at {} ---",
        chrono::Utc::now().to_rfc3339()
    )
    .map_err(io_err)?;
    let err = out.try_clone().map_err(io_err)?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        // Log files are read by people with `less`; no colour codes in them.
        .env("NO_COLOR", "1")
        .process_group(0);
    for (k, v) in &spec.envs {
        cmd.env(k, v);
    }
    die_with_parent(&mut cmd);
    let child = cmd.spawn().map_err(|reason| {
        if reason.kind() == std::io::ErrorKind::NotFound {
            SpawnError::NotFound {
                program: spec.program.display().to_string(),
                hint: spec.not_found_hint.clone(),
            }
        } else {
            io_err(reason)
        }
    })?;
    let pid = child.id().unwrap_or_default();
    tracing::debug!(name, pid, "started");
    if let Err(e) = write_pid_file(pid_file, pid) {
        // Only a convenience for people and scripts: the child runs without it.
        tracing::warn!(file = %pid_file.display(), error = %e, "cannot write the pid file");
    }
    Ok(child)
}

/// Write `<pid>\n` aside and rename it into place, so a reader never sees half a pid.
fn write_pid_file(path: &Path, pid: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::rename(&tmp, path)
}

fn remove_pid_file(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::debug!(file = %path.display(), error = %e, "cannot remove the pid file"),
    }
}

/// The pid in a pid file, if it holds one.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
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
/// Only lines of the latest run count: none after our start line means the child said
/// nothing this time.
fn last_log_line(path: &Path) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let tail = &text[text.len().saturating_sub(64 * 1024)..];
    let text = String::from_utf8_lossy(tail);
    let line = text
        .lines()
        .rev()
        .take_while(|l| !l.starts_with(START_LINE))
        .find(|l| !l.trim().is_empty())?;
    Some(strip_ansi(line).trim().chars().take(300).collect())
}

/// How the line `persys dev` writes to a log before each start begins.
const START_LINE: &str = "--- persys dev: starting ";

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
        std::fs::write(
            &p,
            "--- persys dev: starting x at 1 ---\nold words\n--- persys dev: starting x at 2 ---\n",
        )
        .expect("write");
        assert_eq!(last_log_line(&p), None, "nothing said by the latest run");
    }

    #[tokio::test]
    async fn child_exit_is_reported_with_its_name_and_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sup = Supervisor::new(dir.path().to_path_buf(), dir.path().to_path_buf());
        sup.spawn(
            "quitter",
            Stage::Agents,
            Path::new("/bin/sh"),
            &["-c", "echo going away; exit 3"],
            &[],
            "",
        )
        .expect("spawns");
        let exit = sup.wait_any_exit().await;
        let died = exit.died;
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
        let mut sup = Supervisor::new(dir.path().to_path_buf(), dir.path().to_path_buf());
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

    #[tokio::test]
    async fn an_exited_child_is_started_again_with_its_flags_and_a_new_pid_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sup = Supervisor::new(dir.path().join("logs"), dir.path().join("pids"));
        std::fs::create_dir_all(dir.path().join("logs")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("pids")).expect("mkdir");
        let marker = dir.path().join("runs");
        let script = format!("echo run >> {}; exec sleep 30", marker.display());
        sup.spawn(
            "worker",
            Stage::Agents,
            Path::new("/bin/sh"),
            &["-c", &script],
            &[],
            "",
        )
        .expect("spawns");
        let pid_file = sup.pid_path("worker");
        let first = sup.pid("worker").expect("running");
        let runs = |n: usize| {
            std::fs::read_to_string(&marker)
                .unwrap_or_default()
                .lines()
                .count()
                >= n
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !runs(1) {
            assert!(Instant::now() < deadline, "the command runs");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(read_pid_file(&pid_file), Some(first));
        kill(
            Pid::from_raw(i32::try_from(first).expect("pid")),
            Signal::SIGKILL,
        )
        .expect("kill");
        let exit = sup.wait_any_exit().await;
        assert_eq!(exit.died.name, "worker");
        assert!(exit.died.status.contains("SIGKILL"), "{}", exit.died.status);
        assert_eq!(sup.pid("worker"), None, "stays down until restarted");
        assert_eq!(read_pid_file(&pid_file), None, "no pid file while down");
        let second = sup.restart(exit.index).expect("restarts");
        assert_ne!(first, second);
        assert_eq!(read_pid_file(&pid_file), Some(second));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !runs(2) {
            assert!(Instant::now() < deadline, "the same command runs again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = std::fs::read_to_string(sup.log_path("worker")).expect("log");
        assert_eq!(
            log.matches("--- persys dev: starting worker").count(),
            2,
            "{log}"
        );
        let (_tx, mut hurry) = watch::channel(0);
        sup.shutdown(Duration::from_secs(5), &mut hurry).await;
        assert_eq!(read_pid_file(&pid_file), None, "removed at shutdown");
    }

    #[test]
    fn missing_program_is_not_found_with_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sup = Supervisor::new(dir.path().to_path_buf(), dir.path().to_path_buf());
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
