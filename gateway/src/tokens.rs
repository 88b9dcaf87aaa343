//! API tokens: the record stored in etcd (hash of the secret as key, never the secret),
//! secret generation and hashing, and the in-memory cache that request authentication
//! reads (fed by the etcd watch in [`crate::token_store`]).

use crate::auth::Role;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// Every API token starts with this, so it is recognisable in a leaked file or a
/// secret scanner and never confused with a join token (`PERSYS1.`).
pub const TOKEN_PREFIX: &str = "persys_";
/// `kind` of an API token record.
pub const KIND_API: &str = "api";
/// `kind` of a node join token record (written by the scheduler; not an API credential).
pub const KIND_JOIN: &str = "join";

/// A record under `/persys/tokens/<sha256 hex of the secret>`. Join tokens (written by
/// the scheduler) share the prefix and carry only `kind` and `createdAt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// Token id (API tokens).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Human name (API tokens).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Role (API tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// `api` or `join`.
    pub kind: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// MAC of the record under its etcd key ([`persys_certs::RecordKey`]): without a
    /// valid one the record is no credential.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

impl TokenRecord {
    fn mac_fields<'a>(&'a self, hash: &'a str, created: &'a str) -> [&'a str; 6] {
        [
            hash,
            &self.kind,
            &self.id,
            &self.name,
            self.role.map_or("", Role::as_str),
            created,
        ]
    }

    /// This record, signed for the etcd key of `hash`.
    pub fn signed(mut self, key: &persys_certs::RecordKey, hash: &str) -> Self {
        let created = self.created_at.to_rfc3339();
        self.mac = key.sign(&self.mac_fields(hash, &created));
        self
    }

    /// Whether the record carries a valid MAC for the etcd key of `hash`.
    pub fn verifies(&self, key: &persys_certs::RecordKey, hash: &str) -> bool {
        let created = self.created_at.to_rfc3339();
        key.verify(&self.mac_fields(hash, &created), &self.mac)
    }

    /// An API token record.
    pub fn api(id: &str, name: &str, role: Role, created_at: DateTime<Utc>) -> Self {
        Self {
            id: id.to_string(),
            name: name.to_string(),
            role: Some(role),
            kind: KIND_API.to_string(),
            created_at,
            mac: String::new(),
        }
    }

    /// A join token record, as the scheduler writes it.
    pub fn join() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            role: None,
            kind: KIND_JOIN.to_string(),
            created_at: Utc::now(),
            mac: String::new(),
        }
    }

    /// The API token this record describes, if it is a complete API token record.
    pub fn as_api(&self) -> Option<ApiToken> {
        match (&self.role, self.kind.as_str()) {
            (Some(role), KIND_API) if !self.id.is_empty() => Some(ApiToken {
                id: self.id.clone(),
                name: self.name.clone(),
                role: *role,
                created_at: self.created_at,
            }),
            _ => None,
        }
    }
}

/// An API token as answered by `GET /tokens` (no secret, no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    /// Token id (what `DELETE /tokens/{id}` takes).
    pub id: String,
    /// Human name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Creation time (RFC 3339).
    pub created_at: DateTime<Utc>,
}

/// A new random API token secret: `persys_` and 64 hex characters (256 bits).
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// A new token id: 16 hex characters, not secret.
pub fn generate_id() -> String {
    let bytes: [u8; 8] = rand::random();
    hex::encode(bytes)
}

/// Hex sha256 of a token secret (the etcd key suffix).
pub fn hash_token(secret: &str) -> String {
    persys_certs::hash_secret(secret)
}

/// API token records by hash, in memory. Lookups never touch etcd.
#[derive(Debug, Default)]
pub struct TokenCache {
    by_hash: RwLock<HashMap<String, ApiToken>>,
    synced: AtomicBool,
}

impl TokenCache {
    /// The API token whose secret this is. The lookup is by hash: knowing how long a
    /// lookup takes reveals nothing usable about any secret.
    pub fn lookup_secret(&self, secret: &str) -> Option<ApiToken> {
        self.lookup_hash(&hash_token(secret))
    }

    /// The API token with this secret hash.
    pub fn lookup_hash(&self, hash: &str) -> Option<ApiToken> {
        self.read().get(hash).cloned()
    }

    /// All API tokens, oldest first.
    pub fn list(&self) -> Vec<ApiToken> {
        let mut all: Vec<ApiToken> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    /// The hash and token with this id.
    pub fn find_id(&self, id: &str) -> Option<(String, ApiToken)> {
        self.read()
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(h, t)| (h.clone(), t.clone()))
    }

    /// Whether an API token has this name.
    pub fn has_name(&self, name: &str) -> bool {
        self.read().values().any(|t| t.name == name)
    }

    /// A record was written (join tokens and malformed records are not kept).
    pub fn apply_put(&self, hash: &str, record: TokenRecord) {
        let mut map = self.write();
        match record.as_api() {
            Some(t) => {
                map.insert(hash.to_string(), t);
            }
            None => {
                map.remove(hash);
            }
        }
    }

    /// A record was deleted (revoked).
    pub fn apply_delete(&self, hash: &str) {
        self.write().remove(hash);
    }

    /// Replace everything with a fresh list from etcd, and mark the cache synced.
    pub fn replace_all(&self, records: impl IntoIterator<Item = (String, TokenRecord)>) {
        let map: HashMap<String, ApiToken> = records
            .into_iter()
            .filter_map(|(h, r)| r.as_api().map(|t| (h, t)))
            .collect();
        *self.write() = map;
        self.synced.store(true, Ordering::Release);
    }

    /// Whether the cache has been loaded from etcd at least once.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ApiToken>> {
        // A panic while holding the lock cannot leave the map half-updated (each
        // update is a single insert/remove/assign), so a poisoned lock is still usable.
        self.by_hash.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, ApiToken>> {
        self.by_hash.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Checks a token name: 1-63 letters, digits, '-', '_' or '.'.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 1-63 characters of letters, digits, '-', '_' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hash_to_sha256_hex() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
        let h = hash_token(&a);
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(!h.contains(&a[TOKEN_PREFIX.len()..]));
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn record_json_has_the_contract_keys_and_join_records_parse() {
        let now = Utc::now();
        let v =
            serde_json::to_value(TokenRecord::api("id1", "ci", Role::Operator, now)).expect("json");
        assert_eq!(v["kind"], "api");
        assert_eq!(v["role"], "operator");
        assert_eq!(v["name"], "ci");
        assert!(v["createdAt"].is_string());
        let join: TokenRecord =
            serde_json::from_str(r#"{"kind":"join","createdAt":"2024-01-01T00:00:00Z"}"#)
                .expect("join parses");
        assert_eq!(join.as_api(), None);
    }

    #[test]
    fn cache_keeps_only_api_tokens_and_forgets_revoked_ones() {
        let cache = TokenCache::default();
        assert!(!cache.is_synced());
        let now = Utc::now();
        cache.replace_all([
            (
                "h1".to_string(),
                TokenRecord::api("a", "one", Role::Admin, now),
            ),
            ("h2".to_string(), TokenRecord::join()),
        ]);
        assert!(cache.is_synced());
        assert_eq!(cache.list().len(), 1);
        assert_eq!(cache.find_id("a").map(|(h, _)| h), Some("h1".to_string()));
        assert!(cache.has_name("one"));
        cache.apply_delete("h1");
        assert!(cache.lookup_hash("h1").is_none());
    }

    #[test]
    fn token_names_are_checked() {
        assert!(validate_name("ci-bot.v2").is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
