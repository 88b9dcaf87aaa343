//! Published ports as workloads give them: `[ip:][host:]container[/proto]`. The agent
//! publishes them; the scheduler's DNS records name their host ports.

/// One published port: `[ip:][host:]container[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// Host IP to bind (all when `None`).
    pub host_ip: Option<String>,
    /// Host port (engine-assigned when `None`).
    pub host_port: Option<u16>,
    /// Container port.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

impl PortMapping {
    /// Parse `[ip:][host:]container[/proto]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ports, protocol) = match s.split_once('/') {
            Some((p, proto @ ("tcp" | "udp" | "sctp"))) => (p, proto.to_string()),
            Some((_, proto)) => return Err(format!("port {s:?}: unknown protocol {proto:?}")),
            None => (s, "tcp".to_string()),
        };
        let port = |p: &str| -> Result<u16, String> {
            p.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("port {s:?}: {p:?} is not a port number"))
        };
        // An IPv6 host IP would contain ':' too; only plain IPv4/host forms are split.
        let parts: Vec<&str> = ports.split(':').collect();
        let (host_ip, host_port, container) = match parts.as_slice() {
            [c] => (None, None, port(c)?),
            [h, c] => (None, Some(port(h)?), port(c)?),
            [ip, h, c] => {
                let host_port = if h.is_empty() { None } else { Some(port(h)?) };
                (Some(ip.to_string()), host_port, port(c)?)
            }
            _ => return Err(format!("port {s:?} is not [ip:][host:]container[/proto]")),
        };
        Ok(Self {
            host_ip,
            host_port,
            container_port: container,
            protocol,
        })
    }

    /// Docker's exposed-port key, e.g. `8080/tcp`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}
