//! Each pod's `/etc/resolv.conf`, as upstream's kubelet writes it from the pod's
//! `dnsPolicy` and `dnsConfig`, the node's `--cluster-dns` and `--cluster-domain`, and the
//! host's resolver file (`--resolv-conf`):
//!
//! - `ClusterFirst` (the default): the cluster's DNS server, searching
//!   `<ns>.svc.<domain> svc.<domain> <domain>` then the host's search list, `ndots:5`. A
//!   `hostNetwork` pod gets the host's file instead, unless its policy is
//!   `ClusterFirstWithHostNet`. With no `--cluster-dns`, the host's file (as upstream).
//! - `Default`: the host's nameservers, search list and options.
//! - `None`: nothing but `dnsConfig`.
//!
//! `dnsConfig` adds nameservers and searches and sets options; at most 3 nameservers and
//! 32 search domains are kept, as upstream's limits.

use k8s_openapi::api::core::v1::PodSpec;

/// The node's DNS settings.
#[derive(Debug, Clone, Default)]
pub struct ClusterDns {
    /// `--cluster-dns`.
    pub servers: Vec<String>,
    /// `--cluster-domain`.
    pub domain: String,
    /// The host's resolver file's text (`--resolv-conf`).
    pub host: String,
}

/// A parsed `resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// `search` (or `domain`) entries.
    pub searches: Vec<String>,
    /// `options`, in order.
    pub options: Vec<String>,
}

const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

impl ResolvConf {
    /// Reads a resolver file.
    pub fn parse(text: &str) -> ResolvConf {
        let mut r = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => r.nameservers.extend(words.next().map(str::to_owned)),
                Some("search") | Some("domain") => r.searches = words.map(str::to_owned).collect(),
                Some("options") => r.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        r
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }

    fn set_option(&mut self, name: &str, value: Option<&str>) {
        self.options.retain(|o| o.split(':').next() != Some(name));
        self.options.push(match value {
            Some(v) => format!("{name}:{v}"),
            None => name.to_owned(),
        });
    }
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// What a pod's `resolv.conf` says, or why the pod's DNS settings cannot be used.
pub fn for_pod(spec: &PodSpec, namespace: &str, node: &ClusterDns) -> Result<ResolvConf, String> {
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network == Some(true);
    let mut host = ResolvConf::parse(&node.host);
    if !host_network {
        // The host's loopback resolvers (systemd-resolved's 127.0.0.53) are not reachable
        // from the pod's own network namespace.
        host.nameservers.retain(|ns| ns.parse::<std::net::IpAddr>().map_or(true, |ip| !ip.is_loopback()));
    }
    let cluster = |r: &mut ResolvConf| {
        r.nameservers = node.servers.clone();
        let domain = node.domain.trim_end_matches('.');
        let mut searches = vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.to_owned()];
        push_unique(&mut searches, host.searches.iter().cloned());
        r.searches = searches;
        r.options = vec!["ndots:5".into()];
    };
    let mut r = ResolvConf::default();
    match policy {
        "ClusterFirst" | "ClusterFirstWithHostNet" => {
            let use_cluster = !node.servers.is_empty() && (!host_network || policy == "ClusterFirstWithHostNet");
            if use_cluster {
                cluster(&mut r);
            } else {
                r = host.clone();
            }
        }
        "Default" => r = host.clone(),
        "None" => {
            if spec.dns_config.is_none() {
                return Err("dnsPolicy None needs a dnsConfig".into());
            }
        }
        other => return Err(format!("unknown dnsPolicy {other:?}")),
    }
    if let Some(config) = &spec.dns_config {
        push_unique(&mut r.nameservers, config.nameservers.iter().flatten().cloned());
        push_unique(&mut r.searches, config.searches.iter().flatten().cloned());
        for option in config.options.iter().flatten() {
            if let Some(name) = option.name.as_deref().filter(|n| !n.is_empty()) {
                r.set_option(name, option.value.as_deref());
            }
        }
    }
    r.nameservers.truncate(MAX_NAMESERVERS);
    r.searches.truncate(MAX_SEARCHES);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([]);
        serde_json::from_value(v).expect("spec")
    }

    fn node() -> ClusterDns {
        ClusterDns {
            servers: vec!["10.96.0.10".into()],
            domain: "cluster.local".into(),
            host: "# host\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n".into(),
        }
    }

    #[test]
    fn cluster_first_searches_the_pods_namespace_first() {
        let r = for_pod(&spec(json!({})), "shop", &node()).expect("resolv");
        assert_eq!(
            r.render(),
            "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_is_the_hosts_without_its_loopback_resolver() {
        let r = for_pod(&spec(json!({"dnsPolicy": "Default"})), "shop", &node()).expect("resolv");
        assert_eq!(r.nameservers, ["192.0.2.53"]);
        assert_eq!(r.searches, ["corp.example"]);
        assert_eq!(r.options, ["edns0"]);
        // On the host's network, the host's own resolver is reachable.
        let r = for_pod(&spec(json!({"dnsPolicy": "Default", "hostNetwork": true})), "shop", &node()).expect("r");
        assert_eq!(r.nameservers, ["127.0.0.53", "192.0.2.53"]);
    }

    #[test]
    fn host_network_pods_use_the_cluster_only_when_they_ask() {
        let r = for_pod(&spec(json!({"hostNetwork": true})), "shop", &node()).expect("resolv");
        assert_eq!(r.nameservers[0], "127.0.0.53");
        let r = for_pod(&spec(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})), "shop", &node())
            .expect("resolv");
        assert_eq!(r.nameservers, ["10.96.0.10"]);
    }

    #[test]
    fn no_cluster_dns_falls_back_to_the_host() {
        let n = ClusterDns { servers: vec![], ..node() };
        assert_eq!(for_pod(&spec(json!({})), "shop", &n).expect("resolv").nameservers, ["192.0.2.53"]);
    }

    #[test]
    fn dns_config_adds_and_overrides() {
        let s = spec(json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.2.3.4", "1.2.3.4", "5.6.7.8", "9.9.9.9", "8.8.8.8"],
            "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        let r = for_pod(&s, "shop", &node()).expect("resolv");
        assert_eq!(r.nameservers, ["1.2.3.4", "5.6.7.8", "9.9.9.9"], "deduplicated, at most three");
        assert_eq!(
            r.render(),
            "nameserver 1.2.3.4\nnameserver 5.6.7.8\nnameserver 9.9.9.9\nsearch a.example\noptions ndots:2 edns0\n"
        );
        let s = spec(json!({"dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}));
        assert_eq!(for_pod(&s, "shop", &node()).expect("resolv").options, ["ndots:1"]);
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(for_pod(&spec(json!({"dnsPolicy": "None"})), "a", &node()).is_err());
        assert!(for_pod(&spec(json!({"dnsPolicy": "Sometimes"})), "a", &node()).unwrap_err().contains("Sometimes"));
    }
}
