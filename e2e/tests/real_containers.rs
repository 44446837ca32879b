//! The tutorial and self-healing on real containers: the whole control plane as processes
//! with two docker-runtime kubelets on the local daemon, driven by our kubectl and the
//! stock one. `run --replicas=3`, `scale --replicas=6`, `rolling-update --image`,
//! `rolling-update --rollback`, each checked against the containers Docker runs; then a
//! container killed behind the kubelet's back, a pod deleted, and a node's kubelet killed
//! (its pods come back on the other node once the node's lease is missed for the grace
//! period and the eviction timeout passed).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::{Cluster, Kubectl, Nodes, Spec, client, docker, docker_available, pod_ready};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

/// The node lease lasts 4 s (renewed every second); a node is lost after 4 s without a
/// renewal and its pods evicted 2 s later.
const LEASE: &str = "4";
const GRACE: &str = "4s";
const EVICTION: &str = "2s";

/// The command the pods run: exits at once on SIGTERM, so deletions do not wait out the
/// grace period.
const COMMAND: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// The live pods of `run=web`.
async fn live(pods: &Api<Pod>) -> Vec<Pod> {
    let list = pods.list(&ListParams::default().labels("run=web")).await.map(|l| l.items).unwrap_or_default();
    list.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().and_then(|s| s.containers[0].image.clone()).unwrap_or_default()
}

fn node_of(p: &Pod) -> String {
    p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
}

fn container_id(p: &Pod) -> Option<String> {
    let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
    Some(statuses.first()?.container_id.as_ref()?.trim_start_matches("docker://").to_owned())
}

fn restarts(p: &Pod) -> i32 {
    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map_or(0, |c| c[0].restart_count)
}

/// Waits until exactly `n` live pods of `image` are Ready (and nothing else lives), then
/// checks each against Docker: its container runs that image.
async fn settle(pods: &Api<Pod>, image_name: &str, n: usize, what: &str) -> Vec<Pod> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let live = live(pods).await;
        let good = live.len() == n && live.iter().all(|p| image(p) == image_name && pod_ready(p));
        if good {
            for p in &live {
                let id = container_id(p).unwrap_or_else(|| panic!("{what}: {} has no container id", p.name_any()));
                let state = docker(&["inspect", "-f", "{{.State.Running}} {{.Config.Image}}", &id]).unwrap();
                assert_eq!(state.trim(), format!("true {image_name}"), "{what}: the container of {}", p.name_any());
            }
            return live;
        }
        let by: BTreeMap<String, usize> = live.iter().fold(BTreeMap::new(), |mut m, p| {
            *m.entry(format!("{} ready={}", image(p), pod_ready(p))).or_default() += 1;
            m
        });
        assert!(Instant::now() < deadline, "{what}: want {n} Ready pods of {image_name}, have {by:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_and_self_healing_on_docker() {
    if !docker_available("the_tutorial_and_self_healing_on_docker") {
        return;
    }
    docker(&["tag", "busybox:local", "busybox:v2"]).unwrap();
    let spec = Spec {
        nodes: Nodes::Docker(2),
        etcd: false,
        controller_args: ["--node-monitor-grace-period", GRACE, "--pod-eviction-timeout", EVICTION]
            .map(str::to_owned)
            .to_vec(),
        kubelet_args: vec!["--node-lease-duration-seconds".into(), LEASE.into()],
        ..Spec::sim(0)
    };
    let mut c = Cluster::with(spec).await;
    c.wait_nodes_ready(2, Duration::from_secs(60)).await.unwrap();
    let k = Kubectl::ours(&c.kubeconfig());
    let cache = c.dir.path().join("cache");
    let stock = Kubectl::stock(&c.kubeconfig(), &cache);
    let cl = client(&c.url).unwrap();
    let pods: Api<Pod> = Api::namespaced(cl.clone(), "default");

    // The tutorial, with real containers.
    let out = k.ok(&["run", "web", "--image=busybox:local", "--replicas=3", "--wait", "--", "sh", "-c", COMMAND]);
    assert!(out.trim_end().ends_with("deployment \"web\" successfully rolled out"), "{out}");
    settle(&pods, "busybox:local", 3, "run --replicas=3").await;
    k.ok(&["scale", "--replicas=6", "web", "--wait"]);
    let six = settle(&pods, "busybox:local", 6, "scale --replicas=6").await;
    let used: std::collections::BTreeSet<String> = six.iter().map(node_of).collect();
    assert_eq!(used.len(), 2, "the pods spread over both nodes: {used:?}");
    let out = k.ok(&["rolling-update", "web", "--image=busybox:v2"]);
    assert!(out.trim_end().ends_with("deployment \"web\" successfully rolled out"), "{out}");
    settle(&pods, "busybox:v2", 6, "rolling-update --image=busybox:v2").await;
    let out = k.ok(&["rolling-update", "web", "--rollback"]);
    assert!(out.starts_with("deployment.apps/web rolled back\n"), "{out}");
    let pods_now = settle(&pods, "busybox:local", 6, "rolling-update --rollback").await;
    let logs = k.ok(&["logs", &format!("pod/{}", pods_now[0].name_any())]);
    assert!(logs.is_empty(), "the pods print nothing: {logs}");

    // A container killed behind the kubelet's back is restarted in the same pod.
    let victim = &pods_now[0];
    docker(&["kill", &container_id(victim).unwrap()]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = pods.get(&victim.name_any()).await.unwrap();
        if restarts(&p) == 1 && pod_ready(&p) && container_id(&p) != container_id(victim) {
            break;
        }
        assert!(Instant::now() < deadline, "the killed container was not restarted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A deleted pod is replaced (deleted with the stock kubectl when it is here).
    let gone = pods_now[1].name_any();
    match &stock {
        Some(s) => s.ok(&["delete", "pod", &gone]),
        None => k.ok(&["delete", "pod", &gone]),
    };
    let after = settle(&pods, "busybox:local", 6, "a deleted pod replaced").await;
    assert!(after.iter().all(|p| p.name_any() != gone), "{gone} is gone");
    assert!(
        docker(&["ps", "-q", "--filter", &format!("label=io.kubernetes.pod.name=default/{gone}")]).unwrap().is_empty()
    );

    // A node whose kubelet dies: its pods come back on the other node.
    let lost = c.node_names[0].clone();
    let on_lost: Vec<String> = after.iter().filter(|p| node_of(p) == lost).map(|p| p.name_any()).collect();
    assert!(!on_lost.is_empty(), "pods on {lost}");
    let killed = Instant::now();
    c.kill_kubelet(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while live(&pods).await.iter().any(|p| on_lost.contains(&p.name_any())) {
        assert!(Instant::now() < deadline, "the pods of {lost} were not evicted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = settle(&pods, "busybox:local", 6, "the lost node's pods replaced").await;
    let took = killed.elapsed();
    assert!(moved.iter().all(|p| node_of(p) == c.node_names[1]), "every pod on the surviving node");
    eprintln!(
        "pods of a lost node replaced {took:.1?} after its kubelet died (lease {LEASE}s, grace {GRACE}, eviction {EVICTION})"
    );
    let nodes: Api<Node> = Api::all(cl.clone());
    let n = nodes.get(&lost).await.unwrap();
    let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
    assert!(taints.iter().any(|t| t.key == "node.kubernetes.io/unreachable"), "{lost} tainted: {taints:?}");
    let table = k.ok(&["get", "nodes"]);
    assert!(table.lines().any(|l| l.starts_with(&lost) && l.contains("NotReady")), "{table}");

    // The kubelet comes back: the node is Ready again and the evicted pods' containers go.
    c.start_kubelet(0);
    c.wait_nodes_ready(2, Duration::from_secs(30)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = pods.list(&ListParams::default().labels("run=web")).await.unwrap().items;
        let left = docker(&["ps", "-q", "--filter", &format!("label=io.kubernetes.managed-by={lost}")]).unwrap();
        if all.len() == 6 && left.trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{} pods, containers left on {lost}: {left}", all.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    settle(&pods, "busybox:local", 6, "after the node came back").await;
}
