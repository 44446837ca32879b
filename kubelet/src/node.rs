//! Node registration and heartbeats: the Node object (capacity, allocatable, addresses,
//! labels, taints, `nodeInfo`, conditions) and the Lease in `kube-node-lease` renewed every
//! 10 s, which the node lifecycle controller watches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node as NodeObject, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::Node;

/// What a node registers with.
#[derive(Debug, Clone)]
pub struct Registration {
    /// CPU in millicores.
    pub cpu_millis: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
    /// Pods.
    pub max_pods: i64,
    /// Extra labels (`--node-labels`).
    pub labels: BTreeMap<String, String>,
    /// Taints (`--register-with-taints`).
    pub taints: Vec<Taint>,
    /// The kubelet's HTTP port (logs).
    pub port: u16,
    /// How long the node lease lasts (`--node-lease-duration-seconds`); it is renewed
    /// every quarter of that, as upstream's kubelet does.
    pub lease_seconds: u32,
}

/// The host's CPUs (millicores) and memory (bytes), from /proc.
pub fn host_capacity() -> (i64, i64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i64>().ok())
        })
        .unwrap_or(1024 * 1024);
    (cpus * 1000, mem_kb * 1024)
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn status(node: &Node) -> serde_json::Value {
    let r = &node.registration;
    let resources = json!({"cpu": format!("{}m", r.cpu_millis), "memory": format!("{}Ki", r.memory_bytes / 1024), "pods": r.max_pods.to_string()});
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    let ready = |t: &str| {
        json!({"type": t, "status": "False", "reason": format!("KubeletHas{}", match t { "MemoryPressure" => "SufficientMemory", "DiskPressure" => "NoDiskPressure", _ => "SufficientPID" }),
        "message": "", "lastHeartbeatTime": now(), "lastTransitionTime": now()})
    };
    json!({
        "capacity": resources, "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": node.host_ip}, {"type": "Hostname", "address": node.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": r.port}},
        "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": kernel, "osImage": "Debian GNU/Linux",
            "containerRuntimeVersion": node.runtime.version(), "kubeletVersion": "v1.32.0", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }},
        "conditions": [ready("MemoryPressure"), ready("DiskPressure"), ready("PIDPressure"),
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
    })
}

/// Registers (or updates) the Node object.
pub async fn register(node: &Node) -> anyhow::Result<()> {
    let api: Api<NodeObject> = Api::all(node.client.clone());
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), node.name.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        (
            "kubernetes.io/arch".to_owned(),
            if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }.to_owned(),
        ),
        ("beta.kubernetes.io/os".to_owned(), "linux".to_owned()),
    ]);
    labels.extend(node.registration.labels.clone());
    match api.get_opt(&node.name).await? {
        None => {
            let obj = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": labels},
                "spec": {"taints": node.registration.taints}, "status": status(node)});
            let obj: NodeObject = serde_json::from_value(obj)?;
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(_) => {
            api.patch(&node.name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": labels}})))
                .await?;
        }
    }
    api.patch_status(&node.name, &PatchParams::default(), &Patch::Merge(json!({"status": status(node)}))).await?;
    Ok(())
}

async fn renew_lease(node: &Node) -> anyhow::Result<()> {
    let api: Api<Lease> = Api::namespaced(node.client.clone(), "kube-node-lease");
    let renew = MicroTime(jiff::Timestamp::now());
    match api.get_opt(&node.name).await? {
        Some(_) => {
            api.patch(
                &node.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"renewTime": renew, "holderIdentity": node.name}})),
            )
            .await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(node.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.name.clone()),
                    lease_duration_seconds: Some(i32::try_from(node.registration.lease_seconds).unwrap_or(i32::MAX)),
                    renew_time: Some(renew),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Registers the node, then renews its lease every quarter of its duration (10 s by
/// default) and posts its status every minute. The requests are boxed, so a heartbeat
/// waiting for its next beat holds a small future (a sim kubelet runs hundreds).
pub async fn heartbeat(node: Arc<Node>) {
    // The lease first: a kubelet coming back renews it before it says Ready again.
    if let Err(e) = Box::pin(renew_lease(&node)).await {
        tracing::debug!(node = %node.name, error = %e, "renewing the node lease before registering failed");
    }
    loop {
        match Box::pin(register(&node)).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(node = %node.name, error = %e, "registering the node failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    let renew = Duration::from_millis(u64::from(node.registration.lease_seconds.max(1)) * 250);
    let status_every = (60_000 / renew.as_millis().max(1) as u64).max(1);
    let mut beats = 0u64;
    let mut failing = false;
    loop {
        // After a time without renewals the node may have been marked Unknown: the status
        // goes at once with the first renewal that succeeds, not at the next minute.
        let mut post_now = false;
        match Box::pin(renew_lease(&node)).await {
            Ok(()) => post_now = std::mem::take(&mut failing),
            Err(e) => {
                tracing::warn!(node = %node.name, error = %e, "renewing the node lease failed");
                failing = true;
            }
        }
        if post_now || beats % status_every == status_every - 1 {
            let api: Api<NodeObject> = Api::all(node.client.clone());
            let patch = Patch::Merge(json!({"status": status(&node)}));
            if let Err(e) = Box::pin(api.patch_status(&node.name, &PatchParams::default(), &patch)).await {
                tracing::warn!(node = %node.name, error = %e, "posting the node status failed");
            }
        }
        beats += 1;
        tokio::time::sleep(renew).await;
    }
}
