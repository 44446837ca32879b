//! The multi-host topology of `deploy/systemd` on one machine: a three-member etcd
//! cluster, two apiservers on it, a scheduler and a controller-manager beside each
//! apiserver (active/standby through leader election) and kubelets talking to the second
//! apiserver. The first "control-plane host" is lost at once (`kill -9` of its etcd
//! member, apiserver, scheduler and controller-manager); through the second apiserver
//! our kubectl still scales and rolls out, the standbys take the leases over, and nothing
//! acknowledged before the loss is missing.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::{
    Kubectl, Process, apiserver_process, client, etcd_cluster, etcd_installed, free_port, kubeconfig, pod_ready,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams};

/// Leader election, shortened so the test does not wait 15 s for a lease to expire.
const ELECTION: [&str; 6] = [
    "--leader-elect-lease-duration",
    "3s",
    "--leader-elect-renew-deadline",
    "2s",
    "--leader-elect-retry-period",
    "500ms",
];

fn component(binary: &str, kubeconfig: &std::path::Path, log: &std::path::Path) -> Process {
    let mut args =
        vec!["--kubeconfig".to_owned(), kubeconfig.display().to_string(), "--secure-port".into(), "0".into()];
    args.extend(ELECTION.iter().map(|s| (*s).to_owned()));
    Process::spawn(binary, &args, log).unwrap()
}

async fn holder(leases: &Api<Lease>, name: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(l)) = leases.get_opt(name).await
            && let Some(h) = l.spec.and_then(|s| s.holder_identity)
        {
            return h;
        }
        assert!(Instant::now() < deadline, "nobody holds the {name} lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready_pods(pods: &Api<Pod>, image: &str) -> usize {
    let list = pods.list(&ListParams::default().labels("run=web")).await.map(|l| l.items).unwrap_or_default();
    let live: Vec<&Pod> = list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let good =
        live.iter().filter(|p| pod_ready(p) && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image));
    if good.count() == live.len() { live.len() } else { 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_control_plane_host_loses_nothing() {
    if !etcd_installed("losing_a_control_plane_host_loses_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut members = etcd_cluster(d).await.unwrap();
    let servers = members.iter().map(|(_, url)| url.clone()).collect::<Vec<_>>().join(",");
    let store = vec!["--etcd-servers".to_owned(), servers, "--etcd-prefix".into(), "/registry".into()];
    let (api1, url1) = apiserver_process(&store, &d.join("apiserver-1.log")).await.unwrap();
    let (_api2, url2) = apiserver_process(&store, &d.join("apiserver-2.log")).await.unwrap();
    let (kc1, kc2) = (d.join("kc1"), d.join("kc2"));
    kubeconfig(&url1, &kc1).unwrap();
    kubeconfig(&url2, &kc2).unwrap();

    // Host 1's scheduler and controller-manager start first and lead; host 2's stand by.
    let sched1 = component("kube-scheduler", &kc1, &d.join("scheduler-1.log"));
    let cm1 = component("kube-controller-manager", &kc1, &d.join("controller-manager-1.log"));
    let leases: Api<Lease> = Api::namespaced(client(&url2).unwrap(), "kube-system");
    let sched_leader = holder(&leases, "kube-scheduler", Duration::from_secs(30)).await;
    let cm_leader = holder(&leases, "kube-controller-manager", Duration::from_secs(30)).await;
    let _sched2 = component("kube-scheduler", &kc2, &d.join("scheduler-2.log"));
    let _cm2 = component("kube-controller-manager", &kc2, &d.join("controller-manager-2.log"));
    let kubelet_args: Vec<String> = [
        "--kubeconfig",
        &kc2.display().to_string(),
        "--runtime",
        "sim",
        "--sim-nodes",
        "10",
        "--node-name",
        "w",
        "--port",
        &free_port().to_string(),
        "--root-dir",
        &d.join("kubelet").display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let _kubelet = Process::spawn("kubelet", &kubelet_args, &d.join("kubelet.log")).unwrap();
    let nodes: Api<Node> = Api::all(client(&url1).unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.list(&ListParams::default()).await.unwrap().items.iter().filter(|n| e2e::node_ready(n)).count() < 10 {
        assert!(Instant::now() < deadline, "10 nodes Ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Work through host 1: written to etcd, seen through host 2.
    let k1 = Kubectl::ours(&kc1.display().to_string());
    k1.ok(&["run", "web", "--image=web:1", "--replicas=50", "--wait"]);
    k1.ok(&["create", "configmap", "before", "--from-literal=k=v"]);
    let pods: Api<Pod> = Api::namespaced(client(&url2).unwrap(), "default");
    assert_eq!(ready_pods(&pods, "web:1").await, 50);

    // Host 1 is lost.
    let (etcd0, _) = members.remove(0);
    for mut p in [etcd0, api1, sched1, cm1] {
        p.kill();
    }

    // Host 2 carries on: scale and a rolling update through its apiserver.
    let k2 = Kubectl::ours(&kc2.display().to_string());
    k2.ok(&["scale", "--replicas=100", "web", "--wait", "--timeout=60s"]);
    assert_eq!(ready_pods(&pods, "web:1").await, 100);
    k2.ok(&["rolling-update", "web", "--image=web:2", "--timeout=60s"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready_pods(&pods, "web:2").await != 100 {
        assert!(Instant::now() < deadline, "100 Ready pods of web:2 through the second apiserver");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cms: Api<ConfigMap> = Api::namespaced(client(&url2).unwrap(), "default");
    assert!(cms.get_opt("before").await.unwrap().is_some(), "what host 1 acknowledged is still there");
    // The standbys lead now.
    assert_ne!(holder(&leases, "kube-scheduler", Duration::from_secs(5)).await, sched_leader);
    assert_ne!(holder(&leases, "kube-controller-manager", Duration::from_secs(5)).await, cm_leader);
}
