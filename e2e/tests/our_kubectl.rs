//! Our kubectl against the real binaries (apiserver, scheduler, controller-manager and a
//! simulated kubelet, as processes): the tutorial's `run --replicas=1000`, `scale
//! --replicas=2000`, `rolling-update` and `rolling-update --rollback` (mid-rollout and
//! after), and the everyday commands, with their output compared side by side with the
//! stock kubectl 1.32 against the same apiserver.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{Cluster, Kubectl, client, pod_ready};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// The images of the live pods of `run=web`, with how many Ready.
async fn images(pods: &Api<Pod>) -> (std::collections::BTreeMap<String, usize>, usize) {
    let list = pods.list(&ListParams::default().labels("run=web")).await.unwrap().items;
    let live: Vec<&Pod> = list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let mut by_image = std::collections::BTreeMap::new();
    for p in &live {
        let image = p.spec.as_ref().and_then(|s| s.containers[0].image.clone()).unwrap_or_default();
        *by_image.entry(image).or_insert(0) += 1;
    }
    (by_image, live.iter().filter(|p| pod_ready(p)).count())
}

async fn settle(pods: &Api<Pod>, image: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (by_image, ready) = images(pods).await;
        if by_image.len() == 1 && by_image.get(image) == Some(&n) && ready == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "want {n} Ready pods of {image}, have {by_image:?} ({ready} Ready)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_with_a_thousand_replicas() {
    let c = Cluster::start(100).await;
    c.wait_nodes_ready(100, Duration::from_secs(60)).await.unwrap();
    let k = Kubectl::ours(&c.kubeconfig());
    let pods: Api<Pod> = Api::namespaced(client(&c.url).unwrap(), "default");
    let deploys: Api<Deployment> = Api::namespaced(client(&c.url).unwrap(), "default");

    let out = k.ok(&["run", "web", "--image=web:1", "--replicas=1000", "--wait"]);
    assert!(out.starts_with("deployment.apps/web created\n"), "{out}");
    assert!(out.trim_end().ends_with("deployment \"web\" successfully rolled out"), "{out}");
    let d = deploys.get("web").await.unwrap();
    assert_eq!(d.metadata.labels.unwrap().get("run").map(String::as_str), Some("web"));
    settle(&pods, "web:1", 1000).await;

    let out = k.ok(&["scale", "--replicas=2000", "web", "--wait"]);
    assert!(out.starts_with("deployment.apps/web scaled\n"), "{out}");
    settle(&pods, "web:1", 2000).await;

    let out = k.ok(&["rolling-update", "web", "--image=web:2"]);
    assert!(out.contains("deployment.apps/web rolling out to web:2"), "{out}");
    assert!(out.trim_end().ends_with("deployment \"web\" successfully rolled out"), "{out}");
    settle(&pods, "web:2", 2000).await;

    // Rollback after the update finished: back to web:1.
    let out = k.ok(&["rolling-update", "web", "--rollback"]);
    assert!(out.starts_with("deployment.apps/web rolled back\n"), "{out}");
    settle(&pods, "web:1", 2000).await;

    // Rollback in the middle of an update: the update to web:3 stops and web:1 comes back.
    let mut update = k
        .command()
        .args(["rolling-update", "web", "--image=web:3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (by_image, _) = images(&pods).await;
        if by_image.get("web:3").is_some_and(|n| *n > 0) && by_image.get("web:1").is_some_and(|n| *n > 0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the update to web:3 started: {by_image:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = k.ok(&["rolling-update", "web", "--rollback"]);
    assert!(out.starts_with("deployment.apps/web rolled back\n"), "{out}");
    settle(&pods, "web:1", 2000).await;
    let _ = update.kill();
    let _ = update.wait();

    let history = k.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.starts_with("deployment.apps/web\nREVISION  CHANGE-CAUSE\n"), "{history}");
    assert!(history.contains("kubectl rolling-update web --image=web:2"), "{history}");
    let status = k.ok(&["rollout", "status", "deploy/web"]);
    assert_eq!(status, "deployment \"web\" successfully rolled out\n");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const MANIFEST: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  colour: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: api:1
        ports: [{containerPort: 80}]
";

/// Replaces AGE-like cells (`5s`, `2m10s`) so outputs taken a moment apart compare.
fn without_ages(text: &str) -> String {
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .map(|w| {
                    let age = w.len() <= 6
                        && w.chars().next().is_some_and(|c| c.is_ascii_digit())
                        && w.ends_with(['s', 'm', 'h', 'd'])
                        && w.chars().all(|c| c.is_ascii_digit() || "smhd".contains(c));
                    if age { "AGE" } else { w }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_commands_match_stock_kubectl() {
    let c = Cluster::start(3).await;
    c.wait_nodes_ready(3, Duration::from_secs(60)).await.unwrap();
    let k = Kubectl::ours(&c.kubeconfig());
    let dir = tempfile::tempdir().unwrap();

    // apply of a multi-document file, twice with a change.
    let manifest = write(dir.path(), "shop.yaml", MANIFEST);
    let out = k.ok(&["apply", "-f", &manifest]);
    assert_eq!(out, "namespace/shop created\nconfigmap/settings created\ndeployment.apps/api created\n");
    let changed = write(
        dir.path(),
        "shop2.yaml",
        &MANIFEST.replace("image: api:1", "image: api:2").replace("colour: blue", "colour: red"),
    );
    let out = k.ok(&["apply", "-f", &changed]);
    assert_eq!(out, "namespace/shop unchanged\nconfigmap/settings configured\ndeployment.apps/api configured\n");
    assert_eq!(k.ok(&["get", "cm", "settings", "-n", "shop", "-o", "jsonpath={.data.colour}"]), "red");
    assert_eq!(
        k.ok(&["get", "deploy", "api", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]),
        "api:2"
    );
    k.ok(&["rollout", "status", "deployment/api", "-n", "shop", "--timeout=60s"]);
    let out = k.ok(&["apply", "--server-side", "-f", &changed]);
    assert!(out.contains("deployment.apps/api serverside-applied"), "{out}");

    // get in every format.
    let table = k.ok(&["get", "deploy", "-n", "shop"]);
    assert!(table.starts_with("NAME   READY   UP-TO-DATE   AVAILABLE   AGE\napi    2/2     2            2"), "{table}");
    let yaml = k.ok(&["get", "deploy", "api", "-n", "shop", "-o", "yaml"]);
    assert!(yaml.starts_with("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"), "{yaml}");
    assert!(!yaml.contains("managedFields"), "hidden as stock does");
    let json: serde_json::Value = serde_json::from_str(&k.ok(&["get", "pods", "-n", "shop", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["items"][0]["kind"], "Pod");
    let names = k.ok(&["get", "deploy,cm", "-n", "shop", "-o", "name"]);
    assert!(names.contains("deployment.apps/api\n") && names.contains("configmap/settings\n"), "{names}");
    let cols = k.ok(&[
        "get",
        "pods",
        "-n",
        "shop",
        "-l",
        "app=api",
        "-o",
        "custom-columns=NAME:.metadata.name,IMAGE:.spec.containers[0].image",
    ]);
    assert!(cols.starts_with("NAME") && cols.matches("api:2").count() == 2, "{cols}");
    let running = k.ok(&["get", "pods", "-A", "--field-selector", "status.phase=Running", "-o", "name"]);
    assert_eq!(running.lines().count(), 2, "{running}");

    // Side by side with stock kubectl: the same tables and the same errors.
    let stock = |args: &[&str]| {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&k.kubeconfig)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(args)
            .output()
            .expect("stock kubectl");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
        )
    };
    let stock_available = Command::new("kubectl").arg("version").arg("--client").output().is_ok();
    assert!(
        stock_available || !std::env::var("CI").is_ok_and(|v| v == "true"),
        "CI=true but kubectl (1.32) is not on PATH: the side-by-side comparison may not be skipped"
    );
    if !stock_available {
        eprintln!("skipping the side-by-side comparison with the stock kubectl: kubectl is not on PATH");
    }
    if stock_available {
        for args in [
            vec!["get", "nodes"],
            vec!["get", "deploy", "-n", "shop"],
            vec!["get", "pods", "-n", "shop", "-o", "wide"],
            vec!["get", "ns"],
            vec!["get", "cm", "-A"],
            vec!["get", "deploy,cm", "-n", "shop"],
            vec!["get", "pods", "-n", "shop", "--show-labels"],
            vec!["get", "deploy", "api", "-n", "shop", "-o", "jsonpath={.metadata.name} {.spec.replicas}"],
            vec!["api-resources"],
        ] {
            let ours = k.run(&args);
            let (theirs, _, _) = stock(&args);
            assert_eq!(without_ages(&String::from_utf8_lossy(&ours.stdout)), without_ages(&theirs), "kubectl {args:?}");
        }
        // expose: ours and stock build the same Service, and print the same tables of it.
        let exposed = |name: &str| {
            let flags = ["expose", "deploy", "api", "-n", "shop", "--port=80", "--target-port=8080", "--type=NodePort"];
            let mut args: Vec<String> = flags.iter().map(|a| (*a).to_owned()).collect();
            args.push(format!("--name={name}"));
            args
        };
        let ours = k.run(&exposed("api-ours").iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(String::from_utf8_lossy(&ours.stdout), "service/api-ours exposed\n", "{ours:?}");
        let (theirs, _, _) = stock(&exposed("api-stock").iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(theirs, "service/api-stock exposed\n");
        let spec_of = |name: &str| {
            let (json, _, _) = stock(&["get", "svc", name, "-n", "shop", "-o", "json"]);
            let mut svc: serde_json::Value = serde_json::from_str(&json).expect("service json");
            for p in svc["spec"]["ports"].as_array_mut().into_iter().flatten() {
                p.as_object_mut().map(|p| p.remove("nodePort"));
            }
            let spec = &svc["spec"];
            (spec["type"].clone(), spec["selector"].clone(), spec["ports"].clone(), svc["metadata"]["labels"].clone())
        };
        assert_eq!(spec_of("api-ours"), spec_of("api-stock"));
        for args in [vec!["get", "svc", "api-ours", "-n", "shop"], vec!["get", "ep", "api-ours", "-n", "shop"]] {
            let ours = k.run(&args);
            let (theirs, _, _) = stock(&args);
            assert_eq!(without_ages(&String::from_utf8_lossy(&ours.stdout)), without_ages(&theirs), "kubectl {args:?}");
        }
        for args in
            [vec!["get", "deployment", "nope", "-n", "shop"], vec!["get", "gizmos"], vec!["delete", "pod", "nope"]]
        {
            let ours = k.run(&args);
            let (_, theirs, code) = stock(&args);
            assert_eq!(String::from_utf8_lossy(&ours.stderr), theirs, "kubectl {args:?}");
            assert_eq!(ours.status.code(), code, "exit code of kubectl {args:?}");
        }
        let (theirs, _, _) = stock(&["get", "pods", "-n", "empty"]);
        let ours = k.run(&["get", "pods", "-n", "empty"]);
        assert_eq!(String::from_utf8_lossy(&ours.stdout), theirs);
        assert_eq!(String::from_utf8_lossy(&ours.stderr), "No resources found in empty namespace.\n");
    }

    // describe, with events.
    let described = k.ok(&["describe", "deployment", "api", "-n", "shop"]);
    assert!(described.starts_with("Name:                   api\nNamespace:              shop\n"), "{described}");
    assert!(
        described.contains("Replicas:               2 desired | 2 updated | 2 total | 2 available | 0 unavailable"),
        "{described}"
    );
    assert!(described.contains("ScalingReplicaSet"), "events are shown: {described}");

    // label, annotate, patch, edit.
    assert_eq!(k.ok(&["label", "deploy", "api", "-n", "shop", "tier=back"]), "deployment.apps/api labeled\n");
    let clash = k.fails(&["label", "deploy", "api", "-n", "shop", "tier=front"]);
    assert_eq!(clash, "error: 'tier' already has a value (back), and --overwrite is false\n");
    k.ok(&["annotate", "cm", "settings", "-n", "shop", "note=hi"]);
    k.ok(&["patch", "cm", "settings", "-n", "shop", "--type", "merge", "-p", r#"{"data":{"size":"L"}}"#]);
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/size: L/size: XL/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = k.command().args(["edit", "cm", "settings", "-n", "shop"]).env("KUBE_EDITOR", &editor).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(k.ok(&["get", "cm", "settings", "-n", "shop", "-o", "jsonpath={.data.size}"]), "XL");

    // create generators, scale with a precondition, rollout undo.
    k.ok(&["create", "deployment", "web", "-n", "shop", "--image=web:1", "--replicas=1"]);
    k.ok(&["create", "configmap", "c2", "-n", "shop", "--from-literal=a=1"]);
    k.ok(&["create", "secret", "generic", "s2", "-n", "shop", "--from-literal=user=admin"]);
    assert_eq!(k.ok(&["get", "secret", "s2", "-n", "shop", "-o", "jsonpath={.data.user}"]), "YWRtaW4=");
    let wrong = k.fails(&["scale", "deploy/web", "-n", "shop", "--replicas=3", "--current-replicas=2"]);
    assert_eq!(wrong, "error: Expected replicas to be 2, was 1\n");
    assert_eq!(
        k.ok(&["scale", "deploy/web", "-n", "shop", "--replicas=3", "--current-replicas=1"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(k.ok(&["rollout", "undo", "deployment/api", "-n", "shop"]), "deployment.apps/api rolled back\n");
    k.ok(&["rollout", "status", "deployment/api", "-n", "shop", "--timeout=60s"]);
    assert_eq!(
        k.ok(&["get", "deploy", "api", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]),
        "api:1"
    );

    // rollout pause, resume, restart.
    assert_eq!(k.ok(&["rollout", "pause", "deployment/web", "-n", "shop"]), "deployment.apps/web paused\n");
    assert_eq!(k.ok(&["rollout", "resume", "deployment/web", "-n", "shop"]), "deployment.apps/web resumed\n");
    assert_eq!(k.ok(&["rollout", "restart", "deployment/web", "-n", "shop"]), "deployment.apps/web restarted\n");
    k.ok(&["rollout", "status", "deployment/web", "-n", "shop", "--timeout=60s"]);

    // get -w prints the table, then a row per change.
    let mut watch =
        k.command().args(["get", "deploy", "web", "-n", "shop", "-w"]).stdout(Stdio::piped()).spawn().unwrap();
    let lines = e2e::Lines::of(&mut watch);
    assert!(lines.until(Duration::from_secs(20), |l| l.starts_with("web    3/3")).await, "{}", lines.text());
    k.ok(&["scale", "deploy/web", "-n", "shop", "--replicas=1"]);
    // A row for the change (the deployment scaled to 1).
    let scaled = lines.until(Duration::from_secs(20), |l| l.starts_with("web ") && l.contains("/1 ")).await;
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = lines.text();
    assert!(scaled, "changes were printed: {seen}");
    assert!(seen.starts_with("NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    3/3"), "{seen}");

    // logs find a deployment's pod and go through the apiserver (the simulated runtime's
    // containers print nothing).
    assert_eq!(k.ok(&["logs", "deploy/api", "-n", "shop", "--tail=5"]), "");

    // Nodes: cordon, drain, uncordon.
    assert_eq!(k.ok(&["cordon", "sim-0"]), "node/sim-0 cordoned\n");
    let nodes = k.ok(&["get", "nodes"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    let drained = k.ok(&["drain", "sim-1", "--ignore-daemonsets", "--timeout=60s"]);
    assert!(drained.trim_end().ends_with("node/sim-1 drained"), "{drained}");
    let on_node = k.ok(&["get", "pods", "-A", "--field-selector", "spec.nodeName=sim-1", "-o", "name"]);
    assert_eq!(on_node, "", "drained");
    assert_eq!(k.ok(&["uncordon", "sim-0", "sim-1"]), "node/sim-0 uncordoned\nnode/sim-1 uncordoned\n");

    // Bad input: a clear message and exit 1.
    let missing = k.fails(&["apply", "-f", "/no/such/file.yaml"]);
    assert_eq!(missing, "error: the path \"/no/such/file.yaml\" does not exist\n");
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: [\n",
    );
    let invalid = k.fails(&["apply", "-f", &bad]);
    assert!(invalid.starts_with(&format!("error: error parsing {bad}: document 2, line 7")), "{invalid}");
    let unknown = write(dir.path(), "unknown.yaml", "apiVersion: v1\nkind: Gizmo\nmetadata: {name: g}\n");
    let err = k.fails(&["apply", "-f", &unknown]);
    assert!(err.contains("resource mapping not found for kind \"Gizmo\" in version \"v1\""), "{err}");
    let flag = k.fails(&["get", "pods", "--colour"]);
    assert!(flag.contains("--colour"), "{flag}");
    let not_found = k.fails(&["scale", "--replicas=2", "nope"]);
    assert_eq!(not_found, "Error from server (NotFound): deployments.apps \"nope\" not found\n");

    // Informational commands.
    assert!(k.ok(&["version"]).contains("Server Version: v1."));
    assert!(k.ok(&["cluster-info"]).starts_with("Kubernetes control plane is running at https://127.0.0.1:"));
    assert!(k.ok(&["config", "get-contexts"]).starts_with("CURRENT"));
    // A second context with a namespace, in a copy of the kubeconfig.
    let text = std::fs::read_to_string(&k.kubeconfig).unwrap().replace(
        "contexts:\n",
        "contexts:\n- context:\n    cluster: kubernetes\n    user: kubernetes-admin\n    namespace: shop\n  name: other\n",
    );
    let other = Kubectl::ours(&write(dir.path(), "kc2", &text));
    assert_eq!(other.ok(&["config", "use-context", "other"]), "Switched to context \"other\".\n");
    assert_eq!(other.ok(&["config", "current-context"]), "other\n");
    assert!(other.ok(&["get", "cm", "-o", "name"]).contains("configmap/settings"), "the context's namespace is used");
    assert!(other.ok(&["config", "view", "--minify"]).contains("namespace: shop"));
    assert!(k.ok(&["completion", "bash"]).contains("_kubectl"));
    assert!(k.ok(&["get", "--raw", "/version"]).contains("gitVersion"));

    // delete -f waits until the objects are gone.
    let out = k.ok(&["delete", "-f", &changed, "--ignore-not-found"]);
    assert!(out.starts_with("namespace \"shop\" deleted\n"), "{out}");
    assert!(k.run(&["get", "ns", "shop"]).status.code() == Some(1));
}
