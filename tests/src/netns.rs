//! Test hosts: one network namespace per node, joined to the root namespace by a veth
//! pair, so that an agent has its own address and its link can be cut, slowed or made
//! lossy without touching anything else on the machine.
//!
//! Host `k` is the namespace `persys-<pid>-<k>` with `10.231.<k>.2/24` on its side of
//! the pair (`psy<k>n`) and `10.231.<k>.1/24` on the root side (`psy<k>h`), which is
//! where the scheduler is reached from inside. Only these addresses (and loopback) are
//! ever targeted. Everything is deleted on drop.

use crate::netem::{Emulator, NetemSpec};
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace the testkit creates (`persys-<pid>-<k>`).
const NS_PREFIX: &str = "persys-";

/// How a link's latency and loss are emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetemMode {
    /// The kernel's `netem` qdisc on both ends of the veth pair.
    Kernel,
    /// The kernel has no `netem` qdisc: packets of the link are queued to user space
    /// (NFQUEUE) and released after the delay, or dropped, by the test process.
    UserSpace,
}

/// One test host (a network namespace with its own address).
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// The host's index (third octet of its addresses).
    pub k: u8,
    /// Root-side veth (carries `host_ip`).
    pub host_veth: String,
    /// Namespace-side veth (carries `node_ip`).
    pub node_veth: String,
    /// Address of the root namespace as seen from the host (`10.231.<k>.1`).
    pub host_ip: Ipv4Addr,
    /// The host's own address (`10.231.<k>.2`).
    pub node_ip: Ipv4Addr,
    kernel_netem: bool,
    emulator: Option<Emulator>,
}

/// Run `ip`/`tc`/`iptables`-like tools, failing with their stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("spawn {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn run_quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).output();
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Delete namespaces left by test processes that died without cleaning up.
fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some((pid, k)) = rest.split_once('-') else {
            continue;
        };
        let alive = Path::new("/proc").join(pid).exists();
        if !alive && pid.parse::<u32>().is_ok() {
            run_quiet("ip", &["netns", "del", name]);
            run_quiet("ip", &["link", "del", &format!("psy{k}h")]);
            remove_queue_rules(&format!("psy{k}h"));
        }
    }
}

/// Delete the NFQUEUE rules of the user-space netem on `iface` (left by a process that
/// was killed before it could clean up).
fn remove_queue_rules(iface: &str) {
    let Ok(out) = Command::new("iptables").args(["-w", "-S"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ours = words.contains(&iface) && words.contains(&"NFQUEUE");
        if let (true, Some(("-A", rule))) = (ours, words.split_first().map(|(a, r)| (*a, r))) {
            let mut args = vec!["-w", "-D"];
            args.extend(rule);
            run_quiet("iptables", &args);
        }
    }
}

impl Host {
    /// Create a host: namespace, veth pair, addresses, default route.
    pub fn create() -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(sweep_stale_namespaces);
        let pid = std::process::id();
        // Spread processes over the range, then take the first free index: `ip link add`
        // of the root-side name is the claim, so two processes never share an index.
        for _ in 0..250 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let k = u8::try_from((pid.wrapping_mul(37).wrapping_add(n)) % 250 + 2)
                .context("host index")?;
            let host_veth = format!("psy{k}h");
            let node_veth = format!("psy{k}n");
            if link_exists(&host_veth) {
                continue;
            }
            if run(
                "ip",
                &[
                    "link", "add", &host_veth, "type", "veth", "peer", "name", &node_veth,
                ],
            )
            .is_err()
            {
                continue;
            }
            let mut host = Self {
                ns: format!("{NS_PREFIX}{pid}-{k}"),
                k,
                host_veth,
                node_veth,
                host_ip: Ipv4Addr::new(10, 231, k, 1),
                node_ip: Ipv4Addr::new(10, 231, k, 2),
                kernel_netem: false,
                emulator: None,
            };
            host.configure()?;
            return Ok(host);
        }
        bail!("no free host index in 10.231.2-251.0/24")
    }

    fn configure(&mut self) -> Result<()> {
        let ns = self.ns.clone();
        let host_cidr = format!("{}/24", self.host_ip);
        let node_cidr = format!("{}/24", self.node_ip);
        let gw = self.host_ip.to_string();
        run("ip", &["netns", "add", &ns])?;
        run("ip", &["link", "set", &self.node_veth, "netns", &ns])?;
        run("ip", &["addr", "add", &host_cidr, "dev", &self.host_veth])?;
        run("ip", &["link", "set", &self.host_veth, "up"])?;
        run(
            "ip",
            &["-n", &ns, "addr", "add", &node_cidr, "dev", &self.node_veth],
        )?;
        run("ip", &["-n", &ns, "link", "set", &self.node_veth, "up"])?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        run("ip", &["-n", &ns, "route", "add", "default", "via", &gw])?;
        Ok(())
    }

    /// A command running `program` inside the host (`ip netns exec`, which execs in
    /// place: the child's pid is the program's).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }

    /// Cut the host off, both ways (the root-side veth goes down).
    pub fn partition(&self) -> Result<()> {
        run("ip", &["link", "set", &self.host_veth, "down"])
    }

    /// Reconnect a partitioned host.
    pub fn heal(&self) -> Result<()> {
        run("ip", &["link", "set", &self.host_veth, "up"])
    }

    /// Add latency and loss to the host's link, e.g. `"delay 300ms loss 10%"`, on both
    /// ends (each direction gets the delay and the loss). Uses the kernel's `netem`
    /// qdisc when it has one, else the user-space emulation of [`crate::netem`].
    pub fn netem(&mut self, spec: &str) -> Result<NetemMode> {
        self.clear_netem();
        let args: Vec<&str> = spec.split_whitespace().collect();
        let mut host = vec!["qdisc", "replace", "dev", &self.host_veth, "root", "netem"];
        host.extend(&args);
        match run("tc", &host) {
            Ok(()) => {
                self.kernel_netem = true;
                let mut node = vec![
                    "-n",
                    &self.ns,
                    "qdisc",
                    "replace",
                    "dev",
                    &self.node_veth,
                    "root",
                    "netem",
                ];
                node.extend(&args);
                run("tc", &node)?;
                Ok(NetemMode::Kernel)
            }
            Err(e) if e.to_string().contains("qdisc kind is unknown") => {
                let parsed = NetemSpec::parse(spec)?;
                let queue = 4000 + u16::from(self.k);
                self.emulator = Some(Emulator::start(&self.host_veth, queue, parsed)?);
                Ok(NetemMode::UserSpace)
            }
            Err(e) => Err(e),
        }
    }

    /// (delayed, dropped) packets of the user-space emulation; `None` when the kernel
    /// emulates (see `tc -s qdisc`) or nothing does.
    pub fn netem_stats(&self) -> Option<(u64, u64)> {
        self.emulator.as_ref().map(Emulator::stats)
    }

    /// Remove any latency and loss.
    pub fn clear_netem(&mut self) {
        if self.kernel_netem {
            run_quiet("tc", &["qdisc", "del", "dev", &self.host_veth, "root"]);
            run_quiet(
                "tc",
                &[
                    "-n",
                    &self.ns,
                    "qdisc",
                    "del",
                    "dev",
                    &self.node_veth,
                    "root",
                ],
            );
            self.kernel_netem = false;
        }
        self.emulator = None;
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.clear_netem();
        run_quiet("ip", &["netns", "del", &self.ns]);
        // Deleting the namespace deletes its end of the pair (and so both) once no
        // process is left in it; delete the root end too in case one still is.
        run_quiet("ip", &["link", "del", &self.host_veth]);
    }
}
