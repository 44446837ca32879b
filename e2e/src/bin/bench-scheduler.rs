//! The scheduler benchmark: N Ready nodes (no kubelet) and M pending pods of one
//! ReplicaSet through an apiserver on etcd, scheduled by the real `kube-scheduler` binary.
//! Prints pods bound per second, the p50/p99 time from a pod's creation to its binding (as
//! a watching client sees it), and how evenly the pods spread.
//!
//! Run with `cargo run --release -p e2e --bin bench-scheduler` (it starts its own etcd).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use e2e::{Process, apiserver_process, etcd_process, free_port, kubeconfig, percentile};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Scenarios as NODESxPODS.
    #[arg(long, value_delimiter = ',', default_value = "100x1000,1000x10000")]
    scenarios: Vec<String>,
    /// Concurrent clients creating pods.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Use the embedded store instead of etcd.
    #[arg(long)]
    embedded: bool,
}

async fn post_all(
    url: &str,
    path: &str,
    bodies: Vec<Value>,
    concurrency: usize,
    created: Option<Arc<Mutex<HashMap<String, Instant>>>>,
) -> Result<()> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let bodies = Arc::new(Mutex::new(bodies));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, bodies, created) = (http.clone(), bodies.clone(), created.clone());
        let url = format!("{url}{path}");
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(body) = bodies.lock().pop() else { return Ok::<_, anyhow::Error>(()) };
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let started = Instant::now();
                let r = http.post(&url).json(&body).send().await?;
                let status = r.status();
                r.bytes().await?;
                anyhow::ensure!(status.as_u16() == 201, "POST {url} {name}: {status}");
                if let Some(c) = &created {
                    c.lock().insert(name, started);
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn scenario(
    dir: &std::path::Path,
    store_args: &[String],
    nodes: usize,
    pods: usize,
    concurrency: usize,
) -> Result<()> {
    let (_apiserver, url) = apiserver_process(store_args, &dir.join(format!("apiserver-{nodes}.log"))).await?;
    let node_bodies: Vec<Value> = (0..nodes)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": format!("node-{i:04}"), "labels": {"kubernetes.io/hostname": format!("node-{i:04}")}},
                "status": {"allocatable": {"cpu": "32", "memory": "64Gi", "pods": "110"}, "capacity": {"cpu": "32", "memory": "64Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True"}]}})
        })
        .collect();
    post_all(&url, "/api/v1/nodes", node_bodies, concurrency, None).await?;
    let kc = dir.join(format!("kubeconfig-{nodes}"));
    kubeconfig(&url, &kc)?;
    let sched_args =
        vec!["--kubeconfig".to_owned(), kc.display().to_string(), "--secure-port".to_owned(), free_port().to_string()];
    let _scheduler = Process::spawn("kube-scheduler", &sched_args, &dir.join(format!("scheduler-{nodes}.log")))?;

    // Watch pods from now on: the first event showing a node is the binding.
    let http = reqwest::Client::new();
    let list: Value = http.get(format!("{url}/api/v1/pods")).send().await?.json().await?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_owned();
    let bound: Arc<Mutex<HashMap<String, (Instant, String)>>> = Arc::new(Mutex::new(HashMap::new()));
    let watch = http.get(format!("{url}/api/v1/pods?watch=true&resourceVersion={rv}")).send().await?;
    let watcher_bound = bound.clone();
    let watcher = tokio::spawn(async move {
        let mut stream = watch.bytes_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { return };
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else { continue };
                let obj = &ev["object"];
                if let (Some(name), Some(node)) = (obj["metadata"]["name"].as_str(), obj["spec"]["nodeName"].as_str()) {
                    watcher_bound.lock().entry(name.to_owned()).or_insert((Instant::now(), node.to_owned()));
                }
            }
        }
    });
    // Give the scheduler a moment to take its lease and list the nodes.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pod_bodies: Vec<Value> = (0..pods)
        .rev()
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("web-{i:05}"), "namespace": "default", "labels": {"app": "web"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-web-uid", "controller": true}]},
                "spec": {"containers": [{"name": "web", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}})
        })
        .collect();
    let created = Arc::new(Mutex::new(HashMap::with_capacity(pods)));
    let started = Instant::now();
    post_all(&url, "/api/v1/namespaces/default/pods", pod_bodies, concurrency, Some(created.clone())).await?;
    let created_all = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while bound.lock().len() < pods {
        if Instant::now() > deadline {
            bail!("only {} of {pods} pods bound after 300 s", bound.lock().len());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    watcher.abort();
    let bound = bound.lock().clone();
    let created = created.lock().clone();
    let last = bound.values().map(|(t, _)| *t).max().context("no bindings")?;
    let total = last - started;
    let mut latencies: Vec<Duration> = bound
        .iter()
        .filter_map(|(name, (at, _))| created.get(name).map(|c| at.saturating_duration_since(*c)))
        .collect();
    latencies.sort();
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for (_, node) in bound.values() {
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    let most = per_node.values().copied().max().unwrap_or(0);
    let bound_limit = pods.div_ceil(nodes) + 1;
    println!("{pods} pods on {nodes} nodes:");
    println!(
        "  all created in {:.2} s, all bound in {:.2} s: {:.0} pods/s",
        created_all.as_secs_f64(),
        total.as_secs_f64(),
        pods as f64 / total.as_secs_f64()
    );
    println!(
        "  creation to binding: p50 {:.0} ms, p99 {:.0} ms",
        percentile(&latencies, 0.5)?.as_secs_f64() * 1e3,
        percentile(&latencies, 0.99)?.as_secs_f64() * 1e3
    );
    println!(
        "  spread: at most {most} pods of the ReplicaSet on one node (bound ceil(M/N)+1 = {bound_limit}), {} nodes used",
        per_node.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (_etcd, store_args) = if args.embedded {
        (None, vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()])
    } else {
        let (etcd, url) = etcd_process(dir.path()).await?;
        (Some(etcd), vec!["--etcd-servers".to_owned(), url])
    };
    println!(
        "# scheduler benchmark ({} store, {} creating clients)",
        if args.embedded { "embedded" } else { "etcd" },
        args.concurrency
    );
    for (i, s) in args.scenarios.iter().enumerate() {
        let (nodes, pods) = s.split_once('x').with_context(|| format!("scenario {s:?} is not NODESxPODS"))?;
        let mut store = store_args.clone();
        if !args.embedded {
            store.extend(["--etcd-prefix".to_owned(), format!("/bench-{i}")]);
        } else {
            store[1] = dir.path().join(format!("data-{i}")).display().to_string();
        }
        scenario(dir.path(), &store, nodes.parse()?, pods.parse()?, args.concurrency).await?;
    }
    Ok(())
}
