//! `persys policy get|set -f FILE`: the cluster's admission policy
//! (`GET`/`PUT /cluster/policy`).

use super::Ctx;
use crate::output::{print_data, say, Format};
use anyhow::Context;
use persys_proto::ClusterPolicy;
use std::io::Read;
use std::path::Path;

/// `persys policy get`: as YAML for people, or `-o json|yaml` as the server sent it.
pub async fn get(ctx: &Ctx) -> anyhow::Result<()> {
    let raw = ctx.client.get_json("/cluster/policy").await?;
    print_data(data_format(ctx.format), &raw);
    Ok(())
}

/// `persys policy set -f FILE`: the file is checked here first (unknown keys, paths),
/// so a mistake is reported before anything is sent.
pub async fn set(ctx: &Ctx, file: &Path) -> anyhow::Result<()> {
    let text = read(file)?;
    let policy = parse(&text).with_context(|| format!("{} is not a policy", file.display()))?;
    let body = serde_json::to_vec(&policy).context("encoding the policy")?;
    let answer = ctx.client.put_json("/cluster/policy", body).await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &answer);
    } else {
        say("cluster policy set; it applies to workloads created from now on");
    }
    Ok(())
}

fn data_format(f: Format) -> Format {
    if f.is_data() {
        f
    } else {
        Format::Yaml
    }
}

fn read(file: &Path) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the policy from stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

/// A policy from JSON or YAML (JSON is YAML), checked.
pub fn parse(text: &str) -> anyhow::Result<ClusterPolicy> {
    let policy: ClusterPolicy = serde_yaml_ng::from_str(text)?;
    policy.validate()?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_policies_parse_and_typos_are_refused() {
        let p = parse(
            "allowedHostPaths:\n  - prefix: /tmp/persys-x\n    mode: ro\nallowHostNetwork: true\n",
        )
        .expect("yaml");
        assert_eq!(p.allowed_host_paths[0].prefix, "/tmp/persys-x");
        assert!(p.allow_host_network);
        let p = parse(r#"{"allowPrivileged": true}"#).expect("json");
        assert!(p.allow_privileged);
        assert!(parse("allowPrivilege: true\n").is_err());
        assert!(parse("allowedHostPaths: [{prefix: /var/run}]\n").is_err());
    }
}
