//! The in-memory zone: every skydns record under the domain's key, kept by key, as the
//! etcd list and watch ([`crate::sync`]) deliver them. Pure; [`SharedZone`] is the
//! handle the watch writes and the request handler reads.
//!
//! A name answers with every record at or below its key, as CoreDNS's etcd plugin
//! does: `web.<domain>` is `/skydns/<domain reversed>/web`, and the replicas of
//! service `web` sit at `.../web/<workload id>[-<port>]`, so the service name answers
//! all of them, and each entry is a name of its own (`<id>-<port>.web.<domain>`).

use persys_proto::dns::{name_of_key, zone_key, DnsRecord};
use persys_proto::keys;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One record and the DNS name of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's own name (`<id>-8080.web.cluster.local.dev`, no trailing dot).
    pub name: String,
    /// What the scheduler wrote.
    pub record: DnsRecord,
}

/// Where a name stands in the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not in this zone.
    Outside,
    /// The zone's own name.
    Apex,
    /// In the zone, with no record at or below it.
    Missing,
    /// In the zone, with these records at or below it (never empty).
    Found(Vec<Entry>),
}

/// The records of one zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The domain, lower case, no trailing dot.
    domain: String,
    /// `zone_key(domain)`: `/skydns/dev/local/cluster`.
    prefix: String,
    /// Records by their key below the prefix, lower case, labels in key order:
    /// `web/<id>-8080`.
    records: BTreeMap<String, DnsRecord>,
    /// The etcd revision the records are current to.
    revision: i64,
    /// Whether a list has been loaded (before it, the zone knows nothing).
    synced: bool,
}

impl Zone {
    /// An empty, unsynced zone for `domain`.
    pub fn new(domain: &str) -> Self {
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        Self {
            prefix: zone_key(&domain),
            domain,
            records: BTreeMap::new(),
            revision: 0,
            synced: false,
        }
    }

    /// The etcd prefix to list and watch: every key of the zone (`.../cluster/`).
    pub fn watch_prefix(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// The domain (lower case, no trailing dot).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The etcd revision the zone is current to.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Whether a list has been loaded.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Replace everything with a fresh list read at `revision`. Keys outside the zone
    /// and values that do not decode are left out; returns how many were.
    pub fn replace<K, V>(&mut self, kvs: impl IntoIterator<Item = (K, V)>, revision: i64) -> usize
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        self.records.clear();
        let mut skipped = 0;
        for (k, v) in kvs {
            if !self.put(k.as_ref(), v.as_ref()) {
                skipped += 1;
            }
        }
        self.revision = revision;
        self.synced = true;
        skipped
    }

    /// A record written. A value that does not decode removes what the key held (it
    /// no longer says what it said). Returns whether the record was taken.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some(rel) = self.relative(key) else {
            return false;
        };
        match serde_json::from_slice::<DnsRecord>(value) {
            Ok(record) => {
                self.records.insert(rel, record);
                true
            }
            Err(error) => {
                tracing::warn!(key = %String::from_utf8_lossy(key), %error, "ignoring undecodable DNS record");
                self.records.remove(&rel);
                false
            }
        }
    }

    /// A record deleted.
    pub fn delete(&mut self, key: &[u8]) {
        if let Some(rel) = self.relative(key) {
            self.records.remove(&rel);
        }
    }

    /// The revision reached (by a watch event or a progress notification).
    pub fn advance(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    /// The records `name` answers with. `name` is case-insensitive and may end in a dot.
    pub fn lookup(&self, name: &str) -> Lookup {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let rel = if name == self.domain {
            return Lookup::Apex;
        } else {
            match name
                .strip_suffix(&self.domain)
                .and_then(|r| r.strip_suffix('.'))
            {
                Some(r) if !r.is_empty() && !r.split('.').any(str::is_empty) => r,
                _ => return Lookup::Outside,
            }
        };
        let key: Vec<&str> = rel.rsplit('.').collect();
        let key = key.join("/");
        let below = format!("{key}/");
        let mut found: Vec<Entry> = Vec::new();
        let at = self.records.get_key_value(&key);
        let under = self
            .records
            .range(below.clone()..)
            .take_while(|(k, _)| k.starts_with(&below));
        for (k, record) in at.into_iter().chain(under) {
            let full = format!("{}/{k}", self.prefix);
            if let Some(name) = name_of_key(keys::SKYDNS, &full) {
                found.push(Entry {
                    name,
                    record: record.clone(),
                });
            }
        }
        if found.is_empty() {
            Lookup::Missing
        } else {
            Lookup::Found(found)
        }
    }

    /// `key` below the zone's prefix, lower case (`web/<id>-8080`); `None` outside.
    fn relative(&self, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        let rel = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let rel = rel.trim_end_matches('/');
        (!rel.is_empty() && !rel.split('/').any(str::is_empty)).then(|| rel.to_ascii_lowercase())
    }
}

/// The zone shared by the watch (writer) and the request handler (readers). Readers
/// hold the lock only to copy out one name's records.
#[derive(Debug, Clone)]
pub struct SharedZone(Arc<RwLock<Zone>>);

impl SharedZone {
    /// An empty, unsynced zone for `domain`.
    pub fn new(domain: &str) -> Self {
        Self(Arc::new(RwLock::new(Zone::new(domain))))
    }

    /// Read access. A writer that panicked left a consistent map (every change is one
    /// map operation), so a poisoned lock is still read.
    pub fn read(&self) -> RwLockReadGuard<'_, Zone> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Write access (the watch).
    pub fn write(&self) -> RwLockWriteGuard<'_, Zone> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(host: &str, port: Option<u16>) -> Vec<u8> {
        serde_json::to_vec(&DnsRecord {
            host: host.into(),
            port,
            ttl: 30,
        })
        .expect("json")
    }

    fn zone() -> Zone {
        let mut z = Zone::new("cluster.local.dev.");
        let p = "/skydns/dev/local/cluster";
        z.replace(
            [
                (format!("{p}/node-1"), rec("10.0.0.1", None)),
                (format!("{p}/web/a-8080"), rec("10.0.0.1", Some(8080))),
                (format!("{p}/web/b-8080"), rec("10.0.0.2", Some(8080))),
                (format!("{p}/web-0/a"), rec("10.0.0.1", None)),
                ("/skydns/org/example/x".to_string(), rec("10.9.9.9", None)),
                (format!("{p}/bad"), b"not json".to_vec()),
            ],
            7,
        );
        z
    }

    fn names(l: &Lookup) -> Vec<&str> {
        match l {
            Lookup::Found(e) => e.iter().map(|e| e.name.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_name_answers_every_entry_below_it_and_not_its_siblings() {
        let z = zone();
        assert_eq!((z.len(), z.revision(), z.synced()), (4, 7, true));
        assert_eq!(
            names(&z.lookup("web.cluster.local.dev.")),
            [
                "a-8080.web.cluster.local.dev",
                "b-8080.web.cluster.local.dev"
            ]
        );
        assert_eq!(
            names(&z.lookup("WEB-0.Cluster.Local.Dev")),
            ["a.web-0.cluster.local.dev"]
        );
        assert_eq!(
            names(&z.lookup("b-8080.web.cluster.local.dev")),
            ["b-8080.web.cluster.local.dev"]
        );
        assert_eq!(
            names(&z.lookup("node-1.cluster.local.dev")),
            ["node-1.cluster.local.dev"]
        );
    }

    #[test]
    fn unknown_outside_and_apex_names_are_told_apart() {
        let z = zone();
        assert_eq!(z.lookup("nope.cluster.local.dev"), Lookup::Missing);
        assert_eq!(z.lookup("x.web-0x.cluster.local.dev"), Lookup::Missing);
        assert_eq!(z.lookup("bad.cluster.local.dev"), Lookup::Missing);
        assert_eq!(z.lookup("cluster.local.dev."), Lookup::Apex);
        assert_eq!(z.lookup("x.example.org"), Lookup::Outside);
        assert_eq!(z.lookup("xcluster.local.dev"), Lookup::Outside);
        assert_eq!(z.lookup("a..cluster.local.dev"), Lookup::Outside);
        assert_eq!(z.lookup("local.dev"), Lookup::Outside);
    }

    #[test]
    fn puts_and_deletes_follow_the_watch() {
        let mut z = zone();
        let key = b"/skydns/dev/local/cluster/web/c-8080";
        assert!(z.put(key, &rec("10.0.0.3", Some(8080))));
        assert_eq!(names(&z.lookup("web.cluster.local.dev")).len(), 3);
        z.delete(b"/skydns/dev/local/cluster/web/a-8080");
        z.delete(b"/skydns/dev/local/cluster/web/b-8080");
        assert_eq!(
            names(&z.lookup("web.cluster.local.dev")),
            ["c-8080.web.cluster.local.dev"]
        );
        // An entry rewritten with garbage no longer answers.
        assert!(!z.put(key, b"{"));
        assert_eq!(z.lookup("web.cluster.local.dev"), Lookup::Missing);
        z.advance(9);
        z.advance(8);
        assert_eq!(z.revision(), 9);
        assert_eq!(z.watch_prefix(), "/skydns/dev/local/cluster/");
    }

    #[test]
    fn a_new_list_replaces_everything() {
        let mut z = zone();
        let skipped = z.replace(
            [(
                "/skydns/dev/local/cluster/api/x-1".to_string(),
                rec("10.0.0.5", Some(1)),
            )],
            20,
        );
        assert_eq!(skipped, 0);
        assert_eq!(z.lookup("web.cluster.local.dev"), Lookup::Missing);
        assert_eq!(names(&z.lookup("api.cluster.local.dev")).len(), 1);
        assert_eq!(z.revision(), 20);
    }
}
