//! A Compose project's engine objects over the Docker API: one bridge network per
//! generation (services find each other by name), named volumes per workload (kept
//! across generations, so data outlives a redeploy), images built from the project's
//! directory, and each service's containers, started in dependency order.
//!
//! Every object carries the persys labels (workload, generation, node, and for
//! containers service and replica), and every listing filters on this node, so agents
//! sharing one engine never touch one another's projects.
//!
//! - [`create`]: a service replica's container settings
//! - [`build`]: `build:` through the engine (the context sent as a tar)
//! - [`wait`]: `depends_on` conditions, followed on the engine's event stream

mod build;
mod create;
mod wait;

use crate::metrics::ContainerOp;
use crate::runtime::docker::{map_err, observed, DockerRuntime};
use crate::runtime::{ContainerRuntime, LogOptions, LogStream, RuntimeError};
use crate::state::container_state;
use bollard::container::{CreateContainerOptions, InspectContainerOptions, ListContainersOptions};
use bollard::errors::Error as BollardError;
use bollard::image::RemoveImageOptions;
use bollard::network::{CreateNetworkOptions, ListNetworksOptions};
use bollard::volume::{CreateVolumeOptions, ListVolumesOptions, RemoveVolumeOptions};
use futures::StreamExt;
use persys_proto::compose::{ComposeProject, ComposeService, DependsCondition};
use persys_proto::{labels, Health, ServiceState, WorkloadStatus};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

/// Why a project operation failed; the message is the engine's, the build's or the
/// dependency's.
#[derive(Debug, thiserror::Error)]
pub enum ComposeEngineError {
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] RuntimeError),
    /// A build failed.
    #[error("building service {service:?}: {message}")]
    Build {
        /// The service.
        service: String,
        /// The builder's message.
        message: String,
    },
    /// A dependency did not reach its condition.
    #[error("service {service:?} waits for {dependency:?}: {message}")]
    Dependency {
        /// The dependent service.
        service: String,
        /// The service depended on.
        dependency: String,
        /// What happened instead.
        message: String,
    },
    /// A path of the project is unusable.
    #[error("{0}")]
    Project(String),
}

/// One generation of a workload's project on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRef {
    /// Workload id.
    pub workload_id: String,
    /// Placement generation.
    pub generation: u64,
    /// This node.
    pub node_id: String,
    /// The workload's name (label `persys.displayName`).
    pub display_name: String,
}

impl ProjectRef {
    /// The project network's name.
    pub fn network(&self) -> String {
        format!("persys-{}-g{}", self.workload_id, self.generation)
    }

    /// A replica's container name.
    pub fn container(&self, service: &str, replica: u32) -> String {
        format!(
            "{}-g{}-{service}-{replica}",
            self.workload_id, self.generation
        )
    }

    /// The engine volume of the project's named volume `name`.
    pub fn volume(&self, name: &str) -> String {
        format!("persys-{}-{name}", self.workload_id)
    }

    /// The tag a built service image gets.
    pub fn image(&self, service: &str) -> String {
        format!(
            "persys-{}-{}:g{}",
            self.workload_id,
            service.to_ascii_lowercase(),
            self.generation
        )
    }

    /// Labels of the generation's objects.
    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (labels::WORKLOAD_ID.into(), self.workload_id.clone()),
            (labels::GENERATION.into(), self.generation.to_string()),
            (labels::NODE_ID.into(), self.node_id.clone()),
            (labels::DISPLAY_NAME.into(), self.display_name.clone()),
            (labels::MANAGED.into(), "true".into()),
        ])
    }
}

/// The projects of one node on one engine.
#[derive(Debug, Clone)]
pub struct ComposeEngine {
    runtime: DockerRuntime,
    node_id: String,
}

/// A project container as listed.
#[derive(Debug, Clone)]
struct Member {
    id: String,
    service: String,
    generation: u64,
}

impl ComposeEngine {
    /// The projects of node `node_id` on `runtime`'s engine.
    pub fn new(runtime: DockerRuntime, node_id: String) -> Self {
        Self { runtime, node_id }
    }

    fn docker(&self) -> &bollard::Docker {
        self.runtime.client()
    }

    fn filters(
        &self,
        workload_id: Option<&str>,
        generation: Option<u64>,
    ) -> HashMap<String, Vec<String>> {
        let mut label = vec![format!("{}={}", labels::NODE_ID, self.node_id)];
        if let Some(w) = workload_id {
            label.push(format!("{}={w}", labels::WORKLOAD_ID));
        }
        if let Some(g) = generation {
            label.push(format!("{}={g}", labels::GENERATION));
        }
        HashMap::from([("label".to_string(), label)])
    }

    /// This node's project containers (of one workload and generation when given).
    async fn members(
        &self,
        workload_id: Option<&str>,
        generation: Option<u64>,
    ) -> Result<Vec<(String, Member)>, ComposeEngineError> {
        let mut filters = self.filters(workload_id, generation);
        if let Some(l) = filters.get_mut("label") {
            l.push(labels::SERVICE.to_string());
        }
        let listed = self
            .docker()
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            }))
            .await
            .map_err(|e| map_err(e, "containers"))?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                let l = c.labels.unwrap_or_default();
                let workload = l.get(labels::WORKLOAD_ID)?.clone();
                Some((
                    workload,
                    Member {
                        id: c.id?,
                        service: l.get(labels::SERVICE)?.clone(),
                        generation: l.get(labels::GENERATION)?.parse().ok()?,
                    },
                ))
            })
            .collect())
    }

    /// `(workload id, generation)` of every project with containers on this node.
    pub async fn projects(&self) -> Result<Vec<(String, u64)>, ComposeEngineError> {
        let mut found: Vec<(String, u64)> = self
            .members(None, None)
            .await?
            .into_iter()
            .map(|(w, m)| (w, m.generation))
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// The generations of a workload's project on this node.
    pub async fn generations(&self, workload_id: &str) -> Result<Vec<u64>, ComposeEngineError> {
        let mut found: Vec<u64> = self
            .members(Some(workload_id), None)
            .await?
            .into_iter()
            .map(|(_, m)| m.generation)
            .collect();
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// Bring one generation up (idempotent: what exists is kept and started, what is
    /// missing is made). The services' states after.
    pub async fn up(
        &self,
        p: &ProjectRef,
        project: &ComposeProject,
        dir: Option<&Path>,
    ) -> Result<Vec<ServiceState>, ComposeEngineError> {
        self.ensure_network(p).await?;
        for v in &project.volumes {
            self.ensure_volume(p, v).await?;
        }
        for service in &project.services {
            self.wait_dependencies(p, project, service).await?;
            let image = match &service.build {
                Some(b) => {
                    let dir = dir.ok_or_else(|| {
                        ComposeEngineError::Project("build: the project has no directory".into())
                    })?;
                    let tag = p.image(&service.name);
                    build::build(self.docker(), p, &service.name, dir, b, &tag).await?;
                    tag
                }
                None => service.image.clone().unwrap_or_default(),
            };
            let env = create::environment(service, dir).await?;
            for replica in 0..service.replicas {
                self.ensure_replica(p, service, replica, &image, &env, dir)
                    .await?;
            }
        }
        let mut states = self.state(&p.workload_id, p.generation).await?;
        // A service scaled to zero has no container to show; list it all the same.
        for s in &project.services {
            if !states.iter().any(|st| st.name == s.name) {
                states.push(ServiceState {
                    name: s.name.clone(),
                    status: WorkloadStatus::Exited,
                    container_ids: Vec::new(),
                    exit_code: Some(0),
                    health: None,
                    reason: Some("no replicas".into()),
                });
            }
        }
        Ok(states)
    }

    async fn ensure_network(&self, p: &ProjectRef) -> Result<(), ComposeEngineError> {
        let name = p.network();
        match self
            .docker()
            .create_network(CreateNetworkOptions {
                name: name.clone(),
                driver: "bridge".to_string(),
                labels: p.labels(),
                check_duplicate: true,
                ..Default::default()
            })
            .await
        {
            Ok(_) => Ok(()),
            // Made by an earlier attempt of this generation.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(map_err(e, &name).into()),
        }
    }

    async fn ensure_volume(&self, p: &ProjectRef, name: &str) -> Result<(), ComposeEngineError> {
        let mut labels = p.labels();
        // Shared by every generation of the workload.
        labels.remove(persys_proto::labels::GENERATION);
        let engine_name = p.volume(name);
        self.docker()
            .create_volume(CreateVolumeOptions {
                name: engine_name.clone(),
                labels,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| map_err(e, &engine_name).into())
    }

    async fn ensure_replica(
        &self,
        p: &ProjectRef,
        service: &ComposeService,
        replica: u32,
        image: &str,
        env: &[String],
        dir: Option<&Path>,
    ) -> Result<String, ComposeEngineError> {
        let name = p.container(&service.name, replica);
        match self.runtime.inspect(&name).await {
            Ok(o) if o.labels.get(labels::NODE_ID) == Some(&p.node_id) => {
                if o.status != crate::runtime::EngineStatus::Running {
                    crate::metrics::container_op(ContainerOp::Start, self.runtime.start(&o.id))
                        .await?;
                }
                return Ok(o.id);
            }
            Ok(_) => {
                return Err(ComposeEngineError::Project(format!(
                    "container name {name:?} is held by a container of another node"
                )))
            }
            Err(RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let config = create::config(p, service, replica, image, env, dir)?;
        let created = self
            .docker()
            .create_container(
                Some(CreateContainerOptions {
                    name: name.clone(),
                    platform: None,
                }),
                config,
            )
            .await;
        let id = match created {
            Ok(c) => c.id,
            Err(BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            }) => {
                return Err(ComposeEngineError::Engine(RuntimeError::Engine(format!(
                    "service {:?}: image {image:?} is not present on this node and cannot be pulled here: {message}",
                    service.name
                ))))
            }
            // Made meanwhile by another attempt: use it.
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => self.runtime.inspect(&name).await?.id,
            Err(e) => return Err(map_err(e, &name).into()),
        };
        crate::metrics::container_op(ContainerOp::Start, self.runtime.start(&id))
            .await
            .map_err(|e| {
                ComposeEngineError::Engine(RuntimeError::Engine(format!(
                    "service {:?} did not start: {e}",
                    service.name
                )))
            })?;
        Ok(id)
    }

    async fn wait_dependencies(
        &self,
        p: &ProjectRef,
        project: &ComposeProject,
        service: &ComposeService,
    ) -> Result<(), ComposeEngineError> {
        for d in &service.depends_on {
            if d.condition == DependsCondition::Started {
                continue;
            }
            let ids: Vec<String> = self
                .members(Some(&p.workload_id), Some(p.generation))
                .await?
                .into_iter()
                .filter(|(_, m)| m.service == d.service)
                .map(|(_, m)| m.id)
                .collect();
            let limit = project
                .service(&d.service)
                .map_or(wait::DEFAULT_LIMIT, wait::limit_for);
            wait::until(self.docker(), &ids, d.condition, limit)
                .await
                .map_err(|message| ComposeEngineError::Dependency {
                    service: service.name.clone(),
                    dependency: d.service.clone(),
                    message,
                })?;
        }
        Ok(())
    }

    /// Each service's state in one generation, from its containers (one list, one
    /// inspect per container).
    pub async fn state(
        &self,
        workload_id: &str,
        generation: u64,
    ) -> Result<Vec<ServiceState>, ComposeEngineError> {
        let members = self.members(Some(workload_id), Some(generation)).await?;
        let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, m) in members {
            by_service.entry(m.service).or_default().push(m.id);
        }
        let mut states = Vec::with_capacity(by_service.len());
        for (name, ids) in by_service {
            let mut state = ServiceState {
                name,
                status: WorkloadStatus::Running,
                container_ids: Vec::with_capacity(ids.len()),
                exit_code: None,
                health: None,
                reason: None,
            };
            for id in ids {
                let inspected = match self
                    .docker()
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await
                {
                    Ok(i) => i,
                    Err(BollardError::DockerResponseServerError {
                        status_code: 404, ..
                    }) => continue,
                    Err(e) => return Err(map_err(e, &id).into()),
                };
                let health = inspected
                    .state
                    .as_ref()
                    .and_then(|s| s.health.as_ref())
                    .and_then(|h| h.status)
                    .and_then(|s| Health::from_engine(s.as_ref()));
                let o = observed(inspected);
                let replica = container_state(&o, false, None, chrono::Utc::now());
                state.container_ids.push(o.id);
                state.health = worst(state.health, health);
                if replica.exit_code.is_some() {
                    state.exit_code = replica.exit_code;
                }
                if state.status == WorkloadStatus::Running
                    && replica.status != WorkloadStatus::Running
                {
                    state.status = replica.status;
                    state.reason = replica.reason;
                }
            }
            if state.health == Some(Health::Unhealthy) && state.reason.is_none() {
                state.reason = Some("health check failing".into());
            }
            states.push(state);
        }
        Ok(states)
    }

    /// Stop every container of one generation, dependents first.
    pub async fn stop(
        &self,
        workload_id: &str,
        generation: u64,
        timeout: Duration,
    ) -> Result<(), ComposeEngineError> {
        let stops = self
            .members(Some(workload_id), Some(generation))
            .await?
            .into_iter()
            .map(|(_, m)| {
                let runtime = self.runtime.clone();
                async move {
                    match runtime.stop(&m.id, timeout).await {
                        Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
            });
        for r in futures::future::join_all(stops).await {
            r?;
        }
        Ok(())
    }

    /// Remove one generation (or every generation) of a workload's project: its
    /// containers, network and built images; its volumes too when `volumes` (delete).
    pub async fn down(
        &self,
        workload_id: &str,
        generation: Option<u64>,
        volumes: bool,
    ) -> Result<(), ComposeEngineError> {
        for (_, m) in self.members(Some(workload_id), generation).await? {
            match crate::metrics::container_op(ContainerOp::Remove, self.runtime.remove(&m.id))
                .await
            {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let filters = self.filters(Some(workload_id), generation);
        let networks = self
            .docker()
            .list_networks(Some(ListNetworksOptions {
                filters: filters.clone(),
            }))
            .await
            .map_err(|e| map_err(e, "networks"))?;
        for n in networks.into_iter().filter_map(|n| n.name) {
            match self.docker().remove_network(&n).await {
                Ok(())
                | Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => return Err(map_err(e, &n).into()),
            }
        }
        let images = self
            .docker()
            .list_images(Some(bollard::image::ListImagesOptions {
                filters: filters.clone(),
                ..Default::default()
            }))
            .await
            .map_err(|e| map_err(e, "images"))?;
        for i in images {
            let removed = self
                .docker()
                .remove_image(
                    &i.id,
                    Some(RemoveImageOptions {
                        force: true,
                        noprune: false,
                    }),
                    None,
                )
                .await;
            if let Err(e) = removed {
                // A built image is only a cache; one still in use stays.
                tracing::debug!(image = %i.id, error = %e, "built image not removed");
            }
        }
        if volumes {
            let mut filters = self.filters(Some(workload_id), None);
            filters.remove("generation");
            let listed = self
                .docker()
                .list_volumes(Some(ListVolumesOptions { filters }))
                .await
                .map_err(|e| map_err(e, "volumes"))?;
            for v in listed.volumes.unwrap_or_default() {
                match self
                    .docker()
                    .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
                    .await
                {
                    Ok(())
                    | Err(BollardError::DockerResponseServerError {
                        status_code: 404, ..
                    }) => {}
                    Err(e) => return Err(map_err(e, &v.name).into()),
                }
            }
        }
        Ok(())
    }

    /// Output of one generation's containers: one service's, or all of them; with
    /// several containers each line is prefixed `service-replica | `, as `docker
    /// compose logs` does.
    pub async fn logs(
        &self,
        workload_id: &str,
        generation: u64,
        service: Option<&str>,
        options: LogOptions,
    ) -> Result<LogStream, ComposeEngineError> {
        let mut members: Vec<Member> = self
            .members(Some(workload_id), Some(generation))
            .await?
            .into_iter()
            .map(|(_, m)| m)
            .filter(|m| service.is_none_or(|s| m.service == s))
            .collect();
        if members.is_empty() {
            return Err(ComposeEngineError::Engine(RuntimeError::NotFound(
                service.map_or_else(|| workload_id.to_string(), str::to_string),
            )));
        }
        members.sort_by(|a, b| a.service.cmp(&b.service));
        if members.len() == 1 {
            return Ok(self.runtime.logs(&members[0].id, options));
        }
        let streams = members.into_iter().enumerate().map(|(i, m)| {
            let prefix = format!("{}-{i} | ", m.service);
            let stream = self.runtime.logs(&m.id, options);
            stream
                .map(move |chunk| {
                    chunk.map(|bytes| {
                        let text = String::from_utf8_lossy(&bytes);
                        let mut out = String::with_capacity(text.len() + prefix.len());
                        for line in text.split_inclusive('\n') {
                            out.push_str(&prefix);
                            out.push_str(line);
                        }
                        bytes::Bytes::from(out)
                    })
                })
                .boxed()
        });
        Ok(futures::stream::select_all(streams).boxed())
    }
}

/// The worse of two healths (unhealthy over starting over healthy).
fn worst(a: Option<Health>, b: Option<Health>) -> Option<Health> {
    let rank = |h: Option<Health>| match h {
        None => 0,
        Some(Health::Healthy) => 1,
        Some(Health::Starting) => 2,
        Some(Health::Unhealthy) => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_carry_the_workload_and_generation() {
        let p = ProjectRef {
            workload_id: "w1".into(),
            generation: 3,
            node_id: "n".into(),
            display_name: "shop".into(),
        };
        assert_eq!(p.network(), "persys-w1-g3");
        assert_eq!(p.container("web", 1), "w1-g3-web-1");
        assert_eq!(p.volume("data"), "persys-w1-data");
        assert_eq!(p.image("Web"), "persys-w1-web:g3");
    }

    #[test]
    fn the_worst_health_wins() {
        use Health::*;
        assert_eq!(worst(Some(Healthy), Some(Unhealthy)), Some(Unhealthy));
        assert_eq!(worst(Some(Starting), Some(Healthy)), Some(Starting));
        assert_eq!(worst(None, Some(Healthy)), Some(Healthy));
    }
}
