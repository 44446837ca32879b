//! The controller-manager benchmark: a 1,000-replica Deployment created, scaled to 2,000,
//! and rolled to a new image (25%/25%), through the real apiserver and
//! kube-controller-manager binaries on etcd, with pods made Ready by a fake kubelet.
//! Prints the seconds each step takes.
//!
//! Run with `cargo run --release -p e2e --bin bench-controllers` (it starts its own etcd).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use e2e::{Process, apiserver_process, client, etcd_process, fake_kubelet, free_port, kubeconfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Replicas of the first step (the scale step doubles them).
    #[arg(long, default_value_t = 1000)]
    replicas: i32,
    /// Use the embedded store instead of etcd.
    #[arg(long)]
    embedded: bool,
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Result<bool>) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if check().await? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!("{what}: not done after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn settled(d: &Deployment, replicas: i32, image: &str) -> bool {
    let s = d.status.clone().unwrap_or_default();
    let spec_image = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|p| p.containers[0].image.clone());
    s.observed_generation == d.metadata.generation
        && s.replicas == Some(replicas)
        && s.updated_replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && spec_image.as_deref() == Some(image)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (_etcd, store) = if args.embedded {
        (None, vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()])
    } else {
        let (etcd, url) = etcd_process(dir.path()).await?;
        (Some(etcd), vec!["--etcd-servers".to_owned(), url])
    };
    let (_apiserver, url) = apiserver_process(&store, &dir.path().join("apiserver.log")).await?;
    let kc = dir.path().join("kubeconfig");
    kubeconfig(&url, &kc)?;
    let cm_args =
        vec!["--kubeconfig".to_owned(), kc.display().to_string(), "--secure-port".to_owned(), free_port().to_string()];
    let _cm = Process::spawn("kube-controller-manager", &cm_args, &dir.path().join("controller-manager.log"))?;
    let c = client(&url)?;
    let _kubelet = fake_kubelet(c.clone(), Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let n = args.replicas;
    println!(
        "# controller-manager benchmark ({} store, fake kubelet marks pods Ready at once)",
        if args.embedded { "embedded" } else { "etcd" }
    );

    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": n,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}))?;
    let started = Instant::now();
    deploys.create(&PostParams::default(), &d).await?;
    let lp = ListParams::default().labels("app=web");
    wait_for("pods created", Duration::from_secs(120), async || {
        Ok(pods.list_metadata(&lp).await?.items.len() >= n as usize)
    })
    .await?;
    let created = started.elapsed();
    wait_for("deployment available", Duration::from_secs(120), async || {
        Ok(settled(&deploys.get("web").await?, n, "web:1"))
    })
    .await?;
    println!(
        "{n}-replica deployment: {n} pods created in {:.2} s, all available in {:.2} s",
        created.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    deploys.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2 * n}}))).await?;
    wait_for("scaled", Duration::from_secs(120), async || Ok(settled(&deploys.get("web").await?, 2 * n, "web:1")))
        .await?;
    println!("scale to {}: all available in {:.2} s", 2 * n, started.elapsed().as_secs_f64());

    let started = Instant::now();
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}),
            ),
        )
        .await?;
    wait_for("rolled", Duration::from_secs(300), async || {
        let done = settled(&deploys.get("web").await?, 2 * n, "web:2");
        Ok(done && pods.list_metadata(&lp).await?.items.len() == 2 * n as usize)
    })
    .await?;
    println!("{}-replica rolling update (25%/25%): done in {:.2} s", 2 * n, started.elapsed().as_secs_f64());
    Ok(())
}
