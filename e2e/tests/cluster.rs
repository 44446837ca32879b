//! The whole control plane as real processes (apiserver on the embedded store, scheduler,
//! controller-manager, a simulated kubelet hosting 20 nodes), driven through the API:
//! `kill -9` of the controller-manager, the scheduler and the apiserver in the middle of
//! scaling, and after each restart exactly the desired number of pods, all bound and Ready.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{Process, apiserver_process, client, free_port, kubeconfig, pod_ready as ready};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

struct Cluster {
    dir: tempfile::TempDir,
    url: String,
    port: u16,
    apiserver: Option<Process>,
    scheduler: Option<Process>,
    controllers: Option<Process>,
    _kubelet: Process,
}

fn arg(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data").display().to_string();
        let (apiserver, url) =
            apiserver_process(&arg(&["--data-dir", &data]), &dir.path().join("apiserver-0.log")).await.unwrap();
        let port: u16 = url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
        let kc = dir.path().join("kubeconfig");
        kubeconfig(&url, &kc).unwrap();
        let kcs = kc.display().to_string();
        let kubelet = Process::spawn(
            "kubelet",
            &arg(&[
                "--kubeconfig",
                &kcs,
                "--runtime",
                "sim",
                "--sim-nodes",
                "20",
                "--node-name",
                "sim",
                "--port",
                &free_port().to_string(),
                "--root-dir",
                &dir.path().join("kubelet").display().to_string(),
            ]),
            &dir.path().join("kubelet.log"),
        )
        .unwrap();
        let mut c = Cluster {
            dir,
            url,
            port,
            apiserver: Some(apiserver),
            scheduler: None,
            controllers: None,
            _kubelet: kubelet,
        };
        c.start_scheduler(0);
        c.start_controllers(0);
        c
    }

    fn kubeconfig(&self) -> String {
        self.dir.path().join("kubeconfig").display().to_string()
    }

    fn start_scheduler(&mut self, n: usize) {
        let args = arg(&["--kubeconfig", &self.kubeconfig(), "--secure-port", "0"]);
        self.scheduler =
            Some(Process::spawn("kube-scheduler", &args, &self.dir.path().join(format!("scheduler-{n}.log"))).unwrap());
    }

    fn start_controllers(&mut self, n: usize) {
        let args = arg(&["--kubeconfig", &self.kubeconfig(), "--secure-port", "0"]);
        self.controllers = Some(
            Process::spawn("kube-controller-manager", &args, &self.dir.path().join(format!("controllers-{n}.log")))
                .unwrap(),
        );
    }

    async fn restart_apiserver(&mut self, n: usize) {
        if let Some(mut a) = self.apiserver.take() {
            a.kill();
        }
        let data = self.dir.path().join("data").display().to_string();
        let args = arg(&["--data-dir", &data]);
        // The same port, so the components' kubeconfig still points at it.
        let mut all = vec!["--port".to_owned(), self.port.to_string()];
        all.extend(args);
        let p = Process::spawn("kube-apiserver", &all, &self.dir.path().join(format!("apiserver-{n}.log"))).unwrap();
        e2e::wait_healthy(&self.url, Duration::from_secs(30)).await.unwrap();
        self.apiserver = Some(p);
    }
}

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
    let mut c = Cluster::start().await;
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
