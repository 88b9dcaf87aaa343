//! What `persys dev` prints once the cluster is up.

use super::dns::Dns;
use super::layout::{HomeConfig, Layout};
use super::supervise;

/// Where the parts of a running dev cluster are.
pub struct Endpoints<'a> {
    /// The endpoint the written config points at.
    pub api: &'a str,
    /// The scheduler's own API.
    pub scheduler: &'a str,
    /// Whether `api` is the gateway.
    pub gateway: bool,
    /// etcd's URLs.
    pub etcd: &'a str,
    /// The DNS responder.
    pub dns: Dns,
    /// The cluster domain it answers.
    pub domain: &'a str,
}

/// What a person needs once the cluster is up.
pub fn summary(
    layout: &Layout,
    at: &Endpoints<'_>,
    agents: u16,
    sim_nodes: u32,
    home: &HomeConfig,
) -> String {
    let nodes = u32::from(agents) + sim_nodes;
    let simulated = match sim_nodes {
        0 => String::new(),
        n => format!(" ({n} simulated)"),
    };
    let home_line = match home {
        HomeConfig::Written(p) => format!("\n  also written:   {} (none existed)", p.display()),
        HomeConfig::Same(p) => format!("\n  also in:        {}", p.display()),
        HomeConfig::Kept(p) => format!(
            "\n  left alone:     {} (points elsewhere; use PERSYS_CONFIG)",
            p.display()
        ),
        HomeConfig::NoHome => String::new(),
    };
    let api_line = if at.gateway {
        format!(
            "{} (gateway; admin token in {})\n  scheduler:      {}",
            at.api,
            layout.admin_token().display(),
            at.scheduler
        )
    } else {
        format!("{} (scheduler; no gateway)", at.api)
    };
    let (dns_line, dig_line) = match at.dns {
        Dns::At(addr) => (
            format!(
                "\n  DNS:            {addr} (UDP and TCP; zone {})",
                at.domain
            ),
            format!(
                "\n  dig @{} -p {} hello.{}",
                addr.ip(),
                addr.port(),
                at.domain
            ),
        ),
        Dns::Off => (String::new(), String::new()),
    };
    format!(
        "persys dev cluster is up: {nodes} node(s) Active{simulated}\n\
         \x20 API endpoint:   {api_line}\n\
         \x20 client config:  {}{home_line}\n\
         \x20 etcd:           {}{dns_line}\n\
         \x20 logs:           {}\n\
         \x20 pids:           {}/<child>.pid\n\
         \n\
         \x20 export PERSYS_CONFIG={}\n\
         \x20 persys run --name hello --wait busybox:local -- sh -c 'echo hello; sleep 3600'\n\
         \x20 persys ps{dig_line}\n\
         \x20 persys node join-command --data-dir {}   # how one more node joins\n\
         \n\
         A child that dies is started again; an agent after {}s or more, past the node\n\
         timeout, so its node is lost and its workloads move (--restart always, on-failure,\n\
         unless-stopped) before it rejoins.\n\
         Press Ctrl-C to stop.",
        layout.config.display(),
        at.etcd,
        layout.logs.display(),
        layout.pids.display(),
        layout.config.display(),
        layout.root.display(),
        supervise::AGENT_RESTART_MIN.as_secs(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_the_gateway_and_the_token_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::create(dir.path()).expect("layout");
        let at = Endpoints {
            api: "https://127.0.0.1:8551",
            scheduler: "https://127.0.0.1:8085",
            gateway: true,
            etcd: "http://127.0.0.1:2379",
            dns: Dns::At("127.0.0.1:40123".parse().expect("addr")),
            domain: "cluster.local.dev",
        };
        let text = summary(&layout, &at, 2, 0, &HomeConfig::NoHome);
        assert!(
            text.starts_with("persys dev cluster is up: 2 node(s) Active"),
            "{text}"
        );
        assert!(
            text.contains("https://127.0.0.1:8551 (gateway; admin token in"),
            "{text}"
        );
        assert!(
            text.contains("scheduler:      https://127.0.0.1:8085"),
            "{text}"
        );
        assert!(
            text.contains("DNS:            127.0.0.1:40123 (UDP and TCP; zone cluster.local.dev)"),
            "{text}"
        );
        assert!(
            text.contains("dig @127.0.0.1 -p 40123 hello.cluster.local.dev"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "pids:           {}/<child>.pid",
                layout.pids.display()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "persys node join-command --data-dir {}",
                layout.root.display()
            )),
            "{text}"
        );
        assert!(text.ends_with("Press Ctrl-C to stop."), "{text}");
        let direct = Endpoints {
            api: "https://127.0.0.1:8085",
            gateway: false,
            ..at
        };
        let direct_text = summary(&layout, &direct, 1, 0, &HomeConfig::NoHome);
        assert!(direct_text.contains("no gateway"));
        let no_dns = Endpoints {
            dns: Dns::Off,
            ..direct
        };
        let text = summary(&layout, &no_dns, 1, 0, &HomeConfig::NoHome);
        assert!(!text.contains("DNS:") && !text.contains("dig "), "{text}");
        assert!(summary(&layout, &direct, 0, 1000, &HomeConfig::NoHome)
            .starts_with("persys dev cluster is up: 1000 node(s) Active (1000 simulated)"));
    }
}
