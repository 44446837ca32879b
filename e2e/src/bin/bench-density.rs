//! The density benchmark: the whole system as a user runs it (every component a process,
//! driven by our kubectl), on this machine, in one run.
//!
//! (a) Simulated nodes on the etcd backend: `run --replicas=1000` on 100 nodes to all
//!     Running, `scale --replicas=2000`, a 2,000-replica `rolling-update` and its
//!     `--rollback`, then 10,000 pods on 500 nodes; pod startup latency (a watching client
//!     sees the pod created → sees it Ready), peak RSS of each component, and raw etcd
//!     puts/s on the same etcd in the same run.
//! (b) Real containers (`busybox:local`) on the local Docker daemon: 100 replicas to all
//!     Running through a docker-runtime kubelet, beside 100 parallel `docker run -d` and
//!     Docker Swarm's `docker service create --replicas=100` of the same image, command and
//!     daemon; then our scale to 200 / rolling update / rollback beside Swarm's `service
//!     scale` / `service update --image` / `service rollback`.
//!
//! Build the binaries first, then run it (it prints a Markdown table at the end):
//!
//! ```sh
//! cargo build --release --workspace && cargo run --release -p e2e --bin bench-density
//! ```
//!
//! `--skip-docker` runs only (a); `--skip-sim` only (b).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use e2e::{Cluster, Kubectl, Nodes, Spec, client, cpu_seconds, docker, etcd_put_rate, percentile, rss_mb};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use parking_lot::Mutex;

#[derive(Parser)]
struct Args {
    /// Only the simulated-node part.
    #[arg(long)]
    skip_docker: bool,
    /// Only the Docker part.
    #[arg(long)]
    skip_sim: bool,
    /// Replicas of the first deployment (scaled to twice that).
    #[arg(long, default_value_t = 1000)]
    replicas: usize,
    /// Pods of the large run.
    #[arg(long, default_value_t = 10_000)]
    many: usize,
    /// Nodes of the large run.
    #[arg(long, default_value_t = 500)]
    many_nodes: usize,
    /// Real containers in the Docker part (scaled to twice that).
    #[arg(long, default_value_t = 100)]
    containers: usize,
}

/// The command every container runs: it exits at once on SIGTERM, so stopping one costs
/// the same everywhere.
const COMMAND: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

struct PodState {
    run: String,
    image: String,
    ready: bool,
    deleting: bool,
    seen: Instant,
    ready_at: Option<Instant>,
}

/// What one watching client sees of every pod: when it appeared and when it was first
/// Ready.
#[derive(Default)]
struct Tracker {
    pods: Mutex<HashMap<String, PodState>>,
    startups: Mutex<Vec<Duration>>,
}

impl Tracker {
    fn start(client: kube::Client) -> Arc<Tracker> {
        let tracker = Arc::new(Tracker::default());
        let t = tracker.clone();
        tokio::spawn(async move {
            let api: Api<Pod> = Api::all(client);
            let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => t.saw(&p),
                    Ok(watcher::Event::Delete(p)) => {
                        t.pods.lock().remove(p.metadata.uid.as_deref().unwrap_or_default());
                    }
                    _ => {}
                }
            }
        });
        tracker
    }

    fn saw(&self, p: &Pod) {
        let now = Instant::now();
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let mut pods = self.pods.lock();
        let s = pods.entry(uid).or_insert_with(|| PodState {
            run: p.metadata.labels.as_ref().and_then(|l| l.get("run").cloned()).unwrap_or_default(),
            image: String::new(),
            ready: false,
            deleting: false,
            seen: now,
            ready_at: None,
        });
        s.image = p.spec.as_ref().and_then(|s| s.containers.first()?.image.clone()).unwrap_or_default();
        s.ready = e2e::pod_ready(p);
        s.deleting = p.metadata.deletion_timestamp.is_some();
        if s.ready && s.ready_at.is_none() {
            s.ready_at = Some(now);
            self.startups.lock().push(now - s.seen);
        }
    }

    /// Waits until the live pods of `run` are exactly `n`, all Ready and of `image`.
    async fn settled(&self, run: &str, image: &str, n: usize, within: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let (live, good) = {
                let pods = self.pods.lock();
                let live: Vec<&PodState> = pods.values().filter(|p| p.run == run && !p.deleting).collect();
                (live.len(), live.iter().filter(|p| p.ready && p.image == image).count())
            };
            if live == n && good == n {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                bail!("{run}: {good} of {n} pods Ready with {image} ({live} live) after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The startup latencies recorded since the last call, sorted.
    fn take_startups(&self) -> Vec<Duration> {
        let mut v = std::mem::take(&mut *self.startups.lock());
        v.sort();
        v
    }
}

/// Peak resident memory of named processes, sampled every 100 ms.
struct Peaks {
    peaks: Arc<Mutex<BTreeMap<String, f64>>>,
    /// The first sample that could not be read: then no peak is reported.
    failed: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Peaks {
    fn start(procs: Vec<(String, u32)>) -> Peaks {
        let peaks = Arc::new(Mutex::new(BTreeMap::new()));
        let failed = Arc::new(Mutex::new(None));
        let (p, f) = (peaks.clone(), failed.clone());
        let task = tokio::spawn(async move {
            loop {
                for (name, pid) in &procs {
                    match rss_mb(*pid) {
                        Ok(rss) => {
                            let mut m = p.lock();
                            let e = m.entry(name.clone()).or_insert(0.0);
                            *e = f64::max(*e, rss);
                        }
                        Err(e) => {
                            f.lock().get_or_insert_with(|| format!("{name}: {e:#}"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Peaks { peaks, failed, task }
    }

    fn stop(self) -> Result<BTreeMap<String, f64>> {
        self.task.abort();
        if let Some(e) = self.failed.lock().take() {
            anyhow::bail!("sampling peak memory failed: {e}");
        }
        Ok(self.peaks.lock().clone())
    }
}

fn pids(c: &Cluster) -> Vec<(String, u32)> {
    let mut v = Vec::new();
    let mut add = |name: &str, p: &Option<e2e::Process>| {
        if let Some(p) = p {
            v.push((name.to_owned(), p.child.id()));
        }
    };
    add("kube-apiserver", &c.apiserver);
    add("kube-scheduler", &c.scheduler);
    add("kube-controller-manager", &c.controllers);
    for k in &c.kubelets {
        add("kubelet", k);
    }
    if let Some((etcd, _, _)) = &c.etcd {
        v.push(("etcd".to_owned(), etcd.child.id()));
    }
    v
}

fn kubectl(k: &Kubectl, args: &[&str]) -> Result<()> {
    let out = k.run(args);
    if !out.status.success() {
        bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// One result row: what, ours, the reference and the goal.
struct Row {
    what: String,
    result: String,
    goal: String,
}

fn row(rows: &mut Vec<Row>, what: impl Into<String>, result: impl Into<String>, goal: impl Into<String>) {
    let r = Row { what: what.into(), result: result.into(), goal: goal.into() };
    println!(
        "{}: {}{}",
        r.what,
        r.result,
        if r.goal.is_empty() { String::new() } else { format!(" (goal {})", r.goal) }
    );
    rows.push(r);
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "not met" }
}

/// A cluster being measured: our kubectl for it, a watching client and the RSS sampler.
struct Measured {
    /// Dropping it stops every process.
    cluster: Cluster,
    kubectl: Kubectl,
    tracker: Arc<Tracker>,
}

impl Measured {
    /// Starts watching and sampling `cluster` once `nodes` of its nodes are Ready.
    async fn start(cluster: Cluster, nodes: usize) -> Result<(Measured, Peaks)> {
        cluster.wait_nodes_ready(nodes, Duration::from_secs(120)).await?;
        let kubectl = Kubectl::ours(&cluster.kubeconfig());
        let tracker = Tracker::start(client(&cluster.url)?);
        let peaks = Peaks::start(pids(&cluster));
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok((Measured { cluster, kubectl, tracker }, peaks))
    }

    /// Runs `kubectl ARGS` and times it until the live pods of `run` are `n` Ready pods of
    /// `image`.
    async fn step(&self, args: &[&str], run: &str, image: &str, n: usize, within: Duration) -> Result<Duration> {
        let t = Instant::now();
        kubectl(&self.kubectl, args)?;
        self.tracker.settled(run, image, n, within).await?;
        Ok(t.elapsed())
    }

    /// A row with the startup latencies recorded since the last call.
    fn startup_row(&self, rows: &mut Vec<Row>, what: String) -> Result<()> {
        let startups = self.tracker.take_startups();
        let (p50, p99) = (percentile(&startups, 0.5)?, percentile(&startups, 0.99)?);
        row(
            rows,
            what,
            format!("p50 {}, p99 {}", ms(p50), ms(p99)),
            format!("p99 < 1 s — {}", verdict(p99 < Duration::from_secs(1))),
        );
        Ok(())
    }
}

async fn simulated(args: &Args, rows: &mut Vec<Row>) -> Result<()> {
    let n = args.replicas;
    let c = Cluster::with(Spec { etcd: true, ..Spec::sim(n / 10) }).await;
    let etcd_url = format!("http://127.0.0.1:{}", c.etcd.as_ref().map(|e| e.1).unwrap_or_default());
    let puts = etcd_put_rate(&etcd_url, "/raw/", 20_000, 64, 1900).await?;
    row(rows, "raw etcd puts/s on the cluster's etcd (64 clients, 1,900-byte values)", format!("{puts:.0}"), "");
    let (m, peaks) = Measured::start(c, n / 10).await?;
    let within = Duration::from_secs(120);

    let took = m.step(&["run", "web", "--image=web:1", &format!("--replicas={n}")], "web", "web:1", n, within).await?;
    row(
        rows,
        format!("`kubectl run web --replicas={n}` on {} nodes → all Running", n / 10),
        secs(took),
        format!("< 3 s — {}", verdict(took < Duration::from_secs(3))),
    );
    m.startup_row(rows, format!("pod startup latency, {n} pods (watch: created → Ready)"))?;

    let took = m.step(&["scale", &format!("--replicas={}", 2 * n), "web"], "web", "web:1", 2 * n, within).await?;
    m.tracker.take_startups();
    row(
        rows,
        format!("`kubectl scale --replicas={} web` → all Running", 2 * n),
        secs(took),
        format!("< 3 s — {}", verdict(took < Duration::from_secs(3))),
    );

    let took = m.step(&["rolling-update", "web", "--image=web:2"], "web", "web:2", 2 * n, within).await?;
    row(
        rows,
        format!("`kubectl rolling-update web --image=web:2`, {} replicas → all updated and Running", 2 * n),
        secs(took),
        format!("< 10 s — {}", verdict(took < Duration::from_secs(10))),
    );
    let took = m.step(&["rolling-update", "web", "--rollback"], "web", "web:1", 2 * n, within).await?;
    row(rows, format!("`kubectl rolling-update web --rollback`, {} replicas", 2 * n), secs(took), "");
    let small = peaks.stop()?;
    drop(m);

    let nodes = args.many_nodes;
    let many = args.many;
    let c = Cluster::with(Spec { etcd: true, ..Spec::sim(nodes) }).await;
    let (m, peaks) = Measured::start(c, nodes).await?;
    let run = ["run", "many", "--image=web:1", &format!("--replicas={many}")];
    let took = m.step(&run, "many", "web:1", many, Duration::from_secs(300)).await?;
    row(
        rows,
        format!("{many} pods on {nodes} nodes → all Running"),
        secs(took),
        format!("< 30 s — {}", verdict(took < Duration::from_secs(30))),
    );
    m.startup_row(rows, format!("pod startup latency, {many} pods"))?;
    // Settle for a moment at full size (leases, status updates), then read the peaks.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let big = peaks.stop()?;
    for (name, mb) in &big {
        let limit = if name == "kube-apiserver" { 300.0 } else { 100.0 };
        let goal = match name.as_str() {
            "etcd" => String::new(),
            _ => format!("< {limit:.0} MB — {}", verdict(*mb < limit)),
        };
        row(
            rows,
            format!("peak RSS of {name}: {} → {many} pods", 2 * n),
            format!("{:.0} MB → {:.0} MB", small.get(name).copied().unwrap_or_default(), mb),
            goal,
        );
    }
    Ok(())
}

/// Runs a detached docker service command, then waits until the service has exactly
/// `n` tasks meant to run, all Running with `image`: the same "all Running" as ours.
/// (Swarm's own non-detached CLI also waits out a stability period of about 5 s after
/// converging; that wait is not counted.)
fn swarm_step(args: &[&str], n: usize, image: &str) -> Result<Duration> {
    let t = Instant::now();
    docker(args)?;
    loop {
        let tasks = docker(&[
            "service",
            "ps",
            "bench-swarm",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Image}}|{{.CurrentState}}",
        ])?;
        let lines: Vec<&str> = tasks.lines().collect();
        let want = format!("{image}|Running");
        if lines.len() == n && lines.iter().all(|l| l.starts_with(&want)) {
            return Ok(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("Swarm did not converge on {n} tasks of {image}: {tasks}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Docker Swarm doing the same work: create, scale, update, rollback.
fn swarm(n: usize) -> Result<[Duration; 4]> {
    let active = docker(&["info", "-f", "{{.Swarm.LocalNodeState}}"])?.trim() == "active";
    if !active {
        docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]).context("docker swarm init")?;
    }
    // The same concurrency as a Deployment's default 25% max surge at 2n replicas: a
    // quarter of them at a time, new tasks started before old ones stop.
    let quarter = (n / 2).max(1).to_string();
    let result = (|| {
        let replicas = n.to_string();
        let create = [
            "service",
            "create",
            "--detach",
            "--name",
            "bench-swarm",
            "--replicas",
            &replicas,
            "--update-parallelism",
            &quarter,
            "--update-order",
            "start-first",
            "--rollback-parallelism",
            &quarter,
            "--rollback-order",
            "start-first",
            "busybox:local",
            "sh",
            "-c",
            COMMAND,
        ];
        let create = swarm_step(&create, n, "busybox:local")?;
        let scale =
            swarm_step(&["service", "scale", "--detach", &format!("bench-swarm={}", 2 * n)], 2 * n, "busybox:local")?;
        let update = swarm_step(
            &["service", "update", "--detach", "--image", "busybox:v2", "bench-swarm"],
            2 * n,
            "busybox:v2",
        )?;
        let rollback = swarm_step(&["service", "rollback", "--detach", "bench-swarm"], 2 * n, "busybox:local")?;
        Ok([create, scale, update, rollback])
    })();
    let _ = docker(&["service", "rm", "bench-swarm"]);
    // Wait for its containers to go before anything else is measured.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline
        && !docker(&["ps", "-aq", "--filter", "label=com.docker.swarm.service.name=bench-swarm"])?.trim().is_empty()
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    if !active {
        docker(&["swarm", "leave", "--force"])?;
    }
    result
}

/// The pid of the process whose command is `name`, if one runs.
fn pid_named(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// The share of one core that `pid` uses over `window`, in percent.
async fn cpu_percent(pid: u32, window: Duration) -> Result<f64> {
    let before = cpu_seconds(pid)?;
    tokio::time::sleep(window).await;
    Ok((cpu_seconds(pid)? - before) / window.as_secs_f64() * 100.0)
}

/// Our steps on the docker runtime, and what the kubelet's looks at idle pods cost.
struct OursOnDocker {
    steps: [Duration; 4],
    /// CPU of dockerd and of the kubelet (% of a core) with 2n pods running and idle.
    idle_dockerd: f64,
    idle_kubelet: f64,
}

async fn ours_on_docker(n: usize) -> Result<OursOnDocker> {
    let spec = Spec {
        nodes: Nodes::Docker(1),
        etcd: false,
        controller_args: Vec::new(),
        kubelet_args: vec!["--max-pods".into(), (4 * n).to_string()],
        ..Spec::sim(0)
    };
    let (m, _peaks) = Measured::start(Cluster::with(spec).await, 1).await?;
    let within = Duration::from_secs(600);
    let replicas = format!("--replicas={n}");
    let run = ["run", "bb", "--image=busybox:local", &replicas, "--", "sh", "-c", COMMAND];
    let create = m.step(&run, "bb", "busybox:local", n, within).await?;
    let scale =
        m.step(&["scale", &format!("--replicas={}", 2 * n), "bb"], "bb", "busybox:local", 2 * n, within).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kubelet = m.cluster.kubelets.first().and_then(|k| k.as_ref()).map(|k| k.child.id());
    let window = Duration::from_secs(5);
    let cpu = |pid: Option<u32>| async move {
        match pid {
            Some(pid) => cpu_percent(pid, window).await,
            None => Err(anyhow::anyhow!("the process to measure is not running")),
        }
    };
    let (idle_dockerd, idle_kubelet) = tokio::join!(cpu(pid_named("dockerd")), cpu(kubelet));
    let (idle_dockerd, idle_kubelet) = (idle_dockerd?, idle_kubelet?);
    let update = ["rolling-update", "bb", "--image=busybox:v2", "--timeout=10m"];
    let update = m.step(&update, "bb", "busybox:v2", 2 * n, within).await?;
    let rollback = ["rolling-update", "bb", "--rollback", "--timeout=10m"];
    let rollback = m.step(&rollback, "bb", "busybox:local", 2 * n, within).await?;
    Ok(OursOnDocker { steps: [create, scale, update, rollback], idle_dockerd, idle_kubelet })
}

async fn real_containers(n: usize, rows: &mut Vec<Row>) -> Result<()> {
    docker(&["image", "inspect", "busybox:local"]).context("the busybox:local image (deploy/images/busybox.sh)")?;
    docker(&["tag", "busybox:local", "busybox:v2"])?;
    let raw = e2e::docker_runs(n, &["sh", "-c", COMMAND]).await?;
    let measured = ours_on_docker(n).await?;
    let ours = measured.steps;
    let swarm = swarm(n)?;
    let create_ratio = ours[0].as_secs_f64() / raw.as_secs_f64();
    row(rows, format!("{n} parallel `docker run -d busybox:local`"), secs(raw), "");
    row(
        rows,
        format!("`kubectl run --replicas={n}` of busybox:local → all Running"),
        format!(
            "{} = {create_ratio:.2}x `docker run`, {:.2}x Swarm",
            secs(ours[0]),
            ours[0].as_secs_f64() / swarm[0].as_secs_f64()
        ),
        format!(
            "≤ 1.2x docker run — {}; ≤ 0.6x Swarm — {}",
            verdict(create_ratio <= 1.2),
            verdict(ours[0].as_secs_f64() <= 0.6 * swarm[0].as_secs_f64())
        ),
    );
    row(
        rows,
        format!("CPU with {} idle pods (docker runtime)", 2 * n),
        format!("dockerd {:.0}%, kubelet {:.0}% of a core", measured.idle_dockerd, measured.idle_kubelet),
        "",
    );
    let names = [
        format!("create {n} replicas"),
        format!("scale {n} → {}", 2 * n),
        format!("rolling update of {} to busybox:v2", 2 * n),
        format!("rollback of {}", 2 * n),
    ];
    for (i, what) in names.iter().enumerate() {
        let ratio = ours[i].as_secs_f64() / swarm[i].as_secs_f64();
        row(
            rows,
            format!("{what}: ours vs Docker Swarm"),
            format!("{} vs {} = {ratio:.2}x", secs(ours[i]), secs(swarm[i])),
            format!("≤ 0.6x — {}", verdict(ratio <= 0.6)),
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    println!("# density benchmark");
    if !args.skip_sim {
        simulated(&args, &mut rows).await?;
    }
    if !args.skip_docker {
        real_containers(args.containers, &mut rows).await?;
    }
    println!("\n| measure | result | goal |\n| --- | --- | --- |");
    for r in &rows {
        println!("| {} | {} | {} |", r.what, r.result, r.goal);
    }
    Ok(())
}
