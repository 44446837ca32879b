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

    // A token from the token file, and one that is not in it.
    let pods = format!("{url}/api/v1/namespaces/default/pods");
    let r = anonymous.get(&pods).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(r.status(), 200);
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
