//! `build:` through the engine: the context directory sent as a tar (the engine
//! builds; no registry and no builder on the node beyond it).

use super::create::inside;
use super::{ComposeEngineError, ProjectRef};
use bollard::image::BuildImageOptions;
use futures::StreamExt;
use persys_proto::compose::Build;
use std::collections::HashMap;
use std::path::Path;

/// Largest build context sent to the engine.
const MAX_CONTEXT_BYTES: u64 = 512 * 1024 * 1024;

/// The context directory as a tar (symbolic links kept as links, never followed, so a
/// link cannot pull in the node's files).
fn context_tar(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir)?;
    let bytes = builder.into_inner()?;
    if bytes.len() as u64 > MAX_CONTEXT_BYTES {
        return Err(std::io::Error::other(format!(
            "the build context is {} bytes; at most {MAX_CONTEXT_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Build `service`'s image from `dir` and tag it `tag`.
pub(super) async fn build(
    docker: &bollard::Docker,
    p: &ProjectRef,
    service: &str,
    dir: &Path,
    b: &Build,
    tag: &str,
) -> Result<(), ComposeEngineError> {
    let failed = |message: String| ComposeEngineError::Build {
        service: service.to_string(),
        message,
    };
    let context = inside(dir, &b.context)?;
    let tar = tokio::task::spawn_blocking(move || context_tar(&context))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("reading the build context: {e}")))?;
    let mut labels = p.labels();
    labels.insert(persys_proto::labels::SERVICE.into(), service.to_string());
    let options = BuildImageOptions {
        dockerfile: b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into()),
        t: tag.to_string(),
        rm: true,
        forcerm: true,
        buildargs: b
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>(),
        labels,
        ..Default::default()
    };
    let mut progress = docker.build_image(options, None, Some(tar.into()));
    while let Some(step) = progress.next().await {
        match step {
            Ok(info) => {
                if let Some(error) = info.error {
                    return Err(failed(error.trim().to_string()));
                }
                if let Some(line) = info
                    .stream
                    .as_deref()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                {
                    tracing::debug!(service, line, "build");
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => return Err(failed(error)),
            Err(e) => return Err(failed(e.to_string())),
        }
    }
    Ok(())
}
