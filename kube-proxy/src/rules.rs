//! The nftables ruleset, as a pure function of the services, their endpoints and this node
//! ([`ruleset`]): upstream's nftables mode, one table `ip kube-proxy` holding
//!
//! - a verdict map `service-ips` (cluster IP . protocol . port → the service's chain) and
//!   `service-nodeports` (protocol . port → its external chain), so that a packet finds its
//!   service in one lookup however many services there are;
//! - per service port a chain that DNATs to an endpoint picked by `numgen random mod N`
//!   through a map (with `ClientIP` affinity: a chain per endpoint that records clients);
//! - masquerade for traffic from outside the pod network to a cluster IP, for node ports
//!   of `externalTrafficPolicy: Cluster`, and for a pod reaching itself (hairpin);
//! - `no-endpoint-services` / `no-endpoint-nodeports`: a service with nothing to send to
//!   is rejected at once rather than left to time out.
//!
//! Which endpoints a port uses follows upstream: ready ones; if none, serving terminating
//! ones; with a `Local` traffic policy only this node's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

/// The table kube-proxy owns.
pub const TABLE: &str = "kube-proxy";

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// From a Service port's `protocol` (TCP when absent).
    pub fn parse(name: Option<&str>) -> Option<Protocol> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The pod's IP.
    pub ip: Ipv4Addr,
    /// The port it serves on.
    pub port: u16,
    /// `conditions.ready`.
    pub ready: bool,
    /// `conditions.serving`.
    pub serving: bool,
    /// `conditions.terminating`.
    pub terminating: bool,
    /// The node it runs on.
    pub node: Option<String>,
}

/// One port of one Service, with its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The service's namespace.
    pub namespace: String,
    /// The service's name.
    pub name: String,
    /// The port's name (may be empty).
    pub port_name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// The cluster IP (none for headless services, which kube-proxy leaves alone).
    pub cluster_ip: Option<Ipv4Addr>,
    /// The service port.
    pub port: u16,
    /// The node port, for NodePort and LoadBalancer services.
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP`, with its timeout in seconds.
    pub affinity_seconds: Option<u32>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `namespace/name/tcp/port-name`, as upstream names it in chains.
    pub fn id(&self) -> String {
        format!("{}/{}/{}/{}", self.namespace, self.name, self.protocol.nft(), self.port_name)
    }
}

/// What the rules need to know of the node they run on.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// The node's name (`--hostname-override`), for the `Local` policies.
    pub name: String,
    /// The pod network (`--cluster-cidr`): traffic from outside it to a cluster IP is
    /// masqueraded. Without it, only hairpin and node-port traffic is.
    pub cluster_cidr: Option<(Ipv4Addr, u8)>,
}

/// The mark that asks for masquerading (upstream's 0x4000).
const MASQ_MARK: u32 = 0x4000;

/// An 8-character name-safe hash, so that chain names stay short and distinct.
fn hash(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..8).map(|i| ALPHABET[((h >> (i * 5)) & 31) as usize] as char).collect()
}

/// The chain a service port's traffic is sent to (`service-<hash>-<id>`).
pub fn service_chain(sp: &ServicePort) -> String {
    let id = sp.id();
    format!("service-{}-{id}", hash(&id))
}

fn external_chain(sp: &ServicePort) -> String {
    let id = sp.id();
    format!("external-{}-{id}", hash(&id))
}

fn endpoint_chain(sp: &ServicePort, e: &Endpoint) -> String {
    let id = format!("{}__{}/{}", sp.id(), e.ip, e.port);
    format!("endpoint-{}-{id}", hash(&id))
}

fn affinity_set(sp: &ServicePort, e: &Endpoint) -> String {
    let id = format!("{}__{}/{}", sp.id(), e.ip, e.port);
    format!("affinity-{}", hash(&id))
}

/// The endpoints traffic may go to: ready ones, else serving terminating ones (upstream's
/// `CategorizeEndpoints`), of this node only when `local`.
pub fn usable<'a>(endpoints: &'a [Endpoint], node: &str, local: bool) -> Vec<&'a Endpoint> {
    let candidates: Vec<&Endpoint> = endpoints.iter().filter(|e| !local || e.node.as_deref() == Some(node)).collect();
    let ready: Vec<&Endpoint> = candidates.iter().copied().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    candidates.into_iter().filter(|e| e.serving && e.terminating).collect()
}

/// The rules that spread traffic over `endpoints` (affinity first).
/// Without affinity that is one DNAT through a `numgen` map (no chain per endpoint: at
/// 10,000 endpoints, chains are most of what the kernel builds); with it, a chain per
/// endpoint that records the client.
fn spread(rules: &mut Vec<String>, sp: &ServicePort, endpoints: &[&Endpoint]) {
    let proto = sp.protocol.nft();
    if sp.affinity_seconds.is_some() {
        for e in endpoints {
            rules.push(format!("ip saddr @{} goto {}", affinity_set(sp, e), endpoint_chain(sp, e)));
        }
        let arms: Vec<String> =
            endpoints.iter().enumerate().map(|(i, e)| format!("{i} : goto {}", endpoint_chain(sp, e))).collect();
        rules.push(format!("numgen random mod {} vmap {{ {} }}", endpoints.len(), arms.join(", ")));
    } else if let [e] = endpoints {
        rules.push(format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
    } else {
        let arms: Vec<String> =
            endpoints.iter().enumerate().map(|(i, e)| format!("{i} : {} . {}", e.ip, e.port)).collect();
        rules.push(format!(
            "meta l4proto {proto} dnat ip addr . port to numgen random mod {} map {{ {} }}",
            endpoints.len(),
            arms.join(", ")
        ));
    }
}

/// The maps of verdicts kube-proxy fills, and their key types.
const MAPS: [(&str, &str); 4] = [
    ("service-ips", "ipv4_addr . inet_proto . inet_service"),
    ("service-nodeports", "inet_proto . inet_service"),
    ("no-endpoint-services", "ipv4_addr . inet_proto . inet_service"),
    ("no-endpoint-nodeports", "inet_proto . inet_service"),
];

/// What kube-proxy writes besides its fixed chains: the verdict maps' elements, the
/// affinity sets (name → timeout in seconds) and the per-service and per-endpoint chains
/// (name → rules). Two of them differ by what a sync must change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Map name → key → verdict.
    pub maps: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// Affinity set name → timeout in seconds.
    pub sets: BTreeMap<String, u32>,
    /// Chain name → its rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// `endpoint . endpoint` for every endpoint: a pod that reaches itself through a
    /// service is masqueraded (hairpin), in postrouting.
    pub hairpin: BTreeSet<String>,
}

/// The rules for `ports` on `node`.
pub fn build(ports: &[ServicePort], node: &Node) -> Ruleset {
    let mut out = Ruleset::default();
    for (name, _) in MAPS {
        out.maps.insert(name, BTreeMap::new());
    }
    let mut element = |map: &'static str, key: String, verdict: String| {
        if let Some(m) = out.maps.get_mut(map) {
            m.insert(key, verdict);
        }
    };
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sets = BTreeMap::new();
    let mut hairpin = BTreeSet::new();
    for sp in ports {
        let Some(ip) = sp.cluster_ip else { continue };
        let proto = sp.protocol.nft();
        let key = format!("{ip} . {proto} . {}", sp.port);
        let internal = usable(&sp.endpoints, &node.name, sp.internal_local);
        let external = usable(&sp.endpoints, &node.name, sp.external_local);
        let svc_chain = service_chain(sp);
        if internal.is_empty() {
            element("no-endpoint-services", key, "goto reject-chain".into());
        } else {
            element("service-ips", key, format!("goto {svc_chain}"));
            let mut rules = Vec::new();
            if let Some((net, bits)) = node.cluster_cidr {
                rules.push(format!(
                    "ip daddr {ip} {proto} dport {} ip saddr != {net}/{bits} jump mark-for-masquerade",
                    sp.port
                ));
            }
            spread(&mut rules, sp, &internal);
            chains.insert(svc_chain.clone(), rules);
        }
        if let Some(np) = sp.node_port {
            let key = format!("{proto} . {np}");
            if external.is_empty() {
                element("no-endpoint-nodeports", key, "goto reject-chain".into());
            } else {
                let chain = external_chain(sp);
                element("service-nodeports", key, format!("goto {chain}"));
                let mut rules = Vec::new();
                if sp.external_local {
                    // The client's address is kept: only this node's endpoints serve it.
                    spread(&mut rules, sp, &external);
                } else {
                    rules.push("jump mark-for-masquerade".into());
                    spread(&mut rules, sp, &external);
                }
                chains.insert(chain, rules);
            }
        }
        for e in internal.iter().chain(external.iter()) {
            hairpin.insert(format!("{} . {}", e.ip, e.ip));
            let Some(timeout) = sp.affinity_seconds else { continue };
            let chain = endpoint_chain(sp, e);
            if chains.contains_key(&chain) {
                continue;
            }
            let set = affinity_set(sp, e);
            sets.insert(set.clone(), timeout);
            let rules = vec![
                format!("update @{set} {{ ip saddr }}"),
                format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port),
            ];
            chains.insert(chain, rules);
        }
    }
    out.chains = chains;
    out.sets = sets;
    out.hairpin = hairpin;
    out
}

/// The fixed part of the table: hooks, dispatch, reject and masquerade.
fn fixed_chains() -> String {
    format!(
        "\tchain nat-prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tjump masquerading\n\t}}\n\
         \tchain filter-input {{\n\t\ttype filter hook input priority filter; policy accept;\n\t\tct state new jump endpoints-check\n\t}}\n\
         \tchain filter-forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct state new jump endpoints-check\n\t}}\n\
         \tchain filter-output {{\n\t\ttype filter hook output priority filter; policy accept;\n\t\tct state new jump endpoints-check\n\t}}\n\
         \tchain services {{\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\
         \t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n\t}}\n\
         \tchain endpoints-check {{\n\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n\
         \t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports\n\t}}\n\
         \tchain reject-chain {{\n\t\treject\n\t}}\n\
         \tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | {MASQ_MARK:#x}\n\t}}\n\
         \tchain masquerading {{\n\t\tct status dnat ip saddr . ip daddr @hairpin masquerade fully-random\n\t\tmeta mark & {MASQ_MARK:#x} == 0 return\n\t\tmeta mark set meta mark ^ {MASQ_MARK:#x}\n\t\tmasquerade fully-random\n\t}}\n"
    )
}

fn set_declaration(timeout: u32) -> String {
    format!("{{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}")
}

/// The whole table, as one `nft -f` script that replaces whatever is there in one
/// transaction (the first sync, and after a failed incremental one).
pub fn full(r: &Ruleset) -> String {
    let mut out = String::new();
    // Declaring the table first makes the delete valid on a first sync; the delete and the
    // new table are one transaction, so no packet sees a half-written table.
    let _ = writeln!(out, "table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{");
    let _ = writeln!(out, "\tcomment \"rules for kube-proxy\"");
    for (name, key) in MAPS {
        let _ = writeln!(out, "\tmap {name} {{\n\t\ttype {key} : verdict");
        let elements = r.maps.get(name).map(|m| m.iter().map(|(k, v)| format!("{k} : {v}")).collect::<Vec<_>>());
        if let Some(elements) = elements.filter(|e| !e.is_empty()) {
            let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
        }
        out.push_str("\t}\n");
    }
    let _ = writeln!(out, "\tset hairpin {{\n\t\ttype ipv4_addr . ipv4_addr");
    if !r.hairpin.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", r.hairpin.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    out.push_str("\t}\n");
    for (set, timeout) in &r.sets {
        let _ = writeln!(
            out,
            "\tset {set} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {timeout}s\n\t}}"
        );
    }
    out.push_str(&fixed_chains());
    for (chain, rules) in &r.chains {
        let _ = writeln!(out, "\tchain {chain} {{");
        for rule in rules {
            let _ = writeln!(out, "\t\t{rule}");
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

/// The changes from `old` (what the kernel has) to `new`, as one `nft -f` transaction:
/// new sets and chains, then the rules of new and changed chains, then map elements, then
/// what is gone (referrers before what they refer to). A one-endpoint change touches a few
/// chains and elements, whatever the number of services.
pub fn update(old: &Ruleset, new: &Ruleset) -> String {
    let mut out = String::new();
    let t = format!("ip {TABLE}");
    for (set, timeout) in &new.sets {
        if old.sets.get(set) != Some(timeout) {
            if old.sets.contains_key(set) {
                let _ = writeln!(out, "delete set {t} {set}");
            }
            let _ = writeln!(out, "add set {t} {set} {}", set_declaration(*timeout));
        }
    }
    for chain in new.chains.keys().filter(|c| !old.chains.contains_key(*c)) {
        let _ = writeln!(out, "add chain {t} {chain}");
    }
    for (chain, rules) in &new.chains {
        match old.chains.get(chain) {
            Some(before) if before == rules => continue,
            Some(_) => {
                let _ = writeln!(out, "flush chain {t} {chain}");
            }
            None => {}
        }
        for rule in rules {
            let _ = writeln!(out, "add rule {t} {chain} {rule}");
        }
    }
    for (name, _) in MAPS {
        let empty = BTreeMap::new();
        let (before, after) = (old.maps.get(name).unwrap_or(&empty), new.maps.get(name).unwrap_or(&empty));
        for (key, verdict) in before {
            if after.get(key) != Some(verdict) {
                let _ = writeln!(out, "delete element {t} {name} {{ {key} }}");
            }
        }
        for (key, verdict) in after {
            if before.get(key) != Some(verdict) {
                let _ = writeln!(out, "add element {t} {name} {{ {key} : {verdict} }}");
            }
        }
    }
    for gone in old.hairpin.difference(&new.hairpin) {
        let _ = writeln!(out, "delete element {t} hairpin {{ {gone} }}");
    }
    for added in new.hairpin.difference(&old.hairpin) {
        let _ = writeln!(out, "add element {t} hairpin {{ {added} }}");
    }
    // External chains refer to service chains, which refer to endpoint chains: delete in
    // that order, each emptied first.
    let mut gone: Vec<&String> = old.chains.keys().filter(|c| !new.chains.contains_key(*c)).collect();
    gone.sort_by_key(|c| (!c.starts_with("external-"), !c.starts_with("service-")));
    for chain in &gone {
        let _ = writeln!(out, "flush chain {t} {chain}");
    }
    for chain in gone {
        let _ = writeln!(out, "delete chain {t} {chain}");
    }
    for set in old.sets.keys().filter(|s| !new.sets.contains_key(*s)) {
        let _ = writeln!(out, "delete set {t} {set}");
    }
    out
}

/// The whole table for `ports` on `node` ([`build`] then [`full`]).
pub fn ruleset(ports: &[ServicePort], node: &Node) -> String {
    full(&build(ports, node))
}

/// The script that removes kube-proxy's table (`--cleanup`).
pub fn cleanup() -> String {
    format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str, ready: bool, serving: bool, terminating: bool, node: &str) -> Endpoint {
        Endpoint { ip: ip.parse().unwrap(), port: 8080, ready, serving, terminating, node: Some(node.into()) }
    }

    fn web(endpoints: Vec<Endpoint>) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: "web".into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Some("10.96.0.20".parse().unwrap()),
            port: 80,
            node_port: None,
            affinity_seconds: None,
            internal_local: false,
            external_local: false,
            endpoints,
        }
    }

    fn node() -> Node {
        Node { name: "n1".into(), cluster_cidr: Some(("10.244.0.0".parse().unwrap(), 16)) }
    }

    fn lines_with<'a>(rules: &'a str, needle: &str) -> Vec<&'a str> {
        rules.lines().map(str::trim).filter(|l| l.contains(needle)).collect()
    }

    #[test]
    fn a_service_is_one_map_element_and_a_random_pick_of_its_ready_endpoints() {
        let rules = ruleset(
            &[web(vec![ep("10.244.1.2", true, true, false, "n1"), ep("10.244.2.2", true, true, false, "n2")])],
            &node(),
        );
        let chain = service_chain(&web(vec![]));
        assert!(rules.contains(&format!("elements = {{ 10.96.0.20 . tcp . 80 : goto {chain} }}")), "{rules}");
        assert!(rules.contains("ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"));
        let picks = lines_with(&rules, "dnat ip addr . port to numgen random mod 2 map");
        assert_eq!(
            picks,
            vec![
                "meta l4proto tcp dnat ip addr . port to numgen random mod 2 map { 0 : 10.244.1.2 . 8080, 1 : 10.244.2.2 . 8080 }"
            ],
            "{rules}"
        );
        assert!(!rules.contains("chain endpoint-"), "no chain per endpoint without affinity");
        assert!(rules.contains("elements = { 10.244.1.2 . 10.244.1.2, 10.244.2.2 . 10.244.2.2 }"), "hairpin: {rules}");
        assert!(rules.contains("ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random"));
        assert!(rules.starts_with("table ip kube-proxy {}\ndelete table ip kube-proxy\ntable ip kube-proxy {"));
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let eps = vec![ep("10.244.1.2", true, true, false, "n1"), ep("10.244.1.3", false, true, true, "n1")];
        assert_eq!(usable(&eps, "n1", false).iter().map(|e| e.ip.to_string()).collect::<Vec<_>>(), vec!["10.244.1.2"]);
        let eps = vec![
            ep("10.244.1.3", false, true, true, "n1"),
            ep("10.244.1.4", false, false, true, "n1"),
            ep("10.244.1.5", false, false, false, "n1"),
        ];
        assert_eq!(usable(&eps, "n1", false).iter().map(|e| e.ip.to_string()).collect::<Vec<_>>(), vec!["10.244.1.3"]);
        // Local: this node's only.
        let eps = vec![ep("10.244.1.2", true, true, false, "n1"), ep("10.244.2.2", true, true, false, "n2")];
        assert_eq!(usable(&eps, "n2", true).iter().map(|e| e.ip.to_string()).collect::<Vec<_>>(), vec!["10.244.2.2"]);
        assert!(usable(&eps, "n3", true).is_empty());
    }

    #[test]
    fn a_service_without_endpoints_is_rejected_and_node_ports_follow_their_policy() {
        let empty = web(vec![ep("10.244.1.4", false, false, false, "n1")]);
        let rules = ruleset(&[empty], &node());
        assert!(rules.contains("map no-endpoint-services {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = { 10.96.0.20 . tcp . 80 : goto reject-chain }"), "{rules}");
        assert!(!rules.contains("dnat to") && !rules.contains("dnat ip addr"), "{rules}");

        let mut np = web(vec![ep("10.244.2.2", true, true, false, "n2")]);
        np.node_port = Some(30080);
        let rules = ruleset(std::slice::from_ref(&np), &node());
        let external = external_chain(&np);
        assert!(rules.contains(&format!("tcp . 30080 : goto {external}")), "{rules}");
        assert!(
            rules.contains(&format!(
                "chain {external} {{\n\t\tjump mark-for-masquerade\n\t\tmeta l4proto tcp dnat to 10.244.2.2:8080"
            )),
            "{rules}"
        );
        // externalTrafficPolicy: Local on a node without endpoints: rejected here.
        np.external_local = true;
        let rules = ruleset(std::slice::from_ref(&np), &node());
        assert!(rules.contains("tcp . 30080 : goto reject-chain"), "{rules}");
        let rules = ruleset(&[np], &Node { name: "n2".into(), ..node() });
        assert!(
            rules.contains(&format!("chain {external} {{\n\t\tmeta l4proto tcp dnat to 10.244.2.2:8080")),
            "{rules}"
        );
    }

    #[test]
    fn client_ip_affinity_remembers_each_clients_endpoint() {
        let mut sp = web(vec![ep("10.244.1.2", true, true, false, "n1")]);
        sp.affinity_seconds = Some(10800);
        let rules = ruleset(&[sp.clone()], &node());
        let e = &sp.endpoints[0];
        let set = affinity_set(&sp, e);
        assert!(
            rules.contains(&format!("set {set} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout 10800s"))
        );
        assert!(rules.contains(&format!("ip saddr @{set} goto {}", endpoint_chain(&sp, e))));
        assert!(rules.contains(&format!("update @{set} {{ ip saddr }}")));
    }

    #[test]
    fn headless_services_and_nothing_at_all_make_an_empty_table() {
        let mut headless = web(vec![ep("10.244.1.2", true, true, false, "n1")]);
        headless.cluster_ip = None;
        let rules = ruleset(&[headless], &node());
        assert!(!rules.contains("dnat to") && !rules.contains("dnat ip addr"), "{rules}");
        assert_eq!(ruleset(&[], &node()), rules);
        assert_eq!(hash("a"), hash("a"));
        assert_ne!(hash("default/web/tcp/http"), hash("default/web/tcp/https"));
    }

    /// Every shape of ruleset is one nft accepts (`nft -c` checks without applying).
    #[test]
    fn nft_accepts_every_shape() {
        let nft = std::process::Command::new("nft").arg("--version").output();
        if nft.is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but nft is missing");
            eprintln!("skipping: nft is not installed");
            return;
        }
        let mut affinity =
            web(vec![ep("10.244.1.2", true, true, false, "n1"), ep("10.244.2.2", true, true, false, "n2")]);
        affinity.affinity_seconds = Some(100);
        affinity.node_port = Some(30080);
        let mut empty = web(vec![]);
        empty.name = "empty".into();
        empty.cluster_ip = Some("10.96.0.21".parse().unwrap());
        empty.node_port = Some(30081);
        let mut local = web(vec![ep("10.244.1.2", true, true, false, "n1")]);
        local.name = "local".into();
        local.cluster_ip = Some("10.96.0.22".parse().unwrap());
        local.node_port = Some(30082);
        local.external_local = true;
        local.internal_local = true;
        let mut udp = web(vec![ep("10.244.1.9", true, true, false, "n1")]);
        udp.name = "dns".into();
        udp.protocol = Protocol::Udp;
        udp.port = 53;
        for (ports, node) in [
            (vec![affinity, empty, local, udp], node()),
            (vec![], node()),
            (
                vec![web(vec![ep("10.244.1.2", true, true, false, "n1")])],
                Node { name: "n1".into(), cluster_cidr: None },
            ),
        ] {
            let script = ruleset(&ports, &node);
            let mut child = std::process::Command::new("nft")
                .args(["-c", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "nft refused:\n{}\n{script}", String::from_utf8_lossy(&out.stderr));
        }
    }

    #[test]
    fn an_endpoint_change_rewrites_only_what_it_touches() {
        let before = build(
            &[web(vec![ep("10.244.1.2", true, true, false, "n1"), ep("10.244.2.2", true, true, false, "n2")])],
            &node(),
        );
        let after = build(
            &[web(vec![ep("10.244.1.2", true, true, false, "n1"), ep("10.244.3.3", true, true, false, "n3")])],
            &node(),
        );
        assert_eq!(update(&before, &before), "", "nothing changed, nothing written");
        let script = update(&before, &after);
        let svc = service_chain(&web(vec![]));
        assert_eq!(
            script.lines().collect::<Vec<_>>(),
            vec![
                format!("flush chain ip kube-proxy {svc}"),
                format!(
                    "add rule ip kube-proxy {svc} ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
                ),
                format!(
                    "add rule ip kube-proxy {svc} meta l4proto tcp dnat ip addr . port to numgen random mod 2 map {{ 0 : 10.244.1.2 . 8080, 1 : 10.244.3.3 . 8080 }}"
                ),
                "delete element ip kube-proxy hairpin { 10.244.2.2 . 10.244.2.2 }".to_owned(),
                "add element ip kube-proxy hairpin { 10.244.3.3 . 10.244.3.3 }".to_owned(),
            ],
            "one chain rewritten, the service's map element untouched"
        );
        // A service that goes takes its element and chains, referrers first.
        let script = update(&after, &build(&[], &node()));
        assert!(script.contains("delete element ip kube-proxy service-ips { 10.96.0.20 . tcp . 80 }"), "{script}");
        let deletes: Vec<&str> = script.lines().filter(|l| l.starts_with("delete chain")).collect();
        assert_eq!(deletes, vec![format!("delete chain ip kube-proxy {svc}")]);
        // With affinity, endpoint chains go after the service chain that refers to them.
        let mut sticky = web(vec![ep("10.244.1.2", true, true, false, "n1")]);
        sticky.affinity_seconds = Some(60);
        let script = update(&build(&[sticky], &node()), &build(&[], &node()));
        let deletes: Vec<&str> = script.lines().filter(|l| l.starts_with("delete chain")).collect();
        assert!(deletes[0].contains("service-") && deletes[1].contains("endpoint-"), "{deletes:?}");
        assert!(
            script.ends_with(&format!(
                "delete set ip kube-proxy {}\n",
                affinity_set(&web(vec![]), &ep("10.244.1.2", true, true, false, "n1"))
            )),
            "{script}"
        );
        // Losing its last endpoint moves it to the reject map.
        let script = update(&after, &build(&[web(vec![])], &node()));
        assert!(
            script.contains(
                "add element ip kube-proxy no-endpoint-services { 10.96.0.20 . tcp . 80 : goto reject-chain }"
            )
        );
    }
}
