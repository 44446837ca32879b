//! The whole control plane as real processes (apiserver on the embedded store, scheduler,
//! controller-manager, a simulated kubelet hosting 20 nodes), driven through the API:
//! `kill -9` of the controller-manager, the scheduler and the apiserver in the middle of
//! scaling, and after each restart exactly the desired number of pods, all bound and Ready.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{Cluster, client, pod_ready as ready};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_scale_loses_and_duplicates_nothing() {
    let mut c = Cluster::start(20).await;
    let cl = client(&c.url).unwrap();
    let deploys: Api<Deployment> = Api::namespaced(cl.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cl.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 100,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "web:1"}]}}}}))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    settle(&pods, 100, Duration::from_secs(60), "100 pods").await;

    // The controller-manager dies while it creates pods.
    let scale = |n: i32| json!({"spec": {"replicas": n}});
    deploys.patch_scale("web", &PatchParams::default(), &Patch::Merge(scale(1000))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.controllers.take().unwrap().kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.start_controllers(1);
    settle(&pods, 1000, Duration::from_secs(120), "1000 pods after a controller-manager kill -9").await;

    // The scheduler dies while it binds.
    deploys.patch_scale("web", &PatchParams::default(), &Patch::Merge(scale(600))).await.unwrap();
    settle(&pods, 600, Duration::from_secs(60), "600 pods").await;
    deploys.patch_scale("web", &PatchParams::default(), &Patch::Merge(scale(1000))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.scheduler.take().unwrap().kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.start_scheduler(1);
    settle(&pods, 1000, Duration::from_secs(120), "1000 pods after a scheduler kill -9").await;

    // The apiserver dies while the deployment scales down; the same data comes back.
    deploys.patch_scale("web", &PatchParams::default(), &Patch::Merge(scale(400))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.restart_apiserver(1).await;
    settle(&pods, 400, Duration::from_secs(120), "400 pods after an apiserver kill -9").await;
    let d = deploys.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(400));
}
