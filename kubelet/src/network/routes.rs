//! Routes to the other nodes' pods ("host-gw"): for every other node with a `podCIDR`
//! and an InternalIP, `podCIDR via InternalIP`, kept in step with the Node objects. The
//! kubelet's routes carry a protocol number of their own, so a restarted kubelet finds
//! (and removes) the ones whose node went away.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

/// The protocol number the kubelet's routes are tagged with (`ip route ... proto 147`).
pub const PROTO: &str = "147";

/// The routes this node needs: pod CIDR → next hop, for every other node that has both
/// (IPv4), except nodes at this node's own address (several nodes on one host share its
/// routing table, where each bridge's own route already reaches its pods).
pub fn desired<'a>(nodes: impl IntoIterator<Item = &'a Node>, me: &str, my_ip: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(me) || node.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(spec) = &node.spec else { continue };
        let Some(cidr) = spec.pod_cidr.as_deref().filter(|c| c.parse::<Ipv4Cidr>().is_ok()) else { continue };
        let ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.as_str())
            .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback() && !ip.is_unspecified()));
        if let Some(ip) = ip.filter(|ip| *ip != my_ip) {
            out.insert(cidr.to_owned(), ip.to_owned());
        }
    }
    out
}

/// An IPv4 CIDR, only to check one.
struct Ipv4Cidr;

impl std::str::FromStr for Ipv4Cidr {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (ip, len) = s.split_once('/').ok_or(())?;
        ip.parse::<std::net::Ipv4Addr>().map_err(|_| ())?;
        len.parse::<u8>().ok().filter(|l| *l <= 32).map(|_| Ipv4Cidr).ok_or(())
    }
}

/// Parses `ip -4 route show proto 147`: destination → gateway.
pub fn parse_routes(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let via = words.iter().position(|w| *w == "via")?;
            Some((words.first()?.to_string(), words.get(via + 1)?.to_string()))
        })
        .collect()
}

/// What to change: routes to add or replace, and destinations to delete.
pub fn diff(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> (Vec<(String, String)>, Vec<String>) {
    let set = want.iter().filter(|(d, v)| have.get(*d) != Some(*v)).map(|(d, v)| (d.clone(), v.clone())).collect();
    let del = have.keys().filter(|d| !want.contains_key(*d)).cloned().collect();
    (set, del)
}

async fn ip(args: &[&str]) -> Result<String, String> {
    super::command("ip", args).await
}

/// Makes the routing table hold exactly `want` among the kubelet's routes.
pub async fn apply(want: &BTreeMap<String, String>) -> Result<(), String> {
    let have = parse_routes(&ip(&["-4", "route", "show", "proto", PROTO]).await?);
    let (set, del) = diff(&have, want);
    for (dst, via) in set {
        ip(&["-4", "route", "replace", &dst, "via", &via, "proto", PROTO]).await?;
        tracing::info!(%dst, %via, "route to a node's pods");
    }
    for dst in del {
        ip(&["-4", "route", "del", &dst, "proto", PROTO]).await?;
        tracing::info!(%dst, "route to a node's pods removed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": ip.map(|ip| vec![serde_json::json!({"type": "InternalIP", "address": ip})]).unwrap_or_default()},
        }))
        .expect("node")
    }

    #[test]
    fn every_other_node_with_a_cidr_and_an_address_is_routed() {
        let nodes = [
            node("a", Some("10.244.0.0/24"), Some("192.168.7.1")),
            node("b", Some("10.244.1.0/24"), Some("192.168.7.2")),
            node("c", None, Some("192.168.7.3")),
            node("d", Some("10.244.3.0/24"), None),
            node("e", Some("10.244.4.0/24"), Some("127.0.0.1")),
            node("f", Some("not a cidr"), Some("192.168.7.6")),
            node("g", Some("10.244.6.0/24"), Some("192.168.7.1")),
        ];
        let want = desired(&nodes, "a", "192.168.7.1");
        assert_eq!(want, BTreeMap::from([("10.244.1.0/24".to_owned(), "192.168.7.2".to_owned())]));
    }

    #[test]
    fn the_table_is_read_back_and_diffed() {
        let have = parse_routes(
            "10.244.1.0/24 via 192.168.7.2 dev eth0 proto 147\n10.244.2.0/24 via 192.168.7.9 dev eth0 proto 147 \n",
        );
        assert_eq!(have.len(), 2);
        let want = BTreeMap::from([
            ("10.244.1.0/24".to_owned(), "192.168.7.2".to_owned()),
            ("10.244.2.0/24".to_owned(), "192.168.7.3".to_owned()),
            ("10.244.5.0/24".to_owned(), "192.168.7.5".to_owned()),
        ]);
        let (set, del) = diff(&have, &want);
        assert_eq!(
            set,
            vec![
                ("10.244.2.0/24".to_owned(), "192.168.7.3".to_owned()),
                ("10.244.5.0/24".to_owned(), "192.168.7.5".to_owned())
            ]
        );
        assert!(del.is_empty());
        let (set, del) = diff(&have, &BTreeMap::new());
        assert!(set.is_empty());
        assert_eq!(del, vec!["10.244.1.0/24".to_owned(), "10.244.2.0/24".to_owned()]);
    }
}
