//! The gateway of `persys dev`: started after the scheduler, ready once it answers
//! `/readyz` and has written the admin token the client config carries.

use super::child::Stage;
use super::layout::Layout;
use super::{net, Cluster, Flow};
use crate::client::ApiClient;
use crate::config::{self, Config};
use anyhow::{bail, Context};
use std::path::Path;

impl Cluster<'_> {
    /// Start the gateway, wait until it is ready and has written the admin token, and
    /// return the client config through it (`None` if interrupted).
    pub(super) async fn start_gateway(
        &mut self,
        bin: &Path,
        etcd_endpoints: &str,
    ) -> anyhow::Result<Option<config::ConfigFile>> {
        let (args, layout) = (self.args, self.layout);
        let port = args.gateway_port;
        crate::output::say(&format!("starting persys-gateway on 127.0.0.1:{port}"));
        let admin_token = layout.admin_token();
        let mut gateway_args = vec![
            "--listen".to_string(),
            format!("127.0.0.1:{port}"),
            "--scheduler-url".into(),
            format!("https://127.0.0.1:{}", args.scheduler_port),
            "--scheduler-data-dir".into(),
            layout.scheduler.display().to_string(),
            "--etcd-endpoints".into(),
            etcd_endpoints.to_string(),
            "--admin-token-file".into(),
            admin_token.display().to_string(),
        ];
        if let Some(pki) = &self.etcd_pki {
            gateway_args.extend(pki.client_flags(persys_certs::Role::Gateway));
        }
        self.sup
            .spawn("gateway", Stage::Gateway, bin, &gateway_args, &[], "")?;
        let ca_path = layout.ca_cert();
        let flow = self
            .wait_for("persys-gateway", || async {
                read_token(&admin_token).is_some() && net::gateway_ready(&ca_path, port).await
            })
            .await?;
        if let Flow::Interrupted = flow {
            return Ok(None);
        }
        let token = read_token(&admin_token)
            .with_context(|| format!("cannot read {}", admin_token.display()))?;
        let file = layout.gateway_client_config(port, &token);
        check_admin_token(&file, layout, &admin_token).await?;
        Ok(Some(file))
    }
}

/// The token in a token file, if it has one yet (the gateway may be writing it).
fn read_token(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Fail clearly when the gateway refuses the admin token of an earlier run (etcd was
/// reset, or the token revoked) instead of timing out waiting for the agents.
async fn check_admin_token(
    file: &config::ConfigFile,
    layout: &Layout,
    token_path: &Path,
) -> anyhow::Result<()> {
    let client = ApiClient::from_config(&Config {
        path: layout.config.clone(),
        file: file.clone(),
    })?;
    match client.get_json("/nodes").await {
        Err(e) if e.exit_code() == 3 => bail!(
            "the gateway refuses the admin token in {} ({e}); it is from an earlier cluster \
             or was revoked: delete the file and start `persys dev` again",
            token_path.display()
        ),
        _ => Ok(()),
    }
}
