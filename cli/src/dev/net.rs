//! Ports and readiness probes of `persys dev`.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Two distinct free ports on 127.0.0.1, none of them in `avoid` (the ports the
/// cluster's own flags name, which are free now but taken later).
pub fn two_free_ports(avoid: &[u16]) -> std::io::Result<(u16, u16)> {
    // Above the kernel's ephemeral range when there is room (below it otherwise): a
    // port from `bind(0)` is from that range, where every outbound connection's local
    // port comes from too, and one of those can take it between the release here and
    // etcd's own bind. (Below the range is where the test suite reserves its ports.)
    let (low, high) = ephemeral_range();
    let (from, to) = if high < 64_000 {
        (high + 1, u16::MAX)
    } else {
        (1_025u16.max(low.saturating_sub(4_000)), low)
    };
    let span = u32::from(to.saturating_sub(from)).max(1);
    // A start that differs per process, so two dev clusters starting together do not
    // probe in step.
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    // Every listener stays open until the end, so each bind gets a new port.
    let mut held = Vec::new();
    let mut found = Vec::new();
    for i in 0..512u32 {
        if found.len() == 2 {
            break;
        }
        let port = from + ((seed.wrapping_add(i.wrapping_mul(7919))) % span) as u16;
        if avoid.contains(&port) || found.contains(&port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            found.push(port);
            held.push(l);
        }
    }
    while found.len() < 2 {
        if held.len() > 64 {
            return Err(std::io::Error::other(
                "no free port outside the planned ones",
            ));
        }
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if !avoid.contains(&port) && !found.contains(&port) {
            found.push(port);
        }
        held.push(l);
    }
    Ok((found[0], found[1]))
}

/// The kernel's ephemeral port range, or Linux's default when it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// The ports the cluster will listen on, named by the flag that sets them; refuses
/// overflow and two listeners on one port. `gateway` is `None` when no gateway runs.
pub fn plan_ports(
    scheduler: u16,
    bootstrap: u16,
    gateway: Option<u16>,
    agent_base: u16,
    agents: u16,
) -> Result<Vec<(String, u16)>, String> {
    let mut plan = vec![
        ("--scheduler-port".to_string(), scheduler),
        ("--bootstrap-port".to_string(), bootstrap),
    ];
    if let Some(port) = gateway {
        plan.push(("--gateway-port".to_string(), port));
    }
    for i in 0..agents {
        let port = agent_base.checked_add(i).ok_or_else(|| {
            format!("--agent-port {agent_base} + {agents} agents exceeds port 65535")
        })?;
        plan.push((format!("--agent-port (node-{})", i + 1), port));
    }
    for (i, (name, port)) in plan.iter().enumerate() {
        if let Some((other, _)) = plan[..i].iter().find(|(_, p)| p == port) {
            return Err(format!("{name} and {other} both use port {port}"));
        }
        if *port == 0 {
            return Err(format!("{name} must not be 0"));
        }
    }
    Ok(plan)
}

/// Fail with the flag to change when a planned port is taken on 127.0.0.1.
pub fn ensure_free(plan: &[(String, u16)]) -> Result<(), String> {
    for (name, port) in plan {
        if TcpListener::bind(("127.0.0.1", *port)).is_err() {
            return Err(format!(
                "port {port} is already in use on 127.0.0.1; pick another with {}",
                name.split(' ').next().unwrap_or(name)
            ));
        }
    }
    Ok(())
}

/// An HTTPS client of the etcd `pki` (its CA, the scheduler's client certificate).
pub fn etcd_client(pki: &persys_certs::etcd::EtcdPki) -> anyhow::Result<reqwest::Client> {
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
    };
    let client = pki.client(persys_certs::Role::Scheduler);
    let tls = persys_certs::client_config(
        &read(pki.ca_cert())?,
        Some((&read(client.cert)?, &read(client.key)?)),
        persys_certs::Expected::role(persys_certs::Role::Etcd),
    )?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()?)
}

/// Whether etcd answers `GET /health` with `"health":"true"`.
pub async fn etcd_healthy(http: &reqwest::Client, endpoint: &str) -> bool {
    let url = format!("{}/health", endpoint.trim_end_matches('/'));
    match http.get(url).timeout(PROBE_TIMEOUT).send().await {
        Ok(r) if r.status().is_success() => r
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v.get("health").and_then(|h| h.as_str()) == Some("true")),
        _ => false,
    }
}

/// Whether the scheduler's bootstrap port answers `GET /healthz` over TLS checked
/// against the cluster CA in `ca_path`.
pub async fn bootstrap_healthy(ca_path: &Path, port: u16) -> bool {
    tls_get_ok(ca_path, port, "/healthz").await
}

/// Whether the gateway answers `GET /readyz` (a scheduler answers it and its token
/// cache is loaded) over TLS checked against the cluster CA.
pub async fn gateway_ready(ca_path: &Path, port: u16) -> bool {
    tls_get_ok(ca_path, port, "/readyz").await
}

/// Whether `GET https://127.0.0.1:<port><path>` answers 2xx, the server checked
/// against the CA in `ca_path`.
async fn tls_get_ok(ca_path: &Path, port: u16, path: &str) -> bool {
    let Ok(ca) = std::fs::read_to_string(ca_path) else {
        return false;
    };
    let Ok(tls) = persys_certs::client_config(
        &ca,
        None,
        persys_certs::Expected::Roles(vec![
            persys_certs::Role::Gateway,
            persys_certs::Role::Scheduler,
        ]),
    ) else {
        return false;
    };
    let Ok(http) = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(PROBE_TIMEOUT)
        .build()
    else {
        return false;
    };
    http.get(format!("https://127.0.0.1:{port}{path}"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_plan_one_per_agent() {
        let plan = plan_ports(8085, 8084, Some(8551), 8080, 3).expect("valid");
        let ports: Vec<u16> = plan.iter().map(|(_, p)| *p).collect();
        assert_eq!(ports, [8085, 8084, 8551, 8080, 8081, 8082]);
        assert_eq!(
            plan_ports(8085, 8084, None, 8080, 1).expect("valid").len(),
            3
        );
    }

    #[test]
    fn agent_range_overlapping_the_scheduler_is_refused() {
        let e = plan_ports(8085, 8084, None, 8083, 3).expect_err("overlap");
        assert!(e.contains("8084"), "{e}");
        let e = plan_ports(8085, 8084, Some(8080), 8080, 1).expect_err("overlap");
        assert!(e.contains("--gateway-port"), "{e}");
    }

    #[test]
    fn agent_range_past_65535_is_refused() {
        assert!(plan_ports(8085, 8084, None, 65535, 2).is_err());
    }

    #[test]
    fn free_ports_avoid_the_planned_ones() {
        let (a, b) = two_free_ports(&[]).expect("ports");
        assert_ne!(a, b);
        let (c, d) = two_free_ports(&[a, b]).expect("ports");
        assert!(![a, b].contains(&c) && ![a, b].contains(&d));
    }

    #[test]
    fn taken_port_names_the_flag() {
        let held = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = held.local_addr().expect("addr").port();
        let e = ensure_free(&[("--scheduler-port".into(), port)]).expect_err("taken");
        assert!(e.contains("--scheduler-port"), "{e}");
    }
}
