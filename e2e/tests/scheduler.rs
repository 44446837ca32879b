//! kube-scheduler against a real apiserver (in-process): every filter and score on real
//! objects, the unschedulable condition and event, retry when a node is added, and
//! fail-over between two schedulers through the leader lease.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use e2e::{Backend, in_process};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use scheduler::{leader, metrics::Metrics, run};
use serde_json::{Value, json};

fn node(name: &str, cpu: &str, extra: Value) -> Node {
    let mut n = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
                   "capacity": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    });
    json_patch::merge(&mut n, &extra);
    serde_json::from_value(n).unwrap()
}

fn pod(name: &str, cpu: &str, extra: Value) -> Pod {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]},
    });
    json_patch::merge(&mut p, &extra);
    serde_json::from_value(p).unwrap()
}

async fn node_of(pods: &Api<Pod>, name: &str, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let p = pods.get(name).await.unwrap();
        if let Some(n) = p.spec.and_then(|s| s.node_name) {
            return Some(n);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A scheduler in this process: its task, its metrics, and a sender that stops it as a
/// SIGTERM would.
fn start_scheduler(
    client: kube::Client,
    election: Option<leader::Config>,
) -> (tokio::task::JoinHandle<()>, Arc<Metrics>, tokio::sync::oneshot::Sender<()>) {
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let config = run::Config { unschedulable_retry: Duration::from_secs(30), ..Default::default() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = scheduler::start(client, config, election, m, shutdown).await {
            eprintln!("scheduler stopped: {e}");
        }
    });
    (task, metrics, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_scores_and_unschedulable_pods() {
    let c = in_process(Backend::Embedded, "scheduler_filters", |_| {}).await.unwrap();
    let nodes: Api<Node> = Api::all(c.client.clone());
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pp = PostParams::default();
    nodes.create(&pp, &node("small", "1", json!({}))).await.unwrap();
    nodes.create(&pp, &node("big", "4", json!({}))).await.unwrap();
    nodes.create(&pp, &node("gpu", "8", json!({"metadata": {"labels": {"gpu": "true"}}, "spec": {"taints": [{"key": "gpu", "value": "only", "effect": "NoSchedule"}]}}))).await.unwrap();
    nodes.create(&pp, &node("cordoned", "64", json!({"spec": {"unschedulable": true}}))).await.unwrap();
    let (_task, metrics, _stop) = start_scheduler(c.client.clone(), None);
    let within = Duration::from_secs(10);

    pods.create(&pp, &pod("needs-2-cpus", "2", json!({}))).await.unwrap();
    assert_eq!(node_of(&pods, "needs-2-cpus", within).await.as_deref(), Some("big"), "only big has 2 free CPUs");
    let tolerant = json!({"spec": {"nodeSelector": {"gpu": "true"}, "tolerations": [{"key": "gpu", "operator": "Equal", "value": "only", "effect": "NoSchedule"}]}});
    pods.create(&pp, &pod("gpu-job", "1", tolerant)).await.unwrap();
    assert_eq!(node_of(&pods, "gpu-job", within).await.as_deref(), Some("gpu"));
    let pinned = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["small"]}]}]}}}}});
    pods.create(&pp, &pod("pinned", "100m", pinned)).await.unwrap();
    assert_eq!(node_of(&pods, "pinned", within).await.as_deref(), Some("small"));
    let preferred = json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["small"]}]}}]}}}});
    pods.create(&pp, &pod("prefers-small", "100m", preferred)).await.unwrap();
    assert_eq!(node_of(&pods, "prefers-small", within).await.as_deref(), Some("small"));
    let port = json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 80}]}]}});
    pods.create(&pp, &pod("port-a", "100m", port.clone())).await.unwrap();
    pods.create(&pp, &pod("port-b", "100m", port.clone())).await.unwrap();
    let a = node_of(&pods, "port-a", within).await.unwrap();
    let b = node_of(&pods, "port-b", within).await.unwrap();
    assert_ne!(a, b, "two pods with hostPort 80 never share a node");
    pods.create(&pp, &pod("port-c", "100m", port)).await.unwrap();

    // Nothing fits: the condition and the event say why, in upstream's words.
    pods.create(&pp, &pod("huge", "100", json!({}))).await.unwrap();
    let expected = "0/4 nodes are available: 1 node(s) had untolerated taint {gpu: only}, 1 node(s) were unschedulable, 2 Insufficient cpu.";
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let p = pods.get("huge").await.unwrap();
        let cond =
            p.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().find(|c| c.type_ == "PodScheduled");
        if let Some(c) = cond {
            assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("Unschedulable")));
            assert_eq!(c.message.as_deref(), Some(expected));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no PodScheduled condition");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The event is written in the background: poll for it.
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let evs = events.list(&ListParams::default().fields("involvedObject.name=huge")).await.unwrap();
        let found = evs
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedScheduling") && e.message.as_deref() == Some(expected));
        if found {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no FailedScheduling event: {:?}", evs.items);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        node_of(&pods, "port-c", Duration::from_millis(200)).await,
        None,
        "a third hostPort 80 has no node left"
    );

    // Parked pods are not retried while nothing changes (no busy loop)...
    let parked = unschedulable_attempts(&metrics);
    assert!(parked >= 2, "huge and port-c were tried");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(unschedulable_attempts(&metrics), parked, "no retries without a cluster change");
    // ...and are retried when a node arrives.
    nodes.create(&pp, &node("huge-node", "128", json!({}))).await.unwrap();
    assert_eq!(node_of(&pods, "huge", within).await.as_deref(), Some("huge-node"));
    assert_eq!(node_of(&pods, "port-c", within).await.as_deref(), Some("huge-node"));

    // Replicas of one owner spread across the nodes that can take them.
    let owned = json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-web", "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    for i in 0..12 {
        pods.create(&pp, &pod(&format!("web-{i}"), "0", owned.clone())).await.unwrap();
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..12 {
        *per_node.entry(node_of(&pods, &format!("web-{i}"), within).await.unwrap()).or_default() += 1;
    }
    // small, big and huge-node take them (gpu is tainted, cordoned is cordoned): at most
    // ceil(12/3)+1 each.
    assert!(per_node.values().all(|n| *n <= 5), "{per_node:?}");
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(!per_node.contains_key("gpu") && !per_node.contains_key("cordoned"), "{per_node:?}");
}

fn unschedulable_attempts(metrics: &Metrics) -> u64 {
    let labels =
        scheduler::metrics::AttemptLabels { result: "unschedulable".into(), profile: "default-scheduler".into() };
    metrics.attempts.get_or_create(&labels).get()
}

fn election(id: &str, lease: u64, renew: u64, retry: u64) -> leader::Config {
    leader::Config {
        namespace: "kube-system".into(),
        name: "kube-scheduler".into(),
        identity: id.into(),
        lease_duration: Duration::from_secs(lease),
        renew_deadline: Duration::from_secs(renew),
        retry_period: Duration::from_secs(retry),
    }
}

/// Waits (polling) until `metrics` says this scheduler leads.
async fn leads(metrics: &Metrics, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while metrics.leader.get() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_scheduler_takes_over_when_the_leader_dies() {
    let c = in_process(Backend::Embedded, "scheduler_failover", |_| {}).await.unwrap();
    let nodes: Api<Node> = Api::all(c.client.clone());
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    nodes.create(&PostParams::default(), &node("n1", "4", json!({}))).await.unwrap();
    // A 4 s lease: a leader that dies without a word is replaced once it expires.
    let (first, first_metrics, _stop_first) = start_scheduler(c.client.clone(), Some(election("first", 4, 3, 1)));
    leads(&first_metrics, Duration::from_secs(10)).await;
    let (_second, second_metrics, _stop_second) = start_scheduler(c.client.clone(), Some(election("second", 4, 3, 1)));
    pods.create(&PostParams::default(), &pod("before", "100m", json!({}))).await.unwrap();
    assert!(node_of(&pods, "before", Duration::from_secs(10)).await.is_some());
    assert_eq!((first_metrics.leader.get(), second_metrics.leader.get()), (1, 0), "exactly one acts");

    first.abort();
    let killed = tokio::time::Instant::now();
    pods.create(&PostParams::default(), &pod("after", "100m", json!({}))).await.unwrap();
    assert!(node_of(&pods, "after", Duration::from_secs(20)).await.is_some(), "the standby took over");
    assert_eq!(second_metrics.leader.get(), 1);
    eprintln!("fail-over after a crash took {:?} (lease duration 4 s)", killed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_releases_its_lease() {
    let c = in_process(Backend::Embedded, "scheduler_release", |_| {}).await.unwrap();
    let nodes: Api<Node> = Api::all(c.client.clone());
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    nodes.create(&PostParams::default(), &node("n1", "4", json!({}))).await.unwrap();
    // A 60 s lease: a standby that acts within 10 s can only have been handed the lease.
    let (first, first_metrics, stop_first) = start_scheduler(c.client.clone(), Some(election("first", 60, 40, 1)));
    leads(&first_metrics, Duration::from_secs(10)).await;
    let (_second, second_metrics, _stop_second) =
        start_scheduler(c.client.clone(), Some(election("second", 60, 40, 1)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(second_metrics.leader.get(), 0, "the standby waits while the leader holds the lease");
    // Stopped as SIGTERM stops it: the lease is released (client-go's ReleaseOnCancel).
    let _ = stop_first.send(());
    first.await.unwrap();
    let stopped = tokio::time::Instant::now();
    leads(&second_metrics, Duration::from_secs(10)).await;
    pods.create(&PostParams::default(), &pod("after", "100m", json!({}))).await.unwrap();
    assert!(node_of(&pods, "after", Duration::from_secs(10)).await.is_some(), "the standby schedules");
    eprintln!("hand-over after a stop took {:?} (lease duration 60 s)", stopped.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_stops_acting() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};
    let c = in_process(Backend::Embedded, "scheduler_lease_lost", |_| {}).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-system");
    let (first, first_metrics, _stop) = start_scheduler(c.client.clone(), Some(election("first", 60, 40, 1)));
    leads(&first_metrics, Duration::from_secs(10)).await;

    // Another candidate took the lease (the leader was partitioned away meanwhile): at its
    // next renewal the leader sees it and stops, without touching the lease.
    leases
        .patch("kube-scheduler", &PatchParams::default(), &Patch::Merge(json!({"spec": {"holderIdentity": "usurper"}})))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !first.is_finished() {
        assert!(tokio::time::Instant::now() < deadline, "the leader went on after losing its lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first_metrics.leader.get(), 0);
    let lease = leases.get("kube-scheduler").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("usurper"), "a lost lease is not released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_gives_up_after_the_renew_deadline() {
    let c = in_process(Backend::Embedded, "scheduler_renew_deadline", |_| {}).await.unwrap();
    let gate = e2e::Gate::open(c.server.addr).await.unwrap();
    let config = leader::Config { retry_period: Duration::from_millis(200), ..election("alone", 4, 2, 1) };
    let mut elector = leader::Elector::new(e2e::client(&gate.url()).unwrap(), config);
    elector.acquire().await;
    // The apiserver freezes: renewals hang. Within the renew deadline (plus one retry) the
    // holder stops acting, before its lease (4 s) could pass to anyone else.
    gate.freeze();
    let cut = tokio::time::Instant::now();
    let lost = tokio::time::timeout(Duration::from_secs(10), elector.hold()).await.expect("gave up");
    let took = cut.elapsed();
    assert!(matches!(lost, leader::Error::Lost(ref name) if name == "kube-scheduler"), "{lost}");
    assert!(took >= Duration::from_millis(1800), "not long before the renew deadline: {took:?}");
    assert!(took < Duration::from_secs(4), "before the lease expires for a standby: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_for_another_scheduler_are_left_alone() {
    let c = in_process(Backend::Embedded, "scheduler_name", |_| {}).await.unwrap();
    let nodes: Api<Node> = Api::all(c.client.clone());
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    nodes.create(&PostParams::default(), &node("n1", "4", json!({}))).await.unwrap();
    // Queued first: a scheduler that took it would have bound it before the second.
    pods.create(&PostParams::default(), &pod("theirs", "100m", json!({"spec": {"schedulerName": "gpu-scheduler"}})))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("named", "100m", json!({"spec": {"schedulerName": "default-scheduler"}})))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("ours", "100m", json!({}))).await.unwrap();
    let (_task, metrics, _stop) = start_scheduler(c.client.clone(), None);
    assert!(node_of(&pods, "named", Duration::from_secs(10)).await.is_some());
    assert!(node_of(&pods, "ours", Duration::from_secs(10)).await.is_some(), "no schedulerName is ours");
    let theirs = pods.get("theirs").await.unwrap();
    assert_eq!(theirs.spec.unwrap().node_name, None, "another scheduler's pod is not bound");
    assert_eq!(unschedulable_attempts(&metrics), 0, "nor tried");
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let about_theirs = events.list(&ListParams::default().fields("involvedObject.name=theirs")).await.unwrap();
    assert!(about_theirs.items.is_empty(), "nor reported: {:?}", about_theirs.items);
}
