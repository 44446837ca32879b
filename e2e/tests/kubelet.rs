//! The kubelet against a real apiserver (in-process), on the process, sim and docker
//! runtimes: pods run, a container killed from outside is restarted, a crashing one backs
//! off, a failing liveness probe restarts it, deletion stops it within its grace period, a
//! restarted kubelet adopts its containers, and `pods/log` returns the output.
//! The docker tests need a Docker daemon and the `busybox:local` image (./test.sh provides
//! both); under CI=true their absence is a failure.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2e::{Backend, InProcess, in_process, pod_ready as ready};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node as NodeObject, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kubelet::runtime::{Runtime, docker::Docker, process::Process, sim::Sim};
use kubelet::{Node, metrics::Metrics, node::Registration};
use serde_json::{Value, json};

fn node(c: &InProcess, name: &str, runtime: Arc<dyn Runtime>, root: &Path, port: u16) -> Arc<Node> {
    Arc::new(Node {
        name: name.into(),
        client: c.client.clone(),
        runtime,
        root: root.to_path_buf(),
        host_ip: "127.0.0.1".into(),
        metrics: Arc::new(Metrics::default()),
        registration: Registration {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            max_pods: 110,
            labels: Default::default(),
            taints: vec![],
            port,
            lease_seconds: 40,
        },
        network: None,
        dns: Default::default(),
        pods: Default::default(),
    })
}

fn serve(n: &Arc<Node>, port: u16) -> tokio::task::JoinHandle<()> {
    let nodes = vec![n.clone()];
    let metrics = n.metrics.clone();
    tokio::spawn(async move {
        let _ = kubelet::server::serve(([127, 0, 0, 1], port).into(), nodes, metrics, None).await;
    })
}

fn bound_pod(name: &str, node: &str, spec: Value) -> Pod {
    let mut p = json!({"metadata": {"name": name}, "spec": spec});
    p["spec"]["nodeName"] = json!(node);
    serde_json::from_value(p).unwrap()
}

async fn wait_pod(pods: &Api<Pod>, name: &str, within: Duration, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(p) = pods.get(name).await {
            if check(&p) {
                return p;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {:?}", p.status);
        } else {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: pod gone");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The current container's id (`docker://...`, `process://...`).
fn container_id(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c[0].container_id.clone())
        .unwrap_or_default()
}

/// The id of the container the last state says ended.
fn last_terminated_id(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c[0].last_state.as_ref())
        .and_then(|l| l.terminated.as_ref())
        .and_then(|t| t.container_id.clone())
        .unwrap_or_default()
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .map_or(0, |c| c.restart_count)
}

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()?.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

async fn pod_log(c: &InProcess, name: &str) -> (u16, String) {
    let r = reqwest::get(format!("{}/api/v1/namespaces/default/pods/{name}/log", c.url())).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runtime_runs_restarts_probes_and_stops_pods() {
    let c = in_process(Backend::Embedded, "kubelet_process", |_| {}).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = e2e::free_port();
    let n = node(&c, "proc-node", Arc::new(Process::new(&dir.path().join("process")).unwrap()), dir.path(), port);
    let _server = serve(&n, port);
    let tasks = kubelet::start(n.clone());
    let nodes: Api<NodeObject> = Api::all(c.client.clone());
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pp = PostParams::default();

    // Registration and lease: poll until the node is there and Ready and its lease exists
    // (the kubelet's heartbeat loop creates the lease after it registers the node).
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let registered = loop {
        if let Some(node) = nodes.get_opt("proc-node").await.unwrap()
            && e2e::node_ready(&node)
            && leases.get_opt("proc-node").await.unwrap().is_some()
        {
            break node;
        }
        assert!(tokio::time::Instant::now() < deadline, "the kubelet did not register a Ready node with a lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let status = registered.status.unwrap();
    assert!(status.conditions.unwrap().iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    assert!(status.allocatable.unwrap().contains_key("cpu"));
    assert_eq!(registered.metadata.labels.unwrap()["kubernetes.io/hostname"], "proc-node");
    let lease = leases.get("proc-node").await.unwrap();
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some("proc-node"), "the node holds its lease");

    // A pod runs, with its env, and its log comes through the apiserver.
    let spec = json!({"terminationGracePeriodSeconds": 2, "containers": [{"name": "app", "image": "busybox",
        "command": ["sh", "-c", "echo started $POD_NAME in $POD_NS; trap 'echo ignoring TERM' TERM; while true; do sleep 0.2; done"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]}]});
    pods.create(&pp, &bound_pod("web", "proc-node", spec)).await.unwrap();
    let running = wait_pod(&pods, "web", Duration::from_secs(10), "web Ready", ready).await;
    let s = running.status.unwrap();
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(s.start_time.is_some());
    let (code, log) = pod_log(&c, "web").await;
    assert_eq!(code, 200);
    assert!(log.contains("started web in default"), "{log}");

    // Killed from outside: restarted, restartCount up, lastState says how it ended.
    let uid = pods.get("web").await.unwrap().metadata.uid.unwrap();
    let pid: i32 = std::fs::read_to_string(dir.path().join(format!("process/pods/{uid}/containers/app-0/pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let restarted =
        wait_pod(&pods, "web", Duration::from_secs(10), "a restart", |p| restarts(p) == 1 && ready(p)).await;
    let last = restarted.status.unwrap().container_statuses.unwrap()[0].last_state.clone().unwrap();
    assert_eq!(last.terminated.unwrap().exit_code, 137);

    // A kubelet restarted mid-way adopts what runs: no new attempt, same process. Proved
    // positively: the new kubelet restarts the adopted process when it is killed (attempt 2,
    // its last state that very container), which it could not if it had not adopted it, and
    // a duplicate started at restart would have made the count 2 before the kill.
    let adopted_id = container_id(&pods.get("web").await.unwrap());
    let pid_before =
        std::fs::read_to_string(dir.path().join(format!("process/pods/{uid}/containers/app-1/pid"))).unwrap();
    for t in tasks {
        t.abort();
    }
    let _tasks = kubelet::start(n.clone());
    let pid: i32 = pid_before.trim().parse().unwrap();
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let again = wait_pod(&pods, "web", Duration::from_secs(15), "the adopted process restarted", |p| {
        restarts(p) >= 2 && ready(p)
    })
    .await;
    assert_eq!(restarts(&again), 2, "one new attempt: for the kill, none for the kubelet restart");
    assert_eq!(last_terminated_id(&again), adopted_id, "the killed container was the adopted one");
    let pid_after =
        std::fs::read_to_string(dir.path().join(format!("process/pods/{uid}/containers/app-2/pid"))).unwrap();

    // Deleted: SIGTERM is ignored by this container, so SIGKILL comes after the 2 s grace.
    let started = tokio::time::Instant::now();
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pods.get_opt("web").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the pod was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "stopped in {took:?} with a 2 s grace period"
    );
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid_after.trim())).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned));
    assert!(state.is_none() || state.as_deref() == Some("Z"), "the process is gone (state {state:?})");

    // A crashing container backs off.
    let crash =
        json!({"containers": [{"name": "crash", "image": "busybox", "command": ["sh", "-c", "echo boom; exit 3"]}]});
    pods.create(&pp, &bound_pod("crash", "proc-node", crash)).await.unwrap();
    let backing_off = wait_pod(&pods, "crash", Duration::from_secs(15), "CrashLoopBackOff", |p| {
        waiting_reason(p).as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    let r = restarts(&backing_off);
    assert!((1..=2).contains(&r), "restart count {r} right after the first back-off");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(restarts(&pods.get("crash").await.unwrap()), r, "no restart inside the 10 s back-off");

    // A failing liveness probe restarts the container.
    let marker = dir.path().join("alive");
    std::fs::write(&marker, "").unwrap();
    let probe = json!({"containers": [{"name": "app", "image": "busybox", "command": ["sleep", "600"],
        "livenessProbe": {"exec": {"command": ["test", "-f", marker.display().to_string()]}, "periodSeconds": 1, "failureThreshold": 2}}]});
    pods.create(&pp, &bound_pod("probed", "proc-node", probe)).await.unwrap();
    wait_pod(&pods, "probed", Duration::from_secs(10), "probed Ready", ready).await;
    std::fs::remove_file(&marker).unwrap();
    wait_pod(&pods, "probed", Duration::from_secs(15), "a liveness restart", |p| restarts(p) >= 1).await;

    // A pod that finishes: Succeeded with restartPolicy Never.
    let job = json!({"restartPolicy": "Never", "containers": [{"name": "job", "image": "busybox", "command": ["sh", "-c", "echo done"]}]});
    pods.create(&pp, &bound_pod("job", "proc-node", job)).await.unwrap();
    let done = wait_pod(&pods, "job", Duration::from_secs(10), "Succeeded", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
    })
    .await;
    let term = done.status.unwrap().container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (0, Some("Completed")));

    // A command the process runtime cannot run says so.
    let no_command = json!({"containers": [{"name": "app", "image": "nginx"}]});
    pods.create(&pp, &bound_pod("no-command", "proc-node", no_command)).await.unwrap();
    wait_pod(&pods, "no-command", Duration::from_secs(10), "a config error", |p| {
        waiting_reason(p).as_deref() == Some("CreateContainerConfigError")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_runtime_hosts_many_nodes() {
    let c = in_process(Backend::Embedded, "kubelet_sim", |_| {}).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hosted: Vec<_> =
        (0..20).map(|i| node(&c, &format!("sim-{i}"), Arc::new(Sim::default()), dir.path(), 0)).collect();
    // One pod watch for all 20 nodes, as the kubelet binary runs its simulated nodes.
    let _tasks = kubelet::start_all(hosted.clone());
    let nodes: Api<NodeObject> = Api::all(c.client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while nodes.list(&Default::default()).await.unwrap().items.len() < 20 {
        assert!(tokio::time::Instant::now() < deadline, "20 nodes registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    for i in 0..40 {
        let spec = json!({"containers": [{"name": "app", "image": "anything:1"}]});
        pods.create(&PostParams::default(), &bound_pod(&format!("p{i}"), &format!("sim-{}", i % 20), spec))
            .await
            .unwrap();
    }
    // A pod bound to a node this kubelet does not host passes through the shared watch.
    let spec = json!({"containers": [{"name": "app", "image": "anything:1"}]});
    pods.create(&PostParams::default(), &bound_pod("elsewhere", "another-host", spec)).await.unwrap();
    for i in 0..40 {
        let p = wait_pod(&pods, &format!("p{i}"), Duration::from_secs(10), "sim pod Ready", ready).await;
        // Each pod runs in its own node's runtime, and only there.
        let uid = p.metadata.uid.unwrap();
        for (j, n) in hosted.iter().enumerate() {
            let holds = n.runtime.pods().await.unwrap().contains(&uid);
            assert_eq!(holds, j == i % 20, "pod p{i} in the runtime of sim-{j}");
        }
        assert_eq!(hosted[i % 20].pods.lock().get(&format!("default/p{i}")), Some(&uid));
    }
    let elsewhere = pods.get("elsewhere").await.unwrap();
    assert!(elsewhere.status.and_then(|s| s.container_statuses).is_none(), "a pod of another node is left alone");
    assert!(hosted.iter().all(|n| !n.pods.lock().contains_key("default/elsewhere")));
    pods.delete("p0", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pods.get_opt("p0").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "sim pod deletion confirmed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The deleted pod is forgotten: its sandbox and its entry for the log server.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while hosted[0].pods.lock().contains_key("default/p0") || hosted[0].runtime.pods().await.unwrap().len() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "p0 forgotten by sim-0: {:?}", hosted[0].pods.lock());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The docker runtime, when a daemon and the test image are there (required under CI).
async fn docker_runtime(node_name: &str) -> Option<Docker> {
    match Docker::connect("busybox:local", node_name).await {
        Ok(d) if d.image_present("busybox:local").await.unwrap_or(false) => Some(d),
        other => {
            let why = match other {
                Ok(_) => "the busybox:local image is missing".to_owned(),
                Err(e) => e.to_string(),
            };
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but the docker runtime cannot run: {why}; ./test.sh must start dockerd and build busybox:local"
                );
            }
            eprintln!("skipping the docker runtime test: {why} (./test.sh starts dockerd and builds busybox:local)");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_runtime_runs_real_containers() {
    let node_name = format!("docker-{}", std::process::id());
    let Some(docker) = docker_runtime(&node_name).await else { return };
    let c = in_process(Backend::Embedded, "kubelet_docker", |_| {}).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = e2e::free_port();
    let n = node(&c, &node_name, Arc::new(docker), dir.path(), port);
    let _server = serve(&n, port);
    let tasks = kubelet::start(n.clone());
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pp = PostParams::default();
    let spec = json!({"terminationGracePeriodSeconds": 3, "containers": [{"name": "app", "image": "busybox:local", "imagePullPolicy": "Never",
        "command": ["sh", "-c", "echo hello from $(hostname); while true; do sleep 1; done"],
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]});
    pods.create(&pp, &bound_pod("real", &node_name, spec)).await.unwrap();
    let running = wait_pod(&pods, "real", Duration::from_secs(30), "a real container Ready", ready).await;
    let ip = running.status.unwrap().pod_ip.unwrap();
    assert!(ip.starts_with("172.") || ip.starts_with("10."), "a container address: {ip}");
    let (code, log) = pod_log(&c, "real").await;
    assert_eq!(code, 200);
    assert!(log.contains("hello from real"), "{log}");

    // Killed from outside (docker kill): restarted.
    let cid =
        pods.get("real").await.unwrap().status.unwrap().container_statuses.unwrap()[0].container_id.clone().unwrap();
    let id = cid.trim_start_matches("docker://");
    let out = std::process::Command::new("docker").args(["kill", id]).output().unwrap();
    assert!(out.status.success());
    wait_pod(&pods, "real", Duration::from_secs(20), "a restart", |p| restarts(p) == 1 && ready(p)).await;

    // A restarted kubelet adopts the container: killed behind its back, it is restarted
    // once (attempt 2), and the one that died is the container that ran before the restart.
    let adopted_id = container_id(&pods.get("real").await.unwrap());
    for t in tasks {
        t.abort();
    }
    let _tasks = kubelet::start(n.clone());
    let out = std::process::Command::new("docker")
        .args(["kill", adopted_id.trim_start_matches("docker://")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let again = wait_pod(&pods, "real", Duration::from_secs(30), "the adopted container restarted", |p| {
        restarts(p) >= 2 && ready(p)
    })
    .await;
    assert_eq!(restarts(&again), 2, "one new attempt: for the kill, none for the kubelet restart");
    assert_eq!(last_terminated_id(&again), adopted_id, "the killed container was the adopted one");

    // An image that is not here: a clear reason, not a hang.
    let missing = json!({"containers": [{"name": "app", "image": "nothere:1", "imagePullPolicy": "Never"}]});
    pods.create(&pp, &bound_pod("missing", &node_name, missing)).await.unwrap();
    let p = wait_pod(&pods, "missing", Duration::from_secs(20), "ErrImageNeverPull", |p| {
        waiting_reason(p).as_deref() == Some("ErrImageNeverPull")
    })
    .await;
    let msg = p.status.unwrap().container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap().message.unwrap();
    assert!(msg.contains("nothere:1"), "{msg}");

    // Deleted: stopped within the grace period, containers removed.
    pods.delete("real", &DeleteParams::default()).await.unwrap();
    pods.delete("missing", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while pods.get_opt("real").await.unwrap().is_some() || pods.get_opt("missing").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "pods not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=io.kubernetes.managed-by={node_name}")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "no containers left behind");
}
