//! The scheduler's PKI at start: the cluster CA, the scheduler's own certificate, the
//! admin client certificate for the CLI, and the join token (whose secret's hash is
//! stored in etcd, never the secret).

use crate::store::{Store, StoreError};
use chrono::Utc;
use persys_certs::{CertError, CertificateAuthority, Identity, JoinToken};
use persys_proto::keys;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File names in the data dir (see `docs/interfaces.md`).
pub mod files {
    /// Scheduler certificate.
    pub const SCHEDULER_CRT: &str = "scheduler.crt";
    /// Scheduler key.
    pub const SCHEDULER_KEY: &str = "scheduler.key";
    /// Admin client certificate.
    pub const ADMIN_CRT: &str = "admin.crt";
    /// Admin client key.
    pub const ADMIN_KEY: &str = "admin.key";
    /// Join token.
    pub const JOIN_TOKEN: &str = "join-token";
}

/// Errors setting up the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Certificate work failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configured join token belongs to another CA.
    #[error("join token was made for CA {token} but this scheduler's CA is {ca}")]
    TokenCaMismatch {
        /// Hash in the token.
        token: String,
        /// Hash of our CA.
        ca: String,
    },
    /// Storing the token hash failed.
    #[error("storing join token: {0}")]
    Store(#[from] StoreError),
}

/// Token metadata stored under `/persys/tokens/<sha256 of secret>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// `join` for node join tokens (other kinds, e.g. API tokens, are not join tokens).
    pub kind: String,
    /// When it was created.
    pub created_at: chrono::DateTime<Utc>,
    /// MAC under the record's etcd key ([`persys_certs::RecordKey`]): a record
    /// without a valid one (a raw etcd write) is no join token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

impl TokenRecord {
    fn mac_fields<'a>(&'a self, hash: &'a str, created: &'a str) -> [&'a str; 6] {
        // The gateway signs API token records with the same fields (id, name, role).
        [hash, &self.kind, "", "", "", created]
    }

    /// A join token record for `hash`, signed.
    pub fn join(key: &persys_certs::RecordKey, hash: &str) -> Self {
        let mut r = Self {
            kind: KIND_JOIN.into(),
            created_at: Utc::now(),
            mac: String::new(),
        };
        let created = r.created_at.to_rfc3339();
        r.mac = key.sign(&r.mac_fields(hash, &created));
        r
    }

    /// Whether this is a join token record written by persys for `hash`.
    pub fn is_join_for(&self, key: &persys_certs::RecordKey, hash: &str) -> bool {
        let created = self.created_at.to_rfc3339();
        self.kind == KIND_JOIN && key.verify(&self.mac_fields(hash, &created), &self.mac)
    }
}

/// Kind of a join token record.
pub const KIND_JOIN: &str = "join";

/// The scheduler's key material.
pub struct Pki {
    /// The cluster CA.
    pub ca: CertificateAuthority,
    /// Scheduler certificate (PEM), server + client usage.
    pub cert_pem: String,
    /// Scheduler key (PEM).
    pub key_pem: String,
    /// The join token agents present.
    pub join_token: JoinToken,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca", &self.ca.fingerprint())
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the certificate file at `path` is of `identity`.
fn holds_identity(path: &Path, identity: &Identity) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|pem| persys_certs::pem::parse_certs(&pem).ok())
        .and_then(|certs| certs.first().and_then(|c| Identity::of_certificate(c)))
        .is_some_and(|found| &found == identity)
}

pub use persys_http::{hostname, server_sans};

/// Lock file that serialises PKI set-up between replicas sharing one data dir.
const LOCK_FILE: &str = ".pki.lock";
/// A lock older than this was left by a process that died while holding it.
const STALE_LOCK: std::time::Duration = std::time::Duration::from_secs(30);

/// Run `f` holding `<dir>/.pki.lock` (created exclusively), so that replicas started
/// together with one `--data-dir` never mint two CAs or mix one's key with another's
/// certificate.
fn with_dir_lock<T>(dir: &Path, f: impl FnOnce() -> Result<T, PkiError>) -> Result<T, PkiError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_err(dir))?;
    let lock = dir.join(LOCK_FILE);
    let started = std::time::Instant::now();
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let age = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                if age.is_some_and(|a| a > STALE_LOCK) {
                    tracing::warn!(lock = %lock.display(), "removing a stale PKI lock");
                    let _ = std::fs::remove_file(&lock);
                } else if started.elapsed() > STALE_LOCK {
                    return Err(io_err(&lock)(std::io::Error::other(
                        "another scheduler holds this lock for too long",
                    )));
                }
                // Start-up only, and the holder needs milliseconds.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(io_err(&lock)(e)),
        }
    }
    let out = f();
    if let Err(e) = std::fs::remove_file(&lock) {
        tracing::warn!(lock = %lock.display(), error = %e, "cannot remove the PKI lock");
    }
    out
}

impl Pki {
    /// Load or create everything in `data_dir` (files only; no etcd). Replicas may
    /// share one data dir: set-up is serialised by a lock file, and the first one
    /// creates the CA, the admin certificate and the join token.
    pub fn load_or_create(
        data_dir: &Path,
        tls_sans: &[String],
        join_token: Option<&str>,
    ) -> Result<Self, PkiError> {
        with_dir_lock(data_dir, || {
            Self::load_or_create_locked(data_dir, tls_sans, join_token)
        })
    }

    fn load_or_create_locked(
        data_dir: &Path,
        tls_sans: &[String],
        join_token: Option<&str>,
    ) -> Result<Self, PkiError> {
        let ca = CertificateAuthority::load_or_generate(data_dir)?;
        // Re-issued at every start so that a changed --tls-san takes effect; agents
        // trust the CA, not this leaf.
        let server = ca.issue_dual(&Identity::scheduler(), &server_sans(tls_sans))?;
        let crt = data_dir.join(files::SCHEDULER_CRT);
        let key = data_dir.join(files::SCHEDULER_KEY);
        persys_certs::write_private(&key, &server.key_pem).map_err(io_err(&key))?;
        persys_certs::write_private(&crt, &server.cert_pem).map_err(io_err(&crt))?;

        let admin_crt = data_dir.join(files::ADMIN_CRT);
        let admin_key = data_dir.join(files::ADMIN_KEY);
        let current = admin_crt.exists()
            && admin_key.exists()
            && holds_identity(&admin_crt, &Identity::admin());
        if !current {
            // Also when an older release wrote it without an identity (worth nothing now).
            let admin = ca.issue_client(&Identity::admin())?;
            persys_certs::write_private(&admin_key, &admin.key_pem).map_err(io_err(&admin_key))?;
            persys_certs::write_private(&admin_crt, &admin.cert_pem).map_err(io_err(&admin_crt))?;
        }

        let fingerprint = ca.fingerprint();
        let token_path = data_dir.join(files::JOIN_TOKEN);
        let join_token = match join_token {
            Some(t) => JoinToken::parse(t)?,
            None if token_path.exists() => {
                let text = std::fs::read_to_string(&token_path).map_err(io_err(&token_path))?;
                JoinToken::parse(&text)?
            }
            None => {
                let t = JoinToken::generate(&fingerprint);
                persys_certs::write_private(&token_path, &format!("{t}\n"))
                    .map_err(io_err(&token_path))?;
                t
            }
        };
        if join_token.ca_hash != fingerprint {
            return Err(PkiError::TokenCaMismatch {
                token: join_token.ca_hash.clone(),
                ca: fingerprint,
            });
        }
        Ok(Self {
            ca,
            cert_pem: server.cert_pem,
            key_pem: server.key_pem,
            join_token,
        })
    }

    /// The key credential records are signed with.
    pub fn record_key(&self) -> persys_certs::RecordKey {
        persys_certs::RecordKey::of(&self.ca)
    }

    /// Store the join token's secret hash in etcd, signed (no write when a valid
    /// record is there).
    pub async fn publish_token(&self, store: &Store) -> Result<(), PkiError> {
        let hash = self.join_token.secret_hash();
        let key = keys::token(&hash);
        let record_key = self.record_key();
        let current = store.get::<TokenRecord>(&key).await.ok().flatten();
        if current.is_some_and(|c| c.value.is_join_for(&record_key, &hash)) {
            return Ok(());
        }
        store
            .put_if_changed(&key, &TokenRecord::join(&record_key, &hash))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_writes_every_file_and_second_start_keeps_the_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Pki::load_or_create(dir.path(), &["sched.example".into()], None).expect("pki");
        for f in [
            "ca.crt",
            "ca.key",
            "scheduler.crt",
            "scheduler.key",
            "admin.crt",
            "admin.key",
            "join-token",
        ] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        assert!(holds_identity(
            &dir.path().join("admin.crt"),
            &Identity::admin()
        ));
        assert!(holds_identity(
            &dir.path().join("scheduler.crt"),
            &Identity::scheduler()
        ));
        let b = Pki::load_or_create(dir.path(), &[], None).expect("pki again");
        assert_eq!(a.join_token, b.join_token);
        assert_eq!(a.ca.fingerprint(), b.ca.fingerprint());
        assert_eq!(a.join_token.ca_hash, a.ca.fingerprint());
    }

    #[test]
    fn replicas_starting_together_on_one_data_dir_share_one_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shared");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let pki = Pki::load_or_create(&path, &[], None).expect("pki");
                    (pki.ca.fingerprint(), pki.join_token.to_string())
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        assert!(!path.join(LOCK_FILE).exists());
        let on_disk = CertificateAuthority::load_or_generate(&path).expect("ca");
        assert_eq!(on_disk.fingerprint(), results[0].0);
    }

    #[test]
    fn a_token_of_another_ca_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let other = JoinToken::generate(&"ab".repeat(32)).to_string();
        let err = Pki::load_or_create(dir.path(), &[], Some(&other)).expect_err("mismatch");
        assert!(matches!(err, PkiError::TokenCaMismatch { .. }));
    }

    #[test]
    fn server_sans_include_loopback_and_extra_once() {
        let sans = server_sans(&["10.1.2.3".into(), "localhost".into()]);
        assert!(sans.contains(&"127.0.0.1".to_string()));
        assert!(sans.contains(&"10.1.2.3".to_string()));
        assert_eq!(sans.iter().filter(|s| *s == "localhost").count(), 1);
    }
}
