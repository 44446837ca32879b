//! The stock kubectl (1.32) against a fresh apiserver process: discovery, create -f, get
//! (-o yaml/json/name/jsonpath), get -w, apply (client- and server-side), scale, label,
//! patch, edit, explain, the protobuf generators, delete -f, and errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::{apiserver_process, kubeconfig};

struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Runs and expects success with nothing on stderr (no warnings about discovery,
    /// OpenAPI or validation).
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {args:?} failed: {stderr}");
        assert!(stderr.trim().is_empty(), "kubectl {args:?} printed to stderr: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn kubectl_available() -> bool {
    let found = Command::new("kubectl").arg("version").arg("--client").stdout(Stdio::null()).status().is_ok();
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but kubectl is not on PATH");
        }
        eprintln!("skipping: kubectl is not on PATH");
    }
    found
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  colour: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:1
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: solo
  namespace: demo
  labels: {app: solo}
spec:
  containers:
  - name: c
    image: busybox:1
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_kubectl_works_end_to_end() {
    if !kubectl_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let args = vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()];
    let (_apiserver, url) = apiserver_process(&args, &dir.path().join("apiserver.log")).await.expect("apiserver");
    let k = Kubectl { kubeconfig: dir.path().join("kubeconfig"), cache: dir.path().join("cache") };
    kubeconfig(&url, &k.kubeconfig).expect("kubeconfig");

    let resources = k.ok(&["api-resources"]);
    for needle in ["deployments", "deploy", "apps/v1", "pods", "po", "leases", "coordination.k8s.io/v1"] {
        assert!(resources.contains(needle), "api-resources lacks {needle}:\n{resources}");
    }
    let manifest = write(dir.path(), "app.yaml", MANIFEST);
    let created = k.ok(&["create", "-f", &manifest]);
    assert!(created.contains("deployment.apps/web created"), "{created}");
    assert!(created.contains("namespace/demo created"), "{created}");

    // Tables with upstream's columns.
    let table = k.ok(&["get", "pods", "-n", "demo"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{table}");
    assert!(table.contains("solo") && table.contains("0/1") && table.contains("Pending"), "{table}");
    let deploys = k.ok(&["get", "deploy", "-n", "demo"]);
    assert!(deploys.starts_with("NAME") && deploys.contains("UP-TO-DATE") && deploys.contains("0/2"), "{deploys}");
    let wide = k.ok(&["get", "pods", "-n", "demo", "-o", "wide"]);
    assert!(wide.lines().next().unwrap_or_default().contains("NOMINATED NODE"), "{wide}");

    let names = k.ok(&["get", "deployments,pods,configmaps", "-n", "demo", "-o", "name"]);
    for n in ["deployment.apps/web", "pod/solo", "configmap/settings"] {
        assert!(names.contains(n), "{names}");
    }
    let yaml = k.ok(&["get", "deployment", "web", "-n", "demo", "-o", "yaml"]);
    assert!(yaml.contains("replicas: 2") && yaml.contains("maxSurge: 25%"), "{yaml}");
    let json = k.ok(&["get", "pod", "solo", "-n", "demo", "-o", "json"]);
    let pod: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    let image =
        k.ok(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image, "web:1");

    // get -w sees a pod created after it starts.
    let mut watcher = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(&k.cache)
        .args(["get", "pods", "-n", "demo", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch");
    // Wait for what the watch prints, not for a guessed time.
    let lines = e2e::Lines::of(&mut watcher);
    assert!(lines.until(Duration::from_secs(20), |l| l == "pod/solo").await, "get -w listed: {}", lines.text());
    k.ok(&["run", "late", "-n", "demo", "--image", "busybox:1", "--restart", "Never"]);
    let late = lines.until(Duration::from_secs(20), |l| l == "pod/late").await;
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(late, "get -w printed the new pod: {}", lines.text());

    // apply twice: the second changes the image, an env var and a port (strategic merge).
    let api_manifest = MANIFEST
        .split("---")
        .nth(2)
        .expect("deployment document")
        .replace("name: web\n  namespace", "name: api\n  namespace");
    let applied = write(dir.path(), "applied.yaml", &api_manifest);
    let out = k.ok(&["apply", "-f", &applied]);
    assert!(out.contains("deployment.apps/api created"), "{out}");
    let changed = api_manifest
        .replace("image: web:1", "image: web:2\n        env: [{name: MODE, value: fast}]")
        .replace("containerPort: 80", "containerPort: 8080");
    let applied2 = write(dir.path(), "applied2.yaml", &changed);
    let out = k.ok(&["apply", "-f", &applied2]);
    assert!(out.contains("deployment.apps/api configured"), "{out}");
    let api = k.ok(&["get", "deploy", "api", "-n", "demo", "-o", "json"]);
    let api: serde_json::Value = serde_json::from_str(&api).expect("json");
    let c = &api["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "web:2");
    assert_eq!(c["env"][0]["value"], "fast");
    assert_eq!(c["ports"].as_array().map(Vec::len), Some(1), "the old port is gone: {c}");
    assert_eq!(c["ports"][0]["containerPort"], 8080);

    // Server-side apply of the same file takes the fields over from client-side apply.
    let out = k.ok(&["apply", "--server-side", "-f", &applied2]);
    assert!(out.contains("deployment.apps/api serverside-applied"), "{out}");
    let managers = k.ok(&[
        "get",
        "deploy",
        "api",
        "-n",
        "demo",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
    ]);
    assert!(managers.contains("kubectl/Apply"), "{managers}");
    // Another manager changing an applied field makes the next apply a conflict...
    k.ok(&["patch", "deploy", "api", "-n", "demo", "--type", "merge", "-p", r#"{"spec":{"replicas":4}}"#]);
    let conflict = k.run(&["apply", "--server-side", "-f", &applied2]);
    assert!(!conflict.status.success());
    let stderr = String::from_utf8_lossy(&conflict.stderr);
    // An Update manager is named with its API version and the time of its change
    // (printManager in the apiserver's fieldmanager/internal/conflict.go).
    assert!(
        stderr.contains(r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using apps/v1 at "#)
            && stderr.contains("Z: .spec.replicas"),
        "{stderr}"
    );
    // ... until forced.
    k.ok(&["apply", "--server-side", "--force-conflicts", "-f", &applied2]);
    assert_eq!(k.ok(&["get", "deploy", "api", "-n", "demo", "-o", "jsonpath={.spec.replicas}"]), "2");
    // Server-side apply creates, and removes what it no longer applies.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: demo}\ndata: {a: '1', b: '2'}\n";
    let out = k.ok(&["apply", "--server-side", "-f", &write(dir.path(), "ssa.yaml", cm)]);
    assert!(out.contains("configmap/ssa serverside-applied"), "{out}");
    let cm = cm.replace(", b: '2'", "");
    k.ok(&["apply", "--server-side", "-f", &write(dir.path(), "ssa.yaml", &cm)]);
    assert_eq!(k.ok(&["get", "cm", "ssa", "-n", "demo", "-o", "jsonpath={.data}"]), r#"{"a":"1"}"#);

    k.ok(&["scale", "deployment/web", "-n", "demo", "--replicas=5"]);
    assert_eq!(k.ok(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.replicas}"]), "5");
    k.ok(&["label", "pod", "solo", "-n", "demo", "tier=front"]);
    k.ok(&["annotate", "pod", "solo", "-n", "demo", "note=hi"]);
    k.ok(&["patch", "configmap", "settings", "-n", "demo", "--type", "merge", "-p", r#"{"data":{"colour":"red"}}"#]);
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "demo",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    assert_eq!(k.ok(&["get", "cm", "settings", "-n", "demo", "-o", "jsonpath={.data.colour}"]), "red");
    assert_eq!(k.ok(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.replicas}"]), "3");

    // Errors come back in upstream's words, with a non-zero exit.
    let missing = k.run(&["get", "deployment", "nope", "-n", "demo"]);
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).trim(),
        r#"Error from server (NotFound): deployments.apps "nope" not found"#
    );
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c, image: b, colour: red}]}\n",
    );
    let strict = k.run(&["create", "-f", &bad]);
    assert!(!strict.status.success(), "kubectl leaves validation to the server, which rejects unknown fields");
    assert!(
        String::from_utf8_lossy(&strict.stderr).contains("unknown field"),
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );

    k.ok(&["delete", "-f", &applied2]);
    // The namespace comes first in the file, and deleting it deletes its content at once, so
    // the later documents may already be gone (as on upstream Kubernetes).
    // edit: GET, the editor changes the YAML, a strategic merge PATCH.
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/colour: red/colour: green/' \"$1\"\n").expect("editor");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .arg("--cache-dir")
        .arg(&k.cache)
        .args(["edit", "configmap", "settings", "-n", "demo"])
        .env("KUBE_EDITOR", &editor)
        .output()
        .expect("kubectl edit");
    assert!(out.status.success(), "kubectl edit: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(k.ok(&["get", "cm", "settings", "-n", "demo", "-o", "jsonpath={.data.colour}"]), "green");

    // explain reads the OpenAPI v3 schemas.
    let explain = k.ok(&["explain", "deployment.spec.strategy"]);
    assert!(explain.contains("rollingUpdate") && explain.contains("KIND:       Deployment"), "{explain}");
    let explain = k.ok(&["explain", "pods.spec.containers.ports"]);
    assert!(explain.contains("containerPort"), "{explain}");

    // The `kubectl create <kind>` generators send protobuf bodies.
    k.ok(&["create", "namespace", "proto"]);
    k.ok(&["create", "deployment", "pd", "-n", "proto", "--image=nginx:1", "--replicas=3", "--port=80"]);
    k.ok(&["create", "deployment", "zero", "-n", "proto", "--image=nginx:1", "--replicas=0"]);
    k.ok(&["create", "configmap", "pc", "-n", "proto", "--from-literal=a=1", "--from-literal=b=two"]);
    k.ok(&["create", "secret", "generic", "ps", "-n", "proto", "--from-literal=user=admin"]);
    k.ok(&["create", "service", "clusterip", "psvc", "-n", "proto", "--tcp=80:8080"]);
    let pd: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "deploy", "pd", "-n", "proto", "-o", "json"])).expect("json");
    assert_eq!(pd["spec"]["replicas"], 3);
    assert_eq!(pd["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 80);
    assert!(pd["spec"]["template"]["metadata"]["creationTimestamp"].is_null());
    assert_eq!(
        k.ok(&["get", "deploy", "zero", "-n", "proto", "-o", "jsonpath={.spec.replicas}"]),
        "0",
        "an explicit 0 survives"
    );
    assert_eq!(k.ok(&["get", "cm", "pc", "-n", "proto", "-o", "jsonpath={.data.b}"]), "two");
    assert_eq!(k.ok(&["get", "secret", "ps", "-n", "proto", "-o", "jsonpath={.data.user}"]), "YWRtaW4=");
    assert_eq!(k.ok(&["get", "svc", "psvc", "-n", "proto", "-o", "jsonpath={.spec.ports[0].targetPort}"]), "8080");

    let deleted = k.ok(&["delete", "-f", &manifest, "--ignore-not-found"]);
    assert!(deleted.contains("namespace \"demo\" deleted"), "{deleted}");
    let gone = k.run(&["get", "namespace", "demo"]);
    assert!(!gone.status.success(), "kubectl delete waits until the namespace is gone");
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec: {type: string, description: "When the job runs, in cron's syntax."}
              image: {type: string}
              replicas: {type: integer, minimum: 1, default: 1}
          status:
            type: object
            properties:
              replicas: {type: integer}
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
"#;

const CRONTAB: &str = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: nightly
spec:
  cronSpec: "0 3 * * *"
  image: backup:1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_kubectl_serves_custom_resources() {
    if !kubectl_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let args = vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()];
    let (apiserver, url) = apiserver_process(&args, &dir.path().join("apiserver.log")).await.expect("apiserver");
    let k = Kubectl { kubeconfig: dir.path().join("kubeconfig"), cache: dir.path().join("cache") };
    kubeconfig(&url, &k.kubeconfig).expect("kubeconfig");

    let crd = write(dir.path(), "crd.yaml", CRD);
    assert!(k.ok(&["apply", "-f", &crd]).contains("crontabs.stable.example.com created"));
    k.ok(&["wait", "--for=condition=Established", "crd/crontabs.stable.example.com", "--timeout=10s"]);
    let resources = k.ok(&["api-resources", "--api-group=stable.example.com"]);
    assert!(resources.contains("crontabs") && resources.contains(" ct "), "{resources}");

    // apply validates against the served schema (fieldValidation=Strict): unknown fields are
    // refused, known ones stored with the schema's defaults.
    let typo = write(dir.path(), "typo.yaml", &CRONTAB.replace("image:", "imagee:"));
    let refused = k.run(&["apply", "-f", &typo]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("unknown field \"spec.imagee\""), "{stderr}");
    let crontab = write(dir.path(), "crontab.yaml", CRONTAB);
    assert!(k.ok(&["apply", "-f", &crontab]).contains("crontab.stable.example.com/nightly created"));
    let table = k.ok(&["get", "ct"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    assert!(table.contains("nightly") && table.contains("0 3 * * *") && table.contains(" 1 "), "{table}");

    // explain reads the schema from /openapi/v3; scale works through the CRD's paths.
    let explain = k.ok(&["explain", "crontab.spec.cronSpec"]);
    assert!(explain.contains("When the job runs, in cron's syntax."), "{explain}");
    assert!(k.ok(&["scale", "ct", "nightly", "--replicas=3"]).contains("scaled"));
    assert_eq!(k.ok(&["get", "ct", "nightly", "-o", "jsonpath={.spec.replicas}"]), "3");
    let invalid = k.run(&["patch", "ct", "nightly", "--type=merge", "-p", r#"{"spec":{"replicas":0}}"#]);
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(
        stderr.contains("spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"),
        "{stderr}"
    );
    k.ok(&["patch", "ct", "nightly", "--subresource=status", "--type=merge", "-p", r#"{"status":{"replicas":3}}"#]);
    assert_eq!(k.ok(&["get", "ct", "nightly", "-o", "jsonpath={.status.replicas}"]), "3");

    // A restarted apiserver serves what it served before.
    drop(apiserver);
    let (_apiserver, url) = apiserver_process(&args, &dir.path().join("apiserver-2.log")).await.expect("restart");
    kubeconfig(&url, &k.kubeconfig).expect("kubeconfig");
    assert_eq!(k.ok(&["get", "ct", "nightly", "-o", "jsonpath={.spec.image}"]), "backup:1");

    // Deleting the definition deletes its objects; kubectl waits until it is gone.
    assert!(k.ok(&["delete", "-f", &crd]).contains("deleted"));
    let gone = k.run(&["get", "--raw", "/apis/stable.example.com/v1/namespaces/default/crontabs"]);
    assert!(!gone.status.success(), "the resource is no longer served");
    assert!(k.ok(&["apply", "-f", &crd]).contains("created"));
    k.ok(&["wait", "--for=condition=Established", "crd/crontabs.stable.example.com", "--timeout=10s"]);
    let empty = k.run(&["get", "ct"]);
    assert!(String::from_utf8_lossy(&empty.stderr).contains("No resources found"), "{empty:?}");
}
