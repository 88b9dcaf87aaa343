//! What `persys dev` prints once the cluster is up.

use super::layout::{HomeConfig, Layout};

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
    format!(
        "persys dev cluster is up: {nodes} node(s) Active{simulated}\n\
         \x20 API endpoint:   {api_line}\n\
         \x20 client config:  {}{home_line}\n\
         \x20 etcd:           {}\n\
         \x20 logs:           {}\n\
         \n\
         \x20 export PERSYS_CONFIG={}\n\
         \x20 persys run --name hello --wait busybox:local -- sh -c 'echo hello; sleep 3600'\n\
         \x20 persys ps\n\
         \n\
         Press Ctrl-C to stop.",
        layout.config.display(),
        at.etcd,
        layout.logs.display(),
        layout.config.display(),
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
        let direct = Endpoints {
            api: "https://127.0.0.1:8085",
            gateway: false,
            ..at
        };
        assert!(summary(&layout, &direct, 1, 0, &HomeConfig::NoHome).contains("no gateway"));
        assert!(summary(&layout, &direct, 0, 1000, &HomeConfig::NoHome)
            .starts_with("persys dev cluster is up: 1000 node(s) Active (1000 simulated)"));
    }
}
