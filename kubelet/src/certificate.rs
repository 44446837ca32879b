//! The kubelet's certificates from the cluster, as upstream's TLS bootstrap and rotation:
//!
//! - **Bootstrap** (`--bootstrap-kubeconfig`): with no usable `--kubeconfig`, the kubelet
//!   authenticates with the bootstrap token, asks for a client certificate for
//!   `system:node:<name>` (a CertificateSigningRequest to
//!   `kubernetes.io/kube-apiserver-client-kubelet`, approved and signed by the
//!   controller-manager), writes it with its key to `<cert-dir>/kubelet-client-current.pem`
//!   and writes `--kubeconfig` naming that file; then it runs as the node.
//! - **Client rotation** (`--rotate-certificates`): at a random point between 70% and 90% of
//!   the certificate's life it asks for a new one as the node itself, replaces the file and
//!   moves its client to it, without a restart.
//! - **Serving certificates** (`--rotate-server-certificates`): the log and metrics
//!   endpoint's certificate comes from a request to `kubernetes.io/kubelet-serving` for the
//!   node's name and addresses. Those are not approved automatically (a node could claim
//!   any address): an admin approves them (`kubectl certificate approve`), and the endpoint
//!   refuses handshakes until one is issued. Renewed the same way.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use component_base::pki::{self, Request};
use component_base::rotating::Rotating;
use component_base::tls::CertSlot;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use kube::api::{Api, ObjectMeta, PostParams};

/// The client certificate and key in use (PEM, one file).
pub const CLIENT_CURRENT: &str = "kubelet-client-current.pem";
/// The serving certificate and key in use.
pub const SERVER_CURRENT: &str = "kubelet-server-current.pem";

/// What a kubelet's certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Authenticating to the API server.
    Client,
    /// Serving the kubelet's endpoint.
    Server,
}

impl Kind {
    fn signer(self) -> &'static str {
        match self {
            Kind::Client => "kubernetes.io/kube-apiserver-client-kubelet",
            Kind::Server => "kubernetes.io/kubelet-serving",
        }
    }

    fn usages(self) -> Vec<String> {
        let last = if self == Kind::Client { "client auth" } else { "server auth" };
        ["digital signature", last].map(str::to_owned).to_vec()
    }

    fn file(self) -> &'static str {
        match self {
            Kind::Client => CLIENT_CURRENT,
            Kind::Server => SERVER_CURRENT,
        }
    }
}

/// The certificate (PEM) and key (PEM) in `file`, if it holds a certificate still valid.
fn current(file: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(file).ok()?;
    let split = text.find("-----BEGIN PRIVATE KEY-----").or_else(|| text.find("-----BEGIN EC PRIVATE KEY-----"))?;
    let (cert, key) = text.split_at(split);
    let (_, until) = pki::validity_window(cert).ok()?;
    (until > jiff::Timestamp::now()).then(|| (cert.to_owned(), key.to_owned()))
}

/// Writes `content` to `path` readable by its owner alone, replacing it at once.
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// Asks for a certificate for `node` and waits until it is issued; the certificate and the
/// new key, PEM. A denied or failed request is an error that says why.
pub async fn request(
    client: &kube::Client,
    node: &str,
    kind: Kind,
    names: (&[String], &[IpAddr]),
) -> anyhow::Result<(String, String)> {
    let asked = Request {
        common_name: format!("system:node:{node}"),
        organizations: vec!["system:nodes".into()],
        dns_names: if kind == Kind::Server { names.0.to_vec() } else { Vec::new() },
        ips: if kind == Kind::Server { names.1.to_vec() } else { Vec::new() },
        ..Default::default()
    };
    let (csr_pem, key_pem) = pki::csr(&asked)?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(if kind == Kind::Client { "node-csr-" } else { "csr-" }.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: kind.signer().into(),
            usages: Some(kind.usages()),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = api.create(&PostParams::default(), &csr).await.context("creating the certificate signing request")?;
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = name, signer = kind.signer(), "asked for a certificate");
    let started = tokio::time::Instant::now();
    let mut said = started;
    loop {
        let csr = api.get(&name).await.with_context(|| format!("reading {name}"))?;
        let status = csr.status.unwrap_or_default();
        for c in status.conditions.iter().flatten() {
            if c.type_ == "Denied" || c.type_ == "Failed" {
                bail!(
                    "certificate signing request {name} was {}: {}",
                    c.type_.to_lowercase(),
                    c.message.clone().unwrap_or_default()
                );
            }
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            let cert = String::from_utf8(cert.0).context("the issued certificate is not PEM")?;
            tracing::info!(csr = name, "certificate issued");
            return Ok((cert, key_pem));
        }
        if said.elapsed() > Duration::from_secs(60) {
            tracing::info!(csr = name, waited = ?started.elapsed(), "still waiting for the request to be approved and signed");
            said = tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Makes `kubeconfig` hold a client certificate for `node`: kept if the one it names is
/// still valid, else obtained with the bootstrap kubeconfig's token.
pub async fn bootstrap(
    node: &str,
    bootstrap_kubeconfig: &Path,
    kubeconfig: &Path,
    cert_dir: &Path,
) -> anyhow::Result<()> {
    let file = cert_dir.join(CLIENT_CURRENT);
    if kubeconfig.exists() && current(&file).is_some() {
        tracing::info!(kubeconfig = %kubeconfig.display(), "the client certificate is valid; no bootstrap needed");
        return Ok(());
    }
    let bootstrap = kube::config::Kubeconfig::read_from(bootstrap_kubeconfig)
        .with_context(|| format!("reading --bootstrap-kubeconfig {}", bootstrap_kubeconfig.display()))?;
    let cluster = bootstrap
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .context("the bootstrap kubeconfig names no cluster")?;
    let server = cluster.server.clone().context("the bootstrap kubeconfig names no server")?;
    let ca = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
        (Some(data), _) => data.clone(),
        (None, Some(path)) => base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(path).with_context(|| format!("reading the CA {path}"))?),
        (None, None) => {
            bail!("the bootstrap kubeconfig has no certificate authority: the kubelet would trust any server")
        }
    };
    let client = component_base::client(Some(bootstrap_kubeconfig), None).await?;
    tracing::info!(node, server, "bootstrapping a client certificate");
    let (cert, key) = request(&client, node, Kind::Client, (&[], &[])).await?;
    write_private(&file, &format!("{cert}{key}"))?;
    let path = file.display();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: default-cluster\n  cluster:\n    certificate-authority-data: {ca}\n    server: {server}\ncontexts:\n- name: default-context\n  context:\n    cluster: default-cluster\n    user: default-auth\ncurrent-context: default-context\nusers:\n- name: default-auth\n  user:\n    client-certificate: {path}\n    client-key: {path}\n"
    );
    write_private(kubeconfig, &text)?;
    tracing::info!(kubeconfig = %kubeconfig.display(), "wrote the kubeconfig with the node's certificate");
    Ok(())
}

/// When a certificate valid from `from` to `until` should be renewed: a random point
/// between 70% and 90% of its life, as upstream's kubelet (so a fleet does not renew at once).
fn renewal(from: jiff::Timestamp, until: jiff::Timestamp) -> jiff::Timestamp {
    let life = until.duration_since(from).as_secs_f64().max(0.0);
    let jitter = 0.7 + 0.2 * rand_unit();
    from + jiff::SignedDuration::from_secs_f64(life * jitter)
}

fn rand_unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

async fn sleep_until(at: jiff::Timestamp) {
    let wait = at.duration_since(jiff::Timestamp::now());
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
}

/// Keeps a certificate of `kind` for `node` in `<cert_dir>/<kind's file>` and renews it
/// before it expires, forever; `installed` is called with each new one.
pub async fn keep(
    client: kube::Client,
    node: String,
    kind: Kind,
    names: (Vec<String>, Vec<IpAddr>),
    cert_dir: PathBuf,
    installed: impl Fn(&str, &str) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>
    + Send
    + Sync,
) {
    let file = cert_dir.join(kind.file());
    loop {
        let at = match current(&file) {
            Some((cert, key)) => {
                if let Err(e) = installed(&cert, &key).await {
                    tracing::error!(error = format!("{e:#}"), ?kind, "installing the certificate failed");
                }
                match pki::validity_window(&cert) {
                    Ok((from, until)) => renewal(from, until),
                    Err(_) => jiff::Timestamp::now(),
                }
            }
            None => jiff::Timestamp::now(),
        };
        sleep_until(at).await;
        match request(&client, &node, kind, (&names.0, &names.1)).await {
            Ok((cert, key)) => {
                if let Err(e) = write_private(&file, &format!("{cert}{key}")) {
                    tracing::error!(error = format!("{e:#}"), "writing the new certificate failed");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                } else {
                    tracing::info!(?kind, "rotated the certificate");
                }
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), ?kind, "renewing the certificate failed; trying again");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    }
}

/// The client's renewals: each new certificate is written and the client moved to it.
pub fn rotate_client(
    client: kube::Client,
    node: String,
    cert_dir: PathBuf,
    rotating: Rotating,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(keep(client, node, Kind::Client, (Vec::new(), Vec::new()), cert_dir, move |_, _| {
        let rotating = rotating.clone();
        Box::pin(async move { rotating.reload().await })
    }))
}

/// The serving certificate's renewals, into `slot`.
pub fn rotate_server(
    client: kube::Client,
    node: String,
    names: (Vec<String>, Vec<IpAddr>),
    cert_dir: PathBuf,
    slot: Arc<CertSlot>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(keep(client, node, Kind::Server, names, cert_dir, move |cert, key| {
        let result = slot.set_pem(cert, key);
        Box::pin(async move { result })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_in_the_last_third_of_a_certificates_life() {
        let from = jiff::Timestamp::from_second(1_000_000).expect("ts");
        let until = from + jiff::SignedDuration::from_secs(1000);
        for _ in 0..100 {
            let at = renewal(from, until);
            let offset = at.duration_since(from).as_secs();
            assert!((700..=900).contains(&offset), "{offset}");
        }
    }

    #[test]
    fn only_a_valid_certificate_with_its_key_is_current() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = pki::Ca::generate("test", Duration::from_secs(3600)).expect("ca");
        let issued = ca.issue(&Request::client("system:node:n1", &["system:nodes"])).expect("issue");
        let file = dir.path().join(CLIENT_CURRENT);
        assert!(current(&file).is_none());
        write_private(&file, &format!("{}{}", issued.cert_pem, issued.key_pem)).expect("write");
        let (cert, key) = current(&file).expect("current");
        assert!(cert.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&file, issued.cert_pem).expect("write");
        assert!(current(&file).is_none(), "no key, not current");
    }
}
