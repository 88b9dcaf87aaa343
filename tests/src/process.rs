//! Child processes owned by a test: started with their output in a log file, killed
//! (SIGKILL) on drop so a failing test never leaves anything behind.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running child process and the file its output goes to.
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Spawn `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Send a signal (e.g. `libc::SIGSTOP`).
    pub fn signal(&self, sig: i32) -> Result<()> {
        let Some(pid) = self.pid() else {
            bail!("{} is not running", self.name)
        };
        let pid = i32::try_from(pid).context("pid out of range")?;
        // SAFETY-free: kill(2) through the nix-free libc wrapper is safe to call with any pid.
        let rc = send_signal(pid, sig);
        if rc != 0 {
            bail!("kill({pid}, {sig}) failed");
        }
        Ok(())
    }

    /// kill -9 and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("{} is not running", self.name)
        };
        let pid = i32::try_from(c.id()).context("pid out of range")?;
        send_signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("{} did not exit within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait (without blocking the async runtime) up to `timeout` for the process to
    /// exit on its own; its exit status. The process is reaped, not killed.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(c) = self.child.as_mut() else {
                bail!("{} is not running", self.name)
            };
            if let Some(status) = c.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- last lines of {} ----", self.name);
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        self.kill();
    }
}

#[allow(unsafe_code)]
fn send_signal(pid: i32, sig: i32) -> i32 {
    // SAFETY: kill(2) has no memory-safety preconditions; a wrong pid only yields ESRCH.
    unsafe { libc::kill(pid, sig) }
}

pub use persys_testports::free_port;
