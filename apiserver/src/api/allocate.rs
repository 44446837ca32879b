//! The server's pools, claimed in storage: each Service cluster IP is an `IPAddress`
//! object (networking.k8s.io/v1, named by the address, its `parentRef` the service), as
//! upstream's IP allocator stores them; each node port a key under
//! `/registry/ranges/servicenodeports/`. A claim is an atomic create, so two requests (or
//! two apiservers) never get the same value, and a restarted server sees every claim.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use serde_json::{Value, json};

use super::App;
use crate::meta::now_rfc3339;
use crate::registry::{Allocator, Pool};
use crate::store::{self, ListRequest};

/// The pools' ranges (`--service-cluster-ip-range`, `--service-node-port-range`).
#[derive(Debug, Clone)]
pub struct Ranges {
    /// The service network and its prefix length.
    pub service_ips: (Ipv4Addr, u8),
    /// Node ports.
    pub node_ports: RangeInclusive<u16>,
}

impl Default for Ranges {
    /// Upstream's defaults: 10.96.0.0/12 and 30000-32767.
    fn default() -> Self {
        Ranges { service_ips: (Ipv4Addr::new(10, 96, 0, 0), 12), node_ports: 30000..=32767 }
    }
}

impl Ranges {
    /// Parses `10.96.0.0/12` (an IPv4 CIDR of at most 2^20 addresses, at least 8).
    pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
        let (ip, bits) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR (10.96.0.0/12)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{text:?}: {e}"))?;
        let bits: u8 = bits.parse().map_err(|e| format!("{text:?}: {e}"))?;
        if !(12..=29).contains(&bits) {
            return Err(format!("{text:?}: the prefix length must be between 12 and 29"));
        }
        let mask = u32::MAX << (32 - bits);
        if u32::from(ip) & !mask != 0 {
            return Err(format!(
                "{text:?} has host bits set: the network is {}/{bits}",
                Ipv4Addr::from(u32::from(ip) & mask)
            ));
        }
        Ok((ip, bits))
    }

    /// Parses `30000-32767`.
    pub fn parse_ports(text: &str) -> Result<RangeInclusive<u16>, String> {
        let (a, b) = text.split_once('-').ok_or_else(|| format!("{text:?} is not a port range (30000-32767)"))?;
        let a: u16 = a.trim().parse().map_err(|e| format!("{text:?}: {e}"))?;
        let b: u16 = b.trim().parse().map_err(|e| format!("{text:?}: {e}"))?;
        if a == 0 || a > b {
            return Err(format!("{text:?} is not a port range (30000-32767)"));
        }
        Ok(a..=b)
    }

    fn cidr(&self) -> String {
        format!("{}/{}", self.service_ips.0, self.service_ips.1)
    }

    /// The usable addresses: the network's, without its first (the network) and last.
    fn ip_offsets(&self) -> (u32, u32) {
        let size = 1u32 << (32 - self.service_ips.1);
        (1, size - 2)
    }
}

fn random_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

/// Claims against storage for one request; `dry_run` checks and picks without storing.
pub struct StoreAllocator<'a> {
    app: &'a App,
    dry_run: bool,
}

impl<'a> StoreAllocator<'a> {
    /// An allocator for a request.
    pub fn new(app: &'a App, dry_run: bool) -> StoreAllocator<'a> {
        StoreAllocator { app, dry_run }
    }

    fn ip_key(ip: &str) -> String {
        format!("/registry/ipaddresses/{ip}")
    }

    fn port_key(port: &str) -> String {
        format!("/registry/ranges/servicenodeports/{port}")
    }

    /// Creates the claim's key; false when it is taken.
    async fn take(&self, key: &str, value: Value) -> Result<bool, String> {
        if self.dry_run {
            return self.app.store.get(key).await.map(|kv| kv.is_none()).map_err(|e| e.to_string());
        }
        let bytes = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
        match self.app.store.create(key, bytes.into()).await {
            Ok(_) => Ok(true),
            Err(store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    fn ip_address(ip: &str, owner: &str) -> Value {
        let (namespace, name) = owner.split_once('/').unwrap_or(("", owner));
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
            "metadata": {
                "name": ip, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now_rfc3339(),
                "labels": {"ipaddress.kubernetes.io/ip-family": "IPv4", "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"},
            },
            "spec": {"parentRef": {"group": "", "resource": "services", "namespace": namespace, "name": name}},
        })
    }

    async fn claim_ip(&self, requested: Option<&str>, owner: &str) -> Result<String, String> {
        let ranges = &self.app.ranges;
        let (network, bits) = ranges.service_ips;
        let (first, last) = ranges.ip_offsets();
        if let Some(r) = requested {
            let ip: Ipv4Addr = r.parse().map_err(|_| format!("{r:?} is not a valid IPv4 address"))?;
            let offset = u32::from(ip).wrapping_sub(u32::from(network));
            let inside = (u32::from(ip) >> (32 - bits)) == (u32::from(network) >> (32 - bits));
            if !inside || offset < first || offset > last {
                return Err(format!(
                    "the provided IP ({r}) is not in the valid range. The range of valid IPs is {}",
                    ranges.cidr()
                ));
            }
            return match self.take(&Self::ip_key(r), Self::ip_address(r, owner)).await? {
                true => Ok(r.to_owned()),
                false => Err("provided IP is already allocated".into()),
            };
        }
        // Dynamic addresses come from the upper part of the range first, as upstream's,
        // leaving the lower part to addresses asked for by value (kube-dns's 10th).
        let size = last - first + 1;
        let reserved = (size / 16).clamp(16.min(size / 2), 256);
        let dynamic = size - reserved;
        let start = random_u32() % dynamic.max(1);
        let order = |i: u32| {
            let offset = if i < dynamic { first + reserved + (start + i) % dynamic } else { first + (i - dynamic) };
            Ipv4Addr::from(u32::from(network) + offset).to_string()
        };
        // First with the watch cache as the hint of what is taken (no storage read); it may
        // lag behind a release, so when it finds nothing free, storage itself is asked
        // before the range is called full.
        if let Some(cache) = self.taken_ips() {
            for i in 0..size {
                let ip = order(i);
                if cache.get(&Self::ip_key(&ip)).is_none()
                    && self.take(&Self::ip_key(&ip), Self::ip_address(&ip, owner)).await?
                {
                    return Ok(ip);
                }
            }
        }
        let prefix = Self::ip_key("");
        let stored = self.app.store.list(ListRequest { prefix: prefix.clone(), ..Default::default() }).await;
        let stored: std::collections::HashSet<String> = stored
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        for i in 0..size {
            let ip = order(i);
            if !stored.contains(&ip) && self.take(&Self::ip_key(&ip), Self::ip_address(&ip, owner)).await? {
                return Ok(ip);
            }
        }
        Err(format!("range is full: every address of {} is allocated", ranges.cidr()))
    }

    /// The IPAddress watch cache, to skip addresses known to be taken.
    fn taken_ips(&self) -> Option<std::sync::Arc<crate::cache::WatchCache>> {
        let row = self.app.registry.find("networking.k8s.io", "v1", "ipaddresses")?;
        self.app.cache(&row).ok()
    }

    async fn claim_port(&self, requested: Option<&str>, owner: &str) -> Result<String, String> {
        let range = self.app.ranges.node_ports.clone();
        let value = json!({"owner": owner, "created": now_rfc3339()});
        if let Some(r) = requested {
            let port: u16 = r.parse().map_err(|_| format!("{r:?} is not a port"))?;
            if !range.contains(&port) {
                return Err(format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    range.start(),
                    range.end()
                ));
            }
            return match self.take(&Self::port_key(r), value).await? {
                true => Ok(r.to_owned()),
                false => Err("provided port is already allocated".into()),
            };
        }
        let prefix = Self::port_key("");
        let list = self.app.store.list(ListRequest { prefix: prefix.clone(), ..Default::default() }).await;
        let taken: std::collections::HashSet<String> = list
            .map(|l| l.items.into_iter().filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_owned)).collect())
            .unwrap_or_default();
        let size = u32::from(range.end() - range.start()) + 1;
        let start = random_u32() % size;
        for i in 0..size {
            let port = (u32::from(*range.start()) + (start + i) % size).to_string();
            if taken.contains(&port) {
                continue;
            }
            if self.take(&Self::port_key(&port), value.clone()).await? {
                return Ok(port);
            }
        }
        Err(format!("range is full: every port of {}-{} is allocated", range.start(), range.end()))
    }

    /// Deletes a claim's key if `owner` holds it.
    async fn give_back(&self, key: &str, owner: &str, holder: impl Fn(&Value) -> String) {
        if self.dry_run {
            return;
        }
        let Ok(Some(kv)) = self.app.store.get(key).await else { return };
        let value: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        if holder(&value) != owner {
            return;
        }
        if let Err(e) = self.app.store.delete(key, Some(kv.mod_revision)).await {
            tracing::warn!(key, error = %e, "giving back a claim failed; it stays until the repair loop finds it");
        }
    }
}

#[async_trait::async_trait]
impl Allocator for StoreAllocator<'_> {
    async fn claim(&self, pool: Pool, requested: Option<&str>, owner: &str) -> Result<String, String> {
        match pool {
            Pool::ServiceIp => self.claim_ip(requested, owner).await,
            Pool::NodePort => self.claim_port(requested, owner).await,
        }
    }

    async fn release(&self, pool: Pool, value: &str, owner: &str) {
        match pool {
            Pool::ServiceIp => {
                self.give_back(&Self::ip_key(value), owner, |v| {
                    let r = &v["spec"]["parentRef"];
                    format!(
                        "{}/{}",
                        r["namespace"].as_str().unwrap_or_default(),
                        r["name"].as_str().unwrap_or_default()
                    )
                })
                .await
            }
            Pool::NodePort => {
                self.give_back(&Self::port_key(value), owner, |v| v["owner"].as_str().unwrap_or_default().to_owned())
                    .await
            }
        }
    }
}

/// How old a claim without its service must be before the repair loop gives it back: a
/// create that claimed and has not stored its service yet is younger.
const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Gives back claims whose service is gone or no longer holds them (a server that died
/// between claiming and storing the service), every minute, as upstream's repair loops do.
pub async fn repair_forever(app: std::sync::Arc<App>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        if let Err(e) = repair(&app).await {
            tracing::warn!(error = %e, "repairing the service IP and node port claims failed");
        }
    }
}

/// One repair pass; returns how many claims were given back.
pub async fn repair(app: &App) -> Result<usize, String> {
    let Some(services) = app.registry.find("", "v1", "services") else { return Ok(0) };
    let list = app
        .store
        .list(ListRequest { prefix: services.prefix(), ..Default::default() })
        .await
        .map_err(|e| e.to_string())?;
    let mut held = std::collections::HashSet::new();
    for kv in &list.items {
        let svc: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        let owner = format!(
            "{}/{}",
            svc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default(),
            svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
        );
        if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
            held.insert((StoreAllocator::ip_key(ip), owner.clone()));
        }
        for p in svc.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
                held.insert((StoreAllocator::port_key(&np.to_string()), owner.clone()));
            }
        }
    }
    let now = jiff::Timestamp::now();
    let old_enough = |created: Option<&str>| {
        created
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_none_or(|t| now.duration_since(t).as_secs() >= ORPHAN_AGE.as_secs() as i64)
    };
    let mut given_back = 0;
    for (prefix, holder, created) in [
        (StoreAllocator::ip_key(""), "/spec/parentRef", "/metadata/creationTimestamp"),
        (StoreAllocator::port_key(""), "", "/created"),
    ] {
        let claims = app.store.list(ListRequest { prefix, ..Default::default() }).await.map_err(|e| e.to_string())?;
        for kv in claims.items {
            let claim: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            let owner = if holder.is_empty() {
                claim["owner"].as_str().unwrap_or_default().to_owned()
            } else {
                let r = claim.pointer(holder).cloned().unwrap_or_default();
                format!("{}/{}", r["namespace"].as_str().unwrap_or_default(), r["name"].as_str().unwrap_or_default())
            };
            if held.contains(&(kv.key.clone(), owner)) || !old_enough(claim.pointer(created).and_then(Value::as_str)) {
                continue;
            }
            if app.store.delete(&kv.key, Some(kv.mod_revision)).await.is_ok() {
                tracing::info!(key = %kv.key, "gave back a claim no service holds");
                given_back += 1;
            }
        }
    }
    Ok(given_back)
}
