//! `persys-dns` for tests: started against a test etcd on a free 127.0.0.1 port (it
//! binds port 0 and writes the address to a file), and asked with the real `dig`
//! (Debian's `dnsutils`), whose answer is parsed into sections.

use crate::cluster::bin;
use crate::etcd::Etcd;
use crate::process::Process;
use anyhow::{bail, Context, Result};
use persys_certs::Role;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A running `persys-dns`.
pub struct Responder {
    /// The process.
    pub process: Process,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
}

impl Responder {
    /// Start `persys-dns` for `domain` against `etcd` (with the scheduler's etcd
    /// client certificate), its log and address file in `dir`; `extra` flags appended.
    /// Waits until it has bound its port.
    pub async fn start(etcd: &Etcd, dir: &Path, domain: &str, extra: &[String]) -> Result<Self> {
        let addr_file = dir.join("dns-addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = Command::new(bin("persys-dns"));
        cmd.arg("--etcd-endpoints")
            .arg(etcd.endpoint())
            .args(etcd.client_flags(Role::Scheduler))
            .arg("--domain")
            .arg(domain)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--addr-file")
            .arg(&addr_file)
            .args(extra)
            .env("RUST_LOG", "info,persys_dns=debug,hickory_server=warn");
        let mut process = Process::spawn("persys-dns", cmd, &dir.join("dns.log"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let addr = std::fs::read_to_string(&addr_file)
                .ok()
                .and_then(|s| s.trim().parse::<SocketAddr>().ok());
            if let Some(addr) = addr {
                return Ok(Self { process, addr });
            }
            if process.has_exited() {
                bail!("persys-dns exited during start:\n{}", process.log());
            }
            if Instant::now() > deadline {
                bail!("persys-dns wrote no address in 20 s:\n{}", process.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `dig @<addr> -p <port> <args>` (one try, two seconds).
    pub fn dig(&self, args: &[&str]) -> Result<Dig> {
        dig(self.addr, args)
    }
}

/// One resource record as dig prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    /// Owner name (with its trailing dot).
    pub name: String,
    /// TTL.
    pub ttl: u32,
    /// Type (`A`, `SRV`, ...).
    pub rtype: String,
    /// The data (`10 33 8080 target.`).
    pub data: String,
}

/// An answer as dig prints it.
#[derive(Debug, Clone, Default)]
pub struct Dig {
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, ...
    pub status: String,
    /// Header flags (`qr`, `aa`, ...).
    pub flags: Vec<String>,
    /// Answer section.
    pub answers: Vec<Rr>,
    /// Authority section.
    pub authority: Vec<Rr>,
    /// Additional section (without the OPT pseudo-record).
    pub additional: Vec<Rr>,
    /// The whole output, for messages.
    pub text: String,
}

impl Dig {
    /// Whether the answer is authoritative.
    pub fn aa(&self) -> bool {
        self.flags.iter().any(|f| f == "aa")
    }

    /// The data of the answers, sorted.
    pub fn data(&self) -> Vec<String> {
        let mut d: Vec<String> = self.answers.iter().map(|r| r.data.clone()).collect();
        d.sort();
        d
    }
}

/// `dig @<server ip> -p <port> +tries=1 +time=2 <args>`, parsed.
pub fn dig(server: SocketAddr, args: &[&str]) -> Result<Dig> {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+tries=1", "+time=2", "+nocmd", "+nostats"])
        .args(args)
        .output()
        .context("run dig (apt-get install dnsutils)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "dig {args:?} failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text)
}

/// Parse dig's default output.
pub fn parse(text: &str) -> Result<Dig> {
    let mut d = Dig {
        text: text.to_string(),
        ..Default::default()
    };
    let mut section: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
            d.status = rest
                .split(',')
                .find_map(|p| p.trim().strip_prefix("status: "))
                .unwrap_or_default()
                .to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            let flags = rest.split(';').next().unwrap_or_default();
            d.flags = flags.split_whitespace().map(String::from).collect();
        } else if line.ends_with("SECTION:") {
            section = Some(match line {
                ";; ANSWER SECTION:" => "answer",
                ";; AUTHORITY SECTION:" => "authority",
                ";; ADDITIONAL SECTION:" => "additional",
                _ => "other",
            });
        } else if line.is_empty() {
            section = None;
        } else if !line.starts_with(';') {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 {
                continue;
            }
            let rr = Rr {
                name: f[0].to_string(),
                ttl: f[1].parse().unwrap_or_default(),
                rtype: f[3].to_string(),
                data: f[4..].join(" "),
            };
            match section {
                Some("answer") => d.answers.push(rr),
                Some("authority") => d.authority.push(rr),
                Some("additional") => d.additional.push(rr),
                _ => {}
            }
        }
    }
    if d.status.is_empty() {
        bail!("no answer from the server: {text}");
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digs_output_is_read_by_section() {
        let text = "\
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 7696
;; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 2

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
;; QUESTION SECTION:
;web.cluster.local.dev.\t\tIN\tSRV

;; ANSWER SECTION:
web.cluster.local.dev.\t30\tIN\tSRV\t10 100 8080 a-8080.web.cluster.local.dev.

;; ADDITIONAL SECTION:
a-8080.web.cluster.local.dev. 30 IN\tA\t127.0.0.5
";
        let d = parse(text).expect("parses");
        assert_eq!(d.status, "NOERROR");
        assert!(d.aa());
        assert_eq!(d.data(), ["10 100 8080 a-8080.web.cluster.local.dev."]);
        assert_eq!(d.answers[0].ttl, 30);
        assert_eq!(d.additional[0].data, "127.0.0.5");
        assert!(parse(";; connection timed out; no servers could be reached").is_err());
    }
}
