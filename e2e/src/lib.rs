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

/// A kube-rs client for a plain-HTTP apiserver.
pub fn client(url: &str) -> Result<kube::Client> {
    let config = kube::Config::new(url.parse().context("apiserver URL")?);
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
    let http = reqwest::Client::new();
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

/// Starts the `kube-apiserver` binary on a free port.
pub async fn apiserver_process(args: &[String], log: &std::path::Path) -> Result<(Process, String)> {
    let port = free_port();
    let mut all = vec!["--port".to_owned(), port.to_string()];
    all.extend(args.iter().cloned());
    let process = Process::spawn("kube-apiserver", &all, log)?;
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&url, Duration::from_secs(30)).await?;
    Ok((process, url))
}

/// A kubeconfig file for `url`.
pub fn kubeconfig(url: &str, path: &std::path::Path) -> Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {url}\n  name: local\ncontexts:\n- context:\n    cluster: local\n    user: local\n  name: local\ncurrent-context: local\nusers:\n- name: local\n  user: {{}}\n"
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Starts a private etcd (Debian's `etcd-server`) on free loopback ports, its data in `dir`.
pub async fn etcd_process(dir: &std::path::Path) -> Result<(Process, String)> {
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let args: Vec<String> = [
        "--name",
        "bench",
        "--data-dir",
        &dir.join("etcd").display().to_string(),
        "--listen-client-urls",
        &url,
        "--advertise-client-urls",
        &url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        &format!("bench={peer_url}"),
        "--quota-backend-bytes=8589934592",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let process = Process::spawn_path(std::path::Path::new("etcd"), &args, &dir.join("etcd.log"))
        .context("starting etcd (apt-get install etcd-server)")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        if Instant::now() > deadline {
            bail!("etcd did not start; see {}", dir.join("etcd.log").display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((process, url))
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

/// A process's resident memory in MB, from /proc.
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) a process has used, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The whole control plane as real processes: an apiserver on the embedded store, the
/// scheduler, the controller-manager and one simulated kubelet hosting `nodes` nodes
/// (`sim-0`...), with a kubeconfig for clients. Everything is killed when dropped.
pub struct Cluster {
    /// Logs, data and the kubeconfig.
    pub dir: tempfile::TempDir,
    /// The apiserver's URL.
    pub url: String,
    /// Its port (kept across restarts).
    pub port: u16,
    /// The apiserver.
    pub apiserver: Option<Process>,
    /// The scheduler.
    pub scheduler: Option<Process>,
    /// The controller-manager.
    pub controllers: Option<Process>,
    /// The simulated kubelet.
    pub kubelet: Option<Process>,
}

impl Cluster {
    /// Starts everything; nodes register on their own (wait for them before counting on them).
    pub async fn start(nodes: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data").display().to_string();
        let (apiserver, url) = apiserver_process(&args(&["--data-dir", &data]), &dir.path().join("apiserver-0.log"))
            .await
            .expect("apiserver");
        let port: u16 = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        let mut c =
            Cluster { dir, url, port, apiserver: Some(apiserver), scheduler: None, controllers: None, kubelet: None };
        kubeconfig(&c.url, &c.dir.path().join("kubeconfig")).expect("kubeconfig");
        c.start_kubelet(nodes);
        c.start_scheduler(0);
        c.start_controllers(0);
        c
    }

    /// The kubeconfig's path.
    pub fn kubeconfig(&self) -> String {
        self.dir.path().join("kubeconfig").display().to_string()
    }

    /// (Re)starts the simulated kubelet.
    pub fn start_kubelet(&mut self, nodes: usize) {
        let a = args(&[
            "--kubeconfig",
            &self.kubeconfig(),
            "--runtime",
            "sim",
            "--sim-nodes",
            &nodes.to_string(),
            "--node-name",
            "sim",
            "--port",
            &free_port().to_string(),
            "--root-dir",
            &self.dir.path().join("kubelet").display().to_string(),
        ]);
        self.kubelet = Some(Process::spawn("kubelet", &a, &self.dir.path().join("kubelet.log")).expect("kubelet"));
    }

    /// (Re)starts the scheduler; `n` numbers its log.
    pub fn start_scheduler(&mut self, n: usize) {
        let a = args(&["--kubeconfig", &self.kubeconfig(), "--secure-port", "0"]);
        self.scheduler = Some(
            Process::spawn("kube-scheduler", &a, &self.dir.path().join(format!("scheduler-{n}.log")))
                .expect("scheduler"),
        );
    }

    /// (Re)starts the controller-manager; `n` numbers its log.
    pub fn start_controllers(&mut self, n: usize) {
        let a = args(&["--kubeconfig", &self.kubeconfig(), "--secure-port", "0"]);
        self.controllers = Some(
            Process::spawn("kube-controller-manager", &a, &self.dir.path().join(format!("controllers-{n}.log")))
                .expect("controller-manager"),
        );
    }

    /// Kills the apiserver and starts a new one on the same port and data.
    pub async fn restart_apiserver(&mut self, n: usize) {
        if let Some(mut a) = self.apiserver.take() {
            a.kill();
        }
        let data = self.dir.path().join("data").display().to_string();
        let a = args(&["--port", &self.port.to_string(), "--data-dir", &data]);
        let p = Process::spawn("kube-apiserver", &a, &self.dir.path().join(format!("apiserver-{n}.log")))
            .expect("apiserver");
        wait_healthy(&self.url, Duration::from_secs(30)).await.expect("apiserver healthy");
        self.apiserver = Some(p);
    }
}
