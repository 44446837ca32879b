//! The apiserver benchmark: prints, in one run on this machine,
//! - pod creates/s through the apiserver with 64 concurrent clients on etcd, raw etcd
//!   puts/s with the same concurrency and value size, and their ratio;
//! - p50/p99 create latency at full load and at a steady 1,000 creates/s;
//! - the time to LIST 10,000 pods from the watch cache;
//! - the apiserver's RSS holding 10,000 pods;
//! - the embedded store's creates/s beside etcd's;
//! - with `--baseline PATH`, this build's embedded-store creates/s beside another
//!   kube-apiserver binary's (an older commit's), in alternating rounds of the same run;
//! - with `--custom-resources`, custom-object creates/s (a CRD with a structural schema:
//!   pruning, defaults, validation) beside ConfigMap creates/s of the same size, in
//!   alternating rounds on the embedded store.
//!
//! Run with `cargo run --release -p e2e --bin bench-apiserver` (it starts its own etcd).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use e2e::{Process, apiserver_process, cpu_seconds, percentile, rss_mb};
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Pods created in the throughput runs.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of the steady 1,000 creates/s run.
    #[arg(long, default_value_t = 5)]
    steady_seconds: u64,
    /// Another kube-apiserver binary to compare with, round by round (build an older
    /// commit with `cargo build --release -p apiserver` and copy target/release/kube-apiserver).
    #[arg(long)]
    baseline: Option<std::path::PathBuf>,
    /// Alternating rounds of the comparison.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only compare custom-object creates with ConfigMap creates.
    #[arg(long)]
    custom_resources: bool,
}

/// A CronTab definition with a schema of the usual kind: types, a pattern, bounds, an enum,
/// defaults, a map, a list.
fn crontab_definition() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.bench.example.com"},
        "spec": {"group": "bench.example.com", "scope": "Namespaced",
            "names": {"plural": "crontabs", "kind": "CronTab"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["cronSpec", "image"], "properties": {
                        "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                        "image": {"type": "string", "minLength": 1, "maxLength": 256},
                        "replicas": {"type": "integer", "minimum": 0, "maximum": 100, "default": 1},
                        "policy": {"type": "string", "enum": ["Allow", "Forbid", "Replace"], "default": "Allow"},
                        "env": {"type": "object", "additionalProperties": {"type": "string"}},
                        "args": {"type": "array", "items": {"type": "string"}, "maxItems": 32},
                    }},
                    "status": {"type": "object", "properties": {"active": {"type": "integer"}}},
                }}}}]}
    })
}

fn crontab(name: &str) -> Value {
    json!({
        "apiVersion": "bench.example.com/v1", "kind": "CronTab",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "batch"}},
        "spec": {"cronSpec": "*/5 * * * *", "image": "registry.example.com/backup:1.2.3",
            "env": {"TARGET": "s3://bucket/backups", "RETENTION": "30d", "LOG_LEVEL": "info"},
            "args": ["--compress", "--verify", "--parallel=4"]},
    })
}

fn config_map(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "batch"}},
        "data": {"cronSpec": "*/5 * * * *", "image": "registry.example.com/backup:1.2.3",
            "TARGET": "s3://bucket/backups", "RETENTION": "30d", "LOG_LEVEL": "info",
            "args": "--compress --verify --parallel=4", "replicas": "1", "policy": "Allow"},
    })
}

/// Custom-object creates/s beside ConfigMap creates/s, alternating, on one embedded-store
/// apiserver.
async fn custom_resources(dir: &std::path::Path, args: &Args) -> Result<()> {
    let data = vec!["--data-dir".to_owned(), dir.join("embedded").display().to_string()];
    let (_process, url) = apiserver_process(&data, &dir.join("apiserver-custom.log")).await?;
    let http = reqwest::Client::new();
    let crds = format!("{url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions");
    let created = http.post(&crds).json(&crontab_definition()).send().await?;
    anyhow::ensure!(created.status().as_u16() == 201, "creating the CRD answered {}", created.status());
    let served = format!("{url}/apis/bench.example.com/v1/namespaces/default/crontabs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http.get(&served).send().await?.status().is_success() {
        anyhow::ensure!(Instant::now() < deadline, "the CRD was not served within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "# custom resources beside ConfigMaps: {} creates each per round, {} clients, embedded store",
        args.pods, args.concurrency
    );
    let (mut custom, mut maps) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let cm = create_objects(&url, "/api/v1/namespaces/default/configmaps", &format!("r{round}"), args, config_map)
            .await?;
        let cr = create_objects(
            &url,
            "/apis/bench.example.com/v1/namespaces/default/crontabs",
            &format!("r{round}"),
            args,
            crontab,
        )
        .await?;
        println!("  round {round}: ConfigMap {:.0} creates/s, CronTab {:.0} creates/s", cm.0, cr.0);
        maps.push(cm.0);
        custom.push(cr.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (c, m) = (median(&mut custom), median(&mut maps));
    println!(
        "creates/s, median of {}: CronTab {c:.0}, ConfigMap {m:.0} (custom objects at {:.0}% of ConfigMaps)",
        args.rounds,
        c / m * 100.0
    );
    Ok(())
}

/// Embedded-store creates/s of the apiserver binary at `path`, on a fresh data dir.
async fn embedded_rate(path: &std::path::Path, dir: &std::path::Path, pods: usize, concurrency: usize) -> Result<f64> {
    let port = e2e::free_port();
    let data = tempfile::tempdir_in(dir)?;
    let mut args =
        vec!["--port".to_owned(), port.to_string(), "--data-dir".to_owned(), data.path().display().to_string()];
    // Builds from before TLS served plain HTTP without being asked.
    let help = std::process::Command::new(path).arg("--help").output()?;
    if String::from_utf8_lossy(&help.stdout).contains("--insecure-serving") {
        args.push("--insecure-serving".to_owned());
    }
    let _process = Process::spawn_path(path, &args, &dir.join("apiserver-compare.log"))?;
    let url = format!("http://127.0.0.1:{port}");
    e2e::wait_healthy(&url, Duration::from_secs(30)).await?;
    Ok(create_pods(&url, "ab", pods, concurrency).await?.0)
}

/// This build beside `baseline`, alternating, so that both see the same machine.
async fn compare(baseline: &std::path::Path, dir: &std::path::Path, args: &Args) -> Result<()> {
    let this = e2e::binary("kube-apiserver");
    println!("# this build ({}) beside the baseline ({})", this.display(), baseline.display());
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let b = embedded_rate(baseline, dir, args.pods, args.concurrency).await?;
        let o = embedded_rate(&this, dir, args.pods, args.concurrency).await?;
        println!("  round {round}: baseline {b:.0} creates/s, this build {o:.0} creates/s");
        theirs.push(b);
        ours.push(o);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (o, b) = (median(&mut ours), median(&mut theirs));
    println!(
        "embedded-store pod creates/s, median of {}: this build {o:.0}, baseline {b:.0} ({:+.1}%)",
        args.rounds,
        (o / b - 1.0) * 100.0
    );
    Ok(())
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "pod-template-hash": "5d4f8c7b9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "bench-5d4f8c7b9",
                "uid": "8f6b6d3e-3c1e-4a1b-9f5e-0d9e6b1c2a3f", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}, "ports": [{"containerPort": 8080}]}]},
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Creates one object and records how long the apiserver took to answer 201.
async fn create_one(http: &reqwest::Client, url: &str, body: &Value, latencies: &Mutex<Vec<Duration>>) -> Result<()> {
    let body = serde_json::to_vec(body)?;
    let t = Instant::now();
    let r = http.post(url).header("content-type", "application/json").body(body).send().await?;
    let status = r.status();
    r.bytes().await?;
    anyhow::ensure!(status.as_u16() == 201, "create answered {status}");
    latencies.lock().push(t.elapsed());
    Ok(())
}

/// Creates `total` pods with `concurrency` clients; returns creates/s and sorted latencies.
async fn create_pods(url: &str, prefix: &str, total: usize, concurrency: usize) -> Result<(f64, Vec<Duration>)> {
    create_many(url, "/api/v1/namespaces/default/pods", prefix, total, concurrency, pod).await
}

/// Creates `args.pods` objects made by `make` under `path`.
async fn create_objects(
    url: &str,
    path: &str,
    prefix: &str,
    args: &Args,
    make: fn(&str) -> Value,
) -> Result<(f64, Vec<Duration>)> {
    create_many(url, path, prefix, args.pods, args.concurrency, make).await
}

/// Creates `total` objects made by `make` under `path` with `concurrency` clients; returns
/// creates/s and sorted latencies.
async fn create_many(
    url: &str,
    path: &str,
    prefix: &str,
    total: usize,
    concurrency: usize,
    make: fn(&str) -> Value,
) -> Result<(f64, Vec<Duration>)> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, latencies) = (http.clone(), next.clone(), latencies.clone());
        let url = format!("{url}{path}");
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                create_one(&http, &url, &make(&format!("{prefix}-{i}")), &latencies).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let mut lat = latencies.lock().clone();
    lat.sort();
    Ok((total as f64 / elapsed.as_secs_f64(), lat))
}

/// Creates pods at a steady `rate` per second for `seconds`; returns sorted latencies.
async fn steady_creates(url: &str, rate: u64, seconds: u64) -> Result<Vec<Duration>> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut tasks = Vec::new();
    for i in 0..rate * seconds {
        ticker.tick().await;
        let (http, latencies) = (http.clone(), latencies.clone());
        let url = format!("{url}/api/v1/namespaces/default/pods");
        tasks
            .push(tokio::spawn(async move { create_one(&http, &url, &pod(&format!("steady-{i}")), &latencies).await }));
    }
    for t in tasks {
        t.await??;
    }
    let mut lat = latencies.lock().clone();
    lat.sort();
    Ok(lat)
}

async fn list_from_cache(url: &str) -> Result<(Duration, usize)> {
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    let mut count = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let body = http.get(format!("{url}/api/v1/pods?resourceVersion=0")).send().await?.bytes().await?;
        times.push(t.elapsed());
        let list: Value = serde_json::from_slice(&body)?;
        count = list["items"].as_array().map_or(0, Vec::len);
    }
    times.sort();
    Ok((times[times.len() / 2], count))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    if let Some(baseline) = &args.baseline {
        anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
        return compare(baseline, dir.path(), &args).await;
    }
    if args.custom_resources {
        anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
        return custom_resources(dir.path(), &args).await;
    }
    println!("# apiserver benchmark: {} pods, {} concurrent clients", args.pods, args.concurrency);
    let (etcd, etcd_url) = e2e::etcd_process(dir.path()).await?;

    let value = serde_json::to_vec(&pod("raw-0"))?;
    // The stored form carries defaults and server fields: measure etcd with that size.
    let stored_size = value.len() + 700;
    let cpu_etcd = cpu_seconds(etcd.child.id())?;
    let raw = e2e::etcd_put_rate(&etcd_url, "/raw/pods/default/raw-", args.pods, args.concurrency, stored_size).await?;
    println!("raw etcd puts/s ({}-byte values, {} clients): {raw:.0}", stored_size, args.concurrency);
    println!("  CPU per put: etcd {:.0} us", (cpu_seconds(etcd.child.id())? - cpu_etcd) * 1e6 / args.pods as f64);

    let etcd_args =
        vec!["--etcd-servers".to_owned(), etcd_url.clone(), "--etcd-prefix".to_owned(), "/bench".to_owned()];
    let (process, url) = apiserver_process(&etcd_args, &dir.path().join("apiserver-etcd.log")).await?;
    let (cpu_api, cpu_etcd) = (cpu_seconds(process.child.id())?, cpu_seconds(etcd.child.id())?);
    let (rate, lat) = create_pods(&url, "load", args.pods, args.concurrency).await?;
    println!("apiserver pod creates/s on etcd ({} clients): {rate:.0}", args.concurrency);
    println!(
        "  CPU per create: apiserver {:.0} us, etcd {:.0} us",
        (cpu_seconds(process.child.id())? - cpu_api) * 1e6 / args.pods as f64,
        (cpu_seconds(etcd.child.id())? - cpu_etcd) * 1e6 / args.pods as f64
    );
    println!("  ratio to raw etcd puts: {:.0}%", rate / raw * 100.0);
    println!("  create latency at full load: p50 {} p99 {}", ms(percentile(&lat, 0.5)?), ms(percentile(&lat, 0.99)?));
    let steady = steady_creates(&url, 1000, args.steady_seconds).await?;
    println!(
        "  create latency at 1,000 creates/s for {}s: p50 {} p99 {}",
        args.steady_seconds,
        ms(percentile(&steady, 0.5)?),
        ms(percentile(&steady, 0.99)?)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (list, count) = list_from_cache(&url).await?;
    println!("LIST of {count} pods from the watch cache (median of 7): {}", ms(list));
    println!("apiserver RSS holding {count} pods: {:.0} MB", rss_mb(process.child.id())?);
    drop(process);

    let embedded_args = vec!["--data-dir".to_owned(), dir.path().join("embedded").display().to_string()];
    let (process, url) = apiserver_process(&embedded_args, &dir.path().join("apiserver-embedded.log")).await?;
    let cpu_api = cpu_seconds(process.child.id())?;
    let (rate_embedded, lat) = create_pods(&url, "load", args.pods, args.concurrency).await?;
    println!("apiserver pod creates/s on the embedded store ({} clients): {rate_embedded:.0}", args.concurrency);
    println!(
        "  CPU per create: apiserver {:.0} us",
        (cpu_seconds(process.child.id())? - cpu_api) * 1e6 / args.pods as f64
    );
    println!("  create latency at full load: p50 {} p99 {}", ms(percentile(&lat, 0.5)?), ms(percentile(&lat, 0.99)?));
    let (list, count) = list_from_cache(&url).await?;
    println!("  LIST of {count} pods from the watch cache: {}; RSS {:.0} MB", ms(list), rss_mb(process.child.id())?);
    drop::<Process>(process);
    drop(etcd);
    Ok(())
}
