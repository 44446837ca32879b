//! The pod network across several hosts, on a real kernel, in network namespaces this test
//! makes and removes: a "switch" namespace holding a bridge, and four "host" namespaces
//! wired to it (192.168.78.11-14). Host 1 runs the control plane (apiserver, scheduler,
//! controller-manager); every host runs a kubelet (the process runtime on hosts 1-3, the
//! docker runtime on host 4; all on the CNI pod network) and a kube-proxy. Traffic goes
//! only to addresses inside these namespaces.
//!
//! Shown: each node gets a pod CIDR and each pod an address from it (its own network
//! namespace, through the CNI bridge plugin); pods on different hosts reach each other by
//! pod IP (the kubelets' routes between hosts); a ClusterIP spreads 300 requests from a pod
//! over three replicas on several hosts (each 20-47%); a node port answers on every host;
//! names resolve from a pod through the cluster DNS (a Deployment behind 10.96.0.10), and
//! other names are forwarded; a lost host's pods leave the service; scaling down under
//! load fails no request; deleting the pods leaves no addresses, namespaces or veths
//! behind.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::Process;

fn in_ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip").args(["netns", "exec", ns]).args(args).stdin(Stdio::null()).output().expect("ip netns exec")
}

fn ok(ns: &str, args: &[&str]) -> String {
    let out = in_ns(ns, args);
    assert!(out.status.success(), "{args:?} in {ns}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn can_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let tools = ["ip", "nft", "busybox", "kubectl", "nsenter"]
        .iter()
        .all(|t| Command::new(t).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok());
    let plugins = Path::new("/usr/lib/cni/bridge").exists();
    if root && tools && plugins {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but this test cannot run (root: {root}; ip, nft, busybox, kubectl, nsenter: {tools}; CNI plugins in /usr/lib/cni: {plugins})"
    );
    eprintln!("skipping: needs root, ip, nft, busybox, kubectl, nsenter and the CNI plugins");
    false
}

fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// GETs `url` with busybox wget from inside the network namespace at `netns` (a path).
fn get_from(netns: &Path, url: &str) -> Result<String, String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        // busybox 1.35's `wget -T` crashes: the time limit is timeout(1)'s.
        .args(["timeout", "5", "busybox", "wget", "-q", "-O", "-", url])
        .stdin(Stdio::null())
        .output()
        .expect("nsenter");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: busybox:local
        # Serves on while every kube-proxy takes it out of rotation, as upstream advises
        # (with room for a CI machine running other tests at the same time).
        lifecycle: {preStop: {exec: {command: [sleep, "5"]}}}
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        command: [sh, -c, 'echo $POD_NAME > index.html && exec busybox httpd -f -p 8080 -h .']
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless, namespace: default}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: docker-web, namespace: default}
spec:
  nodeName: h4
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox:local
    command: [sh, -c, 'mkdir /www && echo docker-web > /www/index.html && exec httpd -f -p 8080 -h /www']
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  nodeName: h3
  containers:
  - name: client
    image: busybox:local
    command: [sleep, "3600"]
"#;

/// The cluster DNS, as upstream runs it: a Deployment behind the `kube-dns` Service at the
/// range's 10th address. (`{KUBE_DNS}` and `{KUBECONFIG}` are filled in.)
const DNS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      dnsPolicy: Default
      containers:
      - name: kube-dns
        image: kube-dns:local
        command: ["{KUBE_DNS}", "--kubeconfig", "{KUBECONFIG}", "--upstream", "192.168.78.11:5353"]
        ports: [{containerPort: 53, name: dns, protocol: UDP}, {containerPort: 53, name: dns-tcp, protocol: TCP}]
        readinessProbe:
          tcpSocket: {port: 53}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  clusterIP: 10.96.0.10
  selector: {k8s-app: kube-dns}
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
"#;

/// Everything the test made, taken down in order when dropped (also when it fails): the
/// components, the pods' processes, the pods' namespaces, then the hosts.
struct Lab {
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    hosts: Vec<String>,
    processes: Vec<(String, Process)>,
    server: String,
}

impl Lab {
    fn kubectl(&self, args: &[&str]) -> String {
        let mut a = vec!["kubectl", "--server", &self.server];
        a.extend(args);
        ok(&self.hosts[0], &a)
    }

    fn apply(&self, manifest: &str) {
        let path = self.dir.path().join("manifest.yaml");
        std::fs::write(&path, manifest).unwrap();
        self.kubectl(&["apply", "--server-side", "-f", &path.display().to_string()]);
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a)).unwrap()
    }

    /// The network namespace of pod `uid` on host `i`.
    fn pod_netns(&self, host: usize, uid: &str) -> PathBuf {
        self.dir.path().join(&self.hosts[host]).join("process").join("netns").join(uid)
    }

    /// Starts a component in host `host`'s network namespace. Not with `ip netns exec`,
    /// which also gives the program a mount namespace of its own: the kubelet's pod
    /// namespaces are bind mounts, and the test (like a restarted kubelet) must see them.
    fn spawn(&mut self, host: usize, name: &str, program: &Path, args: &[&str]) {
        let mut a: Vec<String> = vec![format!("--net=/run/netns/{}", self.hosts[host]), program.display().to_string()];
        a.extend(args.iter().map(|s| (*s).to_owned()));
        let log = self.dir.path().join(format!("{name}.log"));
        self.processes.push((name.to_owned(), Process::spawn_path(Path::new("nsenter"), &a, &log).unwrap()));
    }

    /// Kills the component started as `name`.
    fn kill(&mut self, name: &str) {
        self.processes.retain(|(n, _)| n != name);
    }

    /// Kills every process of host `host`'s pods (process runtime), as a host that loses
    /// power takes them.
    fn kill_pods(&self, host: usize) {
        let root = self.dir.path().join(&self.hosts[host]).join("process");
        for pid in glob(&root.join("pods"), &["*", "containers", "*", "pid"]) {
            if let Ok(pid) = std::fs::read_to_string(&pid) {
                let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", pid.trim())]).status();
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.processes.clear();
        e2e::remove_docker_containers("h4");
        for host in &self.hosts {
            let root = self.dir.path().join(host).join("process");
            for pid in glob(&root.join("pods"), &["*", "containers", "*", "pid"]) {
                if let Ok(pid) = std::fs::read_to_string(&pid) {
                    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", pid.trim())]).status();
                }
            }
            if let Ok(entries) = std::fs::read_dir(root.join("netns")) {
                for e in entries.flatten() {
                    let _ = Command::new("umount").arg("-l").arg(e.path()).status();
                }
            }
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

/// The paths under `dir` that match `parts`, each a name or `*`.
fn glob(dir: &Path, parts: &[&str]) -> Vec<PathBuf> {
    let mut paths = vec![dir.to_path_buf()];
    for part in parts {
        paths = paths
            .into_iter()
            .flat_map(|p| match *part {
                "*" => std::fs::read_dir(&p).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default(),
                name => vec![p.join(name)],
            })
            .collect();
    }
    paths.into_iter().filter(|p| p.exists()).collect()
}

/// The pid of pod `uid`'s first container's command on host `host` (inside the wrapper
/// that records its exit, and the mount namespace that gives it the pod's resolv.conf).
fn client_process(lab: &Lab, host: usize, uid: &str) -> u32 {
    let dir = lab.dir.path().join(&lab.hosts[host]).join("process").join("pods").join(uid).join("containers");
    let pid = glob(&dir, &["*", "pid"]).first().and_then(|p| std::fs::read_to_string(p).ok()).unwrap();
    let pid = pid.trim();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    children.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap()
}

/// Runs a command in the network and mount namespaces of process `pid` (a pod's).
fn nsenter_pod(pid: u32, args: &[&str]) -> Result<String, String> {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "-m", "timeout", "10"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("nsenter");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() { Ok(text) } else { Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr))) }
}

/// Starts host `i`'s kubelet (process runtime on hosts 0-2, docker on host 3).
fn start_kubelet(lab: &mut Lab, i: usize, kubeconfig: &str) {
    let (name, ip) = (format!("h{}", i + 1), format!("192.168.78.1{}", i + 1));
    let root = lab.dir.path().join(&lab.hosts[i]).display().to_string();
    let runtime = if i == 3 { "docker" } else { "process" };
    let a =
        ["--kubeconfig", kubeconfig, "--runtime", runtime, "--node-name", &name, "--node-ip", &ip, "--address", &ip];
    let b = ["--root-dir", &root, "--network-plugin", "cni", "--cluster-dns", "10.96.0.10"];
    let c = ["--node-lease-duration-seconds", "4"];
    lab.spawn(i, &format!("kubelet-{name}"), &e2e::binary("kubelet"), &[&a[..], &b, &c].concat());
}

/// Starts host `i`'s kube-proxy.
fn start_proxy(lab: &mut Lab, i: usize) {
    let (name, server) = (format!("h{}", i + 1), lab.server.clone());
    let a = ["--master", &server, "--hostname-override", &name, "--cluster-cidr", "10.244.0.0/16"];
    let b = ["--min-sync-period", "100ms"];
    lab.spawn(i, &format!("kube-proxy-{name}"), &e2e::binary("kube-proxy"), &[&a[..], &b].concat());
}

fn pods(lab: &Lab) -> Vec<(String, String, String, String)> {
    let list = lab.json(&["get", "pods", "-l", "app=web"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .map(|p| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (s(&p["metadata"]["name"]), s(&p["metadata"]["uid"]), s(&p["spec"]["nodeName"]), s(&p["status"]["podIP"]))
        })
        .collect()
}

#[test]
fn pods_on_several_hosts_reach_each_other_and_their_services() {
    if !can_run() {
        return;
    }
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let switch = format!("pn-lan-{id}");
    if !e2e::docker_available("pod_network") {
        return;
    }
    let hosts: Vec<String> = (1..=4).map(|i| format!("pn-h{i}-{id}")).collect();
    for ns in std::iter::once(&switch).chain(&hosts) {
        let out = Command::new("ip").args(["netns", "add", ns]).output().unwrap();
        assert!(out.status.success(), "ip netns add {ns}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut lab = Lab {
        dir: tempfile::tempdir().unwrap(),
        namespaces: std::iter::once(switch.clone()).chain(hosts.iter().cloned()).collect(),
        hosts: hosts.clone(),
        processes: Vec::new(),
        server: "http://192.168.78.11:6443".into(),
    };
    // The switch, and each host's link to it.
    ok(&switch, &["ip", "link", "add", "lan", "type", "bridge"]);
    ok(&switch, &["ip", "link", "set", "lan", "up"]);
    for (i, host) in hosts.iter().enumerate() {
        let port = format!("port{}", i + 1);
        ok(&switch, &["ip", "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", host]);
        ok(&switch, &["ip", "link", "set", &port, "master", "lan", "up"]);
        ok(host, &["ip", "link", "set", "lo", "up"]);
        ok(host, &["ip", "addr", "add", &format!("192.168.78.1{}/24", i + 1), "dev", "eth0"]);
        ok(host, &["ip", "link", "set", "eth0", "up"]);
    }

    // The control plane on host 1.
    let kubeconfig = lab.dir.path().join("kubeconfig");
    e2e::kubeconfig(&lab.server, &kubeconfig).unwrap();
    let kc = kubeconfig.display().to_string();
    let data = lab.dir.path().join("data").display().to_string();
    lab.spawn(
        0,
        "apiserver",
        &e2e::binary("kube-apiserver"),
        &["--bind-address", "0.0.0.0", "--data-dir", &data, "--insecure-serving"],
    );
    wait_until("the apiserver", Duration::from_secs(30), || {
        in_ns(&hosts[0], &["kubectl", "--server", &lab.server, "get", "--raw", "/readyz"]).status.success()
    });
    lab.spawn(0, "scheduler", &e2e::binary("kube-scheduler"), &["--kubeconfig", &kc, "--secure-port", "0"]);
    // A host that stops renewing its lease is Unknown after 6 s (its pods not ready).
    let cm = ["--kubeconfig", &kc, "--secure-port", "0", "--node-monitor-grace-period", "6s"];
    lab.spawn(0, "controller-manager", &e2e::binary("kube-controller-manager"), &cm);
    // A kubelet and a kube-proxy on every host.
    for i in 0..hosts.len() {
        start_kubelet(&mut lab, i, &kc);
        start_proxy(&mut lab, i);
    }

    // Each node gets a pod CIDR of its own.
    wait_until("four nodes with pod CIDRs", Duration::from_secs(60), || {
        let nodes = lab.json(&["get", "nodes"]);
        let cidrs: BTreeSet<String> = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["spec"]["podCIDR"].as_str().map(str::to_owned))
            .collect();
        cidrs.len() == 4
    });

    // The cluster DNS's upstream resolver (see the forwarding check below).
    let upstream = ["--kubeconfig", &kc, "--listen", "192.168.78.11:5353", "--cluster-domain", "example.test"];
    let upstream = [&upstream[..], &["--metrics-bind-address", "127.0.0.1:9154"]].concat();
    lab.spawn(0, "upstream-dns", &e2e::binary("kube-dns"), &upstream);
    let dns = DNS.replace("{KUBE_DNS}", &e2e::binary("kube-dns").display().to_string()).replace("{KUBECONFIG}", &kc);
    lab.apply(&dns);
    lab.apply(WEB);
    wait_until("three ready replicas on at least two hosts", Duration::from_secs(90), || {
        let p = pods(&lab);
        p.len() == 3 && p.iter().map(|(_, _, node, _)| node).collect::<BTreeSet<_>>().len() >= 2
    });
    let web = pods(&lab);
    for (name, _, node, ip) in &web {
        assert!(ip.starts_with("10.244."), "{name} on {node} has {ip}, not an address of the pod network");
    }
    let client = lab.json(&["get", "pod", "client"]);
    let client_ns = lab.pod_netns(2, client["metadata"]["uid"].as_str().unwrap());
    wait_until("the client pod's network", Duration::from_secs(30), || client_ns.exists());

    // Pod to pod, by pod IP, across hosts.
    for (name, _, node, ip) in &web {
        let body = get_from(&client_ns, &format!("http://{ip}:8080/"))
            .unwrap_or_else(|e| panic!("client on h3 → {name} on {node} at {ip}: {e}"));
        assert_eq!(&body, name);
    }

    // A docker-runtime pod joins the same network: reached from a process-runtime pod on
    // another host by its pod IP.
    wait_until("the docker pod", Duration::from_secs(60), || {
        lab.json(&["get", "pod", "docker-web"])["status"]["podIP"].as_str().is_some_and(|ip| ip.starts_with("10.244."))
    });
    let docker_ip = lab.json(&["get", "pod", "docker-web"])["status"]["podIP"].as_str().unwrap().to_owned();
    wait_until("the docker pod to answer from h3", Duration::from_secs(30), || {
        get_from(&client_ns, &format!("http://{docker_ip}:8080/")).is_ok_and(|b| b == "docker-web")
    });

    // Through the cluster IP, from a pod: every replica answers its share.
    let svc = lab.json(&["get", "service", "web"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_owned();
    let url = format!("http://{cluster_ip}/");
    wait_until("the cluster IP to answer", Duration::from_secs(30), || get_from(&client_ns, &url).is_ok());
    let mut answers: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let body = get_from(&client_ns, &url).unwrap_or_else(|e| panic!("a request to {url} failed: {e}"));
        *answers.entry(body).or_default() += 1;
    }
    assert_eq!(answers.len(), 3, "{answers:?}");
    for (pod, n) in &answers {
        assert!((60..=141).contains(n), "{pod} answered {n} of 300 (20-47% each): {answers:?}");
    }

    // Names, from the client pod: the service's three spellings give its cluster IP, the
    // headless service the ready pods' addresses.
    let client_pid = client_process(&lab, 2, client["metadata"]["uid"].as_str().unwrap());
    let resolv = nsenter_pod(client_pid, &["cat", "/etc/resolv.conf"]).unwrap();
    assert!(
        resolv.contains("nameserver 10.96.0.10") && resolv.contains("search default.svc.cluster.local"),
        "{resolv}"
    );
    wait_until("the cluster DNS to answer", Duration::from_secs(60), || {
        nsenter_pod(client_pid, &["busybox", "nslookup", "web.default.svc.cluster.local"]).is_ok()
    });
    // Resolved as programs resolve (glibc's getaddrinfo, through the pod's resolv.conf and
    // its search list).
    let lookup = |name: &str| nsenter_pod(client_pid, &["getent", "ahostsv4", name]);
    for name in ["web", "web.default", "web.default.svc.cluster.local"] {
        let out = lookup(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.lines().all(|l| l.starts_with(&format!("{cluster_ip} "))), "{name}:\n{out}");
    }
    // A name outside the cluster goes to the upstream resolver: here a second kube-dns on
    // host 1 serving another domain from the same API (nothing leaves the lab).
    let out = lookup("web.default.svc.example.test").unwrap_or_else(|e| panic!("forwarded: {e}"));
    assert!(out.lines().all(|l| l.starts_with(&format!("{cluster_ip} "))), "forwarded:\n{out}");
    let out = lookup("web-headless").unwrap();
    let got: BTreeSet<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    let want: BTreeSet<&str> = web.iter().map(|(_, _, _, ip)| ip.as_str()).collect();
    assert_eq!(got, want, "the headless service's addresses are the ready pods'");
    assert!(lookup("nothing.default.svc.cluster.local").is_err());

    // The node port, on every host, from host 1.
    for i in 0..hosts.len() {
        let url = format!("http://192.168.78.1{}:30080/", i + 1);
        let out = in_ns(&hosts[0], &["timeout", "5", "busybox", "wget", "-q", "-O", "-", &url]);
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && body.starts_with("web-"), "{url}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Scaling down under load: the pods that go stop getting traffic, and no request fails
    // (each leaves the endpoints, then its preStop hook keeps it serving a moment longer).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, ns, url) = (stop.clone(), client_ns.clone(), url.clone());
        std::thread::spawn(move || {
            let (mut sent, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                if let Err(e) = get_from(&ns, &url) {
                    failed.push(e);
                }
            }
            (sent, failed)
        })
    };
    lab.kubectl(&["scale", "deployment", "web", "--replicas", "1"]);
    wait_until("one replica", Duration::from_secs(60), || pods(&lab).len() == 1);
    let (survivor, ..) = pods(&lab).remove(0);
    wait_until("only the survivor to answer", Duration::from_secs(30), || {
        (0..20).all(|_| get_from(&client_ns, &url).is_ok_and(|b| b == survivor))
    });
    wait_until("the others to be gone", Duration::from_secs(30), || {
        lab.json(&["get", "pods", "-l", "app=web"])["items"].as_array().is_some_and(|p| p.len() == 1)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.join().unwrap();
    assert!(failed.is_empty(), "{} of {sent} requests failed while scaling down: {failed:?}", failed.len());

    // And up again: three replicas, spread over the hosts, answering.
    lab.kubectl(&["scale", "deployment", "web", "--replicas", "3"]);
    wait_until("three ready replicas again after scaling up", Duration::from_secs(90), || {
        let p = pods(&lab);
        p.len() == 3 && p.iter().map(|(_, _, node, _)| node).collect::<BTreeSet<_>>().len() >= 2
    });
    let web = pods(&lab);
    wait_until("every replica to answer through the cluster IP", Duration::from_secs(30), || {
        let seen: BTreeSet<String> = (0..30).filter_map(|_| get_from(&client_ns, &url).ok()).collect();
        seen.len() == 3
    });

    // A host that dies (its kubelet, kube-proxy and pods gone, its link down) is taken out:
    // its pods stop getting traffic. Hosts 1 (the control plane) and 3 (the client) stay;
    // three replicas spread over four hosts have one elsewhere.
    let (victim_pod, victim) = web
        .iter()
        .find(|(_, _, node, _)| node == "h2")
        .map(|(n, _, _, _)| (n.clone(), 1))
        .or_else(|| web.iter().find(|(_, _, node, _)| node == "h4").map(|(n, _, _, _)| (n.clone(), 3)))
        .expect("a replica on h2 or h4");
    let victim_name = format!("h{}", victim + 1);
    lab.kill(&format!("kubelet-{victim_name}"));
    lab.kill(&format!("kube-proxy-{victim_name}"));
    if victim == 3 {
        e2e::remove_docker_containers("h4");
    } else {
        lab.kill_pods(victim);
    }
    ok(&hosts[victim], &["ip", "link", "set", "eth0", "down"]);
    wait_until("the lost host's pod to leave the service", Duration::from_secs(60), || {
        (0..20).all(|_| get_from(&client_ns, &url).is_ok_and(|b| b != victim_pod))
    });
    // It comes back.
    ok(&hosts[victim], &["ip", "link", "set", "eth0", "up"]);
    start_kubelet(&mut lab, victim, &kc);
    start_proxy(&mut lab, victim);
    wait_until("three ready replicas again", Duration::from_secs(90), || pods(&lab).len() == 3);
    // ... and its pod answers through the cluster IP again. (Until a host's first packet
    // after its return, the others' neighbour entries for it may still say it is
    // unreachable: that first packet may fail, which is the link's doing, not the
    // rules'. Only then does the load below start.)
    wait_until("the returned host's pod to answer again", Duration::from_secs(60), || {
        (0..30).any(|_| get_from(&client_ns, &url).is_ok_and(|b| b == victim_pod))
    });

    // Deleting every pod leaves no addresses, namespaces or pod veths behind.
    lab.kubectl(&["delete", "deployment", "web", "--wait=true"]);
    lab.kubectl(&["delete", "pod", "client", "docker-web", "--wait=true"]);
    lab.kubectl(&["delete", "-n", "kube-system", "deployment", "coredns", "--wait=true"]);
    wait_until("every pod gone", Duration::from_secs(60), || {
        lab.json(&["get", "pods", "-A"])["items"].as_array().is_some_and(Vec::is_empty)
    });
    for (i, host) in hosts.iter().enumerate() {
        let root = lab.dir.path().join(host);
        wait_until(&format!("{host} to release its pods' network"), Duration::from_secs(30), || {
            let leases = glob(&root.join("network").join("ipam"), &["*", "*"])
                .into_iter()
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("10.244.")))
                .count();
            let namespaces = std::fs::read_dir(root.join("process").join("netns")).map_or(0, |d| d.count());
            let veths = ok(host, &["ip", "-o", "link", "show", "type", "veth"]).lines().count();
            // eth0 (the host's own link) is the one veth left.
            leases == 0 && namespaces == 0 && veths == 1
        });
        let routes = ok(host, &["ip", "-4", "route", "show", "proto", "147"]);
        assert_eq!(routes.lines().count(), 3, "h{} routes to the three other hosts' pods:\n{routes}", i + 1);
    }
}
