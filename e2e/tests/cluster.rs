//! The whole control plane as real processes (apiserver, scheduler, controller-manager, a
//! simulated kubelet hosting 20 nodes), driven through the API: `kill -9` of the
//! controller-manager, the scheduler and the apiserver in the middle of scaling to 1,000,
//! on the embedded store and on etcd (with an etcd restart too), and after each restart
//! exactly the desired number of pods, all bound and Ready, none duplicated or lost.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{Cluster, Spec, client, etcd_installed, pod_ready as ready};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Waits until exactly `n` live pods of the deployment exist, all bound and Ready, and stay so.
async fn settle(pods: &Api<Pod>, n: usize, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    let mut stable = 0;
    loop {
        let list = match pods.list(&ListParams::default().labels("app=web")).await {
            Ok(l) => l.items,
            Err(_) => Vec::new(),
        };
        let live: Vec<&Pod> = list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let good = live.len() == n
            && live.iter().all(|p| ready(p) && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some());
        stable = if good { stable + 1 } else { 0 };
        if stable >= 10 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} live pods ({} Ready), want {n}",
            live.len(),
            live.iter().filter(|p| ready(p)).count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Live pods of the deployment, and how many of them are bound to a node.
async fn counts(pods: &Api<Pod>) -> (usize, usize) {
    let Ok(list) = pods.list(&ListParams::default().labels("app=web")).await else { return (0, 0) };
    let live: Vec<&Pod> = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let bound = live.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()).count();
    (live.len(), bound)
}

/// Waits until `measure` of the pods is strictly between `from` and `to` — the scale is
/// under way, not done — and returns it; the kill that follows lands mid-scale, or the test
/// says it could not make it so.
async fn mid_scale(pods: &Api<Pod>, from: usize, to: usize, measure: fn((usize, usize)) -> usize, what: &str) -> usize {
    let (lo, hi) = (from.min(to), from.max(to));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = measure(counts(pods).await);
        if n > lo && n < hi {
            return n;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: never saw the scale under way ({n} of {from} → {to})");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn web(c: &Cluster) -> (Api<Deployment>, Api<Pod>) {
    let cl = client(&c.url).unwrap();
    let deploys: Api<Deployment> = Api::namespaced(cl.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cl.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 100,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "web:1"}]}}}}))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    settle(&pods, 100, Duration::from_secs(60), "100 pods").await;
    (deploys, pods)
}

fn scale(n: i32) -> Patch<serde_json::Value> {
    Patch::Merge(json!({"spec": {"replicas": n}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_scale_loses_and_duplicates_nothing() {
    let mut c = Cluster::start(20).await;
    let (deploys, pods) = web(&c).await;

    // The controller-manager dies while it creates pods: killed once some, not all, exist.
    deploys.patch_scale("web", &PatchParams::default(), &(scale(1000))).await.unwrap();
    let at = mid_scale(&pods, 100, 1000, |(live, _)| live, "controller-manager kill").await;
    c.controllers.take().unwrap().kill();
    eprintln!("controller-manager killed with {at} of 1000 pods created");
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.start_controllers();
    settle(&pods, 1000, Duration::from_secs(120), "1000 pods after a controller-manager kill -9").await;

    // The scheduler dies while it binds: killed once some, not all, new pods are bound.
    deploys.patch_scale("web", &PatchParams::default(), &(scale(600))).await.unwrap();
    settle(&pods, 600, Duration::from_secs(60), "600 pods").await;
    deploys.patch_scale("web", &PatchParams::default(), &(scale(1000))).await.unwrap();
    let at = mid_scale(&pods, 600, 1000, |(_, bound)| bound, "scheduler kill").await;
    c.scheduler.take().unwrap().kill();
    eprintln!("scheduler killed with {at} of 1000 pods bound");
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.start_scheduler();
    settle(&pods, 1000, Duration::from_secs(120), "1000 pods after a scheduler kill -9").await;

    // The apiserver dies while the deployment scales down; the same data comes back.
    deploys.patch_scale("web", &PatchParams::default(), &(scale(400))).await.unwrap();
    let at = mid_scale(&pods, 1000, 400, |(live, _)| live, "apiserver kill").await;
    eprintln!("apiserver killed with {at} pods left of 1000 → 400");
    c.restart_apiserver().await;
    settle(&pods, 400, Duration::from_secs(120), "400 pods after an apiserver kill -9").await;
    let d = deploys.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_etcd_kill_9_and_an_etcd_restart_mid_scale_lose_nothing() {
    if !etcd_installed("on_etcd_kill_9_and_an_etcd_restart_mid_scale_lose_nothing") {
        return;
    }
    let mut c = Cluster::with(Spec { etcd: true, ..Spec::sim(20) }).await;
    let (deploys, pods) = web(&c).await;

    // etcd dies (kill -9) while the controller-manager creates pods, and stays down for a
    // second; the apiserver keeps running and its watches resume.
    deploys.patch_scale("web", &PatchParams::default(), &scale(1000)).await.unwrap();
    let at = mid_scale(&pods, 100, 1000, |(live, _)| live, "etcd kill").await;
    eprintln!("etcd killed with {at} of 1000 pods created");
    c.restart_etcd(Duration::from_secs(1)).await;
    settle(&pods, 1000, Duration::from_secs(120), "1000 pods after an etcd restart").await;

    // The controller-manager and then the apiserver die mid-scale.
    deploys.patch_scale("web", &PatchParams::default(), &scale(500)).await.unwrap();
    settle(&pods, 500, Duration::from_secs(60), "500 pods").await;
    deploys.patch_scale("web", &PatchParams::default(), &scale(1000)).await.unwrap();
    let at = mid_scale(&pods, 500, 1000, |(live, _)| live, "controller-manager and apiserver kill").await;
    eprintln!("controller-manager and apiserver killed with {at} of 1000 pods created");
    c.controllers.take().unwrap().kill();
    c.restart_apiserver().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.restart_apiserver().await;
    c.start_controllers();
    settle(&pods, 1000, Duration::from_secs(120), "1000 pods after kill -9 of the apiserver and controller-manager")
        .await;
    let names: std::collections::HashSet<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names.len(), 1000, "no pod twice");
}
