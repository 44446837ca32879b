//! Who gets in. A test cluster serves TLS with its own CA (`kubeadm init phase certs`);
//! the apiserver lets in client certificates that CA signed and the tokens of
//! `--token-auth-file`, and no one else but to the health and version endpoints; a
//! kubelet answers only clients with a certificate of the CA.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{Cluster, Kubectl, Spec, client};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use serde_json::Value;

fn https(ca_pem: &str, identity: Option<String>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn status(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_known_credentials_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "s3cret,alice,1001,\"devs\"\n").unwrap();
    let spec = Spec { apiserver_args: vec!["--token-auth-file".into(), tokens.display().to_string()], ..Spec::sim(1) };
    let c = Cluster::with(spec).await;
    c.wait_nodes_ready(1, Duration::from_secs(60)).await.unwrap();
    let url = &c.url;
    let ca = c.pki.ca_pem.clone();

    // Anonymous: the health and version endpoints, and nothing else.
    let anonymous = https(&ca, None);
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(status(&anonymous, &format!("{url}{path}")).await.0, 200, "{path}");
    }
    for path in ["/api/v1/pods", "/apis", "/metrics", "/openapi/v3", "/api/v1/namespaces/kube-system/secrets"] {
        let (code, body) = status(&anonymous, &format!("{url}{path}")).await;
        assert_eq!(code, 401, "{path}");
        assert_eq!(body["reason"], "Unauthorized", "{path}: {body}");
        assert_eq!(body["message"], "Unauthorized", "{path}: {body}");
    }

    // A token from the token file, and one that is not in it. Alice is let in (403, not
    // 401: RBAC grants her nothing here), the forger is not.
    let pods = format!("{url}/api/v1/namespaces/default/pods");
    let r = anonymous.get(&pods).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = anonymous.get(&pods).bearer_auth("forged").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let review = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let r = anonymous
        .post(format!("{url}/apis/authentication.k8s.io/v1/selfsubjectreviews"))
        .bearer_auth("s3cret")
        .json(&review)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["status"]["userInfo"]["username"], "alice", "{answer}");
    assert_eq!(answer["status"]["userInfo"]["uid"], "1001", "{answer}");
    assert_eq!(answer["status"]["userInfo"]["groups"], serde_json::json!(["devs", "system:authenticated"]));

    // A certificate naming the admin, signed by another CA: refused.
    let other = component_base::pki::Ca::generate("kubernetes", component_base::pki::CA_VALIDITY).unwrap();
    let forged = other.issue(&component_base::pki::Request::client("kubernetes-admin", &["system:masters"])).unwrap();
    let forger = https(&ca, Some(format!("{}{}", forged.cert_pem, forged.key_pem)));
    assert_eq!(status(&forger, &pods).await.0, 401);

    // Stock kubectl: the admin's kubeconfig works and says who it is; an expired
    // certificate of the right CA is refused.
    let cache = dir.path().join("cache");
    if let Some(stock) = Kubectl::stock(&c.kubeconfig(), &cache) {
        let whoami = stock.ok(&["auth", "whoami"]);
        assert_eq!(whoami, Kubectl::ours(&c.kubeconfig()).ok(&["auth", "whoami"]), "ours prints what stock prints");
        assert!(whoami.contains("kubernetes-admin"), "{whoami}");
        assert!(whoami.contains("[system:masters system:authenticated]"), "{whoami}");
        let short = c.pki.user_kubeconfig(url, "bob", &["system:masters"], Duration::from_secs(4)).unwrap();
        let short_path = dir.path().join("short.conf");
        std::fs::write(&short_path, short).unwrap();
        let bob = Kubectl::stock(&short_path.display().to_string(), &cache).unwrap();
        assert!(bob.ok(&["auth", "whoami"]).contains("bob"));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let refused = String::from_utf8_lossy(&bob.run(&["get", "pods"]).stderr).into_owned();
        assert!(refused.contains("You must be logged in to the server"), "{refused}");
    }

    // The kubelet's endpoint: the CA's certificates only (the apiserver's, here the
    // admin's); its health to anyone.
    let nodes: Api<Node> = Api::all(client(url).unwrap());
    let node = nodes.list(&Default::default()).await.unwrap().items.remove(0);
    let port = node.status.unwrap().daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port;
    let kubelet = format!("https://127.0.0.1:{port}");
    let r = anonymous.get(format!("{kubelet}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(forger.get(format!("{kubelet}/metrics")).send().await.unwrap().status(), 401);
    assert_eq!(anonymous.get(format!("{kubelet}/healthz")).send().await.unwrap().status(), 200);
    let admin = https(&ca, Some(format!("{}{}", c.pki.admin.0, c.pki.admin.1)));
    assert_eq!(admin.get(format!("{kubelet}/metrics")).send().await.unwrap().status(), 200);
}

/// Writes a kubeconfig for `user` in `groups` (certificate of the cluster's CA).
fn user_kubeconfig(c: &Cluster, dir: &std::path::Path, user: &str, groups: &[&str]) -> String {
    let path = dir.join(format!("{}.conf", user.replace(':', "-")));
    std::fs::write(&path, c.pki.user_kubeconfig(&c.url, user, groups, Duration::from_secs(3600)).unwrap()).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_decides_what_each_user_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(1).await;
    c.wait_nodes_ready(1, Duration::from_secs(60)).await.unwrap();
    let admin = Kubectl::ours(&c.kubeconfig());
    admin.ok(&["create", "namespace", "shop"]);
    admin.ok(&["create", "configmap", "settings", "-n", "shop", "--from-literal=a=b"]);
    admin.ok(&["create", "rolebinding", "alice-view", "--clusterrole=view", "--user=alice", "-n", "shop"]);
    admin.ok(&["create", "rolebinding", "bob-admin", "--clusterrole=admin", "--user=bob", "-n", "shop"]);

    // The bootstrap policy is there, and the aggregated roles were filled.
    let roles = admin.ok(&["get", "clusterroles", "-o", "name"]);
    for want in ["cluster-admin", "admin", "edit", "view", "system:kube-scheduler", "system:node", "system:basic-user"]
    {
        assert!(roles.contains(&format!("clusterrole.rbac.authorization.k8s.io/{want}\n")), "{want}: {roles}");
    }
    let view = wait_for_rules(&admin, "view").await;
    assert!(view.contains("pods"), "{view}");

    let alice = Kubectl::ours(&user_kubeconfig(&c, dir.path(), "alice", &[]));
    let cache = dir.path().join("cache");
    let stock_alice = Kubectl::stock(&alice.kubeconfig, &cache);
    // view in shop: reads there, and nothing else.
    wait_until_allowed(&alice, &["get", "configmaps", "-n", "shop"]).await;
    assert!(alice.ok(&["get", "configmaps", "-n", "shop"]).contains("settings"));
    let denied = alice.fails(&["get", "configmaps", "-n", "default"]);
    assert_eq!(
        denied,
        "Error from server (Forbidden): configmaps is forbidden: User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\"\n"
    );
    let refused = alice.fails(&["create", "configmap", "mine", "-n", "shop", "--from-literal=a=b"]);
    assert!(refused.contains("User \"alice\" cannot create resource \"configmaps\""), "{refused}");
    let secrets = alice.fails(&["get", "secrets", "-n", "shop"]);
    assert!(secrets.contains("cannot list resource \"secrets\""), "view does not read secrets: {secrets}");
    // can-i answers what the requests found; ours and stock agree.
    for (args, yes) in [
        (vec!["auth", "can-i", "list", "pods", "-n", "shop"], true),
        (vec!["auth", "can-i", "get", "deployments.apps", "-n", "shop"], true),
        (vec!["auth", "can-i", "delete", "pods", "-n", "shop"], false),
        (vec!["auth", "can-i", "list", "pods", "-n", "default"], false),
        (vec!["auth", "can-i", "get", "/healthz"], true),
    ] {
        let ours = alice.run(&args);
        assert_eq!(ours.status.success(), yes, "{args:?}: {}", String::from_utf8_lossy(&ours.stdout));
        assert_eq!(String::from_utf8_lossy(&ours.stdout), if yes { "yes\n" } else { "no\n" }, "{args:?}");
        if let Some(stock) = &stock_alice {
            let theirs = stock.run(&args);
            assert_eq!(theirs.stdout, ours.stdout, "stock and ours differ on {args:?}");
            assert_eq!(theirs.status.code(), ours.status.code(), "{args:?}");
        }
    }
    let list = alice.ok(&["auth", "can-i", "--list", "-n", "shop"]);
    assert!(list.lines().any(|l| l.starts_with("pods ") && l.contains("[get list watch]")), "{list}");

    // bob is admin in shop: he may bind edit there (he holds it), not cluster-admin, and
    // may not write a role with more than he holds.
    let bob = Kubectl::ours(&user_kubeconfig(&c, dir.path(), "bob", &[]));
    wait_until_allowed(&bob, &["get", "rolebindings", "-n", "shop"]).await;
    bob.ok(&["create", "rolebinding", "carol-edit", "--clusterrole=edit", "--user=carol", "-n", "shop"]);
    let escalate =
        bob.fails(&["create", "rolebinding", "bob-root", "--clusterrole=cluster-admin", "--user=bob", "-n", "shop"]);
    assert!(
        escalate.contains("rolebindings.rbac.authorization.k8s.io \"bob-root\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held"),
        "{escalate}"
    );
    let role = write(
        dir.path(),
        "role.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: nodes\n  namespace: shop\nrules:\n- apiGroups: [\"\"]\n  resources: [\"pods\"]\n  verbs: [\"get\", \"escalate-me\"]\n",
    );
    let more = bob.fails(&["create", "-f", &role]);
    assert!(more.contains("attempting to grant RBAC permissions not currently held"), "{more}");
    assert!(more.contains("Verbs:[\"escalate-me\"]"), "{more}");
    assert!(
        admin.run(&["get", "rolebinding", "bob-root", "-n", "shop"]).status.code() == Some(1),
        "nothing was stored"
    );

    // A SubjectAccessReview asks for someone else.
    let sar = write(
        dir.path(),
        "sar.json",
        r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "resourceAttributes": {"namespace": "shop", "verb": "list", "resource": "pods"}}}"#,
    );
    let http = e2e::pki::http_client(&c.url).unwrap();
    let r = http
        .post(format!("{}/apis/authorization.k8s.io/v1/subjectaccessreviews", c.url))
        .header("Content-Type", "application/json")
        .body(std::fs::read_to_string(&sar).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["status"]["allowed"], true, "{answer}");
}

/// The Node authorizer and NodeRestriction: a kubelet reads only what its pods use and
/// changes only its own node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(1).await;
    let admin = Kubectl::ours(&c.kubeconfig());
    let manifest = write(
        dir.path(),
        "objects.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: for-a}\nstringData: {k: a}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: for-b}\nstringData: {k: b}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: node-b}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: on-a}\nspec:\n  nodeName: node-a\n  containers: [{name: c, image: x, envFrom: [{secretRef: {name: for-a}}]}]\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: on-b}\nspec:\n  nodeName: node-b\n  volumes: [{name: s, secret: {secretName: for-b}}]\n  containers: [{name: c, image: x}]\n",
    );
    admin.ok(&["apply", "-f", &manifest]);
    let node_a = Kubectl::ours(&user_kubeconfig(&c, dir.path(), "system:node:node-a", &["system:nodes"]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !node_a.run(&["get", "secret", "for-a"]).status.success() {
        assert!(tokio::time::Instant::now() < deadline, "node-a never read its pod's secret");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = node_a.fails(&["get", "secret", "for-b"]);
    assert_eq!(
        other,
        "Error from server (Forbidden): secrets \"for-b\" is forbidden: User \"system:node:node-a\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'node-a' and this object\n"
    );
    let list = node_a.fails(&["get", "secrets"]);
    assert!(list.contains("cannot list resource \"secrets\""), "{list}");
    node_a.ok(&["label", "node", "node-a", "mine=yes"]);
    let patch_b = node_a.fails(&["label", "node", "node-b", "mine=yes"]);
    assert!(patch_b.contains("node \"node-a\" is not allowed to modify node \"node-b\""), "{patch_b}");
    let delete_b = node_a.fails(&["delete", "pod", "on-b"]);
    assert!(delete_b.contains("node \"node-a\" can only delete pods with spec.nodeName set to itself"), "{delete_b}");
    assert!(admin.ok(&["get", "pod", "on-b", "-o", "name"]).contains("pod/on-b"), "nothing was deleted");
}

async fn wait_for_rules(k: &Kubectl, role: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rules = k.ok(&["get", "clusterrole", role, "-o", "jsonpath={.rules[*].resources}"]);
        if !rules.trim().is_empty() {
            return rules;
        }
        assert!(tokio::time::Instant::now() < deadline, "{role} was never aggregated");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until a new binding reaches the authorizer (it follows the roles' watch).
async fn wait_until_allowed(k: &Kubectl, args: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !k.run(args).status.success() {
        assert!(tokio::time::Instant::now() < deadline, "{args:?} never allowed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A pod's ServiceAccount token, mounted by the kubelet in a real container, lets the
/// process in it do what its Role allows and nothing else; the token is bound to the
/// account and dies with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_service_account_token_reaches_what_its_role_allows() {
    if !e2e::docker_available("a_pods_service_account_token_reaches_what_its_role_allows") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::with(Spec { nodes: e2e::Nodes::Docker(1), ..Spec::sim(0) }).await;
    c.wait_nodes_ready(1, Duration::from_secs(60)).await.unwrap();
    let admin = Kubectl::ours(&c.kubeconfig());
    let api = format!("https://127.0.0.1:{}", c.port);
    let images = std::process::Command::new("docker").args(["image", "inspect", "curl:local"]).output();
    if !images.is_ok_and(|o| o.status.success()) {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but curl:local is missing; ./test.sh builds it"
        );
        eprintln!("skipping: no curl:local image (deploy/images/curl.sh builds it)");
        return;
    }
    // The container is on the host's network, so the API is on its loopback; curl checks
    // the server against the mounted ca.crt.
    let get = |path: &str, tag: &str| {
        format!(
            "echo {tag}=$(curl -s -o /dev/null -w '%{{http_code}}' --cacert $D/ca.crt -H \"Authorization: Bearer $T\" {api}{path}); "
        )
    };
    let script = format!(
        "D=/var/run/secrets/kubernetes.io/serviceaccount; T=$(cat $D/token); echo NS=$(cat $D/namespace); \
         grep -q 'BEGIN CERTIFICATE' $D/ca.crt && echo CA=ok; echo TOKEN=$T; {}{}{}sleep 3600",
        get("/api/v1/namespaces/apps/pods", "LIST"),
        get("/api/v1/namespaces/default/pods", "OTHER"),
        get("/api/v1/namespaces/apps/secrets", "SECRETS"),
    );
    let manifest = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": "apps"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "pod-reader", "namespace": "apps"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader", "namespace": "apps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "apps"}]},
    ]});
    admin.ok(&["apply", "-f", &write(dir.path(), "rbac.json", &manifest.to_string())]);
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "apps"},
        "spec": {"serviceAccountName": "reader", "hostNetwork": true, "containers": [{"name": "c", "image": "curl:local",
            "imagePullPolicy": "Never", "command": ["sh", "-c", script]}]}});
    admin.ok(&["create", "-f", &write(dir.path(), "pod.json", &pod.to_string())]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let logs = loop {
        let out = admin.run(&["logs", "client", "-n", "apps"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("SECRETS=") {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never finished: {text}\n{}",
            admin.ok(&["describe", "pod", "client", "-n", "apps"])
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for want in ["NS=apps", "CA=ok", "LIST=200", "OTHER=403", "SECRETS=403"] {
        assert!(logs.lines().any(|l| l == want), "{want} in:\n{logs}");
    }
    let token = logs.lines().find_map(|l| l.strip_prefix("TOKEN=")).unwrap().to_owned();

    // TokenReview says whose it is, and that it is bound to the pod.
    let http = e2e::pki::http_client(&c.url).unwrap();
    let reviews = format!("{}/apis/authentication.k8s.io/v1/tokenreviews", c.url);
    let review = |token: String| {
        let http = http.clone();
        let url = reviews.clone();
        async move {
            let body = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
            let r = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()
        }
    };
    let answer = review(token.clone()).await;
    assert_eq!(answer["status"]["authenticated"], true, "{answer}");
    assert_eq!(answer["status"]["user"]["username"], "system:serviceaccount:apps:reader");
    assert_eq!(
        answer["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        serde_json::json!(["client"])
    );

    // Stock kubectl create token: a token the API takes; too short a life is refused.
    if let Some(stock) = Kubectl::stock(&c.kubeconfig(), &dir.path().join("cache")) {
        let minted = stock.ok(&["create", "token", "reader", "-n", "apps"]).trim().to_owned();
        let r = https(&c.pki.ca_pem, None)
            .get(format!("{}/api/v1/namespaces/apps/pods", c.url))
            .bearer_auth(&minted)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let short =
            String::from_utf8_lossy(&stock.run(&["create", "token", "reader", "-n", "apps", "--duration=1m"]).stderr)
                .into_owned();
        assert!(short.contains("may not specify a duration less than 10 minutes"), "{short}");
    }
    let ours = admin.ok(&["create", "token", "reader", "-n", "apps", "--duration=15m"]).trim().to_owned();
    let r = https(&c.pki.ca_pem, None)
        .get(format!("{}/api/v1/namespaces/apps/pods", c.url))
        .bearer_auth(&ours)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "our kubectl's token");
    // OIDC discovery, for service accounts.
    let anon = https(&c.pki.ca_pem, None);
    let discovery =
        anon.get(format!("{}/.well-known/openid-configuration", c.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(discovery.status(), 200);
    let discovery: Value = discovery.json().await.unwrap();
    assert_eq!(discovery["jwks_uri"], "https://kubernetes.default.svc.cluster.local/openid/v1/jwks");
    let jwks: Value =
        anon.get(format!("{}/openid/v1/jwks", c.url)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256", "{jwks}");

    // A kubelet that restarts adopts the running container and keeps its token fresh:
    // it writes a new one at once (then before each expires).
    let token_file = {
        let volumes = c.dir.path().join("kubelet").join(&c.node_names[0]).join("volumes");
        let pod_dir = std::fs::read_dir(&volumes).unwrap().next().unwrap().unwrap().path();
        let access = std::fs::read_dir(&pod_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("kube-api-access-"))
            .unwrap();
        access.join("token")
    };
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
    c.kill_kubelet(0);
    c.start_kubelet(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&token_file).unwrap_or_default() == token {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted kubelet never refreshed the adopted pod's token"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(review(fresh).await["status"]["authenticated"], true);

    // A token of an account that was deleted is refused, with nothing changed.
    admin.ok(&["delete", "serviceaccount", "reader", "-n", "apps"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = review(token.clone()).await;
        if answer["status"]["authenticated"] == false {
            assert!(answer["status"]["error"].as_str().unwrap_or_default().contains("not found"), "{answer}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the token outlived its account");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = anon.get(format!("{}/api/v1/namespaces/apps/pods", c.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// Every value in the cluster's etcd, as `etcdctl get --prefix ''` shows them.
async fn etcd_dump(c: &Cluster) -> Vec<(String, Vec<u8>)> {
    let (_, port, _) = c.etcd.as_ref().expect("the cluster has an etcd");
    let mut etcd = etcd_client::Client::connect([format!("http://127.0.0.1:{port}")], None).await.unwrap();
    let all = etcd.get(vec![0u8], Some(etcd_client::GetOptions::new().with_from_key())).await.unwrap();
    all.kvs().iter().map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.value().to_vec())).collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// With `--encryption-provider-config`, etcd holds Secrets only as ciphertext under
/// upstream's prefix while kubectl reads them as ever; a new key listed first and the
/// objects re-saved (`get -o json | replace`) moves every Secret to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_encrypted_at_rest() {
    if !e2e::etcd_installed("secrets_are_encrypted_at_rest") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = |keys: &str| {
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n{keys}  - identity: {{}}\n"
        )
    };
    let old = "      - {name: key1, secret: c2VjcmV0IGlzIHNlY3VyZSwgaSB0aGluayBzby4uLi4=}\n";
    let new = "      - {name: key2, secret: YW5vdGhlciBzZWNyZXQga2V5IG9mIDMyIGJ5dGVzLi4=}\n";
    let path = write(dir.path(), "encryption.yaml", &config(old));
    let spec =
        Spec { etcd: true, apiserver_args: vec!["--encryption-provider-config".into(), path.clone()], ..Spec::sim(0) };
    let mut c = Cluster::with(spec).await;
    let k = Kubectl::stock(&c.kubeconfig(), dir.path()).unwrap_or_else(|| Kubectl::ours(&c.kubeconfig()));
    k.ok(&["create", "secret", "generic", "db", "--from-literal=password=hunter2"]);
    k.ok(&["create", "configmap", "settings", "--from-literal=colour=plaintext-blue"]);

    let dump = etcd_dump(&c).await;
    let secret = dump.iter().find(|(key, _)| key.ends_with("/secrets/default/db")).expect("the secret is in etcd");
    assert!(secret.1.starts_with(b"k8s:enc:aescbc:v1:key1:"), "{:?}", String::from_utf8_lossy(&secret.1));
    for (key, value) in &dump {
        assert!(!contains(value, "hunter2") && !contains(value, "aHVudGVyMg=="), "{key} holds the secret in plaintext");
    }
    let cm = dump.iter().find(|(key, _)| key.ends_with("/configmaps/default/settings")).expect("the configmap");
    assert!(contains(&cm.1, "plaintext-blue"), "configmaps are not named in the configuration: stored as they are");
    assert_eq!(k.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]), "aHVudGVyMg==");

    // Rotation: the new key first, the old one still read; re-saving moves everything.
    std::fs::write(&path, config(&format!("{new}{old}"))).unwrap();
    c.restart_apiserver().await;
    assert_eq!(k.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]), "aHVudGVyMg==");
    let all = k.ok(&["get", "secrets", "-A", "-o", "json"]);
    let all_path = write(dir.path(), "all.json", &all);
    k.ok(&["replace", "-f", &all_path]);
    let dump = etcd_dump(&c).await;
    let secret = dump.iter().find(|(key, _)| key.ends_with("/secrets/default/db")).expect("the secret is in etcd");
    assert!(secret.1.starts_with(b"k8s:enc:aescbc:v1:key2:"), "{:?}", String::from_utf8_lossy(&secret.1));

    // Without the key, the server refuses to start and names what it cannot read;
    // nothing stored is touched, and with the key back it serves again.
    std::fs::write(&path, config(new).replace("key2", "key3").replace("YW5v", "QW5v")).unwrap();
    if let Some(mut a) = c.apiserver.take() {
        a.kill();
    }
    let out = std::process::Command::new(e2e::binary("kube-apiserver")).args(c.apiserver_args()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no provider of the encryption configuration reads /registry/secrets/default/db: it is encrypted as \"k8s:enc:aescbc:v1:key2\""),
        "{err}"
    );
    assert!(etcd_dump(&c).await.iter().any(|(key, v)| key.ends_with("/secrets/default/db") && v == &secret.1));
    std::fs::write(&path, config(new)).unwrap();
    c.restart_apiserver().await;
    assert_eq!(k.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]), "aHVudGVyMg==");
}

/// Swarm's `join --token`, upstream's way: `kubeadm token create --print-join-command`
/// prints the command; on the new host it checks the cluster against the token and the
/// CA's hash and writes a bootstrap kubeconfig; the kubelet started with it asks for its
/// own certificate (approved and signed by the controller-manager), becomes
/// `system:node:joined`, and renews its short-lived certificate while it runs. Its serving
/// certificate waits for an admin's approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_token_and_renews_its_certificate() {
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    use k8s_openapi::api::coordination::v1::Lease;
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        nodes: e2e::Nodes::Process(0),
        controller_args: vec!["--cluster-signing-duration=40s".into()],
        ..Spec::sim(0)
    };
    let c = Cluster::with(spec).await;
    let admin_conf = c.kubeconfig();
    let k = Kubectl::stock(&admin_conf, dir.path()).unwrap_or_else(|| Kubectl::ours(&admin_conf));
    let kubeadm = |a: &[&str]| {
        let out = std::process::Command::new(e2e::binary("kubeadm")).args(a).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = kubeadm(&["init", "phase", "bootstrap-token", "--kubeconfig", &admin_conf]);
    assert!(ok, "{out}");
    let (ok, join) = kubeadm(&["token", "create", "--print-join-command", "--kubeconfig", &admin_conf]);
    assert!(ok && join.starts_with("kubeadm join 127.0.0.1:"), "{join}");
    let token = join.split_whitespace().skip_while(|w| *w != "--token").nth(1).unwrap().to_owned();
    let (_, list) = kubeadm(&["token", "list", "--kubeconfig", &admin_conf]);
    assert!(list.contains(&token) && list.contains("authentication,signing"), "{list}");

    // A wrong CA hash is refused before anything is written.
    let node_dir = dir.path().join("joined");
    let mut words: Vec<String> = join.split_whitespace().skip(1).map(str::to_owned).collect();
    let wrong: Vec<String> = words
        .iter()
        .map(|w| if w.starts_with("sha256:") { format!("sha256:{}", "0".repeat(64)) } else { w.clone() })
        .collect();
    let dir_flag = ["--node-name".to_owned(), "joined".to_owned(), "--dir".to_owned(), node_dir.display().to_string()];
    let (ok, out) = kubeadm(&[wrong.as_slice(), &dir_flag].concat().iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && out.contains("refusing to join"), "{out}");
    assert!(!node_dir.join("bootstrap-kubelet.conf").exists());
    // The printed command, as written (the controller-manager signs cluster-info within moments).
    words.extend(dir_flag);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let printed = loop {
        let (ok, out) = kubeadm(&words.iter().map(String::as_str).collect::<Vec<_>>());
        if ok {
            break out;
        }
        assert!(out.contains("not yet signed") && tokio::time::Instant::now() < deadline, "{out}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let kubelet_line =
        printed.lines().find(|l| l.trim_start().starts_with("kubelet ")).unwrap_or_else(|| panic!("{printed}"));
    let mut kubelet_args: Vec<String> = kubelet_line.split_whitespace().skip(1).map(str::to_owned).collect();
    let port = e2e::free_port();
    kubelet_args.extend(e2e::args(&[
        "--runtime",
        "sim",
        "--root-dir",
        &dir.path().join("kubelet").display().to_string(),
        "--port",
        &port.to_string(),
    ]));
    let mut kubelet = e2e::Process::spawn("kubelet", &kubelet_args, &dir.path().join("kubelet.log")).unwrap();
    let nodes: Api<Node> = Api::all(client(&c.url).unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !nodes.get_opt("joined").await.unwrap().is_some_and(|n| e2e::node_ready(&n)) {
        let log = std::fs::read_to_string(dir.path().join("kubelet.log")).unwrap_or_default();
        assert!(tokio::time::Instant::now() < deadline, "the joined node never became Ready:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let csrs: Api<CertificateSigningRequest> = Api::all(client(&c.url).unwrap());
    let first = csrs.list(&Default::default()).await.unwrap().items;
    let client_csr = first
        .iter()
        .find(|r| r.spec.signer_name == "kubernetes.io/kube-apiserver-client-kubelet")
        .expect("the kubelet asked for a client certificate");
    let token_id = token.split('.').next().unwrap();
    assert_eq!(client_csr.spec.username.as_deref(), Some(format!("system:bootstrap:{token_id}").as_str()));
    let table = k.ok(&["get", "csr"]);
    assert!(table.contains("Approved,Issued") && table.contains(&format!("system:bootstrap:{token_id}")), "{table}");
    let cert = String::from_utf8(client_csr.status.as_ref().unwrap().certificate.clone().unwrap().0).unwrap();
    let (_, first_expiry) = component_base::pki::validity_window(&cert).unwrap();

    // The serving certificate waits for an admin; once approved, the endpoint serves it.
    let serving = loop {
        let all = csrs.list(&Default::default()).await.unwrap().items;
        if let Some(s) = all.into_iter().find(|r| r.spec.signer_name == "kubernetes.io/kubelet-serving") {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let serving_name = serving.metadata.name.clone().unwrap();
    assert!(k.ok(&["get", "csr", &serving_name]).contains("Pending"));
    k.ok(&["certificate", "approve", &serving_name]);
    let kubelet_url = format!("https://127.0.0.1:{port}/healthz");
    let http = https(&c.pki.ca_pem, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while http.get(&kubelet_url).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the kubelet never served its approved certificate");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A node may not get another node's certificate: its request is never approved.
    let node_conf = node_dir.join("kubelet.conf").display().to_string();
    let as_node = Kubectl::ours(&node_conf);
    assert!(as_node.ok(&["auth", "whoami"]).contains("system:node:joined"));
    let (other_csr, _) = component_base::pki::csr(&component_base::pki::Request {
        common_name: "system:node:other".into(),
        organizations: vec!["system:nodes".into()],
        ..Default::default()
    })
    .unwrap();
    let manifest = write(
        dir.path(),
        "other.yaml",
        &format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: for-other}}\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client-kubelet\n  usages: [digital signature, client auth]\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, other_csr)
        ),
    );
    as_node.ok(&["create", "-f", &manifest]);
    let forbidden = as_node.fails(&["certificate", "approve", "for-other"]);
    assert!(forbidden.contains("forbidden"), "{forbidden}");

    // Rotation: before the 40 s certificate runs out the kubelet gets a new one as itself,
    // and keeps renewing its lease past the first one's expiry, without a restart.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = csrs.list(&Default::default()).await.unwrap().items;
        let renewed = all.iter().any(|r| {
            r.spec.username.as_deref() == Some("system:node:joined")
                && r.spec.signer_name == "kubernetes.io/kube-apiserver-client-kubelet"
                && r.metadata.name.as_deref() != Some("for-other")
                && r.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some()
        });
        if renewed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the kubelet never renewed its certificate:\n{}",
            k.ok(&["get", "csr"])
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let leases: Api<Lease> = Api::namespaced(client(&c.url).unwrap(), "kube-node-lease");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let lease = leases.get("joined").await.unwrap();
        let renewed = lease.spec.and_then(|s| s.renew_time).map(|t| t.0.as_second()).unwrap_or(0);
        if renewed > first_expiry.as_second() + 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease stopped being renewed after the first certificate expired"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(kubelet.child.try_wait().unwrap().is_none(), "the kubelet restarted or died");
    let for_other = k.ok(&["get", "csr", "for-other"]);
    assert!(
        for_other.contains("Pending"),
        "a node's request for another node's certificate was approved:\n{for_other}"
    );
    kubelet.kill();

    // Tokens: a forged one and one whose Secret is gone get 401.
    let anonymous = https(&c.pki.ca_pem, None);
    let with = |t: &str| anonymous.get(format!("{}/api/v1/nodes", c.url)).bearer_auth(t.to_owned()).send();
    assert_eq!(with(&format!("{token_id}.0000000000000000")).await.unwrap().status().as_u16(), 401);
    k.ok(&["delete", "secret", "-n", "kube-system", &format!("bootstrap-token-{token_id}")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while with(&token).await.unwrap().status().as_u16() != 401 {
        assert!(tokio::time::Instant::now() < deadline, "a deleted token still authenticates");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `--audit-log-path` with a policy: one `audit.k8s.io/v1` Event per request at the
/// level the first matching rule gives: who, what, the answer and the authorization
/// decision; the body sent at `Request`; nothing for `None`; and refusals (401, 403)
/// logged with their reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_says_who_did_what() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let policy = write(
        dir.path(),
        "policy.yaml",
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
         - level: None\n  userGroups: [system:nodes]\n\
         - level: None\n  users: [system:kubelet-simulator, system:kube-scheduler, system:kube-controller-manager]\n\
         - level: None\n  nonResourceURLs: ['/healthz*', '/readyz*', '/livez*', '/openapi*', /version, /api, '/apis*']\n\
         - level: Metadata\n  resources: [{group: '', resources: [secrets]}]\n\
         - level: Request\n  resources: [{group: '', resources: [configmaps]}]\n\
         - level: Metadata\n",
    );
    let spec = Spec {
        apiserver_args: e2e::args(&["--audit-log-path", &log.display().to_string(), "--audit-policy-file", &policy]),
        ..Spec::sim(1)
    };
    let c = Cluster::with(spec).await;
    let admin = Kubectl::stock(&c.kubeconfig(), dir.path()).unwrap_or_else(|| Kubectl::ours(&c.kubeconfig()));
    admin.ok(&["create", "configmap", "settings", "--from-literal=colour=blue"]);
    admin.ok(&["create", "secret", "generic", "db", "--from-literal=password=hunter2"]);
    admin.ok(&["get", "secret", "db"]);
    let viewer = Kubectl::ours(&user_kubeconfig(&c, dir.path(), "mallory", &["guests"]));
    viewer.fails(&["create", "configmap", "stolen", "--from-literal=a=b"]);
    let anonymous = https(&c.pki.ca_pem, None);
    let forged = anonymous.get(format!("{}/api/v1/secrets", c.url)).bearer_auth("forged-token").send().await.unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    let events: Vec<Value> = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            if events.iter().any(|e| e["responseStatus"]["code"] == 401) {
                break events;
            }
            assert!(tokio::time::Instant::now() < deadline, "no 401 in the audit log:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    for e in &events {
        assert_eq!(e["kind"], "Event");
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_ne!(e["stage"], "RequestReceived", "RequestReceived is omitted: {e}");
        for field in ["auditID", "requestURI", "verb", "sourceIPs", "requestReceivedTimestamp", "stageTimestamp"] {
            assert!(!e[field].is_null(), "{field} missing: {e}");
        }
        let user = e["user"]["username"].as_str().unwrap_or_default();
        assert!(!user.starts_with("system:node") && user != "system:kube-scheduler", "level None was logged: {e}");
    }
    let find = |verb: &str, resource: &str, user: &str| {
        events
            .iter()
            .find(|e| e["verb"] == verb && e["objectRef"]["resource"] == resource && e["user"]["username"] == user)
            .unwrap_or_else(|| panic!("no {verb} {resource} by {user} in {events:#?}"))
    };
    let created = find("create", "configmaps", "kubernetes-admin");
    assert_eq!(created["level"], "Request");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert_eq!(created["requestObject"]["data"]["colour"], "blue", "the body sent, decoded: {created}");
    assert_eq!(created["objectRef"]["namespace"], "default");
    assert_eq!(created["annotations"]["authorization.k8s.io/decision"], "allow");
    let read = find("get", "secrets", "kubernetes-admin");
    assert_eq!(read["level"], "Metadata");
    assert_eq!(read["objectRef"]["name"], "db");
    assert!(read.get("requestObject").is_none() && read.get("responseObject").is_none());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("hunter2") && !text.contains("aHVudGVyMg=="), "a secret's value is in the audit log");
    let refused = find("create", "configmaps", "mallory");
    assert_eq!(refused["responseStatus"]["code"], 403);
    assert_eq!(refused["responseStatus"]["reason"], "Forbidden");
    assert_eq!(refused["annotations"]["authorization.k8s.io/decision"], "forbid");
    let unauthenticated = events.iter().find(|e| e["responseStatus"]["code"] == 401).unwrap();
    assert_eq!(unauthenticated["user"], serde_json::json!({}));
    assert_eq!(unauthenticated["responseStatus"]["reason"], "Unauthorized");
}

/// The scheduler's (and controller-manager's) endpoint serves HTTPS; the health checks
/// answer anyone, `/metrics` only whom the API server lets `get /metrics`: a client
/// certificate of the CA or a ServiceAccount token (what Prometheus scrapes with), each
/// checked with a TokenReview and a SubjectAccessReview.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_metrics_answer_whom_the_api_server_allows() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::with(Spec { nodes: e2e::Nodes::Process(0), ..Spec::sim(0) }).await;
    let port = e2e::free_port();
    let ca = c.pki.cert_dir.join("ca.crt").display().to_string();
    let scheduler_args = e2e::args(&[
        "--kubeconfig",
        &c.pki.kubeconfig("scheduler.conf"),
        "--secure-port",
        &port.to_string(),
        "--client-ca-file",
        &ca,
        "--scheduler-name",
        "metrics-test",
    ]);
    let _scheduler = e2e::Process::spawn("kube-scheduler", &scheduler_args, &dir.path().join("scheduler.log")).unwrap();
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    // Self-signed: the client trusts nothing but asks over TLS anyway, as a probe does.
    let insecure = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match insecure.get(url("/healthz")).send().await {
            Ok(r) if r.status().is_success() => break,
            _ => assert!(tokio::time::Instant::now() < deadline, "the scheduler's endpoint never answered"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(insecure.get(url("/metrics")).send().await.unwrap().status().as_u16(), 401);
    let forged = insecure.get(url("/metrics")).bearer_auth("forged").send().await.unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    let with_cert = |pem: String| {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
            .build()
            .unwrap()
    };
    let admin = with_cert(format!("{}{}", c.pki.admin.0, c.pki.admin.1));
    let answer = admin.get(url("/metrics")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert!(answer.text().await.unwrap().contains("# TYPE"), "Prometheus text");
    let ca = component_base::pki::Ca::load(&c.pki.cert_dir).unwrap();
    let nobody = ca.issue(&component_base::pki::Request::client("nobody", &[])).unwrap();
    let refused =
        with_cert(format!("{}{}", nobody.cert_pem, nobody.key_pem)).get(url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 403);

    let k = Kubectl::ours(&c.kubeconfig());
    let account = write(dir.path(), "sa.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: prometheus}\n");
    k.ok(&["apply", "-f", &account]);
    k.ok(&[
        "create",
        "clusterrolebinding",
        "prometheus",
        "--clusterrole=system:monitoring",
        "--serviceaccount=default:prometheus",
    ]);
    let token = k.ok(&["create", "token", "prometheus"]).trim().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = insecure.get(url("/metrics")).bearer_auth(&token).send().await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        // A refusal is cached for ten seconds, as upstream's; the binding is seen after.
        assert!(status == 403 && tokio::time::Instant::now() < deadline, "a monitoring token got {status}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
