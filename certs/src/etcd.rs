//! etcd's own PKI, apart from the cluster CA: etcd serves TLS only and admits only
//! clients with a certificate of this CA (`--client-cert-auth`), so that nothing else
//! on the network (a workload on the host network, say) can read or write the
//! cluster's records. `persys dev` and the tests create one in a directory; in
//! production the operator brings etcd's certificates and passes them with
//! `--etcd-cacert`, `--etcd-cert` and `--etcd-key`.

use crate::identity::{Identity, Role};
use crate::{CertError, CertificateAuthority};
use std::path::{Path, PathBuf};

/// The files of an etcd PKI directory.
#[derive(Debug, Clone)]
pub struct EtcdPki {
    /// The directory.
    pub dir: PathBuf,
}

/// One certificate and its key, as paths.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Name of etcd's server identity.
pub const ETCD_NAME: &str = "etcd";

impl EtcdPki {
    /// Load the PKI in `dir`, creating what is missing: the CA, etcd's server
    /// certificate (for `sans`), and client certificates for the scheduler and the
    /// gateway.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Self, CertError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let ca = CertificateAuthority::load_or_generate(dir)?;
        let pki = Self {
            dir: dir.to_path_buf(),
        };
        let wanted = [
            (pki.server(), Identity::new(Role::Etcd, ETCD_NAME), true),
            (pki.client(Role::Scheduler), Identity::scheduler(), false),
            (pki.client(Role::Gateway), Identity::gateway(), false),
        ];
        for (files, identity, server) in wanted {
            if files.cert.exists() && files.key.exists() {
                continue;
            }
            let issued = if server {
                ca.issue_dual(&identity, sans)?
            } else {
                ca.issue_client(&identity)?
            };
            crate::write_private(&files.key, &issued.key_pem).map_err(|e| io(&files.key, e))?;
            crate::write_private(&files.cert, &issued.cert_pem).map_err(|e| io(&files.cert, e))?;
        }
        Ok(pki)
    }

    /// The CA certificate clients trust etcd with.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join(crate::ca::CA_CERT_FILE)
    }

    /// etcd's server certificate.
    pub fn server(&self) -> CertFiles {
        self.files("server")
    }

    /// The client certificate of `role` (scheduler or gateway).
    pub fn client(&self, role: Role) -> CertFiles {
        self.files(role.as_str())
    }

    fn files(&self, name: &str) -> CertFiles {
        CertFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        }
    }

    /// etcd's flags for this PKI (its client and peer URLs must be https): TLS only,
    /// certificates of this CA required from clients and peers.
    pub fn server_flags(&self) -> Vec<String> {
        let server = self.server();
        let (ca, cert, key) = (
            self.ca_cert().display().to_string(),
            server.cert.display().to_string(),
            server.key.display().to_string(),
        );
        vec![
            "--client-cert-auth".into(),
            "--trusted-ca-file".into(),
            ca.clone(),
            "--cert-file".into(),
            cert.clone(),
            "--key-file".into(),
            key.clone(),
            "--peer-client-cert-auth".into(),
            "--peer-trusted-ca-file".into(),
            ca,
            "--peer-cert-file".into(),
            cert,
            "--peer-key-file".into(),
            key,
        ]
    }

    /// How a scheduler or gateway of `role` reaches etcd with this PKI.
    pub fn access(&self, role: Role) -> Result<Access, CertError> {
        let client = self.client(role);
        Access::from_flags(
            Some(&self.ca_cert()),
            Some(&client.cert),
            Some(&client.key),
            None,
            None,
        )
    }

    /// The persys flags (scheduler or gateway) that reach etcd through this PKI.
    pub fn client_flags(&self, role: Role) -> Vec<String> {
        let client = self.client(role);
        vec![
            "--etcd-cacert".into(),
            self.ca_cert().display().to_string(),
            "--etcd-cert".into(),
            client.cert.display().to_string(),
            "--etcd-key".into(),
            client.key.display().to_string(),
        ]
    }
}

/// etcd client TLS material read from files: (CA, certificate, key) PEM. `None` when
/// no CA is given (plain HTTP etcd); a certificate without its key (or the reverse)
/// is an error.
pub fn client_material(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ClientMaterial>, CertError> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| io(p, e));
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        (None, None) => None,
        _ => {
            return Err(CertError::Config(
                "--etcd-cert and --etcd-key go together".into(),
            ))
        }
    };
    match ca {
        Some(ca) => Ok(Some(ClientMaterial {
            ca_pem: read(ca)?,
            identity,
        })),
        None if identity.is_some() => Err(CertError::Config(
            "--etcd-cert needs --etcd-cacert (the CA etcd's certificate is checked against)".into(),
        )),
        None => Ok(None),
    }
}

/// What an etcd client presents and trusts.
#[derive(Clone)]
pub struct ClientMaterial {
    /// CA of etcd's server certificate (PEM).
    pub ca_pem: String,
    /// Client certificate and key (PEM), for `--client-cert-auth`.
    pub identity: Option<(String, String)>,
}

impl std::fmt::Debug for ClientMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMaterial")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

/// The `--etcd-*` security flags of the scheduler and the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct EtcdFlags {
    /// CA certificate of etcd's server certificate (turns on TLS to etcd: use https://
    /// endpoints).
    #[arg(long, env = "PERSYS_ETCD_CACERT")]
    pub etcd_cacert: Option<PathBuf>,

    /// Client certificate for etcd's client-certificate auth.
    #[arg(long, env = "PERSYS_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,

    /// Key of `--etcd-cert`.
    #[arg(long, env = "PERSYS_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,

    /// etcd user (when etcd's auth is enabled).
    #[arg(long, env = "PERSYS_ETCD_USER")]
    pub etcd_user: Option<String>,

    /// Password of `--etcd-user`.
    #[arg(long, env = "PERSYS_ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,
}

impl EtcdFlags {
    /// How to reach etcd with these flags.
    pub fn access(&self) -> Result<Access, CertError> {
        Access::from_flags(
            self.etcd_cacert.as_deref(),
            self.etcd_cert.as_deref(),
            self.etcd_key.as_deref(),
            self.etcd_user.as_deref(),
            self.etcd_password.as_deref(),
        )
    }
}

/// How a component reaches etcd: TLS material, and a user and password when etcd's
/// auth is enabled.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// TLS (https endpoints), with a client certificate for `--client-cert-auth`.
    pub tls: Option<ClientMaterial>,
    /// etcd user and password.
    pub user: Option<(String, String)>,
}

impl Access {
    /// From the `--etcd-*` flags.
    pub fn from_flags(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<Self, CertError> {
        let user = match (user.filter(|u| !u.is_empty()), password) {
            (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(CertError::Config(
                    "--etcd-user needs --etcd-password".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(CertError::Config(
                    "--etcd-password needs --etcd-user".into(),
                ))
            }
        };
        Ok(Self {
            tls: client_material(ca, cert, key)?,
            user,
        })
    }

    /// `options` with this access applied.
    pub fn apply(&self, mut options: etcd_client::ConnectOptions) -> etcd_client::ConnectOptions {
        if let Some(tls) = &self.tls {
            let mut t = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                t = t.identity(etcd_client::Identity::from_pem(cert, key));
            }
            options = options.with_tls(t);
        }
        if let Some((user, password)) = &self.user {
            options = options.with_user(user.clone(), password.clone());
        }
        options
    }
}

fn io(path: &Path, source: std::io::Error) -> CertError {
    CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_keeps_what_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = EtcdPki::load_or_create(dir.path(), &["127.0.0.1".into()]).expect("pki");
        let first = std::fs::read_to_string(a.client(Role::Scheduler).cert).expect("cert");
        let b = EtcdPki::load_or_create(dir.path(), &["127.0.0.1".into()]).expect("again");
        let second = std::fs::read_to_string(b.client(Role::Scheduler).cert).expect("cert");
        assert_eq!(first, second);
        assert!(a.server_flags().contains(&"--client-cert-auth".to_string()));
        let m = client_material(
            Some(&a.ca_cert()),
            Some(&a.client(Role::Gateway).cert),
            Some(&a.client(Role::Gateway).key),
        )
        .expect("material")
        .expect("tls");
        assert!(m.identity.is_some());
        assert!(client_material(None, Some(&a.ca_cert()), None).is_err());
        assert!(client_material(None, None, None).expect("plain").is_none());
    }
}
