//! Joining nodes with a token, as upstream's kubeadm: `init phase bootstrap-token` lets
//! bootstrap tokens in (the RBAC bindings and the `kube-public/cluster-info` ConfigMap),
//! `token create` makes one and prints the join command, and `join` checks the cluster it
//! reaches against the token and the CA's hash, then writes the kubelet's bootstrap
//! kubeconfig.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use component_base::bootstrap::{self, Token};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

/// What `--print-join-command` and the phase need to know of the cluster: its URL and CA.
pub struct Cluster {
    /// The API server's URL, as the admin's kubeconfig names it.
    pub server: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

impl Cluster {
    /// From a kubeconfig with the CA embedded or named.
    pub fn from_kubeconfig(path: &Path) -> Result<Cluster> {
        let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
        let cluster = kc.clusters.first().and_then(|c| c.cluster.clone()).context("the kubeconfig names no cluster")?;
        let server = cluster.server.clone().context("the kubeconfig names no server")?;
        let ca_pem = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
            (Some(data), _) => String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data)?)?,
            (None, Some(path)) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
            (None, None) => bail!("the kubeconfig has no certificate authority"),
        };
        Ok(Cluster { server, ca_pem })
    }

    /// The kubeconfig `cluster-info` publishes: the server and the CA, no credentials.
    pub fn public_kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    certificate-authority-data: {}\n    server: {}\ncontexts: []\ncurrent-context: \"\"\nusers: []\npreferences: {{}}\n",
            base64::engine::general_purpose::STANDARD.encode(&self.ca_pem),
            self.server
        )
    }
}

fn binding(name: &str, role: &str, group: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Group".into(),
            name: group.into(),
            ..Default::default()
        }]),
    }
}

async fn apply<K>(api: &Api<K>, name: &str, object: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply("kubeadm").force();
    api.patch(name, &params, &Patch::Apply(object)).await.with_context(|| format!("applying {name}"))?;
    Ok(())
}

/// Upstream's `init phase bootstrap-token`: bootstrap tokens of the default node group may
/// ask for node client certificates, which are approved automatically, as are nodes'
/// renewals of their own; `cluster-info` holds the cluster's URL and CA, readable by
/// anyone (the controller-manager signs it with each token).
pub async fn bootstrap_token_phase(client: &kube::Client, cluster: &Cluster) -> Result<Vec<String>> {
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    for (name, role, group) in [
        ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", bootstrap::DEFAULT_NODE_GROUP),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            bootstrap::DEFAULT_NODE_GROUP,
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ] {
        apply(&bindings, name, &binding(name, role, group)).await?;
    }
    let ns = bootstrap::CLUSTER_INFO_NAMESPACE;
    let role_name = "kubeadm:bootstrap-signer-clusterinfo";
    let role = Role {
        metadata: ObjectMeta { name: Some(role_name.into()), namespace: Some(ns.into()), ..Default::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec![bootstrap::CLUSTER_INFO.into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
    };
    apply(&Api::<Role>::namespaced(client.clone(), ns), role_name, &role).await?;
    let role_binding = RoleBinding {
        metadata: ObjectMeta { name: Some(role_name.into()), namespace: Some(ns.into()), ..Default::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: role_name.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: "system:anonymous".into(),
            ..Default::default()
        }]),
    };
    apply(&Api::<RoleBinding>::namespaced(client.clone(), ns), role_name, &role_binding).await?;
    let info = ConfigMap {
        metadata: ObjectMeta {
            name: Some(bootstrap::CLUSTER_INFO.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        data: Some([("kubeconfig".to_owned(), cluster.public_kubeconfig())].into()),
        ..Default::default()
    };
    apply(&Api::<ConfigMap>::namespaced(client.clone(), ns), bootstrap::CLUSTER_INFO, &info).await?;
    Ok(vec![
        "[bootstrap-token] Bootstrap tokens may ask for node client certificates, approved automatically".into(),
        "[bootstrap-token] Nodes' renewals of their own client certificates are approved automatically".into(),
        format!(
            "[bootstrap-token] {ns}/{} holds the cluster's URL and CA, readable by anyone",
            bootstrap::CLUSTER_INFO
        ),
    ])
}

/// A new bootstrap token for joining nodes, valid for `ttl` (none: forever).
pub async fn create_token(client: &kube::Client, ttl: Option<Duration>, description: &str) -> Result<Token> {
    let token = Token::generate()?;
    let mut data: Vec<(&str, String)> = vec![
        ("token-id", token.id.clone()),
        ("token-secret", token.secret.clone()),
        ("usage-bootstrap-authentication", "true".into()),
        ("usage-bootstrap-signing", "true".into()),
        ("auth-extra-groups", bootstrap::DEFAULT_NODE_GROUP.into()),
    ];
    if let Some(ttl) = ttl {
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(ttl.as_secs() as i64);
        data.push(("expiration", at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
    }
    if !description.is_empty() {
        data.push(("description", description.to_owned()));
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(token.secret_name()),
            namespace: Some(bootstrap::NAMESPACE.into()),
            ..Default::default()
        },
        type_: Some(bootstrap::SECRET_TYPE.into()),
        data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes()))).collect()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), bootstrap::NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .context("creating the token's Secret")?;
    Ok(token)
}

/// Upstream's `kubeadm token list`: TOKEN, TTL, EXPIRES, USAGES, DESCRIPTION, EXTRA GROUPS.
pub async fn list_tokens(client: &kube::Client) -> Result<Vec<String>> {
    let secrets = Api::<Secret>::namespaced(client.clone(), bootstrap::NAMESPACE).list(&Default::default()).await?;
    let mut rows = vec![format!(
        "{:<24} {:<8} {:<21} {:<25} {:<25} EXTRA GROUPS",
        "TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION"
    )];
    for s in secrets.items.iter().filter(|s| s.type_.as_deref() == Some(bootstrap::SECRET_TYPE)) {
        let get = |k: &str| {
            s.data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .unwrap_or_default()
        };
        let token = format!("{}.{}", get("token-id"), get("token-secret"));
        let expires = get("expiration");
        let ttl = match expires.parse::<jiff::Timestamp>() {
            Ok(at) => {
                let secs = at.duration_since(jiff::Timestamp::now()).as_secs();
                if secs <= 0 {
                    "<expired>".to_owned()
                } else if secs >= 3600 {
                    format!("{}h", secs / 3600)
                } else {
                    format!("{}m", secs / 60)
                }
            }
            Err(_) => "<forever>".to_owned(),
        };
        let usages: Vec<&str> =
            [("usage-bootstrap-authentication", "authentication"), ("usage-bootstrap-signing", "signing")]
                .iter()
                .filter(|(k, _)| get(k) == "true")
                .map(|(_, u)| *u)
                .collect();
        let expires = if expires.is_empty() { "<never>".to_owned() } else { expires };
        rows.push(format!(
            "{token:<24} {ttl:<8} {expires:<21} {:<25} {:<25} {}",
            usages.join(","),
            get("description").chars().take(25).collect::<String>(),
            get("auth-extra-groups")
        ));
    }
    Ok(rows)
}

/// The command another host runs to join.
pub fn join_command(cluster: &Cluster, token: &Token) -> Result<String> {
    let endpoint = cluster.server.trim_start_matches("https://").trim_end_matches('/');
    Ok(format!(
        "kubeadm join {endpoint} --token {token} --discovery-token-ca-cert-hash {}",
        bootstrap::ca_hash(&cluster.ca_pem)?
    ))
}

/// How `join` checks the cluster it reaches.
pub struct JoinOptions {
    /// `HOST:PORT` of the API server.
    pub endpoint: String,
    /// The bootstrap token.
    pub token: Token,
    /// The hashes the CA must match (`sha256:...`); none only with `unsafe_skip_ca`.
    pub ca_hashes: Vec<String>,
    /// Trust whatever CA the signed cluster-info names.
    pub unsafe_skip_ca: bool,
    /// The node's name.
    pub node_name: String,
    /// Where the files go (`/etc/kubernetes`).
    pub dir: PathBuf,
}

async fn fetch_cluster_info(http: &reqwest::Client, endpoint: &str) -> Result<ConfigMap> {
    let url = format!(
        "https://{endpoint}/api/v1/namespaces/{}/configmaps/{}",
        bootstrap::CLUSTER_INFO_NAMESPACE,
        bootstrap::CLUSTER_INFO
    );
    let response = http.get(&url).send().await.with_context(|| format!("reaching {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("{url} answered {status}: is `kubeadm init phase bootstrap-token` done on the control plane?");
    }
    response.json().await.context("cluster-info is not a ConfigMap")
}

/// Upstream's token discovery: reads `cluster-info` (over TLS it cannot check yet), checks
/// the token's signature of it (the server knows the token) and the CA's hash (it is the
/// cluster meant), reads it again over TLS checked with that CA, and writes the CA and the
/// kubelet's bootstrap kubeconfig. Returns what it did and the kubelet command to run.
pub async fn join(options: &JoinOptions) -> Result<Vec<String>> {
    if options.ca_hashes.is_empty() && !options.unsafe_skip_ca {
        bail!(
            "give --discovery-token-ca-cert-hash (from `kubeadm token create --print-join-command`), or --discovery-token-unsafe-skip-ca-verification"
        );
    }
    let insecure =
        reqwest::Client::builder().danger_accept_invalid_certs(true).timeout(Duration::from_secs(10)).build()?;
    let info = fetch_cluster_info(&insecure, &options.endpoint).await?;
    let data = info.data.unwrap_or_default();
    let kubeconfig = data.get("kubeconfig").context("cluster-info has no kubeconfig")?;
    let key = format!("{}{}", bootstrap::JWS_PREFIX, options.token.id);
    let jws = data.get(&key).with_context(|| {
        format!("cluster-info has no signature for token ID {:?}: the token is unknown, expired, or not yet signed (the controller-manager signs within seconds)", options.token.id)
    })?;
    if !bootstrap::verify(kubeconfig, jws, &options.token) {
        bail!(
            "the signature of cluster-info for token ID {:?} does not verify: the server does not know this token",
            options.token.id
        );
    }
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).context("cluster-info's kubeconfig")?;
    let cluster = kc.clusters.first().and_then(|c| c.cluster.clone()).context("cluster-info names no cluster")?;
    let ca_b64 = cluster.certificate_authority_data.context("cluster-info has no CA")?;
    let ca_pem = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&ca_b64)?)?;
    let hash = bootstrap::ca_hash(&ca_pem)?;
    if !options.unsafe_skip_ca && !options.ca_hashes.iter().any(|h| h.eq_ignore_ascii_case(&hash)) {
        bail!("the cluster's CA has the hash {hash}, not one of {:?}: refusing to join", options.ca_hashes);
    }
    let secure = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
        .timeout(Duration::from_secs(10))
        .build()?;
    let again = fetch_cluster_info(&secure, &options.endpoint)
        .await
        .context("reading cluster-info again, over TLS checked with the CA")?;
    if again.data.as_ref().and_then(|d| d.get("kubeconfig")) != Some(kubeconfig) {
        bail!("cluster-info changed between the two reads: try again");
    }
    let pki = options.dir.join("pki");
    std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
    let ca_file = pki.join("ca.crt");
    std::fs::write(&ca_file, &ca_pem).with_context(|| format!("writing {}", ca_file.display()))?;
    let server = format!("https://{}", options.endpoint);
    let credential = component_base::pki::Credential::Token(options.token.to_string());
    let text = component_base::pki::kubeconfig("kubernetes", &server, &ca_pem, "tls-bootstrap-token-user", &credential);
    let bootstrap_file = options.dir.join("bootstrap-kubelet.conf");
    std::fs::write(&bootstrap_file, text).with_context(|| format!("writing {}", bootstrap_file.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bootstrap_file, std::fs::Permissions::from_mode(0o600))?;
    let kubeconfig_file = options.dir.join("kubelet.conf");
    Ok(vec![
        format!("[discovery] The cluster at {server} signed cluster-info with the token; its CA matches {hash}"),
        format!("[kubelet-start] Wrote {} and {}", ca_file.display(), bootstrap_file.display()),
        String::new(),
        "This node can join the cluster. Start its kubelet:".into(),
        String::new(),
        format!(
            "  kubelet --node-name {} --bootstrap-kubeconfig {} --kubeconfig {} --cert-dir {} --rotate-certificates --rotate-server-certificates --client-ca-file {}",
            options.node_name,
            bootstrap_file.display(),
            kubeconfig_file.display(),
            pki.display(),
            ca_file.display()
        ),
        String::new(),
        "It asks the cluster for its own certificate (approved automatically) and appears in `kubectl get nodes`."
            .into(),
        "Its serving certificate waits for an admin: `kubectl get csr`, then `kubectl certificate approve NAME`."
            .into(),
    ])
}
