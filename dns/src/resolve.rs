//! What the zone answers to one question. Pure: a [`Zone`], a name and a type in, an
//! [`Answer`] (response code and the records of each section) out.
//!
//! - A / AAAA: one record per distinct address among the entries at or below the name
//!   (a service name answers the nodes of all its serving replicas).
//! - SRV: one record per entry with a port, the target being the entry's own name
//!   (`<id>-<port>.web.<domain>`, itself answerable by A), whose address goes in the
//!   additional section. `_<service>._<proto>.<name>` asks the same as `<name>`.
//! - The apex answers SOA and NS; an unknown name in the zone is NXDOMAIN, a known name
//!   without records of the type NODATA, both with the SOA in the authority section;
//!   a name outside the zone is REFUSED.

use crate::zone::{Entry, Lookup, Zone};
use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// TTL of a record stored without one, and of the SOA's negative answers.
pub const DEFAULT_TTL: u32 = persys_proto::dns::TTL;
/// SRV priority of every entry (all equal: clients spread by weight).
const SRV_PRIORITY: u16 = 10;

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: ResponseCode,
    /// Whether the answer is authoritative (everything inside the zone).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of a negative answer).
    pub authority: Vec<Record>,
    /// Additional section (addresses of SRV targets).
    pub additionals: Vec<Record>,
}

impl Answer {
    fn code(rcode: ResponseCode, authoritative: bool) -> Self {
        Self {
            rcode,
            authoritative,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// REFUSED: not our zone.
    pub fn refused() -> Self {
        Self::code(ResponseCode::Refused, false)
    }

    /// SERVFAIL: the zone is not loaded yet.
    pub fn not_ready() -> Self {
        Self::code(ResponseCode::ServFail, false)
    }
}

/// Answers questions about one zone.
#[derive(Debug, Clone)]
pub struct Resolver {
    apex: Name,
    ns: Name,
    hostmaster: Name,
}

impl Resolver {
    /// A resolver for `domain`; `None` when it is not a valid DNS name.
    pub fn new(domain: &str) -> Option<Self> {
        let domain = domain.trim_matches('.');
        let apex = fqdn(domain)?;
        Some(Self {
            ns: fqdn(&format!("ns.dns.{domain}"))?,
            hostmaster: fqdn(&format!("hostmaster.{domain}"))?,
            apex,
        })
    }

    /// The answer of `zone` to `qname` (as asked: its case is kept in the answer) of
    /// type `qtype`.
    pub fn resolve(&self, zone: &Zone, qname: &Name, qtype: RecordType) -> Answer {
        let asked = qname.to_ascii();
        let lookup_name = match qtype {
            RecordType::SRV => strip_service_labels(&asked),
            _ => asked.as_str(),
        };
        let lookup = zone.lookup(lookup_name);
        if lookup == Lookup::Outside {
            return Answer::refused();
        }
        if !zone.synced() {
            return Answer::not_ready();
        }
        let mut answer = Answer::code(ResponseCode::NoError, true);
        match lookup {
            Lookup::Outside => return Answer::refused(),
            Lookup::Apex => match qtype {
                RecordType::SOA => answer.answers.push(self.soa(zone)),
                RecordType::NS => answer.answers.push(Record::from_rdata(
                    qname.clone(),
                    DEFAULT_TTL,
                    RData::NS(NS(self.ns.clone())),
                )),
                _ => {}
            },
            Lookup::Missing => {
                answer.rcode = ResponseCode::NXDomain;
            }
            Lookup::Found(entries) => match qtype {
                RecordType::A | RecordType::AAAA => {
                    answer.answers = addresses(qname, &entries, qtype);
                }
                RecordType::SRV => {
                    (answer.answers, answer.additionals) = services(qname, &entries);
                }
                RecordType::ANY => {
                    answer.answers = addresses(qname, &entries, RecordType::A);
                    answer
                        .answers
                        .extend(addresses(qname, &entries, RecordType::AAAA));
                }
                _ => {}
            },
        }
        if answer.answers.is_empty() {
            // NXDOMAIN or NODATA: the SOA says for how long to remember it (RFC 2308).
            answer.authority.push(self.soa(zone));
        }
        answer
    }

    fn soa(&self, zone: &Zone) -> Record {
        // The serial only has to grow with the data: the etcd revision does (mod 2^32).
        let serial = (zone.revision() & i64::from(u32::MAX)) as u32;
        Record::from_rdata(
            self.apex.clone(),
            DEFAULT_TTL,
            RData::SOA(SOA::new(
                self.ns.clone(),
                self.hostmaster.clone(),
                serial,
                7200,
                1800,
                86400,
                DEFAULT_TTL,
            )),
        )
    }
}

/// `_http._tcp.web.<domain>` → `web.<domain>` (RFC 2782 form); anything else as is.
fn strip_service_labels(name: &str) -> &str {
    let mut parts = name.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(s), Some(p), Some(rest))
            if s.len() > 1 && s.starts_with('_') && p.len() > 1 && p.starts_with('_') =>
        {
            rest
        }
        _ => name,
    }
}

/// A fully qualified [`Name`] of `name` (no trailing dot given).
fn fqdn(name: &str) -> Option<Name> {
    let mut n = Name::from_ascii(name.trim_end_matches('.')).ok()?;
    n.set_fqdn(true);
    Some(n)
}

fn ttl(e: &Entry) -> u32 {
    match e.record.ttl {
        0 => DEFAULT_TTL,
        t => t,
    }
}

/// One A (or AAAA) per distinct address, the lowest TTL of those sharing it.
fn addresses(owner: &Name, entries: &[Entry], qtype: RecordType) -> Vec<Record> {
    let mut seen: BTreeMap<IpAddr, u32> = BTreeMap::new();
    for e in entries {
        let Ok(ip) = e.record.host.parse::<IpAddr>() else {
            continue;
        };
        let wanted = match ip {
            IpAddr::V4(_) => qtype == RecordType::A,
            IpAddr::V6(_) => qtype == RecordType::AAAA,
        };
        if wanted {
            let t = seen.entry(ip).or_insert(u32::MAX);
            *t = (*t).min(ttl(e));
        }
    }
    seen.into_iter()
        .map(|(ip, t)| address(owner.clone(), ip, t))
        .collect()
}

fn address(owner: Name, ip: IpAddr, ttl: u32) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner, ttl, rdata)
}

/// One SRV per entry with a port, and the target's address for each.
fn services(owner: &Name, entries: &[Entry]) -> (Vec<Record>, Vec<Record>) {
    let with_port: Vec<(&Entry, u16)> = entries
        .iter()
        .filter_map(|e| e.record.port.map(|p| (e, p)))
        .collect();
    // As CoreDNS: the weights of one priority add up to about 100.
    let weight = u16::try_from(100 / with_port.len().max(1))
        .unwrap_or(1)
        .max(1);
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    for (e, port) in with_port {
        let (target, ip) = match e.record.host.parse::<IpAddr>() {
            // The entry's own name resolves to its address.
            Ok(ip) => (fqdn(&e.name), Some(ip)),
            // A host name is the target itself.
            Err(_) => (fqdn(&e.record.host), None),
        };
        let Some(target) = target else {
            tracing::debug!(entry = %e.name, host = %e.record.host, "no valid SRV target");
            continue;
        };
        answers.push(Record::from_rdata(
            owner.clone(),
            ttl(e),
            RData::SRV(SRV::new(SRV_PRIORITY, weight, port, target.clone())),
        ));
        if let Some(ip) = ip {
            additionals.push(address(target, ip, ttl(e)));
        }
    }
    (answers, additionals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use persys_proto::dns::DnsRecord;

    fn zone() -> Zone {
        let rec = |host: &str, port: Option<u16>, ttl: u32| {
            serde_json::to_vec(&DnsRecord {
                host: host.into(),
                port,
                ttl,
            })
            .expect("json")
        };
        let p = "/skydns/dev/local/cluster";
        let mut z = Zone::new("cluster.local.dev");
        z.replace(
            [
                (format!("{p}/web/a-8080"), rec("10.0.0.1", Some(8080), 30)),
                (format!("{p}/web/b-8080"), rec("10.0.0.2", Some(8080), 30)),
                // Same node as a: one A, the lower TTL.
                (format!("{p}/web/c-8080"), rec("10.0.0.1", Some(8080), 5)),
                (format!("{p}/web/d"), rec("fd00::1", None, 0)),
                (format!("{p}/node-1"), rec("10.0.0.1", None, 30)),
                (format!("{p}/ext/x-53"), rec("ns.example.org", Some(53), 30)),
            ],
            42,
        );
        z
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn resolver() -> Resolver {
        Resolver::new("cluster.local.dev").expect("resolver")
    }

    fn rdata(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn a_answers_each_address_once_with_the_lowest_ttl() {
        let a = resolver().resolve(&zone(), &name("Web.cluster.local.dev."), RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert!(a.authoritative);
        assert_eq!(rdata(&a.answers), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(a.answers[0].ttl, 5);
        assert_eq!(a.answers[0].name.to_ascii(), "Web.cluster.local.dev.");
        assert!(a.authority.is_empty());
        let aaaa = resolver().resolve(&zone(), &name("web.cluster.local.dev."), RecordType::AAAA);
        assert_eq!(rdata(&aaaa.answers), ["fd00::1"]);
        assert_eq!(
            aaaa.answers[0].ttl, DEFAULT_TTL,
            "no TTL stored: the default"
        );
    }

    #[test]
    fn srv_answers_one_per_entry_with_a_port_and_their_addresses() {
        let r = resolver();
        let z = zone();
        let srv = r.resolve(&z, &name("web.cluster.local.dev."), RecordType::SRV);
        assert_eq!(
            rdata(&srv.answers),
            [
                "10 33 8080 a-8080.web.cluster.local.dev.",
                "10 33 8080 b-8080.web.cluster.local.dev.",
                "10 33 8080 c-8080.web.cluster.local.dev.",
            ]
        );
        let extra: Vec<(String, String)> = srv
            .additionals
            .iter()
            .map(|r| (r.name.to_ascii(), r.data.to_string()))
            .collect();
        assert_eq!(
            extra[1],
            ("b-8080.web.cluster.local.dev.".into(), "10.0.0.2".into())
        );
        // The target answers A by itself.
        let t = r.resolve(&z, &name("b-8080.web.cluster.local.dev."), RecordType::A);
        assert_eq!(rdata(&t.answers), ["10.0.0.2"]);
        // The RFC 2782 form asks the same.
        let named = r.resolve(
            &z,
            &name("_http._tcp.web.cluster.local.dev."),
            RecordType::SRV,
        );
        assert_eq!(named.answers.len(), 3);
        // A host name is the target itself, with nothing additional.
        let ext = r.resolve(&z, &name("ext.cluster.local.dev."), RecordType::SRV);
        assert_eq!(rdata(&ext.answers), ["10 100 53 ns.example.org."]);
        assert!(ext.additionals.is_empty());
    }

    #[test]
    fn negative_answers_carry_the_soa_and_other_zones_are_refused() {
        let r = resolver();
        let z = zone();
        let nx = r.resolve(&z, &name("nope.cluster.local.dev."), RecordType::A);
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        assert!(nx.authoritative);
        assert_eq!(nx.authority.len(), 1);
        assert_eq!(
            nx.authority[0].data.to_string(),
            "ns.dns.cluster.local.dev. hostmaster.cluster.local.dev. 42 7200 1800 86400 30"
        );
        // A node has an address and no port: NODATA for SRV.
        let nodata = r.resolve(&z, &name("node-1.cluster.local.dev."), RecordType::SRV);
        assert_eq!(nodata.rcode, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.authority.len(), 1);
        let mx = r.resolve(&z, &name("web.cluster.local.dev."), RecordType::MX);
        assert_eq!((mx.rcode, mx.answers.len()), (ResponseCode::NoError, 0));
        let out = r.resolve(&z, &name("example.org."), RecordType::A);
        assert_eq!(out, Answer::refused());
        let soa = r.resolve(&z, &name("cluster.local.dev."), RecordType::SOA);
        assert_eq!(soa.answers.len(), 1);
        let ns = r.resolve(&z, &name("cluster.local.dev."), RecordType::NS);
        assert_eq!(rdata(&ns.answers), ["ns.dns.cluster.local.dev."]);
    }

    #[test]
    fn nothing_is_answered_before_the_first_list() {
        let z = Zone::new("cluster.local.dev");
        let r = resolver();
        let a = r.resolve(&z, &name("web.cluster.local.dev."), RecordType::A);
        assert_eq!(a.rcode, ResponseCode::ServFail);
        // Outside the zone is refused all the same.
        let out = r.resolve(&z, &name("example.org."), RecordType::A);
        assert_eq!(out.rcode, ResponseCode::Refused);
    }
}
