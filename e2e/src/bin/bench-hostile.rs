//! The apiserver under load from writers, watchers and stalled clients at once. Prints, in
//! one run on this machine:
//! - creates/s and p50/p99 create latency of `--writers` (64) concurrent writers,
//! - while `--watchers` (2,000) watches stream the changes their label selector picks
//!   (1/`--shards` of them, as kubelets see their own node's pods; `--shards 1` for every
//!   change to every watcher) and `--stalled` (500) connections each send half a request
//!   and stop,
//! - `/readyz` latency (p50/p99/max) polled every 50 ms throughout,
//! - the apiserver's peak RSS and open file descriptors,
//! - how long the server held each stalled connection (goal: no longer than the
//!   header-read timeout, set here to `--header-timeout`).
//!
//! Goals (issue: a server that survives hostile input): `/readyz` p99 < 50 ms and RSS < 1 GB
//! under this load. Run with `cargo run --release -p e2e --bin bench-hostile` (add
//! `--etcd` for the etcd backend; it starts its own etcd).

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use e2e::{Process, apiserver_process, percentile, rss_mb};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Concurrent writers.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Concurrent watches of the written collection.
    #[arg(long, default_value_t = 2000)]
    watchers: usize,
    /// Watchers are spread over this many label selectors, and each write goes to one of
    /// them, so each watcher sees 1/N of the writes (as kubelets see their own node's pods);
    /// 1 makes every watcher see every write.
    #[arg(long, default_value_t = 100)]
    shards: usize,
    /// Connections that send half a request and stop.
    #[arg(long, default_value_t = 500)]
    stalled: usize,
    /// Seconds of writing.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The apiserver's --read-header-timeout, in seconds.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Use a private etcd instead of the embedded store.
    #[arg(long)]
    etcd: bool,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn open_fds(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| format!("reading the fds of pid {pid}"))?.count())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // Our own side needs a descriptor per watcher and stalled connection too.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)?;
    let dir = tempfile::tempdir()?;
    let mut server_args =
        vec!["--read-header-timeout".to_owned(), args.header_timeout.to_string(), "--data-dir".to_owned()];
    server_args.push(dir.path().join("data").display().to_string());
    let _etcd: Option<Process> = if args.etcd {
        let (etcd, endpoint) = e2e::etcd_process(dir.path()).await?;
        server_args.extend(["--etcd-servers".to_owned(), endpoint]);
        Some(etcd)
    } else {
        None
    };
    let (server, url) = apiserver_process(&server_args, &dir.path().join("apiserver.log")).await?;
    let pid = server.child.id();
    let addr = url.trim_start_matches("http://").to_owned();
    let backend = if args.etcd { "etcd" } else { "the embedded store" };
    println!(
        "bench-hostile: {} writers, {} watchers (each seeing 1/{} of the writes), {} stalled connections, {} s, on {backend}",
        args.writers, args.watchers, args.shards, args.stalled, args.seconds
    );

    // Stalled clients: half a request each; we note when the server lets each go.
    let header_timeout = Duration::from_secs(args.header_timeout);
    let stalled_task = {
        let (addr, n) = (addr.clone(), args.stalled);
        tokio::task::spawn_blocking(move || -> Result<Vec<Duration>> {
            let mut conns = Vec::with_capacity(n);
            for _ in 0..n {
                let mut c = TcpStream::connect(&addr)?;
                c.write_all(b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")?;
                c.set_nonblocking(true)?;
                conns.push((c, Instant::now(), None::<Duration>));
            }
            let deadline = Instant::now() + header_timeout * 3;
            while conns.iter().any(|c| c.2.is_none()) && Instant::now() < deadline {
                for (c, since, held) in conns.iter_mut().filter(|c| c.2.is_none()) {
                    let mut buf = [0u8; 256];
                    match std::io::Read::read(c, &mut buf) {
                        Ok(0) => *held = Some(since.elapsed()),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        _ => *held = Some(since.elapsed()),
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(conns.into_iter().map(|c| c.2.unwrap_or(header_timeout * 3)).collect())
        })
    };

    // Watchers, each on its own connection, counting what they receive.
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut watchers = Vec::new();
    let shards = args.shards.max(1);
    for w in 0..args.watchers {
        let http = reqwest::Client::new();
        let url = format!(
            "{url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&labelSelector=shard%3D{}",
            w % shards
        );
        let received = received.clone();
        watchers.push(tokio::spawn(async move {
            let Ok(r) = http.get(&url).send().await else { return };
            let mut body = r.bytes_stream();
            while let Some(Ok(chunk)) = body.next().await {
                received.fetch_add(chunk.iter().filter(|b| **b == b'\n').count() as u64, Ordering::Relaxed);
            }
        }));
    }

    // /readyz every 50 ms, and the server's RSS and fds every 200 ms, until the writers stop.
    let stop = Arc::new(AtomicBool::new(false));
    let readyz = Arc::new(Mutex::new(Vec::new()));
    let failed_probes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let probe = {
        let (stop, readyz, failed, url) = (stop.clone(), readyz.clone(), failed_probes.clone(), url.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match http.get(format!("{url}/readyz")).send().await {
                    Ok(r) if r.status().is_success() => readyz.lock().push(t.elapsed()),
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut rss, mut fds) = (0f64, 0usize);
            while !stop.load(Ordering::Relaxed) {
                rss = rss.max(rss_mb(pid)?);
                fds = fds.max(open_fds(pid)?);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            anyhow::Ok((rss, fds))
        })
    };

    // The writers.
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let http = reqwest::Client::new();
    let mut writers = Vec::new();
    for w in 0..args.writers {
        let (http, url, latencies, errors) = (http.clone(), url.clone(), latencies.clone(), errors.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < until {
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("w{w}-{i}"), "labels": {"bench": "hostile", "shard": ((w + i) % shards).to_string()}},
                    "data": {"k": "v".repeat(512)}});
                let t = Instant::now();
                match http.post(format!("{url}/api/v1/namespaces/default/configmaps")).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 201 => latencies.lock().push(t.elapsed()),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
        }));
    }
    for w in writers {
        w.await?;
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    probe.await?;
    let (peak_rss, peak_fds) = sampler.await??;
    let held = stalled_task.await??;
    for w in &watchers {
        w.abort();
    }

    let mut lat = latencies.lock().clone();
    lat.sort();
    let mut ready = readyz.lock().clone();
    ready.sort();
    let mut held = held;
    held.sort();
    let creates = lat.len();
    println!(
        "writes: {creates} creates in {:.1} s = {:.0}/s, {} failed",
        took.as_secs_f64(),
        creates as f64 / took.as_secs_f64(),
        errors.load(Ordering::Relaxed)
    );
    println!("  create latency: p50 {} p99 {}", ms(percentile(&lat, 0.5)?), ms(percentile(&lat, 0.99)?));
    println!(
        "watch events received: {} (about {} per watcher)",
        received.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed) / args.watchers.max(1) as u64
    );
    let ready_p99 = percentile(&ready, 0.99)?;
    println!(
        "/readyz under load: p50 {} p99 {} max {} over {} probes, {} failed — goal p99 < 50 ms: {}",
        ms(percentile(&ready, 0.5)?),
        ms(ready_p99),
        ms(*ready.last().context("no probe answered")?),
        ready.len(),
        failed_probes.load(Ordering::Relaxed),
        if ready_p99 < Duration::from_millis(50) { "met" } else { "NOT met" }
    );
    println!(
        "apiserver peak RSS {peak_rss:.0} MB, peak open fds {peak_fds} — goal RSS < 1 GB: {}",
        if peak_rss < 1024.0 { "met" } else { "NOT met" }
    );
    let longest = *held.last().context("no stalled connection")?;
    println!(
        "stalled connections held: p50 {} max {} (header timeout {} s) — goal ≤ the timeout (+1 s): {}",
        ms(percentile(&held, 0.5)?),
        ms(longest),
        args.header_timeout,
        if longest <= header_timeout + Duration::from_secs(1) { "met" } else { "NOT met" }
    );
    drop(server);
    Ok(())
}
