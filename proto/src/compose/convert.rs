//! From the `docker-compose-types` model (already key-checked) to [`ComposeProject`]:
//! values checked and normalised, `depends_on` resolved into a start order.

use super::model::*;
use super::{ComposeError, ProjectDir};
use crate::workload::{Resources, RestartPolicy};
use docker_compose_types as dc;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Most copies of one service.
pub const MAX_REPLICAS: i64 = 100;

pub(super) fn project(
    compose: dc::Compose,
    dir: ProjectDir,
    vars: &BTreeMap<String, String>,
) -> Result<ComposeProject, ComposeError> {
    let volumes: Vec<String> = compose.volumes.0.keys().cloned().collect();
    for v in &volumes {
        if !is_name(v) {
            return Err(ComposeError::new(
                format!("volumes.{v}"),
                "a volume name is letters, digits, '.', '_' or '-', starting with a letter or digit",
            ));
        }
    }
    let mut services = Vec::with_capacity(compose.services.0.len());
    for (name, service) in compose.services.0 {
        let path = format!("services.{name}");
        if !is_name(&name) {
            return Err(ComposeError::new(
                path,
                "a service name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit",
            ));
        }
        let service =
            service.ok_or_else(|| ComposeError::new(&path, "needs `image` or `build`"))?;
        services.push(self::service(name, service, &path, dir, vars, &volumes)?);
    }
    check_dependencies(&services)?;
    Ok(ComposeProject {
        services: start_order(services)?,
        volumes,
    })
}

/// A service or volume name: 1-63 letters, digits, `.`, `_` or `-`, starting with a
/// letter or digit (it names containers and DNS aliases).
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

fn service(
    name: String,
    s: dc::Service,
    path: &str,
    dir: ProjectDir,
    vars: &BTreeMap<String, String>,
    volumes: &[String],
) -> Result<ComposeService, ComposeError> {
    let key = |k: &str| format!("{path}.{k}");
    let needs_dir = |k: &str| -> Result<(), ComposeError> {
        match dir {
            ProjectDir::Present => Ok(()),
            ProjectDir::None => Err(ComposeError::new(
                key(k),
                "needs the project's directory: deploy it with localPath or git-compose",
            )),
        }
    };
    let image = s.image.filter(|i| !i.trim().is_empty());
    if let Some(image) = &image {
        if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ComposeError::new(
                key("image"),
                format!("{image:?} is not a valid image reference"),
            ));
        }
    }
    let build = match s.build_ {
        None => None,
        Some(b) => {
            needs_dir("build")?;
            Some(build(b, &key("build"))?)
        }
    };
    if image.is_none() && build.is_none() {
        return Err(ComposeError::new(path, "needs `image` or `build`"));
    }
    let env_files = match s.env_file {
        None => Vec::new(),
        Some(f) => {
            needs_dir("env_file")?;
            let files = match f {
                dc::StringOrList::Simple(f) => vec![f],
                dc::StringOrList::List(l) => l,
            };
            files
                .into_iter()
                .map(|f| inside_project(&f).ok_or_else(|| outside(&key("env_file"), &f)))
                .collect::<Result<_, _>>()?
        }
    };
    let mut mounts = Vec::with_capacity(s.volumes.len());
    for (i, v) in s.volumes.into_iter().enumerate() {
        let k = format!("{}[{i}]", key("volumes"));
        let m = mount(v, &k, volumes)?;
        if matches!(m.source, MountSource::Bind(_)) {
            needs_dir("volumes")?;
        }
        mounts.push(m);
    }
    let (restart, max_restarts) = restart(s.restart.as_deref(), &key("restart"))?;
    let (replicas, limits) = deploy(s.deploy, &key("deploy"))?;
    Ok(ComposeService {
        image,
        build,
        command: s
            .command
            .map(|c| argv(c.into(), &key("command")))
            .transpose()?,
        entrypoint: s
            .entrypoint
            .map(|c| argv(c.into(), &key("entrypoint")))
            .transpose()?,
        environment: environment(s.environment, vars, &key("environment"))?,
        env_files,
        ports: ports(s.ports, &key("ports"))?,
        mounts,
        depends_on: depends_on(s.depends_on, &key("depends_on"))?,
        healthcheck: s
            .healthcheck
            .map(|h| healthcheck(h, &key("healthcheck")))
            .transpose()?
            .flatten(),
        restart,
        max_restarts,
        replicas,
        limits,
        labels: labels(s.labels, &key("labels"))?,
        working_dir: s.working_dir.filter(|w| !w.is_empty()),
        name,
    })
}

/// Either form of a command.
enum Words {
    Line(String),
    List(Vec<String>),
}

impl From<dc::Command> for Words {
    fn from(c: dc::Command) -> Self {
        match c {
            dc::Command::Simple(s) => Self::Line(s),
            dc::Command::Args(v) => Self::List(v),
        }
    }
}

impl From<dc::Entrypoint> for Words {
    fn from(c: dc::Entrypoint) -> Self {
        match c {
            dc::Entrypoint::Simple(s) => Self::Line(s),
            dc::Entrypoint::List(v) => Self::List(v),
        }
    }
}

/// A string is split as a shell would split words (Compose does the same; no shell
/// runs it).
fn argv(words: Words, key: &str) -> Result<Vec<String>, ComposeError> {
    match words {
        Words::List(v) => Ok(v),
        Words::Line(s) => shlex::split(&s)
            .ok_or_else(|| ComposeError::new(key, format!("{s:?} has an unterminated quote"))),
    }
}

fn build(b: dc::BuildStep, key: &str) -> Result<Build, ComposeError> {
    let (context, dockerfile, args) = match b {
        dc::BuildStep::Simple(context) => (context, None, None),
        dc::BuildStep::Advanced(a) => (a.context, a.dockerfile, a.args),
    };
    let context =
        inside_project(&context).ok_or_else(|| outside(&format!("{key}.context"), &context))?;
    if let Some(f) = &dockerfile {
        if inside_project(f).is_none() {
            return Err(outside(&format!("{key}.dockerfile"), f));
        }
    }
    let args = match args {
        None => BTreeMap::new(),
        Some(dc::BuildArgs::Simple(s)) => pairs(std::iter::once(s), &format!("{key}.args"))?,
        Some(dc::BuildArgs::List(l)) => pairs(l.into_iter(), &format!("{key}.args"))?,
        Some(dc::BuildArgs::KvPair(m)) => m.into_iter().collect(),
    };
    Ok(Build {
        context,
        dockerfile,
        args,
    })
}

/// `K=V` entries into a map.
fn pairs(
    items: impl Iterator<Item = String>,
    key: &str,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut map = BTreeMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| ComposeError::new(key, format!("{item:?} is not KEY=VALUE")))?;
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

fn environment(
    env: dc::Environment,
    vars: &BTreeMap<String, String>,
    key: &str,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut out = BTreeMap::new();
    let mut put = |k: String, v: Option<String>| -> Result<(), ComposeError> {
        if k.is_empty() || k.contains('\0') {
            return Err(ComposeError::new(
                key,
                format!("{k:?} is not a variable name"),
            ));
        }
        // A name without a value takes the project's variable of that name, if any.
        if let Some(v) = v.or_else(|| vars.get(&k).cloned()) {
            out.insert(k, v);
        }
        Ok(())
    };
    match env {
        dc::Environment::List(items) => {
            for item in items {
                match item.split_once('=') {
                    Some((k, v)) => put(k.to_string(), Some(v.to_string()))?,
                    None => put(item, None)?,
                }
            }
        }
        dc::Environment::KvPair(map) => {
            for (k, v) in map {
                put(k, v.map(|v| v.to_string()))?;
            }
        }
    }
    Ok(out)
}

fn labels(labels: dc::Labels, key: &str) -> Result<BTreeMap<String, String>, ComposeError> {
    let labels: BTreeMap<String, String> = match labels {
        dc::Labels::List(items) => pairs(items.into_iter(), key)?,
        dc::Labels::Map(m) => m.into_iter().collect(),
    };
    if let Some(k) = labels.keys().find(|k| k.starts_with("persys.")) {
        return Err(ComposeError::new(
            format!("{key}.{k}"),
            "labels starting with \"persys.\" are set by persys",
        ));
    }
    Ok(labels)
}

fn ports(ports: dc::Ports, key: &str) -> Result<Vec<String>, ComposeError> {
    // Long entries were made short before parsing (`super::short_ports`).
    let list: Vec<String> = match ports {
        dc::Ports::Short(list) => list,
        dc::Ports::Long(_) => {
            return Err(ComposeError::new(
                key,
                "long-form entries could not be read",
            ))
        }
    };
    for (i, p) in list.iter().enumerate() {
        check_port(p).map_err(|m| ComposeError::new(format!("{key}[{i}]"), m))?;
    }
    Ok(list)
}

/// `[ip:][host:]container[/proto]` with single ports (no ranges).
fn check_port(p: &str) -> Result<(), String> {
    let (addr, proto) = match p.rsplit_once('/') {
        Some((a, proto)) => (a, proto),
        None => (p, "tcp"),
    };
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(format!("{p:?}: protocol must be tcp, udp or sctp"));
    }
    let parts: Vec<&str> = addr.rsplitn(3, ':').collect();
    let port_ok = |s: &str| s.parse::<u16>().is_ok_and(|n| n > 0);
    let ok = match parts.as_slice() {
        [container] => port_ok(container),
        [container, host] => port_ok(container) && port_ok(host),
        [container, host, _ip] => port_ok(container) && (host.is_empty() || port_ok(host)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} is not [ip:][host:]container[/protocol] with ports 1-65535 (ranges are not supported)"
        ))
    }
}

fn mount(v: dc::Volumes, key: &str, declared: &[String]) -> Result<Mount, ComposeError> {
    let (kind, source, target, read_only) = match v {
        dc::Volumes::Simple(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [target] => (None, *target, None),
                [source, target] => (Some(*source), *target, None),
                [source, target, mode] => (Some(*source), *target, Some(*mode)),
                _ => {
                    return Err(ComposeError::new(
                        key,
                        format!("{s:?} is not source:target[:ro|rw]"),
                    ))
                }
            };
            let read_only = match mode {
                None | Some("rw") => false,
                Some("ro") => true,
                Some(m) => {
                    return Err(ComposeError::new(
                        key,
                        format!("mode {m:?} is not supported; use ro or rw"),
                    ))
                }
            };
            let kind = match source {
                None => "anonymous",
                Some(src) if src.starts_with(['.', '/', '~']) => "bind",
                Some(_) => "volume",
            };
            (
                kind.to_string(),
                source.map(str::to_string),
                target.to_string(),
                read_only,
            )
        }
        dc::Volumes::Advanced(a) => {
            if a.bind.is_some() || a.volume.is_some() || a.tmpfs.is_some() {
                return Err(ComposeError::new(
                    key,
                    "bind, volume and tmpfs options are not supported",
                ));
            }
            let kind = match (a._type.as_str(), a.source.is_some()) {
                ("volume", false) => "anonymous".to_string(),
                (t, _) => t.to_string(),
            };
            (kind, a.source, a.target, a.read_only)
        }
    };
    if !target.starts_with('/') {
        return Err(ComposeError::new(
            key,
            format!("target {target:?} must be an absolute path in the container"),
        ));
    }
    let source = match (kind.as_str(), source) {
        ("anonymous", _) => MountSource::Anonymous,
        ("volume", Some(name)) => {
            if !declared.contains(&name) {
                return Err(ComposeError::new(
                    key,
                    format!("volume {name:?} is not declared under the top-level `volumes`"),
                ));
            }
            MountSource::Volume(name)
        }
        ("bind", Some(path)) => {
            MountSource::Bind(inside_project(&path).ok_or_else(|| outside(key, &path))?)
        }
        (t, _) => {
            return Err(ComposeError::new(
                key,
                format!("mount type {t:?} is not supported; use volume or bind"),
            ))
        }
    };
    Ok(Mount {
        source,
        target,
        read_only,
    })
}

/// `path` made relative to the project directory, if it stays inside it: no absolute
/// path (that would be the node's own files), no `~`, no `..` climbing out.
pub fn inside_project(path: &str) -> Option<String> {
    if path.starts_with('/') || path.starts_with('~') || path.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    })
}

fn outside(key: &str, path: &str) -> ComposeError {
    ComposeError::new(
        key,
        format!("{path:?} is outside the project directory (host paths are not available to projects; use a named volume)"),
    )
}

fn depends_on(deps: dc::DependsOnOptions, key: &str) -> Result<Vec<Dependency>, ComposeError> {
    match deps {
        dc::DependsOnOptions::Simple(list) => Ok(list
            .into_iter()
            .map(|service| Dependency {
                service,
                condition: DependsCondition::Started,
            })
            .collect()),
        dc::DependsOnOptions::Conditional(map) => map
            .into_iter()
            .map(|(service, c)| {
                let condition = match c.condition.as_str() {
                    "" | "service_started" => DependsCondition::Started,
                    "service_healthy" => DependsCondition::Healthy,
                    "service_completed_successfully" => DependsCondition::CompletedSuccessfully,
                    other => {
                        return Err(ComposeError::new(
                            format!("{key}.{service}.condition"),
                            format!("{other:?} is not service_started, service_healthy or service_completed_successfully"),
                        ))
                    }
                };
                Ok(Dependency { service, condition })
            })
            .collect(),
    }
}

fn healthcheck(h: dc::Healthcheck, key: &str) -> Result<Option<HealthCheck>, ComposeError> {
    let test = if h.disable {
        vec!["NONE".to_string()]
    } else {
        match h.test {
            None => return Err(ComposeError::new(format!("{key}.test"), "is required")),
            Some(dc::HealthcheckTest::Single(s)) => vec!["CMD-SHELL".to_string(), s],
            Some(dc::HealthcheckTest::Multiple(v)) => match v.first().map(String::as_str) {
                Some("CMD" | "CMD-SHELL") if v.len() > 1 => v,
                Some("NONE") => v,
                _ => return Err(ComposeError::new(
                    format!("{key}.test"),
                    "must start with \"CMD\", \"CMD-SHELL\" or \"NONE\" followed by the command",
                )),
            },
        }
    };
    let duration = |name: &str, v: Option<String>| -> Result<Option<Duration>, ComposeError> {
        v.map(|s| {
            go_duration(&s).ok_or_else(|| {
                ComposeError::new(
                    format!("{key}.{name}"),
                    format!("{s:?} is not a duration like 10s, 1m30s or 500ms"),
                )
            })
        })
        .transpose()
    };
    let retries = u32::try_from(h.retries)
        .map_err(|_| ComposeError::new(format!("{key}.retries"), "must be 0 or more"))?;
    Ok(Some(HealthCheck {
        test,
        interval: duration("interval", h.interval)?,
        timeout: duration("timeout", h.timeout)?,
        retries: (retries > 0).then_some(retries),
        start_period: duration("start_period", h.start_period)?,
    }))
}

/// Compose's durations (Go's syntax): a sequence of decimal numbers with a unit each,
/// `h`, `m`, `s`, `ms`, `us`, `ns`, e.g. `1m30s`, `1.5s`, `500ms`. No crate parses
/// Go's format exactly (humantime refuses fractions), and it is this small.
pub fn go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).ok()
}

fn restart(r: Option<&str>, key: &str) -> Result<(RestartPolicy, Option<u32>), ComposeError> {
    let r = r.unwrap_or("no");
    if let Some(n) = r.strip_prefix("on-failure:") {
        let n = n.parse::<u32>().map_err(|_| {
            ComposeError::new(key, format!("{r:?}: the retry count must be a number"))
        })?;
        return Ok((RestartPolicy::OnFailure, Some(n)));
    }
    RestartPolicy::parse(r).map(|p| (p, None)).ok_or_else(|| {
        ComposeError::new(
            key,
            format!("{r:?} is not no, always, on-failure[:N] or unless-stopped"),
        )
    })
}

fn deploy(d: Option<dc::Deploy>, key: &str) -> Result<(u32, Resources), ComposeError> {
    let Some(d) = d else {
        return Ok((1, Resources::default()));
    };
    let replicas = match d.replicas {
        None => 1,
        Some(n) if (0..=MAX_REPLICAS).contains(&n) => n as u32,
        Some(n) => {
            return Err(ComposeError::new(
                format!("{key}.replicas"),
                format!("{n} is not 0 to {MAX_REPLICAS}"),
            ))
        }
    };
    let mut limits = Resources::default();
    if let Some(l) = d.resources.and_then(|r| r.limits) {
        if let Some(cpus) = l.cpus {
            limits.cpu = cpus
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|c| c.is_finite() && *c > 0.0 && *c <= 1024.0)
                .map(|c| (c * 1000.0).round() as u64)
                .ok_or_else(|| {
                    ComposeError::new(
                        format!("{key}.resources.limits.cpus"),
                        format!("{cpus:?} is not a number of CPUs like 0.5"),
                    )
                })?;
        }
        if let Some(memory) = l.memory {
            limits.memory = memory_mb(&memory).ok_or_else(|| {
                ComposeError::new(
                    format!("{key}.resources.limits.memory"),
                    format!("{memory:?} is not a size like 512M or 1G"),
                )
            })?;
        }
    }
    Ok((replicas, limits))
}

/// Compose's byte sizes (`512m`, `1G`, `1024k`, `1gb`, plain bytes) in MB, rounded up.
fn memory_mb(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, scale) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let bytes = num
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)?
        * scale as f64;
    Some(((bytes / (1u64 << 20) as f64).ceil() as u64).max(1))
}

fn check_dependencies(services: &[ComposeService]) -> Result<(), ComposeError> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    for s in services {
        for d in &s.depends_on {
            let key = format!("services.{}.depends_on", s.name);
            if d.service == s.name {
                return Err(ComposeError::new(key, "a service cannot depend on itself"));
            }
            let Some(dep) = services.iter().find(|o| o.name == d.service) else {
                let known: Vec<&str> = names.iter().copied().collect();
                return Err(ComposeError::new(
                    key,
                    format!(
                        "unknown service {:?} (services: {})",
                        d.service,
                        known.join(", ")
                    ),
                ));
            };
            if d.condition == DependsCondition::Healthy
                && dep
                    .healthcheck
                    .as_ref()
                    .is_none_or(|h| h.test.first().is_some_and(|t| t == "NONE"))
            {
                return Err(ComposeError::new(
                    format!("{key}.{}", d.service),
                    format!("service_healthy needs a healthcheck on {:?}", d.service),
                ));
            }
        }
    }
    Ok(())
}

/// Services ordered so each comes after what it depends on (declaration order among
/// equals); a cycle is an error naming its services.
fn start_order(mut pending: Vec<ComposeService>) -> Result<Vec<ComposeService>, ComposeError> {
    let mut ordered: Vec<ComposeService> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending.iter().position(|s| {
            s.depends_on
                .iter()
                .all(|d| ordered.iter().any(|o| o.name == d.service))
        });
        match ready {
            Some(i) => ordered.push(pending.remove(i)),
            None => {
                let names: Vec<&str> = pending.iter().map(|s| s.name.as_str()).collect();
                return Err(ComposeError::new(
                    "services",
                    format!("depends_on has a cycle among: {}", names.join(", ")),
                ));
            }
        }
    }
    Ok(ordered)
}
