//! The cluster's names, as upstream's DNS specification for Services gives them, answered
//! from a snapshot of the Services and EndpointSlices ([`Zone`]) by a pure function
//! ([`Zone::answer`]):
//!
//! - `svc.ns.svc.cluster.local` A: the cluster IP; for a headless service, the address of
//!   every ready endpoint; an ExternalName service is a CNAME to its name;
//! - `hostname.svc.ns.svc.cluster.local` A: an endpoint with a hostname (what StatefulSets
//!   and pods with `hostname` + `subdomain` get);
//! - `_port._proto.svc.ns.svc.cluster.local` SRV for named ports;
//! - PTR for cluster IPs and named endpoints;
//! - NXDOMAIN for a name that does not exist, NOERROR with no answer (and the SOA) for one
//!   that exists without records of the type asked;
//! - anything else goes to the upstream resolvers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::str::FromStr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The TTL of every answer (CoreDNS's kubernetes plugin default).
pub const TTL: u32 = 5;

/// One Service as DNS sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Service {
    /// The cluster IP; `None` for headless and ExternalName services.
    pub cluster_ip: Option<Ipv4Addr>,
    /// `spec.externalName` of an ExternalName service.
    pub external_name: Option<String>,
    /// Named ports: (name, protocol in lower case, port).
    pub ports: Vec<(String, String, u16)>,
    /// The endpoints (for headless services and hostnames).
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint of a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// Its address.
    pub ip: Ipv4Addr,
    /// `hostname`, when set.
    pub hostname: Option<String>,
    /// `conditions.ready` (or the service publishes not-ready addresses).
    pub ready: bool,
}

/// What a query gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An authoritative answer from the cluster's names.
    Answer {
        /// NOERROR or NXDOMAIN.
        code: ResponseCode,
        /// The records.
        answers: Vec<Record>,
        /// The zone's SOA when there is no answer (negative caching).
        soa: Option<Box<Record>>,
    },
    /// Not a cluster name: ask the upstream resolvers.
    Forward,
}

/// The cluster's services, by (namespace, name).
#[derive(Debug, Clone, Default)]
pub struct Zone {
    /// The cluster domain (`cluster.local`), lower case, no trailing dot.
    pub domain: String,
    /// The services.
    pub services: BTreeMap<(String, String), Service>,
}

fn name(text: &str) -> Option<Name> {
    Name::from_str(&format!("{}.", text.trim_end_matches('.'))).ok()
}

impl Zone {
    /// An empty zone for `domain`.
    pub fn new(domain: &str) -> Zone {
        Zone { domain: domain.trim_end_matches('.').to_lowercase(), services: BTreeMap::new() }
    }

    fn soa(&self) -> Option<Record> {
        let zone = name(&self.domain)?;
        let soa = SOA::new(
            name(&format!("ns.dns.{}", self.domain))?,
            name(&format!("hostmaster.{}", self.domain))?,
            1,
            7200,
            1800,
            86400,
            TTL,
        );
        Some(Record::from_rdata(zone, TTL, RData::SOA(soa)))
    }

    fn boxed_soa(&self) -> Option<Box<Record>> {
        self.soa().map(Box::new)
    }

    fn found(&self, answers: Vec<Record>) -> Outcome {
        let soa = if answers.is_empty() { self.boxed_soa() } else { None };
        Outcome::Answer { code: ResponseCode::NoError, answers, soa }
    }

    fn missing(&self) -> Outcome {
        Outcome::Answer { code: ResponseCode::NXDomain, answers: Vec::new(), soa: self.boxed_soa() }
    }

    /// The answer to a question about `qname` (any case, with or without the trailing dot).
    pub fn answer(&self, qname: &str, qtype: RecordType) -> Outcome {
        let lower = qname.trim_end_matches('.').to_lowercase();
        if let Some(reverse) = lower.strip_suffix(".in-addr.arpa") {
            return self.reverse(reverse, qtype);
        }
        let Some(inside) = lower.strip_suffix(&self.domain).map(|r| r.trim_end_matches('.')) else {
            return Outcome::Forward;
        };
        if !inside.is_empty() && !lower.ends_with(&format!(".{}", self.domain)) {
            return Outcome::Forward;
        }
        let labels: Vec<&str> = if inside.is_empty() { Vec::new() } else { inside.split('.').collect() };
        let Some(qname) = name(&lower) else { return self.missing() };
        let a = |ip: Ipv4Addr| Record::from_rdata(qname.clone(), TTL, RData::A(A(ip)));
        match labels.as_slice() {
            // The zone itself, `svc`, and a namespace: names that exist without records.
            [] | ["svc"] => self.found(Vec::new()),
            [ns, "svc"] => {
                if self.services.keys().any(|(n, _)| n == ns) {
                    self.found(Vec::new())
                } else {
                    self.missing()
                }
            }
            [svc, ns, "svc"] => {
                let Some(s) = self.services.get(&((*ns).to_owned(), (*svc).to_owned())) else { return self.missing() };
                if let Some(target) = &s.external_name {
                    return match name(target) {
                        Some(target) if qtype != RecordType::SOA => {
                            self.found(vec![Record::from_rdata(qname.clone(), TTL, RData::CNAME(CNAME(target)))])
                        }
                        _ => self.found(Vec::new()),
                    };
                }
                if !matches!(qtype, RecordType::A | RecordType::ANY) {
                    return self.found(Vec::new());
                }
                let answers = match s.cluster_ip {
                    Some(ip) => vec![a(ip)],
                    None => {
                        let mut ips: Vec<Ipv4Addr> = s.endpoints.iter().filter(|e| e.ready).map(|e| e.ip).collect();
                        ips.sort();
                        ips.dedup();
                        ips.into_iter().map(a).collect()
                    }
                };
                self.found(answers)
            }
            [host, svc, ns, "svc"] => {
                let Some(s) = self.services.get(&((*ns).to_owned(), (*svc).to_owned())) else { return self.missing() };
                let Some(e) = s.endpoints.iter().find(|e| e.hostname.as_deref() == Some(*host)) else {
                    return self.missing();
                };
                self.found(if matches!(qtype, RecordType::A | RecordType::ANY) { vec![a(e.ip)] } else { Vec::new() })
            }
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                let Some(s) = self.services.get(&((*ns).to_owned(), (*svc).to_owned())) else { return self.missing() };
                let Some((_, _, number)) = s.ports.iter().find(|(n, p, _)| n == &port[1..] && p == &proto[1..]) else {
                    return self.missing();
                };
                if !matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    return self.found(Vec::new());
                }
                let targets: Vec<String> = if s.cluster_ip.is_some() {
                    vec![format!("{svc}.{ns}.svc.{}", self.domain)]
                } else {
                    s.endpoints
                        .iter()
                        .filter(|e| e.ready)
                        .map(|e| match &e.hostname {
                            Some(h) => format!("{h}.{svc}.{ns}.svc.{}", self.domain),
                            None => format!("{}.{svc}.{ns}.svc.{}", e.ip.to_string().replace('.', "-"), self.domain),
                        })
                        .collect()
                };
                let answers = targets
                    .iter()
                    .filter_map(|t| name(t))
                    .map(|t| Record::from_rdata(qname.clone(), TTL, RData::SRV(SRV::new(0, 100, *number, t))))
                    .collect();
                self.found(answers)
            }
            _ => self.missing(),
        }
    }

    /// PTR for a cluster IP or a named endpoint; other addresses go upstream.
    fn reverse(&self, reversed: &str, qtype: RecordType) -> Outcome {
        let octets: Vec<&str> = reversed.split('.').rev().collect();
        let Some(ip) = (octets.len() == 4).then(|| octets.join(".")).and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
            return Outcome::Forward;
        };
        let mut targets = Vec::new();
        for ((ns, svc), s) in &self.services {
            if s.cluster_ip == Some(ip) {
                targets.push(format!("{svc}.{ns}.svc.{}", self.domain));
            }
            for e in s.endpoints.iter().filter(|e| e.ip == ip) {
                if let Some(h) = &e.hostname {
                    targets.push(format!("{h}.{svc}.{ns}.svc.{}", self.domain));
                }
            }
        }
        if targets.is_empty() {
            return Outcome::Forward;
        }
        let Some(qname) = name(&format!("{reversed}.in-addr.arpa")) else { return Outcome::Forward };
        if !matches!(qtype, RecordType::PTR | RecordType::ANY) {
            return Outcome::Answer { code: ResponseCode::NoError, answers: Vec::new(), soa: None };
        }
        let answers = targets
            .iter()
            .filter_map(|t| name(t))
            .map(|t| Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(t))))
            .collect();
        Outcome::Answer { code: ResponseCode::NoError, answers, soa: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        let mut z = Zone::new("cluster.local");
        z.services.insert(
            ("default".into(), "web".into()),
            Service {
                cluster_ip: Some("10.96.0.20".parse().unwrap()),
                ports: vec![("http".into(), "tcp".into(), 80)],
                ..Default::default()
            },
        );
        z.services.insert(
            ("default".into(), "db".into()),
            Service {
                ports: vec![("pg".into(), "tcp".into(), 5432)],
                endpoints: vec![
                    Endpoint { ip: "10.244.1.2".parse().unwrap(), hostname: Some("db-0".into()), ready: true },
                    Endpoint { ip: "10.244.2.2".parse().unwrap(), hostname: None, ready: true },
                    Endpoint { ip: "10.244.3.2".parse().unwrap(), hostname: None, ready: false },
                ],
                ..Default::default()
            },
        );
        z.services.insert(
            ("other".into(), "search".into()),
            Service { external_name: Some("search.example.com".into()), ..Default::default() },
        );
        z
    }

    fn data(o: &Outcome) -> (ResponseCode, Vec<String>) {
        match o {
            Outcome::Answer { code, answers, .. } => (*code, answers.iter().map(|r| r.data().to_string()).collect()),
            Outcome::Forward => panic!("forwarded"),
        }
    }

    #[test]
    fn services_resolve_to_their_cluster_ip_or_ready_endpoints() {
        let z = zone();
        assert_eq!(
            data(&z.answer("web.default.svc.cluster.local.", RecordType::A)),
            (ResponseCode::NoError, vec!["10.96.0.20".into()])
        );
        assert_eq!(data(&z.answer("WEB.Default.svc.cluster.local", RecordType::A)).1, vec!["10.96.0.20"]);
        assert_eq!(
            data(&z.answer("db.default.svc.cluster.local", RecordType::A)).1,
            vec!["10.244.1.2", "10.244.2.2"],
            "a headless service answers with its ready endpoints"
        );
        assert_eq!(data(&z.answer("db-0.db.default.svc.cluster.local", RecordType::A)).1, vec!["10.244.1.2"]);
        assert_eq!(data(&z.answer("search.other.svc.cluster.local", RecordType::A)).1, vec!["search.example.com."]);
    }

    #[test]
    fn srv_and_ptr() {
        let z = zone();
        assert_eq!(
            data(&z.answer("_http._tcp.web.default.svc.cluster.local", RecordType::SRV)).1,
            vec!["0 100 80 web.default.svc.cluster.local."]
        );
        assert_eq!(
            data(&z.answer("_pg._tcp.db.default.svc.cluster.local", RecordType::SRV)).1,
            vec![
                "0 100 5432 db-0.db.default.svc.cluster.local.",
                "0 100 5432 10-244-2-2.db.default.svc.cluster.local."
            ]
        );
        assert_eq!(
            data(&z.answer("20.0.96.10.in-addr.arpa.", RecordType::PTR)).1,
            vec!["web.default.svc.cluster.local."]
        );
        assert_eq!(z.answer("1.1.168.192.in-addr.arpa", RecordType::PTR), Outcome::Forward);
    }

    #[test]
    fn nxdomain_and_nodata_are_told_apart() {
        let z = zone();
        let (code, answers) = data(&z.answer("nope.default.svc.cluster.local", RecordType::A));
        assert_eq!((code, answers.len()), (ResponseCode::NXDomain, 0));
        let (code, answers) = data(&z.answer("web.default.svc.cluster.local", RecordType::AAAA));
        assert_eq!((code, answers.len()), (ResponseCode::NoError, 0), "the name exists: NODATA");
        assert!(matches!(
            z.answer("web.default.svc.cluster.local", RecordType::AAAA),
            Outcome::Answer { soa: Some(_), .. }
        ));
        assert_eq!(data(&z.answer("default.svc.cluster.local", RecordType::A)).0, ResponseCode::NoError);
        assert_eq!(data(&z.answer("nobody.svc.cluster.local", RecordType::A)).0, ResponseCode::NXDomain);
        assert_eq!(data(&z.answer("a.b.c.d.e.f.cluster.local", RecordType::A)).0, ResponseCode::NXDomain);
        assert_eq!(data(&z.answer("_x._tcp.web.default.svc.cluster.local", RecordType::SRV)).0, ResponseCode::NXDomain);
        assert_eq!(z.answer("example.com", RecordType::A), Outcome::Forward);
        assert_eq!(z.answer("notcluster.local", RecordType::A), Outcome::Forward);
    }
}
