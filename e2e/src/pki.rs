//! The certificates of a test cluster, made by kubeadm's phases in the cluster's own
//! directory, and clients that present the admin's certificate to an apiserver known by
//! its URL (so a test holding only the URL gets a client that is let in).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use base64::Engine;
use parking_lot::Mutex;
use rustls_pki_types::pem::PemObject;

/// A cluster's PKI on disk.
#[derive(Debug, Clone)]
pub struct Pki {
    /// `DIR/pki`: ca.crt, apiserver.crt, kubelet-NAME.crt...
    pub cert_dir: PathBuf,
    /// `DIR`: admin.conf, scheduler.conf, kubelet-NAME.conf...
    pub kubeconfig_dir: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The admin's certificate and key, PEM.
    pub admin: (String, String),
}

impl Pki {
    /// The CA, the apiserver's certificate (loopback and `extra_sans`) and the control
    /// plane's kubeconfigs, in `dir`, for an apiserver at `url`.
    pub fn create(dir: &Path, url: &str, extra_sans: &[String]) -> Result<Pki> {
        let cert_dir = dir.join("pki");
        kubeadm::certs(&kubeadm::CertsOptions {
            cert_dir: cert_dir.clone(),
            advertise_address: None,
            extra_sans: extra_sans.to_vec(),
            service_cidr: ("10.96.0.0".parse().context("ip")?, 12),
        })?;
        kubeadm::kubeconfigs(&cert_dir, dir, url)?;
        let ca = component_base::pki::Ca::load(&cert_dir)?;
        let admin = ca.issue(&component_base::pki::Request::client("kubernetes-admin", &["system:masters"]))?;
        let pki = Pki {
            cert_dir,
            kubeconfig_dir: dir.to_owned(),
            ca_pem: ca.cert_pem.clone(),
            admin: (admin.cert_pem, admin.key_pem),
        };
        known().lock().insert(url.to_owned(), Arc::new(pki.clone()));
        Ok(pki)
    }

    /// The apiserver's flags: its serving certificate, the client CA, and how it reaches
    /// kubelets.
    pub fn apiserver_args(&self) -> Vec<String> {
        let p = |name: &str| self.cert_dir.join(name).display().to_string();
        [
            ("--tls-cert-file", p("apiserver.crt")),
            ("--tls-private-key-file", p("apiserver.key")),
            ("--client-ca-file", p("ca.crt")),
            ("--kubelet-certificate-authority", p("ca.crt")),
            ("--kubelet-client-certificate", p("apiserver-kubelet-client.crt")),
            ("--kubelet-client-key", p("apiserver-kubelet-client.key")),
            ("--service-account-signing-key-file", p("sa.key")),
            ("--service-account-key-file", p("sa.pub")),
            ("--enable-bootstrap-token-auth", "true".into()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }

    /// A node's kubeconfig and the kubelet's serving flags, made on first use. A kubelet
    /// that simulates many nodes cannot be any one of them (the Node authorizer lets a
    /// node change only itself): it runs as `system:kubelet-simulator` in `system:masters`,
    /// as KWOK's controller runs with the cluster admin's rights.
    pub fn kubelet_args(&self, url: &str, node: &str, addresses: &[String], simulator: bool) -> Result<Vec<String>> {
        kubeadm::node(&self.cert_dir, &self.kubeconfig_dir, url, node, addresses)?;
        let p = |name: String| self.cert_dir.join(name).display().to_string();
        let kubeconfig = if simulator {
            let path = self.kubeconfig_dir.join("kubelet-simulator.conf");
            if !path.exists() {
                let text = self.user_kubeconfig(
                    url,
                    "system:kubelet-simulator",
                    &["system:masters"],
                    component_base::pki::CERT_VALIDITY,
                )?;
                std::fs::write(&path, text)?;
            }
            path
        } else {
            self.kubeconfig_dir.join(format!("kubelet-{node}.conf"))
        };
        Ok(vec![
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--tls-cert-file".into(),
            p(format!("kubelet-{node}.crt")),
            "--tls-private-key-file".into(),
            p(format!("kubelet-{node}.key")),
            "--client-ca-file".into(),
            p("ca.crt".into()),
        ])
    }

    /// The kubeconfig of a control-plane identity (`scheduler.conf`, `admin.conf`).
    pub fn kubeconfig(&self, file: &str) -> String {
        self.kubeconfig_dir.join(file).display().to_string()
    }

    /// A kubeconfig for `user` in `groups` with a new certificate valid for `validity`.
    pub fn user_kubeconfig(
        &self,
        url: &str,
        user: &str,
        groups: &[&str],
        validity: std::time::Duration,
    ) -> Result<String> {
        let ca = component_base::pki::Ca::load(&self.cert_dir)?;
        kubeadm::user_kubeconfig(&ca, url, user, groups, validity)
    }
}

fn known() -> &'static Mutex<HashMap<String, Arc<Pki>>> {
    static KNOWN: OnceLock<Mutex<HashMap<String, Arc<Pki>>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// The PKI of the cluster at `url`, if a test made one.
pub fn of(url: &str) -> Option<Arc<Pki>> {
    known().lock().get(url.trim_end_matches('/')).cloned()
}

/// A kube-rs client for the apiserver at `url`: as its admin when a test made its PKI,
/// else plain.
pub fn client_config(url: &str) -> Result<kube::Config> {
    let mut config = kube::Config::new(url.parse().context("apiserver URL")?);
    if let Some(pki) = of(url) {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let der = rustls_pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes())
            .context("decoding the CA certificate")?;
        config.root_cert = Some(vec![der.to_vec()]);
        config.auth_info = serde_json::from_value(serde_json::json!({
            "client-certificate-data": b64(&pki.admin.0),
            "client-key-data": b64(&pki.admin.1),
        }))
        .context("the admin's credentials")?;
    }
    Ok(config)
}

/// An HTTP client for the apiserver at `url` (the admin's certificate when it has a PKI).
pub fn http_client(url: &str) -> Result<reqwest::Client> {
    let Some(pki) = of(url) else { return Ok(reqwest::Client::new()) };
    let identity = format!("{}{}", pki.admin.0, pki.admin.1);
    Ok(reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes())?)
        .identity(reqwest::Identity::from_pem(identity.as_bytes())?)
        .build()?)
}

/// The admin's kubeconfig text for the cluster at `url`, or `None` without a PKI.
pub fn admin_kubeconfig(url: &str) -> Option<String> {
    let pki = of(url)?;
    let issued = component_base::pki::Issued { cert_pem: pki.admin.0.clone(), key_pem: pki.admin.1.clone() };
    Some(component_base::pki::kubeconfig(
        "kubernetes",
        url,
        &pki.ca_pem,
        "kubernetes-admin",
        &component_base::pki::Credential::Certificate(issued),
    ))
}
