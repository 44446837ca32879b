//! kube-controller-manager against a real apiserver (in-process), with a fake kubelet that
//! marks pods Ready: replica counts held, rolling updates within their bounds at every step,
//! rollback, pause/resume, node loss, cascading deletes, and restarts without duplicates.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use controller_manager::{Config, metrics::Metrics};
use e2e::{Backend, InProcess, fake_kubelet, in_process};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::watcher;
use serde_json::{Value, json};

async fn cluster(test: &str) -> InProcess {
    in_process(Backend::Embedded, test, |_| {}).await.unwrap()
}

fn start_cm(client: kube::Client, config: Config) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ =
            controller_manager::run(client, config, None, Arc::new(Metrics::default()), std::future::pending()).await;
    })
}

fn deployment(name: &str, replicas: i32, image: &str, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "strategy": strategy,
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": image}]}}},
    }))
    .unwrap()
}

async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn live_pods(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicasets_keep_their_replica_count() {
    let c = cluster("cm_replicas").await;
    let _kubelet = fake_kubelet(c.client.clone(), Duration::from_millis(10));
    let _cm = start_cm(c.client.clone(), Config::default());
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    )
    .unwrap();
    rss.create(&PostParams::default(), &rs).await.unwrap();
    eventually("5 pods", Duration::from_secs(10), || async { live_pods(&pods, "app=web").await.len() == 5 }).await;
    let first = live_pods(&pods, "app=web").await;
    assert!(
        first.iter().all(|p| p.owner_references().iter().any(|o| o.kind == "ReplicaSet" && o.controller == Some(true)))
    );
    for p in first.iter().take(2) {
        pods.delete(&p.name_any(), &DeleteParams::default()).await.unwrap();
    }
    eventually("replacements", Duration::from_secs(10), || async { live_pods(&pods, "app=web").await.len() == 5 })
        .await;
    eventually("ready status", Duration::from_secs(10), || async {
        rss.get("web")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.replicas == 5 && s.ready_replicas == Some(5) && s.available_replicas == Some(5))
    })
    .await;
    rss.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.unwrap();
    eventually("scale down to 2", Duration::from_secs(10), || async { live_pods(&pods, "app=web").await.len() == 2 })
        .await;
    // An orphan that matches is adopted, and counts.
    let orphan: Pod = serde_json::from_value(json!({"metadata": {"name": "stray", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    eventually("adoption and scale down", Duration::from_secs(10), || async {
        let live = live_pods(&pods, "app=web").await;
        live.len() == 2 && live.iter().all(|p| !p.owner_references().is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(live_pods(&pods, "app=web").await.len(), 2, "the count holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_manager_makes_no_duplicates() {
    let c = cluster("cm_restart").await;
    let _kubelet = fake_kubelet(c.client.clone(), Duration::from_millis(10));
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(
        json!({"metadata": {"name": "big"}, "spec": {"replicas": 300, "selector": {"matchLabels": {"app": "big"}},
        "template": {"metadata": {"labels": {"app": "big"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    )
    .unwrap();
    rss.create(&PostParams::default(), &rs).await.unwrap();
    let cm = start_cm(c.client.clone(), Config::default());
    eventually("some pods", Duration::from_secs(10), || async { !live_pods(&pods, "app=big").await.is_empty() }).await;
    cm.abort();
    let _cm2 = start_cm(c.client.clone(), Config::default());
    eventually("300 pods", Duration::from_secs(20), || async { live_pods(&pods, "app=big").await.len() == 300 }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(live_pods(&pods, "app=big").await.len(), 300, "exactly 300, none duplicated");
}

/// Watches pods during a rollout and asserts the bounds after every change.
async fn rollout_within_bounds(
    deploys: &Api<Deployment>,
    pods: &Api<Pod>,
    name: &str,
    replicas: i32,
    surge: i32,
    unavailable: i32,
    image: &str,
) {
    let mut stream = watcher::watcher(pods.clone(), watcher::Config::default().labels(&format!("app={name}"))).boxed();
    let mut state: HashMap<String, Pod> = HashMap::new();
    // Fill the current state first.
    loop {
        match stream.try_next().await.unwrap().unwrap() {
            watcher::Event::InitApply(p) => {
                state.insert(p.name_any(), p);
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    deploys
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut steps = 0;
    loop {
        let ev = tokio::time::timeout_at(deadline, stream.try_next())
            .await
            .expect("rollout finished in time")
            .unwrap()
            .unwrap();
        match ev {
            watcher::Event::Apply(p) => {
                state.insert(p.name_any(), p);
            }
            watcher::Event::Delete(p) => {
                state.remove(&p.name_any());
            }
            _ => continue,
        }
        steps += 1;
        let live: Vec<&Pod> = state.values().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let ready = |p: &&&Pod| e2e::pod_ready(p);
        let total = live.len() as i32;
        let ready_count = live.iter().filter(ready).count() as i32;
        assert!(total <= replicas + surge, "step {steps}: {total} pods > {replicas} + {surge}");
        assert!(
            ready_count >= replicas - unavailable || total < replicas,
            "step {steps}: {ready_count} ready < {replicas} - {unavailable}"
        );
        let all_new = live.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image));
        if live.len() as i32 == replicas && ready_count == replicas && all_new {
            break;
        }
    }
    eventually("rollout status", Duration::from_secs(20), || async {
        let d = deploys.get(name).await.unwrap();
        let s = d.status.unwrap_or_default();
        s.updated_replicas == Some(replicas)
            && s.available_replicas == Some(replicas)
            && s.replicas == Some(replicas)
            && s.observed_generation == d.metadata.generation
            && s.conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable"))
    })
    .await;
}

fn template_of(rs: &ReplicaSet) -> Value {
    let mut t = serde_json::to_value(rs.spec.as_ref().unwrap().template.as_ref().unwrap()).unwrap();
    t["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
    t
}

async fn replica_sets_by_revision(rss: &Api<ReplicaSet>, app: &str) -> Vec<(i64, ReplicaSet)> {
    let mut out: Vec<(i64, ReplicaSet)> = rss
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|rs| {
            (rs.annotations().get("deployment.kubernetes.io/revision").and_then(|r| r.parse().ok()).unwrap_or(0), rs)
        })
        .collect();
    out.sort_by_key(|(r, _)| *r);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_rollback_and_pause() {
    let c = cluster("cm_rollout").await;
    let _kubelet = fake_kubelet(c.client.clone(), Duration::from_millis(30));
    let _cm = start_cm(c.client.clone(), Config::default());
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}});
    deploys.create(&PostParams::default(), &deployment("web", 10, "web:1", strategy)).await.unwrap();
    eventually("10 ready pods", Duration::from_secs(20), || async {
        deploys.get("web").await.unwrap().status.is_some_and(|s| s.available_replicas == Some(10))
    })
    .await;
    let first = replica_sets_by_revision(&rss, "web").await;
    assert_eq!(first.len(), 1);
    assert!(first[0].1.name_any().starts_with("web-"));

    rollout_within_bounds(&deploys, &pods, "web", 10, 2, 1, "web:2").await;
    let revisions = replica_sets_by_revision(&rss, "web").await;
    assert_eq!(
        revisions.iter().map(|(r, rs)| (*r, rs.spec.as_ref().unwrap().replicas)).collect::<Vec<_>>(),
        vec![(1, Some(0)), (2, Some(10))]
    );
    assert_eq!(
        deploys.get("web").await.unwrap().annotations().get("deployment.kubernetes.io/revision").map(String::as_str),
        Some("2")
    );

    // Percent bounds, the defaults: 25% surge, 25% unavailable of 10 is 3 and 2.
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}}),
            ),
        )
        .await
        .unwrap();
    rollout_within_bounds(&deploys, &pods, "web", 10, 3, 2, "web:3").await;

    // Rollback as `kubectl rollout undo` does it: the previous template, through a JSON patch.
    let revisions = replica_sets_by_revision(&rss, "web").await;
    let previous = template_of(&revisions[revisions.len() - 2].1);
    let previous_name = revisions[revisions.len() - 2].1.name_any();
    let undo = json!([{"op": "replace", "path": "/spec/template", "value": previous}]);
    deploys
        .patch("web", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(undo).unwrap()))
        .await
        .unwrap();
    eventually("rollback to web:2", Duration::from_secs(30), || async {
        let live = live_pods(&pods, "app=web").await;
        live.len() == 10
            && live.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("web:2"))
    })
    .await;
    let revisions = replica_sets_by_revision(&rss, "web").await;
    let (newest_revision, newest) = revisions.last().unwrap();
    assert_eq!(
        (newest.name_any(), *newest_revision),
        (previous_name, 4),
        "the old ReplicaSet is the newest revision again"
    );

    // Rollback to a named revision: revision 1's template.
    let first_template = template_of(&revisions.iter().find(|(r, _)| *r == 1).unwrap().1);
    let undo = json!([{"op": "replace", "path": "/spec/template", "value": first_template}]);
    deploys
        .patch("web", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(undo).unwrap()))
        .await
        .unwrap();
    eventually("rollback to web:1", Duration::from_secs(30), || async {
        let live = live_pods(&pods, "app=web").await;
        live.len() == 10
            && live.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("web:1"))
    })
    .await;

    // Pause: template changes wait; resume: they roll.
    deploys.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": true}}))).await.unwrap();
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "web:9"}]}}}}),
            ),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        live_pods(&pods, "app=web")
            .await
            .iter()
            .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("web:1")),
        "paused: nothing rolls"
    );
    let paused = deploys.get("web").await.unwrap();
    assert!(paused.status.unwrap().conditions.unwrap().iter().any(|c| c.reason.as_deref() == Some("DeploymentPaused")));
    deploys.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": false}}))).await.unwrap();
    eventually("resumed rollout", Duration::from_secs(30), || async {
        let live = live_pods(&pods, "app=web").await;
        live.len() == 10
            && live.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("web:9"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_mid_rollout_is_proportional_and_recreate_has_no_overlap() {
    let c = cluster("cm_scale").await;
    // Slow readiness keeps the rollout in flight while it is scaled.
    let _kubelet = fake_kubelet(c.client.clone(), Duration::from_millis(1500));
    let _cm = start_cm(c.client.clone(), Config::default());
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}});
    deploys.create(&PostParams::default(), &deployment("api", 10, "api:1", strategy)).await.unwrap();
    eventually("10 available", Duration::from_secs(20), || async {
        deploys.get("api").await.unwrap().status.is_some_and(|s| s.available_replicas == Some(10))
    })
    .await;
    deploys
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "api:2"}]}}}}),
            ),
        )
        .await
        .unwrap();
    eventually("two active replica sets", Duration::from_secs(10), || async {
        replica_sets_by_revision(&rss, "api")
            .await
            .iter()
            .filter(|(_, rs)| rs.spec.as_ref().unwrap().replicas.unwrap_or(0) > 0)
            .count()
            == 2
    })
    .await;
    deploys
        .patch_scale("api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 20}})))
        .await
        .unwrap();
    eventually("proportional scale", Duration::from_secs(10), || async {
        let sets = replica_sets_by_revision(&rss, "api").await;
        let sizes: Vec<i32> = sets.iter().map(|(_, rs)| rs.spec.as_ref().unwrap().replicas.unwrap_or(0)).collect();
        // 20 + 3 surge spread over both: each grows, neither takes it all.
        sizes.len() == 2 && sizes.iter().sum::<i32>() <= 23 && sizes.iter().all(|s| *s > 0) && sizes[0] > 8
    })
    .await;
    eventually("finished at 20", Duration::from_secs(60), || async {
        let live = live_pods(&pods, "app=api").await;
        live.len() == 20
            && live.iter().all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("api:2"))
    })
    .await;

    deploys.create(&PostParams::default(), &deployment("batch", 3, "b:1", json!({"type": "Recreate"}))).await.unwrap();
    eventually("3 batch", Duration::from_secs(20), || async {
        deploys.get("batch").await.unwrap().status.is_some_and(|s| s.available_replicas == Some(3))
    })
    .await;
    let mut stream = watcher::watcher(pods.clone(), watcher::Config::default().labels("app=batch")).boxed();
    deploys
        .patch(
            "batch",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "b:2"}]}}}})),
        )
        .await
        .unwrap();
    let mut state: HashMap<String, Pod> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, stream.try_next()).await.unwrap().unwrap().unwrap() {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                state.insert(p.name_any(), p);
            }
            watcher::Event::Delete(p) => {
                state.remove(&p.name_any());
            }
            _ => {}
        }
        let images: Vec<&str> = state
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref())
            .collect();
        assert!(
            !(images.contains(&"b:1") && images.contains(&"b:2")),
            "Recreate never runs old and new together: {images:?}"
        );
        if images.len() == 3 && images.iter().all(|i| *i == "b:2") {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_is_marked_tainted_and_its_pods_replaced() {
    let c = cluster("cm_node").await;
    let config = Config {
        node_monitor_grace_period: Duration::from_secs(2),
        pod_eviction_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let _kubelet = fake_kubelet(c.client.clone(), Duration::from_millis(10));
    let _cm = start_cm(c.client.clone(), config);
    let nodes: Api<Node> = Api::all(c.client.clone());
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let node: Node = serde_json::from_value(
        json!({"metadata": {"name": "n1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let lease: Lease = serde_json::from_value(
        json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}}),
    )
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    // A "kubelet" renewing the lease.
    let renew_leases = leases.clone();
    let heartbeat = tokio::spawn(async move {
        loop {
            let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
            let _ = renew_leases
                .patch("n1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"renewTime": now}})))
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(
        json!({"metadata": {"name": "svc"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "svc"}},
        "template": {"metadata": {"labels": {"app": "svc"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    )
    .unwrap();
    rss.create(&PostParams::default(), &rs).await.unwrap();
    eventually("3 pods", Duration::from_secs(10), || async { live_pods(&pods, "app=svc").await.len() == 3 }).await;
    let http = reqwest::Client::new();
    let originals: Vec<String> = live_pods(&pods, "app=svc").await.iter().map(|p| p.name_any()).collect();
    for name in &originals {
        http.post(format!("{}/api/v1/namespaces/default/pods/{name}/binding", c.url()))
            .json(&json!({"metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}}))
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let healthy = nodes.get("n1").await.unwrap();
    assert!(healthy.spec.and_then(|s| s.taints).unwrap_or_default().is_empty(), "a renewing node stays untainted");

    heartbeat.abort();
    eventually("Ready=Unknown and unreachable taints", Duration::from_secs(10), || async {
        let n = nodes.get("n1").await.unwrap();
        let unknown = n
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "Unknown");
        let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
        unknown && taints.iter().any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
    })
    .await;
    eventually("replacements for the evicted pods", Duration::from_secs(15), || async {
        let live = live_pods(&pods, "app=svc").await;
        live.len() == 3 && live.iter().all(|p| !originals.contains(&p.name_any()))
    })
    .await;

    // The node comes back: the taints go.
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
    leases.patch("n1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"renewTime": now}}))).await.unwrap();
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    eventually("taints removed", Duration::from_secs(10), || async {
        nodes.get("n1").await.unwrap().spec.and_then(|s| s.taints).unwrap_or_default().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_cascade_background_orphan_and_foreground() {
    let c = cluster("cm_gc").await;
    let _kubelet = fake_kubelet(c.client.clone(), Duration::from_millis(10));
    let _cm = start_cm(c.client.clone(), Config::default());
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rolling = json!({"type": "RollingUpdate"});
    for name in ["bg", "orphan", "fg"] {
        deploys.create(&PostParams::default(), &deployment(name, 2, "i:1", rolling.clone())).await.unwrap();
    }
    for name in ["bg", "orphan", "fg"] {
        eventually("2 pods each", Duration::from_secs(10), || async {
            live_pods(&pods, &format!("app={name}")).await.len() == 2
        })
        .await;
    }

    deploys.delete("bg", &DeleteParams::background()).await.unwrap();
    eventually("background cascade", Duration::from_secs(15), || async {
        rss.list(&ListParams::default().labels("app=bg")).await.unwrap().items.is_empty()
            && pods.list(&ListParams::default().labels("app=bg")).await.unwrap().items.is_empty()
    })
    .await;

    deploys.delete("orphan", &DeleteParams::orphan()).await.unwrap();
    eventually("orphaned replica set", Duration::from_secs(15), || async {
        let gone = deploys.get_opt("orphan").await.unwrap().is_none();
        let sets = rss.list(&ListParams::default().labels("app=orphan")).await.unwrap().items;
        gone && sets.len() == 1 && sets[0].owner_references().is_empty()
    })
    .await;
    assert_eq!(live_pods(&pods, "app=orphan").await.len(), 2, "orphaned pods keep running");

    // Foreground: the dependents go first, then their owner. The revisions of the
    // deletions (one global order across kinds) say in which order they went.
    let deleted_pods = deletions(pods.clone(), "app=fg", "").await;
    let deleted_sets = deletions(rss.clone(), "app=fg", "").await;
    let deleted_deploy = deletions(deploys.clone(), "", "metadata.name=fg").await;
    let fg = DeleteParams { propagation_policy: Some(PropagationPolicy::Foreground), ..Default::default() };
    deploys.delete("fg", &fg).await.unwrap();
    let held = deploys.get("fg").await.unwrap();
    assert!(held.finalizers().iter().any(|f| f == "foregroundDeletion"), "the owner waits for its dependents");
    eventually("foreground cascade", Duration::from_secs(15), || async {
        deploys.get_opt("fg").await.unwrap().is_none()
            && rss.list(&ListParams::default().labels("app=fg")).await.unwrap().items.is_empty()
            && pods.list(&ListParams::default().labels("app=fg")).await.unwrap().items.is_empty()
    })
    .await;
    eventually("the deletions reach the watches", Duration::from_secs(10), || async {
        (deleted_pods.lock().len(), deleted_sets.lock().len(), deleted_deploy.lock().len()) == (2, 1, 1)
    })
    .await;
    let (pod_revs, set_revs, deploy_revs) =
        (deleted_pods.lock().clone(), deleted_sets.lock().clone(), deleted_deploy.lock().clone());
    assert_eq!((pod_revs.len(), set_revs.len(), deploy_revs.len()), (2, 1, 1), "every deletion was seen");
    assert!(pod_revs.iter().max() < set_revs.first(), "pods {pod_revs:?} went before their replica set {set_revs:?}");
    assert!(
        set_revs.first() < deploy_revs.first(),
        "the replica set {set_revs:?} went before the deployment {deploy_revs:?}"
    );
}

/// The revisions at which objects matching `labels` and `fields` are deleted, watched from now on (from
/// a list's revision, so that nothing after this call is missed).
async fn deletions<K>(api: Api<K>, labels: &str, fields: &str) -> Arc<parking_lot::Mutex<Vec<i64>>>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let out = seen.clone();
    let from = api
        .list(&ListParams::default().labels(labels).fields(fields))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let params = kube::api::WatchParams::default().labels(labels).fields(fields);
    tokio::spawn(async move {
        let Ok(stream) = api.watch(&params, &from).await else { return };
        let mut stream = stream.boxed();
        while let Some(Ok(event)) = stream.next().await {
            if let kube::api::WatchEvent::Deleted(obj) = event
                && let Some(rv) = obj.meta().resource_version.as_ref().and_then(|v| v.parse().ok())
            {
                out.lock().push(rv);
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_controller_manager_takes_over() {
    let c = cluster("cm_failover").await;
    let _kubelet = fake_kubelet(c.client.clone(), Duration::from_millis(10));
    // A 4 s lease: a leader that dies without a word is replaced once it expires.
    let election = |id: &str| controller_manager::leader::Config {
        namespace: "kube-system".into(),
        name: "kube-controller-manager".into(),
        identity: id.into(),
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_secs(1),
    };
    let (m1, m2) = (Arc::new(Metrics::default()), Arc::new(Metrics::default()));
    let (client1, e1, mm1) = (c.client.clone(), election("first"), m1.clone());
    let first = tokio::spawn(async move {
        let _ = controller_manager::run(client1, Config::default(), Some(e1), mm1, std::future::pending()).await;
    });
    eventually("the first leads", Duration::from_secs(10), || async { m1.leader.get() == 1 }).await;
    let (client2, e2, mm2) = (c.client.clone(), election("second"), m2.clone());
    let _second = tokio::spawn(async move {
        let _ = controller_manager::run(client2, Config::default(), Some(e2), mm2, std::future::pending()).await;
    });
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rs = |name: &str| -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
        .unwrap()
    };
    rss.create(&PostParams::default(), &rs("one")).await.unwrap();
    eventually("pods of one", Duration::from_secs(10), || async { live_pods(&pods, "app=one").await.len() == 2 }).await;
    assert_eq!((m1.leader.get(), m2.leader.get()), (1, 0), "exactly one acts");
    first.abort();
    let killed = tokio::time::Instant::now();
    rss.create(&PostParams::default(), &rs("two")).await.unwrap();
    eventually("the standby acts", Duration::from_secs(20), || async { live_pods(&pods, "app=two").await.len() == 2 })
        .await;
    assert!(killed.elapsed() < Duration::from_secs(20));
    assert_eq!(m2.leader.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_seconds_hold_availability_back_and_history_is_trimmed() {
    let c = cluster("cm_min_ready").await;
    let _kubelet = fake_kubelet(c.client.clone(), Duration::from_millis(10));
    let _cm = start_cm(c.client.clone(), Config::default());
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let mut d = deployment("slow", 2, "i:1", json!({"type": "RollingUpdate"}));
    let spec = d.spec.as_mut().unwrap();
    spec.min_ready_seconds = Some(2);
    spec.revision_history_limit = Some(1);
    deploys.create(&PostParams::default(), &d).await.unwrap();

    // Every pod Ready but none available yet: minReadySeconds holds them back, and the
    // controller looks again on its own when they have been ready long enough.
    let seen_ready_not_available = Arc::new(parking_lot::Mutex::new(false));
    eventually("2 available replicas", Duration::from_secs(15), || {
        let (deploys, seen) = (deploys.clone(), seen_ready_not_available.clone());
        async move {
            let s = deploys.get("slow").await.unwrap().status.unwrap_or_default();
            let (ready, available) = (s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0));
            *seen.lock() |= ready == 2 && available == 0;
            available == 2
        }
    })
    .await;
    assert!(*seen_ready_not_available.lock(), "availability waited for minReadySeconds");

    // Three more templates, each rolled out fully: one old revision stays (the limit),
    // the newest of them, and the older ones are deleted.
    for image in ["i:2", "i:3", "i:4"] {
        deploys
            .patch(
                "slow",
                &PatchParams::default(),
                &Patch::Strategic(
                    json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}),
                ),
            )
            .await
            .unwrap();
        eventually(&format!("{image} rolled out"), Duration::from_secs(30), || async {
            let d = deploys.get("slow").await.unwrap();
            let s = d.status.unwrap_or_default();
            s.observed_generation == d.metadata.generation
                && s.updated_replicas == Some(2)
                && s.available_replicas == Some(2)
                && s.replicas == Some(2)
        })
        .await;
    }
    eventually("history trimmed to one old revision", Duration::from_secs(15), || async {
        let revisions: Vec<i64> =
            replica_sets_by_revision(&rss, "slow").await.into_iter().map(|(rev, _)| rev).collect();
        revisions == [3, 4]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_of_several_owners_goes_with_the_last() {
    let c = cluster("cm_gc_owners").await;
    let _cm = start_cm(c.client.clone(), Config::default());
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let mut owners = Vec::new();
    for name in ["owner-a", "owner-b"] {
        // Empty owners that select nothing, so that no controller touches the pod.
        let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"owner": name}},
            "template": {"metadata": {"labels": {"owner": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
        .unwrap();
        let rs = rss.create(&PostParams::default(), &rs).await.unwrap();
        owners.push(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": rs.metadata.uid}));
    }
    let shared: Pod = serde_json::from_value(json!({"metadata": {"name": "shared", "ownerReferences": owners},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &shared).await.unwrap();

    rss.delete("owner-a", &DeleteParams::background()).await.unwrap();
    eventually("the dangling reference removed", Duration::from_secs(15), || async {
        let refs: Vec<String> =
            pods.get("shared").await.unwrap().owner_references().iter().map(|o| o.name.clone()).collect();
        refs == ["owner-b"]
    })
    .await;
    assert!(pods.get("shared").await.unwrap().metadata.deletion_timestamp.is_none(), "a live owner keeps it");

    rss.delete("owner-b", &DeleteParams::background()).await.unwrap();
    eventually("the dependent deleted with its last owner", Duration::from_secs(15), || async {
        pods.get_opt("shared").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_ready_node_evicts_by_toleration() {
    let c = cluster("cm_not_ready").await;
    let config = Config {
        node_monitor_grace_period: Duration::from_secs(30),
        pod_eviction_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let _kubelet = fake_kubelet(c.client.clone(), Duration::from_millis(10));
    let _cm = start_cm(c.client.clone(), config);
    let nodes: Api<Node> = Api::all(c.client.clone());
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let node: Node = serde_json::from_value(
        json!({"metadata": {"name": "n1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let not_ready = "node.kubernetes.io/not-ready";
    let tolerations = [
        // The apiserver gives every pod 300 s of not-ready and unreachable tolerance
        // (upstream's DefaultTolerationSeconds admission) unless it says otherwise.
        ("defaulted", json!([])),
        ("immediate", json!([{"key": not_ready, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}])),
        ("patient", json!([{"key": not_ready, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3}])),
        ("forever", json!([{"operator": "Exists"}])),
    ];
    for (name, t) in &tolerations {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"nodeName": "n1", "tolerations": t, "containers": [{"name": "c", "image": "i"}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }

    // The kubelet is alive (it posts status) but says the node is not ready.
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": [{"type": "Ready", "status": "False",
                "lastHeartbeatTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}]}})),
        )
        .await
        .unwrap();
    eventually("not-ready taints", Duration::from_secs(10), || async {
        let taints = nodes.get("n1").await.unwrap().spec.and_then(|s| s.taints).unwrap_or_default();
        let mut effects: Vec<(String, String)> = taints.into_iter().map(|t| (t.key, t.effect)).collect();
        effects.sort();
        effects == [(not_ready.to_owned(), "NoExecute".to_owned()), (not_ready.to_owned(), "NoSchedule".to_owned())]
    })
    .await;
    let added =
        nodes.get("n1").await.unwrap().spec.and_then(|s| s.taints).unwrap_or_default()[0].time_added.clone().unwrap().0;
    eventually("the pod with no time left evicted", Duration::from_secs(10), || async {
        pods.get_opt("immediate").await.unwrap().is_none()
    })
    .await;
    // The patient pod stays until its 3 s run out (timeAdded has whole seconds: 2 s at least).
    let last_alive = Arc::new(parking_lot::Mutex::new(None));
    eventually("the patient pod evicted after its tolerationSeconds", Duration::from_secs(15), || {
        let (pods, last_alive) = (pods.clone(), last_alive.clone());
        async move {
            match pods.get_opt("patient").await.unwrap() {
                Some(p) if p.metadata.deletion_timestamp.is_none() => {
                    *last_alive.lock() = Some(jiff::Timestamp::now());
                    false
                }
                Some(_) => false,
                None => true,
            }
        }
    })
    .await;
    let alive_for = last_alive.lock().expect("seen alive after the taint").duration_since(added);
    assert!(alive_for >= jiff::SignedDuration::from_secs(2), "evicted before its toleration ran out: {alive_for:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for name in ["forever", "defaulted"] {
        let stays = pods.get(name).await.unwrap();
        assert!(stays.metadata.deletion_timestamp.is_none(), "{name}: still within its toleration");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account() {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    let c = cluster("cm_service_accounts").await;
    let _cm = start_cm(c.client.clone(), Config::default());
    let accounts = |ns: &str| Api::<ServiceAccount>::namespaced(c.client.clone(), ns);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        eventually(&format!("{ns}/default"), Duration::from_secs(10), || async {
            accounts(ns).get_opt("default").await.unwrap().is_some()
        })
        .await;
    }
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    let created = std::time::Instant::now();
    eventually("team-a/default", Duration::from_secs(10), || async {
        accounts("team-a").get_opt("default").await.unwrap().is_some()
    })
    .await;
    eprintln!("default service account {:?} after its namespace", created.elapsed());
    let first = accounts("team-a").get("default").await.unwrap().metadata.uid;

    // Deleted, it comes back (a new object).
    accounts("team-a").delete("default", &DeleteParams::default()).await.unwrap();
    eventually("team-a/default recreated", Duration::from_secs(10), || async {
        accounts("team-a").get_opt("default").await.unwrap().is_some_and(|a| a.metadata.uid != first)
    })
    .await;
    // Another account is the user's business: deleted, it stays deleted.
    let mine: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "builder"}})).unwrap();
    accounts("team-a").create(&PostParams::default(), &mine).await.unwrap();
    accounts("team-a").delete("builder", &DeleteParams::default()).await.unwrap();
    // A terminating namespace gets none back: its content is being emptied.
    namespaces.delete("team-a", &DeleteParams::default()).await.unwrap();
    eventually("team-a gone with its accounts", Duration::from_secs(15), || async {
        namespaces.get_opt("team-a").await.unwrap().is_none()
    })
    .await;
    assert!(accounts("team-a").get_opt("builder").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controllers_run_on_the_replica_set_code() {
    use k8s_openapi::api::core::v1::ReplicationController;
    let c = cluster("cm_rc").await;
    let _kubelet = fake_kubelet(c.client.clone(), Duration::from_millis(10));
    let _cm = start_cm(c.client.clone(), Config::default());
    let rcs: Api<ReplicationController> = Api::namespaced(c.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    // No selector: the server takes it from the template's labels, as upstream.
    let rc: ReplicationController = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "rc-web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
    .unwrap();
    let created = rcs.create(&PostParams::default(), &rc).await.unwrap();
    assert_eq!(created.spec.as_ref().unwrap().selector, Some([("app".to_owned(), "rc-web".to_owned())].into()));
    // A ReplicaSet of the same name beside it: each keeps its own count.
    rss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "rs-web"}},
            "template": {"metadata": {"labels": {"app": "rs-web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
    .unwrap())
    .await
    .unwrap();
    eventually("3 ready pods of the controller", Duration::from_secs(15), || async {
        let status = rcs.get("web").await.unwrap().status.unwrap_or_default();
        live_pods(&pods, "app=rc-web").await.len() == 3 && status.ready_replicas == Some(3)
    })
    .await;
    eventually("2 pods of the replica set", Duration::from_secs(15), || async {
        live_pods(&pods, "app=rs-web").await.len() == 2
    })
    .await;
    let owner = live_pods(&pods, "app=rc-web").await[0].owner_references()[0].clone();
    assert_eq!(
        (owner.kind.as_str(), owner.api_version.as_str(), owner.controller),
        ("ReplicationController", "v1", Some(true))
    );

    // `kubectl scale rc` goes through the scale subresource.
    let http = reqwest::Client::new();
    let scale_url = format!("{}/api/v1/namespaces/default/replicationcontrollers/web/scale", c.url());
    let scale: Value = http.get(&scale_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(scale["status"]["selector"], "app=rc-web");
    let r = http
        .patch(&scale_url)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"spec":{"replicas":5}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    eventually("5 pods", Duration::from_secs(15), || async { live_pods(&pods, "app=rc-web").await.len() == 5 }).await;
    let victim = live_pods(&pods, "app=rc-web").await[0].name_any();
    pods.delete(&victim, &DeleteParams::default()).await.unwrap();
    eventually("a replacement", Duration::from_secs(15), || async {
        let live = live_pods(&pods, "app=rc-web").await;
        live.len() == 5 && live.iter().all(|p| p.name_any() != victim)
    })
    .await;
    assert_eq!(live_pods(&pods, "app=rs-web").await.len(), 2, "the replica set was not disturbed");

    // Deleted in the background, its pods go with it.
    rcs.delete("web", &DeleteParams::background()).await.unwrap();
    eventually("the controller's pods collected", Duration::from_secs(15), || async {
        pods.list(&ListParams::default().labels("app=rc-web")).await.unwrap().items.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_endpoint_slices_and_endpoints() {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let c = cluster("cm_endpoints").await;
    let _cm = start_cm(c.client.clone(), Config::default());
    let services: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(c.client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http"}, {"name": "metrics", "port": 9090}]}}))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    for (name, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 8080}]}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let set_status = |name: &'static str, ip: &'static str, ready: bool| {
        let pods = pods.clone();
        async move {
            let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
            pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
        }
    };
    set_status("a", "10.244.0.2", true).await;
    set_status("b", "10.244.0.3", false).await;
    set_status("c", "10.244.0.4", true).await;

    // The endpoints as (address, ready, serving, terminating), from the service's slices.
    let seen = || {
        let slices = slices.clone();
        async move {
            let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap();
            let mut out: Vec<(String, bool, bool, bool)> = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .map(|e| {
                    let c = e.conditions.clone().unwrap_or_default();
                    (
                        e.addresses[0].clone(),
                        c.ready == Some(true),
                        c.serving == Some(true),
                        c.terminating == Some(true),
                    )
                })
                .collect();
            out.sort();
            (list.items, out)
        }
    };
    let want =
        |v: &[(&str, bool, bool, bool)]| v.iter().map(|(a, r, s, t)| ((*a).to_owned(), *r, *s, *t)).collect::<Vec<_>>();
    let first = want(&[("10.244.0.2", true, true, false), ("10.244.0.3", false, false, false)]);
    eventually("a slice with a ready and a not-ready endpoint", Duration::from_secs(10), || async {
        seen().await.1 == first
    })
    .await;
    let (items, _) = seen().await;
    assert_eq!(items.len(), 1);
    let slice = &items[0];
    assert_eq!(slice.address_type, "IPv4");
    let ports: Vec<(Option<String>, Option<i32>)> =
        slice.ports.iter().flatten().map(|p| (p.name.clone(), p.port)).collect();
    assert_eq!(ports, vec![(Some("http".into()), Some(8080)), (Some("metrics".into()), Some(9090))]);
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Service", "web", Some(true)));
    assert_eq!(slice.metadata.labels.as_ref().unwrap().get("tier").map(String::as_str), Some("front"));
    let ips = |list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        list.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
    };
    // The Endpoints are written after the slices, in the same pass.
    eventually("Endpoints with a ready and a not-ready address", Duration::from_secs(10), || async {
        let ep = endpoints.get_opt("web").await.unwrap().unwrap_or_default();
        let subset = ep.subsets.unwrap_or_default().into_iter().next().unwrap_or_default();
        (ips(&subset.addresses), ips(&subset.not_ready_addresses))
            == (vec!["10.244.0.2".to_owned()], vec!["10.244.0.3".to_owned()])
    })
    .await;

    // b turns Ready; a is deleted and terminates (its node has not confirmed yet).
    set_status("b", "10.244.0.3", true).await;
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    let second = want(&[("10.244.0.2", false, true, true), ("10.244.0.3", true, true, false)]);
    eventually("a terminating and b ready", Duration::from_secs(10), || async { seen().await.1 == second }).await;
    eventually("Endpoints with b alone", Duration::from_secs(10), || async {
        let ep = endpoints.get("web").await.unwrap();
        let subset = ep.subsets.unwrap_or_default().into_iter().next().unwrap_or_default();
        ips(&subset.addresses) == vec!["10.244.0.3".to_owned()] && subset.not_ready_addresses.is_none()
    })
    .await;

    // A pod whose labels change leaves; the service's deletion takes its slices and Endpoints.
    pods.patch("b", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})))
        .await
        .unwrap();
    let third = want(&[("10.244.0.2", false, true, true)]);
    eventually("b gone from the slice", Duration::from_secs(10), || async { seen().await.1 == third }).await;
    services.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("no slices and no Endpoints", Duration::from_secs(10), || async {
        seen().await.0.is_empty() && endpoints.get_opt("web").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_pod_cidrs_of_their_own() {
    let c = cluster("cm_node_ipam").await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node = |name: &str, cidr: Option<&str>| -> Node {
        let mut n = json!({"metadata": {"name": name}});
        if let Some(cidr) = cidr {
            n["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
        }
        serde_json::from_value(n).unwrap()
    };
    // A node that already has a range keeps it, and nobody else gets it.
    nodes.create(&PostParams::default(), &node("old", Some("10.244.0.0/24"))).await.unwrap();
    let config = Config { cluster_cidr: Some(("10.244.0.0/16".into(), 24)), ..Config::default() };
    let _cm = start_cm(c.client.clone(), config);
    for name in ["a", "b", "c"] {
        nodes.create(&PostParams::default(), &node(name, None)).await.unwrap();
    }
    let cidr_of = |name: &'static str| {
        let nodes = nodes.clone();
        async move { nodes.get(name).await.unwrap().spec.and_then(|s| s.pod_cidr).unwrap_or_default() }
    };
    eventually("every node has a pod CIDR", Duration::from_secs(10), || async {
        !cidr_of("a").await.is_empty() && !cidr_of("b").await.is_empty() && !cidr_of("c").await.is_empty()
    })
    .await;
    let mut got = vec![cidr_of("a").await, cidr_of("b").await, cidr_of("c").await];
    got.sort();
    assert_eq!(got, vec!["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]);
    assert_eq!(cidr_of("old").await, "10.244.0.0/24");
    let a = nodes.get("a").await.unwrap().spec.unwrap();
    assert_eq!(a.pod_cidrs, Some(vec![a.pod_cidr.clone().unwrap()]));

    // A deleted node's range is handed out again: of two new nodes, one gets it (which one
    // depends on when the controller hears of the deletion) and the other the next range.
    let freed = cidr_of("b").await;
    nodes.delete("b", &DeleteParams::default()).await.unwrap();
    nodes.create(&PostParams::default(), &node("d", None)).await.unwrap();
    nodes.create(&PostParams::default(), &node("e", None)).await.unwrap();
    eventually("d and e have pod CIDRs", Duration::from_secs(10), || async {
        !cidr_of("d").await.is_empty() && !cidr_of("e").await.is_empty()
    })
    .await;
    let mut new = vec![cidr_of("d").await, cidr_of("e").await];
    new.sort();
    let mut want = vec![freed, "10.244.4.0/24".to_owned()];
    want.sort();
    assert_eq!(new, want);
}
