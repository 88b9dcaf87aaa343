//! `persys pki`: a cluster's certificates from local files, before any component runs.
//!
//! - `etcd`: etcd's own PKI ([`persys_certs::etcd::EtcdPki`]), the one `persys dev`
//!   makes; its member certificate names every member, so several members share it
//!   as their server and peer certificate.
//! - `cluster`: the files a scheduler's first start writes to its data dir (the CA,
//!   `admin.crt`/`admin.key`, `join-token`), so that an init step can hand the token
//!   to agents and the CA to the gateway before the schedulers run (they load what
//!   exists).
//! - `client`: a client certificate of the cluster CA (Prometheus scrapes the agents
//!   with the scheduler's identity, which is all their API admits).

use crate::args::pki::{ClientIdentity, PkiCommand};
use crate::output::say;
use anyhow::{bail, Context};
use persys_certs::{CertificateAuthority, Identity, JoinToken};
use std::path::{Path, PathBuf};

/// File names of a scheduler data dir (`docs/interfaces.md`).
const ADMIN_CRT: &str = "admin.crt";
const ADMIN_KEY: &str = "admin.key";
const JOIN_TOKEN: &str = "join-token";

/// Run `persys pki ...`.
pub fn run(cmd: &PkiCommand) -> anyhow::Result<()> {
    match cmd {
        PkiCommand::Etcd { dir, sans } => {
            let pki = persys_certs::etcd::EtcdPki::load_or_create(dir, sans)
                .with_context(|| format!("cannot create etcd's PKI in {}", dir.display()))?;
            say(&format!("etcd PKI in {}", pki.dir.display()));
            Ok(())
        }
        PkiCommand::Cluster { data_dir } => {
            let token = cluster(data_dir)?;
            say(&format!(
                "cluster CA {} and join token in {}",
                token.ca_hash,
                data_dir.display()
            ));
            Ok(())
        }
        PkiCommand::Client {
            data_dir,
            identity,
            out,
        } => {
            let (crt, key) = client(data_dir, *identity, out)?;
            say(&format!("{} and {}", crt.display(), key.display()));
            Ok(())
        }
    }
}

/// The cluster CA, the admin certificate and the join token in `dir`, created when
/// absent; returns the join token.
pub fn cluster(dir: &Path) -> anyhow::Result<JoinToken> {
    let ca = CertificateAuthority::load_or_generate(dir)
        .with_context(|| format!("cannot create the cluster CA in {}", dir.display()))?;
    let (crt, key) = (dir.join(ADMIN_CRT), dir.join(ADMIN_KEY));
    if !(crt.exists() && key.exists()) {
        let admin = ca.issue_client(&Identity::admin())?;
        write(&key, &admin.key_pem)?;
        write(&crt, &admin.cert_pem)?;
    }
    let path = dir.join(JOIN_TOKEN);
    let token = if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        JoinToken::parse(&text).with_context(|| format!("{} is no join token", path.display()))?
    } else {
        let t = JoinToken::generate(&ca.fingerprint());
        write(&path, &format!("{t}\n"))?;
        t
    };
    if token.ca_hash != ca.fingerprint() {
        bail!(
            "{} was made for CA {} but the CA in {} is {}",
            path.display(),
            token.ca_hash,
            dir.display(),
            ca.fingerprint()
        );
    }
    Ok(token)
}

/// A client certificate of `identity` issued by the CA in `dir`, at `out`.crt and
/// `out`.key (kept when both exist); returns the two paths.
pub fn client(
    dir: &Path,
    identity: ClientIdentity,
    out: &Path,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (crt, key) = (out.with_extension("crt"), out.with_extension("key"));
    if crt.exists() && key.exists() {
        return Ok((crt, key));
    }
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
    };
    let ca = CertificateAuthority::from_pem(
        &read(persys_certs::ca::CA_CERT_FILE)?,
        &read(persys_certs::ca::CA_KEY_FILE)?,
    )?;
    let identity = match identity {
        ClientIdentity::Scheduler => Identity::scheduler(),
        ClientIdentity::Admin => Identity::admin(),
    };
    let issued = ca.issue_client(&identity)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    write(&key, &issued.key_pem)?;
    write(&crt, &issued.cert_pem)?;
    Ok((crt, key))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    persys_certs::write_private(path, text)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_files_are_made_once_and_the_token_names_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = cluster(dir.path()).expect("created");
        let ca = std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca");
        assert_eq!(
            first.ca_hash,
            persys_certs::fingerprint_pem(&ca).expect("fingerprint")
        );
        let again = cluster(dir.path()).expect("loaded");
        assert_eq!(first.to_string(), again.to_string());
        assert!(dir.path().join("admin.key").exists());

        let out = dir.path().join("scrape").join("scraper");
        let (crt, key) = client(dir.path(), ClientIdentity::Scheduler, &out).expect("issued");
        assert!(crt.ends_with("scrape/scraper.crt") && key.exists());
        let pem = std::fs::read_to_string(&crt).expect("cert");
        let cert = persys_certs::pem::parse_certs(&pem).expect("parses");
        assert_eq!(
            Identity::of_certificate(&cert[0]),
            Some(Identity::scheduler())
        );
    }

    #[test]
    fn a_token_of_another_ca_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        cluster(dir.path()).expect("created");
        let other = JoinToken::generate(&"0".repeat(64));
        std::fs::write(dir.path().join(JOIN_TOKEN), format!("{other}\n")).expect("write");
        assert!(cluster(dir.path()).is_err());
    }
}
