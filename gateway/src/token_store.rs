//! API tokens in etcd: create (compare-and-swap on absence), revoke, and the list +
//! watch loop that keeps [`TokenCache`] current so that requests never wait on etcd.

use crate::auth::Role;
use crate::tokens::{self, ApiToken, TokenCache, TokenRecord};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use chrono::Utc;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions,
};
use persys_proto::keys;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Backoff between attempts to (re)load tokens while etcd is unreachable.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Pauses between sync attempts: doubling from [`RETRY_MIN`] to [`RETRY_MAX`] (before
/// jitter), forever, jittered so that gateways losing the same etcd do not all come
/// back to it in lockstep.
fn sync_pauses() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Name of the token written to `--admin-token-file`.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap-admin";

/// Errors of token storage.
#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    /// etcd failed or is unreachable.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A record could not be encoded.
    #[error("encoding token record: {0}")]
    Encode(#[from] serde_json::Error),
    /// The watch was compacted or cancelled; the caller re-lists.
    #[error("token watch ended: {0}")]
    WatchEnded(String),
    /// Three fresh secrets in a row hashed to existing keys (does not happen).
    #[error("could not store a new token: its key already exists")]
    Collision,
    /// Another token already has this name.
    #[error("a token named {0:?} already exists")]
    NameTaken(String),
    /// Writing the bootstrap token file failed.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Token records in etcd, with their in-memory cache.
#[derive(Clone)]
pub struct TokenStore {
    client: Client,
    cache: Arc<TokenCache>,
    key: persys_certs::RecordKey,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore").finish_non_exhaustive()
    }
}

impl TokenStore {
    /// A store on `endpoints`. The connection is lazy: this succeeds while etcd is down.
    /// Records are signed and checked with `key`: one written to etcd by anyone else
    /// is ignored.
    pub async fn connect(
        endpoints: &[String],
        access: &persys_certs::etcd::Access,
        key: persys_certs::RecordKey,
    ) -> Result<Self, TokenStoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEPALIVE_INTERVAL, REQUEST_TIMEOUT);
        let client = Client::connect(endpoints, Some(access.apply(options))).await?;
        Ok(Self {
            client,
            cache: Arc::new(TokenCache::default()),
            key,
        })
    }

    /// The record under `key`, if it decodes and its MAC verifies.
    fn checked(&self, key: &str, hash: &str, value: &[u8]) -> Option<TokenRecord> {
        match serde_json::from_slice::<TokenRecord>(value) {
            Ok(r) if r.kind != tokens::KIND_API || r.verifies(&self.key, hash) => Some(r),
            Ok(_) => {
                tracing::warn!(%key, "ignoring a token record without a valid MAC (not written by persys)");
                None
            }
            Err(e) => {
                tracing::warn!(%key, error = %e, "ignoring undecodable token record");
                None
            }
        }
    }

    /// The cache request authentication reads.
    pub fn cache(&self) -> &Arc<TokenCache> {
        &self.cache
    }

    /// Creates an API token; returns its secret (shown once) and its record.
    pub async fn create(
        &self,
        name: &str,
        role: Role,
    ) -> Result<(String, ApiToken), TokenStoreError> {
        if self.cache.has_name(name) {
            return Err(TokenStoreError::NameTaken(name.to_string()));
        }
        // A 256-bit collision does not happen; the bound keeps the CAS loop honest anyway.
        for _ in 0..3 {
            let secret = tokens::generate_secret();
            let hash = tokens::hash_token(&secret);
            let record = TokenRecord::api(&tokens::generate_id(), name, role, Utc::now())
                .signed(&self.key, &hash);
            let key = keys::token(&hash);
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), serde_json::to_vec(&record)?, None)]);
            if self.client.kv_client().txn(txn).await?.succeeded() {
                // Read-your-writes on this gateway; the watch brings it to the others.
                self.cache.apply_put(&hash, record.clone());
                if let Some(api) = record.as_api() {
                    return Ok((secret, api));
                }
            }
        }
        Err(TokenStoreError::Collision)
    }

    /// Revokes the token with this id; the revoked token, or `None` if there is none.
    pub async fn revoke(&self, id: &str) -> Result<Option<ApiToken>, TokenStoreError> {
        let found = match self.cache.find_id(id) {
            Some(hit) => Some(hit),
            // Not in the cache yet (just created on another gateway): ask etcd.
            None => self
                .list_records()
                .await?
                .1
                .into_iter()
                .find_map(|(h, r)| r.as_api().filter(|t| t.id == id).map(|t| (h, t))),
        };
        let Some((hash, token)) = found else {
            return Ok(None);
        };
        self.client
            .kv_client()
            .delete(keys::token(&hash), None)
            .await?;
        self.cache.apply_delete(&hash);
        Ok(Some(token))
    }

    async fn list_records(&self) -> Result<(i64, Vec<(String, TokenRecord)>), TokenStoreError> {
        let resp = self
            .client
            .kv_client()
            .get(keys::TOKENS, Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let mut out = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let Some(hash) = key.strip_prefix(keys::TOKENS) else {
                continue;
            };
            if let Some(r) = self.checked(&key, hash, kv.value()) {
                out.push((hash.to_string(), r));
            }
        }
        Ok((revision, out))
    }

    /// Writes a new admin token to `path` (mode 0600) unless the file exists.
    pub async fn ensure_bootstrap_token(&self, path: &Path) -> Result<(), TokenStoreError> {
        if path.exists() {
            let known = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| self.cache.lookup_secret(s.trim()));
            if known.is_none() {
                tracing::warn!(file = %path.display(), "the bootstrap admin token in this file is not a valid API token (revoked, or etcd was reset); delete the file to get a new one");
            }
            return Ok(());
        }
        let name = if self.cache.has_name(BOOTSTRAP_TOKEN_NAME) {
            format!("{BOOTSTRAP_TOKEN_NAME}-{}", &tokens::generate_id()[..6])
        } else {
            BOOTSTRAP_TOKEN_NAME.to_string()
        };
        let (secret, token) = self.create(&name, Role::Admin).await?;
        if let Err(source) = persys_certs::write_private(path, &format!("{secret}\n")) {
            // A token nobody can read is useless: take it back.
            let _ = self.revoke(&token.id).await;
            return Err(TokenStoreError::File {
                path: path.to_path_buf(),
                source,
            });
        }
        tracing::info!(file = %path.display(), token_id = %token.id, "wrote bootstrap admin token");
        Ok(())
    }

    /// Keeps the cache current until `shutdown`: list, then watch from the list's
    /// revision; on any failure (etcd down, compaction) back off and list again.
    /// The bootstrap token is written after the first successful list.
    pub async fn run_sync(self, bootstrap: Option<PathBuf>, shutdown: CancellationToken) {
        let mut bootstrap = bootstrap;
        let mut pauses = sync_pauses();
        loop {
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.sync_once(&mut bootstrap, &mut pauses) => r,
            };
            // Without a max count the iterator never ends; the fallback only satisfies types.
            let delay = pauses.next().unwrap_or(RETRY_MAX);
            if let Err(error) = result {
                tracing::warn!(%error, retry_ms = delay.as_millis() as u64, "token cache sync failed; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn sync_once(
        &self,
        bootstrap: &mut Option<PathBuf>,
        pauses: &mut ExponentialBackoff,
    ) -> Result<(), TokenStoreError> {
        let (revision, records) = self.list_records().await?;
        self.cache.replace_all(records);
        tracing::debug!(
            revision,
            tokens = self.cache.list().len(),
            "token cache loaded"
        );
        if let Some(path) = bootstrap.as_deref() {
            self.ensure_bootstrap_token(path).await?;
            *bootstrap = None;
        }
        // A successful list: the next failure starts from the shortest pause.
        *pauses = sync_pauses();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let (_watcher, mut stream) = self
            .client
            .watch_client()
            .watch(keys::TOKENS, Some(options))
            .await?;
        while let Some(resp) = stream.message().await? {
            if resp.compact_revision() > 0 || resp.canceled() {
                return Err(TokenStoreError::WatchEnded(format!(
                    "compacted at {} / {}",
                    resp.compact_revision(),
                    resp.cancel_reason()
                )));
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                let Some(hash) = key.strip_prefix(keys::TOKENS) else {
                    continue;
                };
                if ev.event_type() == EventType::Delete {
                    self.cache.apply_delete(hash);
                    continue;
                }
                match self.checked(&key, hash, kv.value()) {
                    Some(r) => self.cache.apply_put(hash, r),
                    None => self.cache.apply_delete(hash),
                }
            }
        }
        Err(TokenStoreError::WatchEnded("stream closed".into()))
    }
}
