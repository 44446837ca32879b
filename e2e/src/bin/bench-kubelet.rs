//! The kubelet benchmark: (a) one docker-runtime kubelet bringing 100 pods of the
//! `busybox:local` image to Ready, beside 100 parallel `docker run -d` of the same image on
//! the same daemon and 100 pause + app container pairs started with the Docker CLI (what
//! each pod costs the daemon), in the same run; (b) one `--sim-nodes 500` kubelet process holding 500
//! Ready nodes, with its RSS.
//!
//! Run with `cargo run --release -p e2e --bin bench-kubelet` (needs a Docker daemon and
//! `deploy/images/busybox.sh`; `--skip-docker` runs only the simulated part).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use e2e::{Process, apiserver_process, client, free_port, kubeconfig, rss_mb};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Pods (and docker runs) in the docker part.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Nodes in the simulated part.
    #[arg(long, default_value_t = 500)]
    sim_nodes: usize,
    /// Only the simulated part.
    #[arg(long)]
    skip_docker: bool,
}

async fn kubelet_pods(dir: &std::path::Path, url: &str, kc: &std::path::Path, n: usize) -> Result<Duration> {
    let root = dir.join("kubelet-docker");
    let args: Vec<String> = [
        "--kubeconfig",
        &kc.display().to_string(),
        "--runtime",
        "docker",
        "--node-name",
        "bench-docker",
        "--port",
        &free_port().to_string(),
        "--root-dir",
        &root.display().to_string(),
        "--max-pods",
        "500",
        // Beside `docker run` on Docker's bridge: the same network (and no controller-manager
        // here to give the node a pod CIDR).
        "--network-plugin",
        "none",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let _kubelet = Process::spawn("kubelet", &args, &dir.join("kubelet-docker.log"))?;
    let c = client(url)?;
    let nodes: Api<Node> = Api::all(c.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes.get_opt("bench-docker").await?.is_none() {
        if Instant::now() > deadline {
            bail!("the kubelet did not register");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let started = Instant::now();
    let creates = futures::stream::iter(0..n)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({"metadata": {"name": format!("bb-{i}"), "labels": {"bench": "docker"}},
                    "spec": {"nodeName": "bench-docker", "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "c", "image": "busybox:local", "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}}))?;
                pods.create(&PostParams::default(), &pod).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(32);
    for r in creates.collect::<Vec<_>>().await {
        r?;
    }
    let lp = ListParams::default().labels("bench=docker");
    loop {
        let list = pods.list(&lp).await?;
        let ready = list.items.iter().filter(|p| e2e::pod_ready(p)).count();
        if ready == n {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("only {ready} of {n} pods Ready after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    pods.delete_collection(&DeleteParams::default(), &lp).await?;
    // Wait until the kubelet has removed its containers, so nothing is left behind.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = tokio::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", "label=io.kubernetes.managed-by=bench-docker"])
            .output()
            .await?;
        if String::from_utf8_lossy(&left.stdout).trim().is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(took)
}

async fn sim_nodes(dir: &std::path::Path, url: &str, kc: &std::path::Path, n: usize) -> Result<()> {
    let args: Vec<String> = [
        "--kubeconfig",
        &kc.display().to_string(),
        "--runtime",
        "sim",
        "--sim-nodes",
        &n.to_string(),
        "--node-name",
        "sim",
        "--port",
        &free_port().to_string(),
        "--root-dir",
        &dir.join("kubelet-sim").display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let started = Instant::now();
    let kubelet = Process::spawn("kubelet", &args, &dir.join("kubelet-sim.log"))?;
    let nodes: Api<Node> = Api::all(client(url)?);
    loop {
        let list = nodes.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| n.metadata.name.as_deref().is_some_and(|x| x.starts_with("sim-")))
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready == n {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("only {ready} of {n} simulated nodes Ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let up = started.elapsed();
    // Let the leases renew once, then measure.
    tokio::time::sleep(Duration::from_secs(12)).await;
    println!(
        "one --sim-nodes {n} kubelet: {n} Ready nodes in {:.2} s, RSS {:.0} MB",
        up.as_secs_f64(),
        rss_mb(kubelet.child.id())?
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store = vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()];
    let (_apiserver, url) = apiserver_process(&store, &dir.path().join("apiserver.log")).await?;
    let kc = dir.path().join("kubeconfig");
    kubeconfig(&url, &kc)?;
    println!("# kubelet benchmark");
    if !args.skip_docker {
        let raw = e2e::docker_runs(args.pods, &["sleep", "3600"]).await?;
        let ours = kubelet_pods(dir.path(), &url, &kc, args.pods).await?;
        let raw2 = e2e::docker_runs(args.pods, &["sleep", "3600"]).await?;
        let pairs = e2e::docker_pairs(args.pods, &["sleep", "3600"]).await?;
        println!(
            "{} parallel `docker run -d busybox:local`: {:.2} s (again after: {:.2} s)",
            args.pods,
            raw.as_secs_f64(),
            raw2.as_secs_f64()
        );
        println!(
            "{} pods to Ready through one docker-runtime kubelet: {:.2} s ({:.2}x the first docker run figure)",
            args.pods,
            ours.as_secs_f64(),
            ours.as_secs_f64() / raw.as_secs_f64()
        );
        println!(
            "{} pause + app container pairs with the Docker CLI (the floor of the pause-container design): {:.2} s ({:.2}x the kubelet's)",
            args.pods,
            pairs.as_secs_f64(),
            pairs.as_secs_f64() / ours.as_secs_f64()
        );
    }
    sim_nodes(dir.path(), &url, &kc, args.sim_nodes).await?;
    Ok(())
}
