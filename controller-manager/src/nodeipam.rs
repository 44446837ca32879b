//! Node IPAM (upstream's range allocator): every Node gets a `spec.podCIDR` of
//! `--node-cidr-mask-size` bits (24) out of `--cluster-cidr` (10.244.0.0/16), which its
//! kubelet hands to the CNI bridge plugin; a deleted node's range is free again. The set
//! of ranges in use is rebuilt from the nodes when the controller starts (only the leader
//! runs it), as upstream's is.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use parking_lot::Mutex;
use serde_json::json;

use crate::Context;
use crate::workqueue::Action;

/// The ranges of one cluster CIDR, handed out one per node.
#[derive(Debug)]
pub struct CidrSet {
    network: u32,
    cluster_bits: u8,
    node_bits: u8,
    /// Range index → the node holding it.
    used: Mutex<BTreeMap<u32, String>>,
}

impl CidrSet {
    /// The ranges of `network/cluster_bits`, each `node_bits` long.
    pub fn new(network: Ipv4Addr, cluster_bits: u8, node_bits: u8) -> Result<CidrSet, String> {
        if cluster_bits > node_bits || node_bits > 30 {
            return Err(format!(
                "--node-cidr-mask-size ({node_bits}) must be at least the cluster CIDR's prefix ({cluster_bits}) and at most 30"
            ));
        }
        if node_bits - cluster_bits > 16 {
            return Err(format!(
                "a /{cluster_bits} cut into /{node_bits} ranges is more than 65536 node ranges; use a longer prefix or a shorter mask"
            ));
        }
        let mask = if cluster_bits == 0 { 0 } else { u32::MAX << (32 - cluster_bits) };
        Ok(CidrSet { network: u32::from(network) & mask, cluster_bits, node_bits, used: Mutex::new(BTreeMap::new()) })
    }

    /// Parses `10.244.0.0/16`.
    pub fn parse(cidr: &str, node_bits: u8) -> Result<CidrSet, String> {
        let (ip, bits) = cidr.split_once('/').ok_or_else(|| format!("{cidr:?} is not a CIDR (10.244.0.0/16)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{cidr:?}: {e}"))?;
        let bits: u8 = bits.parse().map_err(|e| format!("{cidr:?}: {e}"))?;
        CidrSet::new(ip, bits, node_bits)
    }

    fn count(&self) -> u32 {
        1 << (self.node_bits - self.cluster_bits)
    }

    fn format(&self, index: u32) -> String {
        let start = self.network + (index << (32 - u32::from(self.node_bits)));
        format!("{}/{}", Ipv4Addr::from(start), self.node_bits)
    }

    /// The index of a range of this set (`10.244.3.0/24` → 3), if it is one.
    fn index_of(&self, cidr: &str) -> Option<u32> {
        let (ip, bits) = cidr.split_once('/')?;
        let ip: u32 = ip.parse::<Ipv4Addr>().ok()?.into();
        if bits.parse::<u8>().ok()? != self.node_bits {
            return None;
        }
        let offset = ip.checked_sub(self.network)?;
        let index = offset >> (32 - u32::from(self.node_bits));
        (index < self.count() && offset & ((1 << (32 - u32::from(self.node_bits))) - 1) == 0).then_some(index)
    }

    /// Marks a range in use by `node`; false if it is not one of this set's.
    pub fn occupy(&self, cidr: &str, node: &str) -> bool {
        match self.index_of(cidr) {
            Some(i) => {
                self.used.lock().insert(i, node.to_owned());
                true
            }
            None => false,
        }
    }

    /// The lowest free range, now `node`'s.
    pub fn allocate(&self, node: &str) -> Option<String> {
        let mut used = self.used.lock();
        let free = (0..self.count()).find(|i| !used.contains_key(i))?;
        used.insert(free, node.to_owned());
        Some(self.format(free))
    }

    /// Frees a range.
    pub fn release(&self, cidr: &str) {
        if let Some(i) = self.index_of(cidr) {
            self.used.lock().remove(&i);
        }
    }

    /// Frees whatever `node` held (a deleted node).
    pub fn release_node(&self, node: &str) {
        self.used.lock().retain(|_, holder| holder != node);
    }

    /// How many ranges are in use.
    pub fn in_use(&self) -> usize {
        self.used.lock().len()
    }
}

/// The pod CIDR a node holds.
pub fn pod_cidr(node: &Node) -> Option<&str> {
    node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).filter(|c| !c.is_empty())
}

/// Gives one node (the key is its name) a pod CIDR if it has none.
pub async fn reconcile(ctx: Arc<Context>, name: String) -> anyhow::Result<Action> {
    let Some(cidrs) = ctx.cidrs.as_ref() else { return Ok(Action::Done) };
    let Some(node) = ctx.nodes.get(&name) else {
        cidrs.release_node(&name);
        return Ok(Action::Done);
    };
    if let Some(cidr) = pod_cidr(&node) {
        cidrs.occupy(cidr, &name);
        return Ok(Action::Done);
    }
    let Some(cidr) = cidrs.allocate(&name) else {
        tracing::warn!(node = %name, "no pod CIDR left in the cluster CIDR");
        let recorder = component_base::events::Recorder::new(ctx.client.clone(), "cidrAllocator");
        recorder.record(
            node.as_ref(),
            true,
            "CIDRNotAvailable",
            format!("Node {name} status is now: CIDRNotAvailable"),
        );
        return Ok(Action::Done);
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "pod CIDR assigned");
            Ok(Action::Done)
        }
        Err(e) => {
            cidrs.release(&cidr);
            crate::tolerate::<()>(Err(e), &[404])?;
            Ok(Action::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_handed_out_lowest_first_once_each() {
        let set = CidrSet::parse("10.244.0.0/16", 24).unwrap();
        assert!(set.occupy("10.244.0.0/24", "a"));
        assert!(set.occupy("10.244.2.0/24", "b"));
        assert_eq!(set.allocate("c").as_deref(), Some("10.244.1.0/24"));
        assert_eq!(set.allocate("d").as_deref(), Some("10.244.3.0/24"));
        set.release("10.244.0.0/24");
        assert_eq!(set.allocate("e").as_deref(), Some("10.244.0.0/24"));
        assert_eq!(set.in_use(), 4);
        set.release_node("c");
        assert_eq!(set.allocate("f").as_deref(), Some("10.244.1.0/24"), "a deleted node's range is free");
        // Ranges of another network or size are not this set's.
        assert!(!set.occupy("10.245.0.0/24", "x"));
        assert!(!set.occupy("10.244.4.0/25", "x"));
        assert!(!set.occupy("10.244.4.7/24", "x"));
    }

    #[test]
    fn a_full_set_hands_out_nothing_and_bad_sizes_are_refused() {
        let set = CidrSet::parse("10.0.0.0/30", 30).unwrap();
        assert_eq!(set.allocate("a").as_deref(), Some("10.0.0.0/30"));
        assert_eq!(set.allocate("b"), None);
        let small = CidrSet::parse("10.0.0.0/22", 24).unwrap();
        let all: Vec<String> = std::iter::from_fn(|| small.allocate("n")).collect();
        assert_eq!(all, vec!["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]);
        assert!(CidrSet::parse("10.0.0.0/24", 16).is_err());
        assert!(CidrSet::parse("10.0.0.0/8", 31).is_err());
        assert!(CidrSet::parse("10.0.0.0/8", 28).is_err(), "over 65536 ranges");
        assert!(CidrSet::parse("10.0.0/8", 24).is_err());
    }
}
