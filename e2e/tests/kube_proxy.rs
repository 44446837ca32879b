//! kube-proxy against a real kernel, in network namespaces this test makes and removes: a
//! "node" namespace (the apiserver on its loopback, kube-proxy, a bridge for the pods), three
//! "pod" namespaces serving HTTP on 10.244.0.2-4, and a "client" namespace on another link
//! (192.168.77.0/24) playing a machine outside the cluster. Traffic goes only to addresses
//! inside these namespaces.
//!
//! Shown: a ClusterIP spreads 300 requests over its three endpoints (each 20-47%); a node
//! port answers an outside client; a service without endpoints is refused at once; an
//! endpoint that leaves its slice stops getting traffic; a service created later answers
//! (both changes written as partial syncs); the rules are one nft table.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::Process;

/// Runs a command inside a namespace.
fn in_ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip").args(["netns", "exec", ns]).args(args).stdin(Stdio::null()).output().expect("ip netns exec")
}

fn ok(ns: &str, args: &[&str]) {
    let out = in_ns(ns, args);
    assert!(out.status.success(), "{args:?} in {ns}: {}", String::from_utf8_lossy(&out.stderr));
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The namespaces, removed (with everything in them: links, routes, rules) when dropped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

fn can_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let tools = ["ip", "nft", "busybox", "kubectl"].iter().all(|t| {
        Command::new(t).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
            || Command::new(t).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    });
    if root && tools {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but this test cannot run (root: {root}; ip, nft, busybox and kubectl present: {tools})"
    );
    eprintln!("skipping: needs root, ip, nft, busybox and kubectl");
    false
}

/// GETs `url` from inside `ns` with busybox wget; the body, or the error.
fn get(ns: &str, url: &str) -> Result<String, String> {
    // busybox 1.35's `wget -T` crashes: the time limit is timeout(1)'s.
    let out = in_ns(ns, &["timeout", "5", "busybox", "wget", "-q", "-O", "-", url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kubectl(node: &str, server: &str, manifest: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", node, "kubectl", "--server", server, "apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
}

fn slice(addresses: &[&str]) -> String {
    let endpoints: Vec<String> = addresses
        .iter()
        .map(|a| format!("- addresses: [\"{a}\"]\n  conditions: {{ready: true}}\n  nodeName: node1"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n- {{name: http, port: 8080, protocol: TCP}}\nendpoints:\n{}\n",
        endpoints.join("\n")
    )
}

const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: NodePort\n  clusterIP: 10.96.0.50\n  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: nobody, namespace: default}\nspec:\n  clusterIP: 10.96.0.51\n  ports: [{name: http, port: 80}]\n";

#[test]
fn cluster_ips_and_node_ports_reach_pods_through_nftables() {
    if !can_run() {
        return;
    }
    let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let node = format!("kp-node-{id}");
    let client = format!("kp-client-{id}");
    let pods: Vec<String> = (1..=3).map(|i| format!("kp-pod{i}-{id}")).collect();
    let mut all = vec![node.clone(), client.clone()];
    all.extend(pods.iter().cloned());
    for ns in &all {
        ip(&["netns", "add", ns]);
    }
    let _namespaces = Namespaces(all.clone());
    for ns in &all {
        ok(ns, &["ip", "link", "set", "lo", "up"]);
    }
    // The node: a bridge for its pods, a link to the outside client, forwarding on.
    ok(&node, &["ip", "link", "add", "cbr0", "type", "bridge"]);
    ok(&node, &["ip", "addr", "add", "10.244.0.1/24", "dev", "cbr0"]);
    ok(&node, &["ip", "link", "set", "cbr0", "up"]);
    ok(&node, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    for (i, pod) in pods.iter().enumerate() {
        let (outer, inner) = (format!("veth{i}"), format!("eth{i}"));
        ok(&node, &["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", pod]);
        ok(&node, &["ip", "link", "set", &outer, "master", "cbr0", "up"]);
        let address = format!("10.244.0.{}/24", i + 2);
        ok(pod, &["ip", "addr", "add", &address, "dev", &inner]);
        ok(pod, &["ip", "link", "set", &inner, "up"]);
        ok(pod, &["ip", "route", "add", "default", "via", "10.244.0.1"]);
    }
    ok(&node, &["ip", "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", &client]);
    ok(&node, &["ip", "addr", "add", "192.168.77.1/24", "dev", "uplink"]);
    ok(&node, &["ip", "link", "set", "uplink", "up"]);
    ok(&client, &["ip", "addr", "add", "192.168.77.2/24", "dev", "eth0"]);
    ok(&client, &["ip", "link", "set", "eth0", "up"]);
    // As on a real node, the way out is a default route (cluster IPs are routed nowhere:
    // kube-proxy's DNAT decides where their packets go).
    ok(&node, &["ip", "route", "add", "default", "via", "192.168.77.2"]);

    // Each pod serves its own name.
    let dir = tempfile::tempdir().unwrap();
    let mut processes: Vec<Process> = Vec::new();
    let ip_path = Path::new("/usr/sbin/ip");
    let ip_path = if ip_path.exists() { ip_path.to_path_buf() } else { Path::new("/sbin/ip").to_path_buf() };
    for (i, pod) in pods.iter().enumerate() {
        let root = dir.path().join(format!("www{i}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), format!("pod{}\n", i + 1)).unwrap();
        let args: Vec<String> = ["netns", "exec", pod, "busybox", "httpd", "-f", "-p", "8080", "-h"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([root.display().to_string()])
            .collect();
        processes.push(Process::spawn_path(&ip_path, &args, &dir.path().join(format!("httpd{i}.log"))).unwrap());
    }

    // The apiserver on the node's loopback, and kube-proxy beside it.
    let server = "http://127.0.0.1:6443";
    let data = dir.path().join("data").display().to_string();
    let apiserver = e2e::binary("kube-apiserver").display().to_string();
    let args: Vec<String> =
        ["netns", "exec", &node, &apiserver, "--port", "6443", "--data-dir", &data, "--insecure-serving"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    processes.push(Process::spawn_path(&ip_path, &args, &dir.path().join("apiserver.log")).unwrap());
    wait_until("the apiserver", Duration::from_secs(30), || get(&node, "http://127.0.0.1:6443/readyz").is_ok());
    let proxy = e2e::binary("kube-proxy").display().to_string();
    let args: Vec<String> = [
        "netns",
        "exec",
        &node,
        &proxy,
        "--master",
        server,
        "--hostname-override",
        "node1",
        "--cluster-cidr",
        "10.244.0.0/16",
        "--min-sync-period",
        "100ms",
        "--metrics-bind-address",
        "127.0.0.1:10249",
        "--healthz-bind-address",
        "127.0.0.1:10256",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    processes.push(Process::spawn_path(&ip_path, &args, &dir.path().join("kube-proxy.log")).unwrap());

    kubectl(&node, server, SERVICES);
    kubectl(&node, server, &slice(&["10.244.0.2", "10.244.0.3", "10.244.0.4"]));

    // The cluster IP, from the node: spread over the three pods.
    wait_until("the cluster IP to answer", Duration::from_secs(20), || get(&node, "http://10.96.0.50/").is_ok());
    let mut answers: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let body = get(&node, "http://10.96.0.50/").unwrap_or_else(|e| panic!("a request failed: {e}"));
        *answers.entry(body).or_default() += 1;
    }
    assert_eq!(answers.len(), 3, "{answers:?}");
    for (pod, n) in &answers {
        assert!((60..=141).contains(n), "{pod} answered {n} of 300 (20-47% each): {answers:?}");
    }

    // The node port, from a machine outside the cluster.
    let body = get(&client, "http://192.168.77.1:30080/").unwrap();
    assert!(body.starts_with("pod"), "{body}");

    // A service with no endpoints is refused at once, not left to time out (once kube-proxy
    // has seen it: the two watches are separate streams).
    wait_until("the empty service to be refused", Duration::from_secs(20), || {
        get(&node, "http://10.96.0.51/").is_err_and(|e| e.to_lowercase().contains("refused"))
    });
    let started = Instant::now();
    let refused = get(&node, "http://10.96.0.51/").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}: {refused}", started.elapsed());
    assert!(refused.to_lowercase().contains("refused"), "{refused}");

    // An endpoint that leaves the slice gets no more traffic.
    kubectl(&node, server, &slice(&["10.244.0.2", "10.244.0.3"]));
    wait_until("pod3 to leave", Duration::from_secs(20), || {
        (0..30).all(|_| get(&node, "http://10.96.0.50/").is_ok_and(|b| b != "pod3"))
    });

    // A service created later is added to the table in place (a partial sync).
    kubectl(
        &node,
        server,
        "apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: default}\nspec:\n  clusterIP: 10.96.0.52\n  ports: [{name: http, port: 8000, targetPort: 8080}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: late-1\n  namespace: default\n  labels: {kubernetes.io/service-name: late}\naddressType: IPv4\nports:\n- {name: http, port: 8080, protocol: TCP}\nendpoints:\n- addresses: [\"10.244.0.4\"]\n  conditions: {ready: true}\n",
    );
    wait_until("the late service to answer", Duration::from_secs(20), || {
        get(&node, "http://10.96.0.52:8000/").is_ok_and(|b| b == "pod3")
    });

    // Everything is in one table, and the metrics say it was written.
    let table = in_ns(&node, &["nft", "list", "tables"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("table ip kube-proxy"));
    let metrics = get(&node, "http://127.0.0.1:10249/metrics").unwrap();
    assert!(metrics.contains("kubeproxy_sync_proxy_rules_duration_seconds_count"), "{metrics}");
    assert!(metrics.contains("kubeproxy_network_programming_duration_seconds_count"));
    let health: serde_json::Value =
        serde_json::from_str(&get(&node, "http://127.0.0.1:10256/healthz").unwrap()).unwrap();
    assert!(health["lastUpdated"].as_str().is_some_and(|t| !t.is_empty()), "{health}");
    drop(processes);
}
