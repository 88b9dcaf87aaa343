//! persys gateway (`persys-gateway`): the HTTPS front door of a persys cluster.
//!
//! Users authenticate with API tokens (bearer) or client certificates of the cluster
//! CA; each request is authorized by role, rate limited per credential, and forwarded
//! to a scheduler over mTLS with the gateway's own certificate, bodies streamed both
//! ways. See `docs/interfaces.md` for flags and files.
//!
//! - [`config`]: flags. [`pki`]: certificates. [`routes`]: the route table and roles.
//! - [`auth`]: who is calling. [`access`]: request ids, access decisions, metrics.
//! - [`tokens`], [`token_store`], [`token_api`]: API tokens (etcd + in-memory cache).
//! - [`proxy`], [`upstream`], [`body`]: forwarding, failover, request bodies.
//! - [`webhook`]: GitHub pushes redeploy workloads. [`openapi`]: `/openapi.json`.
//! - [`health`], [`metrics`], [`ratelimit`], [`error`].

pub mod access;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod pki;
pub mod proxy;
pub mod ratelimit;
pub mod renew;
pub mod routes;
pub mod token_api;
pub mod token_store;
pub mod tokens;
pub mod upstream;
pub mod webhook;

#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod testutil;

pub use config::Config;
pub use error::StartError;

use axum::extract::{Request, State};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, on, post, MethodFilter, MethodRouter};
use axum::Router;
use ratelimit::RateLimit;
use routes::{Handling, Route};
use std::sync::Arc;
use std::time::Duration;
use token_store::TokenStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use upstream::Upstreams;

/// How often idle rate-limit buckets are forgotten.
const LIMITER_CLEANUP: Duration = Duration::from_secs(60);

/// Everything a request handler needs.
pub struct App {
    /// The schedulers.
    pub upstreams: Arc<Upstreams>,
    /// API tokens (etcd + cache).
    pub tokens: TokenStore,
    /// Per-credential rate limit.
    pub limits: RateLimit,
    /// Failed authentications per source address.
    pub auth_failures: persys_certs::auth_failures::AuthFailures,
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// GitHub webhook secret, if configured.
    pub webhook_secret: Option<Vec<u8>>,
    /// Body size limit of API requests.
    pub max_body_bytes: usize,
    /// Body size limit of webhook deliveries.
    pub webhook_max_body_bytes: usize,
    /// Time allowed for non-streaming upstream calls.
    pub request_timeout: Duration,
    /// How long a request waits for some scheduler to be reachable.
    pub upstream_wait: Duration,
    /// The OpenAPI document (built once).
    pub openapi: serde_json::Value,
    /// Cancelled at shutdown; ends streamed answers.
    pub shutdown: CancellationToken,
}

impl App {
    /// The state for `config`, reaching schedulers with `upstream_tls`. etcd is
    /// connected lazily, so this succeeds while etcd is down.
    pub async fn new(
        config: &Config,
        upstream_tls: rustls::ClientConfig,
        record_key: persys_certs::RecordKey,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, StartError> {
        let metrics = metrics::Metrics::new()
            .map_err(|e| StartError::Config(format!("metrics registry: {e}")))?;
        let upstreams = Arc::new(Upstreams::new(
            &config.scheduler_urls,
            upstream_tls,
            metrics.clone(),
        )?);
        let access = config
            .etcd_access()
            .map_err(|e| StartError::Config(format!("etcd: {e}")))?;
        let tokens = TokenStore::connect(&config.etcd_endpoints, &access, record_key)
            .await
            .map_err(|e| StartError::Config(format!("--etcd-endpoints: {e}")))?;
        Ok(Arc::new(Self {
            upstreams,
            tokens,
            limits: RateLimit::new(config.rate_limit_per_second, config.rate_limit_burst),
            auth_failures: persys_certs::auth_failures::AuthFailures::new(
                config.auth_failure_limit,
                config.auth_failure_window(),
            ),
            metrics,
            webhook_secret: config.webhook_secret()?,
            max_body_bytes: config.max_body_bytes,
            webhook_max_body_bytes: config.webhook_max_body_bytes,
            request_timeout: config.request_timeout(),
            upstream_wait: config.upstream_wait(),
            openapi: openapi::document(),
            shutdown,
        }))
    }
}

fn api_route(route: &'static Route) -> MethodRouter<Arc<App>> {
    match (route.handling, route.method.as_str()) {
        (Handling::Local, "GET") => get(token_api::list),
        (Handling::Local, "POST") => post(token_api::create),
        (Handling::Local, _) => delete(token_api::revoke),
        (Handling::Forward | Handling::Stream, _) => {
            let filter = MethodFilter::try_from(route.method.clone()).unwrap_or(MethodFilter::GET);
            on(filter, move |State(app): State<Arc<App>>, req: Request| {
                proxy::forward(app, route, req)
            })
        }
    }
}

/// The gateway's routes and middleware.
pub fn router(app: Arc<App>) -> Router {
    let mut api = Router::new();
    for route in routes::ROUTES {
        api = api.route(route.path, api_route(route));
    }
    let api = api
        .route_layer(from_fn_with_state(app.clone(), body::limit))
        .route_layer(from_fn_with_state(app.clone(), access::check));
    Router::new()
        .merge(api)
        .route("/webhooks/github", post(webhook::github))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
        .route_layer(from_fn(access::label_route))
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .layer(from_fn_with_state(app.clone(), access::request_context))
        .with_state(app)
}

/// Binds `config.listen` and serves until `shutdown`, then drains.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    serve(config, listener, shutdown).await
}

/// Serves on a bound listener until `shutdown`: stops accepting, lets in-flight
/// requests finish (streams end), stops the background tasks, returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let tls = pki::load_when_ready(&config).await?;
    let client_cert_pem = tls.client_cert_pem.clone();
    let app = App::new(&config, tls.upstream, tls.record_key, shutdown.clone()).await?;
    app.metrics
        .set_certificates(&tls.server_cert_pem, &tls.ca_pem);
    let tasks = TaskTracker::new();
    tasks.spawn(
        app.tokens
            .clone()
            .run_sync(config.admin_token_file.clone(), shutdown.clone()),
    );
    tasks.spawn(
        app.upstreams
            .clone()
            .run_health(config.health_interval(), shutdown.clone()),
    );
    tasks.spawn(forget_idle_limits(app.clone(), shutdown.clone()));
    let (server_tx, server_tls) = persys_certs::ServerTls::reloadable(tls.server.clone());
    {
        let (config, app, stop) = (config.clone(), app.clone(), shutdown.clone());
        tasks.spawn(async move { renew::run(config, app, client_cert_pem, server_tx, stop).await });
    }
    tasks.close();
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    tracing::info!(listen = %addr, schedulers = ?config.scheduler_urls, "ready");
    let options = persys_certs::ServeOptions {
        limits: config
            .listener
            .limits(persys_certs::limits::DEFAULT_MAX_CONNECTIONS_GATEWAY),
        metrics: app.metrics.connections.listener("https"),
    };
    let served =
        persys_certs::serve_tls_with(listener, server_tls, router(app), shutdown.clone(), options)
            .await;
    shutdown.cancel();
    tasks.wait().await;
    tracing::info!("stopped");
    served.map_err(|source| StartError::Bind { addr, source })
}

async fn forget_idle_limits(app: Arc<App>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(LIMITER_CLEANUP) => {
                app.limits.forget_idle();
                app.auth_failures.forget_old(std::time::Instant::now());
            }
        }
    }
}
