//! The kube-proxy benchmark: the nftables ruleset for SERVICES services of ENDPOINTS
//! endpoints each (default 1,000 × 10), written into the kernel of a network namespace of
//! its own (removed afterwards). Prints, as medians: building the rules; a full sync (the
//! whole table, as the first sync and the hourly one write it) beside upstream's goal for a
//! full sync at this size (500 ms); and a partial sync after one endpoint of one service
//! changed (what a sync after a pod change writes), from building the rules to the kernel
//! holding them.
//!
//! Run as root with `cargo run --release -p e2e --bin bench-kube-proxy`.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use kube_proxy::rules::{Endpoint, Node, Protocol, ServicePort, build, full, update};

#[derive(Parser)]
struct Args {
    /// Services.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Endpoints per service.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Rounds (medians are printed).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn ports(services: usize, endpoints: usize, shift: usize) -> Vec<ServicePort> {
    (0..services)
        .map(|s| ServicePort {
            namespace: "default".into(),
            name: format!("svc-{s}"),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Some(std::net::Ipv4Addr::from(0x0a60_0000 + 16 + s as u32)),
            port: 80,
            node_port: (s % 10 == 0).then_some(30000 + s as u16),
            affinity_seconds: None,
            internal_local: false,
            external_local: false,
            endpoints: (0..endpoints)
                .map(|e| Endpoint {
                    ip: std::net::Ipv4Addr::from(0x0af4_0000 + (s * endpoints + e + shift) as u32),
                    port: 8080,
                    ready: true,
                    serving: true,
                    terminating: false,
                    node: Some(format!("node-{}", e % 100)),
                })
                .collect(),
        })
        .collect()
}

fn nft(ns: &str, script: &str) -> Result<Duration> {
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft")?;
    child.stdin.take().context("nft's stdin")?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft refused the ruleset: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(started.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let node = Node { name: "node-0".into(), cluster_cidr: Some(("10.244.0.0".parse()?, 16)) };
    let ns = format!("bench-kp-{}", std::process::id());
    let status = Command::new("ip").args(["netns", "add", &ns]).status().context("ip netns add")?;
    anyhow::ensure!(status.success(), "creating a network namespace failed (run as root)");
    let result = (|| -> Result<()> {
        let base = ports(args.services, args.endpoints, 0);
        let mut changed = base.clone();
        // One pod of one service replaced by another.
        changed[args.services / 2].endpoints[0].ip = std::net::Ipv4Addr::new(10, 250, 0, 1);
        let (mut generate, mut full_sync, mut partial) = (Vec::new(), Vec::new(), Vec::new());
        let mut size = 0;
        for _ in 0..args.rounds {
            let started = Instant::now();
            let before = build(&base, &node);
            generate.push(started.elapsed());
            let script = full(&before);
            size = script.len();
            Command::new("ip").args(["netns", "exec", &ns, "nft", "flush", "ruleset"]).status()?;
            let started = Instant::now();
            nft(&ns, &full(&before))?;
            full_sync.push(started.elapsed());
            let started = Instant::now();
            let after = build(&changed, &node);
            nft(&ns, &update(&before, &after))?;
            partial.push(started.elapsed());
            // And back, so that every round starts from the same table.
            nft(&ns, &update(&after, &before))?;
        }
        println!(
            "# kube-proxy syncs: {} services x {} endpoints ({} endpoints), {} rounds, full script {} KB",
            args.services,
            args.endpoints,
            args.services * args.endpoints,
            args.rounds,
            size / 1024
        );
        println!("build the rules (median): {}", ms(median(generate.clone())));
        println!(
            "full sync, rules to kernel (median): {} (upstream's goal at this size: under 500 ms)",
            ms(median(generate) + median(full_sync))
        );
        println!("partial sync after one endpoint changed, rules to kernel (median): {}", ms(median(partial)));
        Ok(())
    })();
    let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
    result
}
