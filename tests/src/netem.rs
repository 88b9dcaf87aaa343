//! Latency and loss in user space, for kernels built without the `netem` qdisc: the
//! packets crossing one interface of the root namespace (both directions: `INPUT -i`
//! and `OUTPUT -o`) are queued to this process through NFQUEUE, dropped with the given
//! probability, and accepted once the delay has passed. Each direction is delayed, as
//! `netem` on both ends of a veth pair would do. The rules use `--queue-bypass`, so the
//! link carries traffic normally if the emulator is gone.

use anyhow::{bail, Context, Result};
use rand::Rng;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Delay and loss of a link, per direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetemSpec {
    /// Added one-way delay.
    pub delay: Duration,
    /// Probability that a packet is dropped (0..=1).
    pub loss: f64,
}

impl NetemSpec {
    /// Parse the `tc netem` subset `delay <N>ms|s [loss <P>%]`.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut out = Self {
            delay: Duration::ZERO,
            loss: 0.0,
        };
        let words: Vec<&str> = spec.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            let value = words.get(i + 1).copied().unwrap_or_default();
            match words[i] {
                "delay" => out.delay = parse_duration(value)?,
                "loss" => {
                    let pct: f64 = value
                        .trim_end_matches('%')
                        .parse()
                        .with_context(|| format!("loss {value:?}"))?;
                    out.loss = (pct / 100.0).clamp(0.0, 1.0);
                }
                other => bail!("unsupported netem option {other:?} in {spec:?}"),
            }
            i += 2;
        }
        Ok(out)
    }
}

fn parse_duration(v: &str) -> Result<Duration> {
    let (num, scale) = if let Some(ms) = v.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(us) = v.strip_suffix("us") {
        (us, 1e-6)
    } else if let Some(s) = v.strip_suffix('s') {
        (s, 1.0)
    } else {
        bail!("delay {v:?} has no unit (ms, us, s)")
    };
    let n: f64 = num.parse().with_context(|| format!("delay {v:?}"))?;
    Ok(Duration::from_secs_f64(n * scale))
}

/// Packets an emulator has handled.
#[derive(Debug, Default)]
pub struct NetemStats {
    /// Released after the delay.
    pub delayed: AtomicU64,
    /// Dropped.
    pub dropped: AtomicU64,
}

/// A running emulator on one interface; removing its rules and stopping on drop.
pub struct Emulator {
    rules: Vec<Vec<String>>,
    stop: Arc<AtomicBool>,
    stats: Arc<NetemStats>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Start emulating `spec` on `iface` (root namespace) through NFQUEUE `queue`.
    pub fn start(iface: &str, queue: u16, spec: NetemSpec) -> Result<Self> {
        let mut q = nfq::Queue::open().context("open an NFQUEUE netlink socket")?;
        q.bind(queue).context("bind the NFQUEUE")?;
        // Only the packet ids are needed to hold and release packets; whole GSO
        // packets avoid segmenting them for us.
        q.set_copy_range(queue, 0)?;
        q.set_recv_gso(queue, true)?;
        q.set_queue_max_len(queue, 65_536)?;
        q.set_fail_open(queue, true)?;
        q.set_nonblocking(true);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(NetemStats::default());
        let thread = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name(format!("netem-{iface}"))
                .spawn(move || pump(q, queue, spec, &stop, &stats))?
        };
        let num = queue.to_string();
        let mut emulator = Self {
            rules: Vec::new(),
            stop,
            stats,
            thread: Some(thread),
        };
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            let rule: Vec<String> = [
                chain,
                dir,
                iface,
                "-j",
                "NFQUEUE",
                "--queue-num",
                &num,
                "--queue-bypass",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut insert = vec!["-w".to_string(), "-I".to_string()];
            insert.extend(rule.iter().cloned());
            let args: Vec<&str> = insert.iter().map(String::as_str).collect();
            crate::netns::run("iptables", &args)?;
            emulator.rules.push(rule);
        }
        Ok(emulator)
    }

    /// (delayed, dropped) packets so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.stats.delayed.load(Ordering::Relaxed),
            self.stats.dropped.load(Ordering::Relaxed),
        )
    }
}

/// Receive packets, drop some, release the rest after the delay, until `stop`.
fn pump(mut q: nfq::Queue, queue: u16, spec: NetemSpec, stop: &AtomicBool, stats: &NetemStats) {
    let mut rng = rand::thread_rng();
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        match q.recv() {
            Ok(mut msg) => {
                idle = false;
                if rng.gen_bool(spec.loss) {
                    msg.set_verdict(nfq::Verdict::Drop);
                    let _ = q.verdict(msg);
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    held.push_back((Instant::now() + spec.delay, msg));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
        let now = Instant::now();
        // A constant delay keeps arrival order, so the due packets are at the front.
        while held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, mut msg)) = held.pop_front() {
                msg.set_verdict(nfq::Verdict::Accept);
                let _ = q.verdict(msg);
                stats.delayed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    for (_, mut msg) in held {
        msg.set_verdict(nfq::Verdict::Accept);
        let _ = q.verdict(msg);
    }
    let _ = q.unbind(queue);
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for rule in &self.rules {
            let mut del = vec!["-w".to_string(), "-D".to_string()];
            del.extend(rule.iter().cloned());
            let args: Vec<&str> = del.iter().map(String::as_str).collect();
            let _ = crate::netns::run("iptables", &args);
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delay_and_loss_like_tc() {
        let s = NetemSpec::parse("delay 300ms loss 10%").expect("parses");
        assert_eq!(s.delay, Duration::from_millis(300));
        assert!((s.loss - 0.1).abs() < 1e-9);
        let s = NetemSpec::parse("delay 1s").expect("parses");
        assert_eq!(s.delay, Duration::from_secs(1));
        assert_eq!(s.loss, 0.0);
    }

    #[test]
    fn refuses_options_it_cannot_emulate() {
        assert!(NetemSpec::parse("delay 10ms reorder 25%").is_err());
        assert!(NetemSpec::parse("delay 10").is_err());
    }
}
