//! A kube-rs client whose client certificate can change under it: a kubelet that renews
//! its certificate (`--rotate-certificates`) keeps every clone of its client working and
//! moves to the new certificate without a restart.
//!
//! The client sends each request through the current connection pool; [`Rotating::reload`]
//! builds a new pool from the kubeconfig (whose `client-certificate` file now holds the new
//! certificate) and swaps it in. Requests under way (long watches among them) finish on the
//! old connections; every new request opens connections with the new certificate, as
//! upstream's kubelet closes its connections when its certificate changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::Context;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ConfigExt};
use parking_lot::RwLock;

type Pool = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// The handle that swaps the certificate of the clients it made.
#[derive(Clone)]
pub struct Rotating {
    kubeconfig: PathBuf,
    pool: Arc<RwLock<Pool>>,
}

#[derive(Clone)]
struct Current(Arc<RwLock<Pool>>);

impl tower::Service<http::Request<Body>> for Current {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let pool = self.0.read().clone();
        pool.request(request)
    }
}

async fn config(kubeconfig: &Path) -> anyhow::Result<kube::Config> {
    let kc =
        kube::config::Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    Ok(kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?)
}

fn pool(config: &kube::Config) -> anyhow::Result<Pool> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = config.rustls_https_connector_with_connector(http).context("the kubeconfig's TLS settings")?;
    Ok(HyperClient::builder(TokioExecutor::new()).build(connector))
}

impl Rotating {
    /// A client from `kubeconfig`, with at most `max_inflight` requests waiting for their
    /// response at once, and the handle that moves it to a new certificate.
    pub async fn client(kubeconfig: &Path, max_inflight: usize) -> anyhow::Result<(kube::Client, Rotating)> {
        let config = config(kubeconfig).await?;
        let shared = Arc::new(RwLock::new(pool(&config)?));
        let service = tower::ServiceBuilder::new()
            .layer(config.base_uri_layer())
            .option_layer(config.auth_layer()?)
            .layer(tower::limit::ConcurrencyLimitLayer::new(max_inflight.max(1)))
            .map_err(tower::BoxError::from)
            .service(Current(shared.clone()));
        let client = kube::Client::new(service, config.default_namespace.clone());
        Ok((client, Rotating { kubeconfig: kubeconfig.to_owned(), pool: shared }))
    }

    /// Reads the kubeconfig (and the certificate files it names) again: new requests use
    /// what it says now.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let config = config(&self.kubeconfig).await?;
        let fresh = pool(&config)?;
        *self.pool.write() = fresh;
        Ok(())
    }
}
