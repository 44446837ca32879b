//! How the apiserver reaches kubelets (container logs): HTTPS verified against
//! `--kubelet-certificate-authority`, presenting `--kubelet-client-certificate`, or plain
//! HTTP when no CA is given (test clusters whose kubelets serve plain HTTP).

use std::path::Path;

use anyhow::{Context, Result};
use component_base::tls;

/// A client for kubelets' HTTP endpoints.
#[derive(Debug, Clone)]
pub struct KubeletClient {
    http: reqwest::Client,
    scheme: &'static str,
}

impl Default for KubeletClient {
    fn default() -> Self {
        KubeletClient { http: reqwest::Client::new(), scheme: "http" }
    }
}

impl KubeletClient {
    /// HTTPS to kubelets whose certificates chain to `ca`, presenting `identity` (a
    /// certificate file and its key); plain HTTP without a CA.
    pub fn new(ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<KubeletClient> {
        let Some(ca) = ca else {
            anyhow::ensure!(
                identity.is_none(),
                "--kubelet-client-certificate needs --kubelet-certificate-authority: kubelets are reached \
                 over HTTPS only when their certificates can be verified"
            );
            return Ok(KubeletClient::default());
        };
        let identity = match identity {
            Some((cert, key)) => Some((tls::read_certs(cert)?, tls::read_key(key)?)),
            None => None,
        };
        let config = tls::client_config(tls::read_certs(ca)?, identity)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .build()
            .context("building the client for kubelets")?;
        Ok(KubeletClient { http, scheme: "https" })
    }

    /// The URL of `path` on the kubelet at `host:port`.
    pub fn url(&self, host: &str, port: i64, path: &str) -> String {
        format!("{}://{host}:{port}{path}", self.scheme)
    }

    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}
