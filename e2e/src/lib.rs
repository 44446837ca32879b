//! Helpers for the end-to-end tests and benchmarks: clusters in-process or as real
//! processes, on the embedded store or on etcd, and clients pointed at them.
//!
//! etcd comes from `ETCD_ENDPOINTS` (the test command starts one). Without it the etcd
//! variants skip with a message, except under `CI=true`, where that is a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Runs each named `async fn(Backend, &str)` test twice, as `embedded::NAME` and
/// `etcd::NAME` (the etcd one skips, or fails under `CI=true`, without `ETCD_ENDPOINTS`).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Embedded, stringify!($name)).await; })*
        }
        mod etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Etcd, stringify!($name)).await; })*
        }
    };
}

mod docker;
mod gate;
mod kubectl;
pub mod pki;

pub use docker::{docker, docker_available, docker_pairs, docker_runs, remove_docker_containers};
pub use gate::Gate;
pub use kubectl::{Kubectl, Lines};

/// Which storage a test cluster uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store in a temp dir.
    Embedded,
    /// The etcd named by `ETCD_ENDPOINTS`, under a prefix of the test's own.
    Etcd,
}

/// The etcd endpoints the test command started, or `None` (after saying why) when a test
/// may skip; panics under `CI=true`, where skipping is not allowed.
pub fn etcd_endpoints(test: &str) -> Option<Vec<String>> {
    match std::env::var("ETCD_ENDPOINTS") {
        Ok(e) if !e.is_empty() => Some(e.split(',').map(str::to_owned).collect()),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: CI=true but ETCD_ENDPOINTS is not set; the test command must start etcd")
        }
        _ => {
            eprintln!("skipping the etcd variant of {test}: ETCD_ENDPOINTS is not set (./test.sh starts etcd)");
            None
        }
    }
}

/// Whether the `etcd` binary is installed (for clusters with a private etcd); when not,
/// says so and returns false, except under `CI=true`, where that is a failure.
pub fn etcd_installed(test: &str) -> bool {
    if Command::new("etcd").arg("--version").stdout(Stdio::null()).status().is_ok() {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{test}: CI=true but etcd is not installed; ./test.sh installs it"
    );
    eprintln!("skipping {test}: etcd is not installed (./test.sh installs it)");
    false
}

/// An apiserver running inside the test process.
pub struct InProcess {
    /// The server.
    pub server: apiserver::Server,
    /// A kube-rs client for it.
    pub client: kube::Client,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// The base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// Starts an apiserver in this process on a free port; `None` when the backend is not
/// available here (see [`etcd_endpoints`]).
pub async fn in_process(backend: Backend, test: &str, tune: impl FnOnce(&mut apiserver::Config)) -> Option<InProcess> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = apiserver::Config {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().expect("address"),
        compaction_interval: Duration::ZERO,
        ..Default::default()
    };
    if backend == Backend::Etcd {
        config.etcd_servers = etcd_endpoints(test)?;
        config.etcd_prefix = format!("/test-{test}-{}", uuid::Uuid::new_v4());
    }
    tune(&mut config);
    let server = apiserver::start(config).await.expect("start apiserver");
    let client = client(&server.url()).expect("client");
    Some(InProcess { server, client, _dir: dir })
}

/// A kube-rs client for the apiserver at `url`: as its admin when it is a test cluster's
/// (see [`pki`]), else plain HTTP.
pub fn client(url: &str) -> Result<kube::Client> {
    Ok(kube::Client::try_from(pki::client_config(url)?)?)
}

/// A kube-rs client from a kubeconfig file, as a user's tools read it.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<kube::Client> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The path of one of the workspace's binaries, built beside the test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built: run `cargo build --workspace` first", path.display());
    path
}

/// A child process killed (SIGKILL) when dropped.
pub struct Process {
    /// The child.
    pub child: Child,
}

impl Process {
    /// Starts the workspace's `binary` with `args`, its output in `log`.
    pub fn spawn(binary: &str, args: &[String], log: &std::path::Path) -> Result<Process> {
        Process::spawn_path(&self::binary(binary), args, log)
    }

    /// Starts the program at `path` (or on PATH) with `args`, its output in `log`.
    pub fn spawn_path(path: &std::path::Path, args: &[String], log: &std::path::Path) -> Result<Process> {
        let binary = path.display().to_string();
        let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(path)
            .args(args)
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        Ok(Process { child })
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `url` until it answers 200, for at most `within`.
pub async fn wait_healthy(url: &str, within: Duration) -> Result<()> {
    let http = pki::http_client(url)?;
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not become ready within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the `kube-apiserver` binary on a free loopback port, serving plain HTTP without
/// authentication (`--insecure-serving`): for the tests of the API itself, which reach it
/// with raw requests. Clusters ([`Cluster`]) serve TLS with client certificates.
pub async fn apiserver_process(args: &[String], log: &std::path::Path) -> Result<(Process, String)> {
    let port = free_port();
    let mut all = vec!["--port".to_owned(), port.to_string()];
    all.extend(args.iter().cloned());
    if !all.iter().any(|a| a == "--insecure-serving") {
        all.push("--insecure-serving".to_owned());
    }
    let process = Process::spawn("kube-apiserver", &all, log)?;
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url, Duration::from_secs(30)).await?;
    Ok((process, url))
}

/// A kubeconfig file for `url`.
pub fn kubeconfig(url: &str, path: &std::path::Path) -> Result<()> {
    if let Some(text) = pki::admin_kubeconfig(url) {
        return std::fs::write(path, text).with_context(|| format!("writing {}", path.display()));
    }
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {url}\n  name: local\ncontexts:\n- context:\n    cluster: local\n    user: local\n  name: local\ncurrent-context: local\nusers:\n- name: local\n  user: {{}}\n"
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Starts a private etcd (Debian's `etcd-server`) on free loopback ports, its data in `dir`.
pub async fn etcd_process(dir: &std::path::Path) -> Result<(Process, String)> {
    let (client, peer) = (free_port(), free_port());
    let process = etcd_on(dir, client, peer, "etcd.log").await?;
    Ok((process, format!("http://127.0.0.1:{client}")))
}

/// Starts a one-member etcd on the given loopback ports, its data in `dir/etcd` (kept
/// across restarts) and its output in `dir/log`; returns once it accepts connections.
pub async fn etcd_on(dir: &std::path::Path, client: u16, peer: u16, log: &str) -> Result<Process> {
    let initial = format!("bench=http://127.0.0.1:{peer}");
    let process = etcd_member(&dir.join("etcd"), "bench", client, peer, &initial, &dir.join(log))?;
    wait_port(client, Duration::from_secs(20))
        .await
        .with_context(|| format!("etcd; see {}", dir.join(log).display()))?;
    Ok(process)
}

/// Starts a three-member etcd cluster on loopback, the members' data under `dir`; returns
/// each member's process and client URL once all accept connections.
pub async fn etcd_cluster(dir: &std::path::Path) -> Result<Vec<(Process, String)>> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
    let initial = initial.join(",");
    let mut members = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let log = dir.join(format!("etcd-m{i}.log"));
        let p = etcd_member(&dir.join(format!("etcd-m{i}")), &format!("m{i}"), *client, *peer, &initial, &log)?;
        members.push((p, format!("http://127.0.0.1:{client}")));
    }
    for (client, _) in &ports {
        wait_port(*client, Duration::from_secs(30)).await.context("an etcd member")?;
    }
    Ok(members)
}

fn etcd_member(
    data: &std::path::Path,
    name: &str,
    client: u16,
    peer: u16,
    initial_cluster: &str,
    log: &std::path::Path,
) -> Result<Process> {
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let args = args(&[
        "--name",
        name,
        "--data-dir",
        &data.display().to_string(),
        "--listen-client-urls",
        &url,
        "--advertise-client-urls",
        &url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        initial_cluster,
        "--quota-backend-bytes=8589934592",
    ]);
    Process::spawn_path(std::path::Path::new("etcd"), &args, log).context("starting etcd (apt-get install etcd-server)")
}

async fn wait_port(port: u16, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on port {port} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A stand-in for kubelets in controller tests and benchmarks: every pod is marked Running
/// and Ready after `delay`, and a pod being deleted is confirmed at once.
pub fn fake_kubelet(client: kube::Client, delay: Duration) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, Patch, PatchParams};
    use kube::runtime::watcher;
    tokio::spawn(async move {
        let all: Api<Pod> = Api::all(client.clone());
        let mut events = watcher::watcher(all, watcher::Config::default()).boxed();
        while let Some(ev) = events.next().await {
            let pod = match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                _ => continue,
            };
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            if pod.metadata.deletion_timestamp.is_some() {
                let api = api.clone();
                tokio::spawn(async move {
                    let _ =
                        api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                });
                continue;
            }
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready"));
            if ready {
                continue;
            }
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
                let status = serde_json::json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
                let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(status)).await;
            });
        }
    })
}

/// A process's resident memory in MB, from /proc; an error (not 0) when it cannot be read.
pub fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the RSS of pid {pid}"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// CPU seconds (user + system) a process has used, from /proc; an error (not 0) when it
/// cannot be read, so that a benchmark never reports a CPU figure it did not measure.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading the CPU time of pid {pid}"))?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields.get(i).and_then(|v| v.parse::<f64>().ok()).with_context(|| format!("malformed /proc/{pid}/stat"))
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Owned strings of `v`, for process arguments.
pub fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Where a test cluster's pods run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nodes {
    /// One simulated kubelet hosting this many nodes (`sim-0`...).
    Sim(usize),
    /// This many kubelets on the local Docker daemon, one node each.
    Docker(usize),
    /// This many kubelets running containers as host processes.
    Process(usize),
}

/// What a [`Cluster`] is made of.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The nodes.
    pub nodes: Nodes,
    /// Whether the apiserver stores in a private etcd the cluster starts (and can restart)
    /// rather than the embedded store.
    pub etcd: bool,
    /// Extra flags for the controller-manager.
    pub controller_args: Vec<String>,
    /// Extra flags for every kubelet.
    pub kubelet_args: Vec<String>,
    /// Extra flags for the apiserver.
    pub apiserver_args: Vec<String>,
}

impl Spec {
    /// `n` simulated nodes on the embedded store.
    pub fn sim(n: usize) -> Spec {
        Spec {
            nodes: Nodes::Sim(n),
            etcd: false,
            controller_args: Vec::new(),
            kubelet_args: Vec::new(),
            apiserver_args: Vec::new(),
        }
    }
}

/// The whole control plane as real processes: an apiserver (embedded store or a private
/// etcd), the scheduler, the controller-manager and kubelets, with a kubeconfig for
/// clients. Everything speaks TLS: the apiserver and kubelets serve certificates of the
/// cluster's own CA, and each component presents its own client certificate. Everything is killed when dropped, and the containers its nodes started are
/// removed.
pub struct Cluster {
    /// Logs, data and the kubeconfig.
    pub dir: tempfile::TempDir,
    /// What it is made of.
    pub spec: Spec,
    /// The apiserver's URL (https).
    pub url: String,
    /// The cluster's certificates and kubeconfigs.
    pub pki: pki::Pki,
    /// Its port (kept across restarts).
    pub port: u16,
    /// The apiserver.
    pub apiserver: Option<Process>,
    /// The scheduler.
    pub scheduler: Option<Process>,
    /// The controller-manager.
    pub controllers: Option<Process>,
    /// The kubelets (one for simulated nodes, else one per node).
    pub kubelets: Vec<Option<Process>>,
    /// The names of the nodes.
    pub node_names: Vec<String>,
    /// The private etcd and its client and peer ports.
    pub etcd: Option<(Process, u16, u16)>,
    restarts: usize,
}

impl Cluster {
    /// `nodes` simulated nodes on the embedded store; nodes register on their own (wait
    /// for them before counting on them).
    pub async fn start(nodes: usize) -> Cluster {
        Cluster::with(Spec::sim(nodes)).await
    }

    /// Starts what `spec` says.
    pub async fn with(spec: Spec) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let etcd = if spec.etcd {
            let (client, peer) = (free_port(), free_port());
            let process = etcd_on(dir.path(), client, peer, "etcd-0.log").await.expect("etcd");
            Some((process, client, peer))
        } else {
            None
        };
        let port = free_port();
        // Unique node names keep clusters sharing one Docker daemon apart.
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let node_names = match spec.nodes {
            Nodes::Sim(n) => (0..n).map(|i| format!("sim-{i}")).collect(),
            Nodes::Docker(n) | Nodes::Process(n) => (0..n).map(|i| format!("node-{tag}-{i}")).collect(),
        };
        let url = format!("https://127.0.0.1:{port}");
        let pki = pki::Pki::create(dir.path(), &url, &[]).expect("the cluster's certificates");
        let mut c = Cluster {
            dir,
            spec,
            pki,
            url,
            port,
            apiserver: None,
            scheduler: None,
            controllers: None,
            kubelets: Vec::new(),
            node_names,
            etcd,
            restarts: 0,
        };
        kubeconfig(&c.url, &c.dir.path().join("kubeconfig")).expect("kubeconfig");
        c.restart_apiserver().await;
        match c.spec.nodes {
            Nodes::Sim(_) => c.kubelets.push(None),
            Nodes::Docker(n) | Nodes::Process(n) => c.kubelets.resize_with(n, || None),
        }
        for i in 0..c.kubelets.len() {
            c.start_kubelet(i);
        }
        c.start_scheduler();
        c.start_controllers();
        c
    }

    /// The kubeconfig's path.
    pub fn kubeconfig(&self) -> String {
        self.dir.path().join("kubeconfig").display().to_string()
    }

    fn log(&mut self, name: &str) -> PathBuf {
        self.restarts += 1;
        self.dir.path().join(format!("{name}-{}.log", self.restarts))
    }

    /// (Re)starts kubelet `i` (0 for simulated nodes, which one kubelet hosts).
    pub fn start_kubelet(&mut self, i: usize) {
        let (runtime, name, extra) = match self.spec.nodes {
            Nodes::Sim(n) => ("sim", "sim".to_owned(), vec!["--sim-nodes".to_owned(), n.to_string()]),
            Nodes::Docker(_) => ("docker", self.node_names[i].clone(), Vec::new()),
            Nodes::Process(_) => ("process", self.node_names[i].clone(), Vec::new()),
        };
        let simulator = matches!(self.spec.nodes, Nodes::Sim(_));
        let mut a =
            self.pki.kubelet_args(&self.url, &name, &["127.0.0.1".into()], simulator).expect("the node's certificates");
        a.extend(args(&[
            "--runtime",
            runtime,
            "--node-name",
            &name,
            "--port",
            &free_port().to_string(),
            "--root-dir",
            &self.dir.path().join("kubelet").join(&name).display().to_string(),
        ]));
        a.extend(extra);
        // Test clusters share the machine's network namespace: their pods stay where the
        // runtime puts them unless a test asks for the pod network.
        if !self.spec.kubelet_args.iter().any(|a| a.starts_with("--network-plugin")) {
            a.extend(args(&["--network-plugin", "none"]));
        }
        a.extend(self.spec.kubelet_args.iter().cloned());
        let log = self.log(&format!("kubelet-{name}"));
        self.kubelets[i] = Some(Process::spawn("kubelet", &a, &log).expect("kubelet"));
    }

    /// `kill -9` of kubelet `i`; its containers keep running, as on a host that lost its
    /// kubelet.
    pub fn kill_kubelet(&mut self, i: usize) {
        if let Some(mut k) = self.kubelets[i].take() {
            k.kill();
        }
    }

    /// (Re)starts the scheduler.
    pub fn start_scheduler(&mut self) {
        let a = args(&["--kubeconfig", &self.pki.kubeconfig("scheduler.conf"), "--secure-port", "0"]);
        let log = self.log("scheduler");
        self.scheduler = Some(Process::spawn("kube-scheduler", &a, &log).expect("scheduler"));
    }

    /// (Re)starts the controller-manager.
    pub fn start_controllers(&mut self) {
        let ca = self.pki.cert_dir.join("ca.crt").display().to_string();
        let ca_key = self.pki.cert_dir.join("ca.key").display().to_string();
        let conf = self.pki.kubeconfig("controller-manager.conf");
        // As kubeadm's: the CA signs approved certificate requests (nodes joining).
        let mut a = args(&[
            "--kubeconfig",
            &conf,
            "--secure-port",
            "0",
            "--root-ca-file",
            &ca,
            "--cluster-signing-cert-file",
            &ca,
            "--cluster-signing-key-file",
            &ca_key,
        ]);
        a.extend(self.spec.controller_args.iter().cloned());
        let log = self.log("controller-manager");
        self.controllers = Some(Process::spawn("kube-controller-manager", &a, &log).expect("controller-manager"));
    }

    /// Kills the apiserver (`kill -9`) if it runs and starts a new one on the same port
    /// and storage; returns once it is ready.
    pub async fn restart_apiserver(&mut self) {
        if let Some(mut a) = self.apiserver.take() {
            a.kill();
        }
        let a = self.apiserver_args();
        let log = self.log("apiserver");
        let p = Process::spawn("kube-apiserver", &a, &log).expect("apiserver");
        wait_healthy(&self.url, Duration::from_secs(30)).await.expect("apiserver healthy");
        self.apiserver = Some(p);
    }

    /// The apiserver's flags: its port, certificates, storage and the spec's extras.
    pub fn apiserver_args(&self) -> Vec<String> {
        let mut a = args(&["--port", &self.port.to_string()]);
        a.extend(self.pki.apiserver_args());
        a.extend(self.spec.apiserver_args.iter().cloned());
        match &self.etcd {
            Some((_, client, _)) => {
                a.extend(args(&["--etcd-servers", &format!("http://127.0.0.1:{client}"), "--etcd-prefix", "/registry"]))
            }
            None => a.extend(args(&["--data-dir", &self.dir.path().join("data").display().to_string()])),
        }
        a
    }

    /// `kill -9` of the private etcd, and a new one on the same ports and data after
    /// `down`; returns once it accepts connections.
    pub async fn restart_etcd(&mut self, down: Duration) {
        let Some((mut process, client, peer)) = self.etcd.take() else { panic!("the cluster has no private etcd") };
        process.kill();
        tokio::time::sleep(down).await;
        let log = format!("etcd-{}.log", self.restarts + 1);
        self.restarts += 1;
        let process = etcd_on(self.dir.path(), client, peer, &log).await.expect("etcd restart");
        self.etcd = Some((process, client, peer));
    }

    /// Waits until `n` nodes are Ready.
    pub async fn wait_nodes_ready(&self, n: usize, within: Duration) -> Result<()> {
        use k8s_openapi::api::core::v1::Node;
        let nodes: kube::Api<Node> = kube::Api::all(client(&self.url)?);
        let deadline = Instant::now() + within;
        loop {
            let ready = nodes
                .list(&Default::default())
                .await
                .map(|l| l.items.iter().filter(|n| node_ready(n)).count())
                .unwrap_or(0);
            if ready >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{ready} of {n} nodes Ready after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether a node's Ready condition is True.
pub fn node_ready(node: &k8s_openapi::api::core::v1::Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kubelets first, so nothing restarts what is removed below.
        for k in self.kubelets.iter_mut().flatten() {
            k.kill();
        }
        if let Nodes::Docker(_) = self.spec.nodes {
            for name in &self.node_names {
                remove_docker_containers(name);
            }
        }
        if let Nodes::Process(_) = self.spec.nodes {
            kill_process_containers(&self.dir.path().join("kubelet"));
        }
    }
}

/// Kills the process groups of the process runtime's containers under `root` (their pid
/// files are `.../process/pods/POD/containers/NAME/pid`).
fn kill_process_containers(root: &std::path::Path) {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n == "pid") {
                out.push(path);
            }
        }
    }
    let mut pids = Vec::new();
    walk(root, &mut pids);
    for f in pids {
        if let Some(pid) = std::fs::read_to_string(&f).ok().and_then(|p| p.trim().parse::<i32>().ok())
            && pid > 1
        {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
        }
    }
}

/// The `p` quantile (0..=1) of sorted durations; an error when there are none, so that a
/// benchmark never reports a latency it did not measure.
pub fn percentile(sorted: &[Duration], p: f64) -> Result<Duration> {
    anyhow::ensure!(!sorted.is_empty(), "no samples to take a percentile of");
    Ok(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// Raw etcd puts per second: `total` puts of `size`-byte values under `prefix`, from
/// `concurrency` clients sharing one connection, as the apiserver does.
pub async fn etcd_put_rate(endpoint: &str, prefix: &str, total: usize, concurrency: usize, size: usize) -> Result<f64> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let value = std::sync::Arc::new(vec![b'x'; size]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (mut kv, next, value, prefix) = (client.kv_client(), next.clone(), value.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                kv.put(format!("{prefix}{i}"), value.as_slice(), None).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
