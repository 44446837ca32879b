//! What every control-plane component (scheduler, controller-manager, kubelet) shares:
//! a client from `--kubeconfig`/`--master`, Lease-based leader election, and the
//! `/healthz`, `/livez`, `/readyz` and `/metrics` endpoints.

pub mod bootstrap;
pub mod delegated;
pub mod events;
pub mod flags;
pub mod leader;
pub mod pki;
pub mod rotating;
pub mod serve;
pub mod strategic;
pub mod taints;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;

/// Resolves when the process is asked to stop: SIGINT (Ctrl-C) or SIGTERM (what
/// systemd, `kill` and local-up send). Components finish cleanly then (a leader releases
/// its lease) instead of dying mid-work.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// A kube-rs client from `--kubeconfig`/`--master`, or `$KUBECONFIG`/`~/.kube/config`.
pub async fn client(kubeconfig: Option<&Path>, master: Option<&str>) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(config(kubeconfig, master).await?)?)
}

/// Like [`client`], with at most `max_inflight` requests waiting for their response at
/// once (a watch counts only until its response starts). Requests beyond that queue, so
/// the client holds at most about that many connections however many tasks share it.
pub async fn client_limited(
    kubeconfig: Option<&Path>,
    master: Option<&str>,
    max_inflight: usize,
) -> anyhow::Result<kube::Client> {
    let builder = kube::client::ClientBuilder::try_from(config(kubeconfig, master).await?)?;
    Ok(builder.with_layer(&tower::limit::ConcurrencyLimitLayer::new(max_inflight.max(1))).build())
}

async fn config(kubeconfig: Option<&Path>, master: Option<&str>) -> anyhow::Result<kube::Config> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?
        }
        None if master.is_some() => kube::Config::new("http://127.0.0.1:6443".parse()?),
        None => {
            kube::Config::infer().await.context("no --kubeconfig, and none found in KUBECONFIG or ~/.kube/config")?
        }
    };
    if let Some(url) = master {
        config.cluster_url = url.parse().with_context(|| format!("--master {url}"))?;
    }
    Ok(config)
}

/// A unique identity for leader election: the hostname and a random suffix.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
    format!("{}_{}", host.trim(), uuid::Uuid::new_v4())
}

/// Serves `/metrics` (whatever `encode` returns, in the Prometheus text format) and the
/// health endpoints on `addr`, in the background. Port 0 disables it.
pub fn serve_health_and_metrics(addr: SocketAddr, encode: Arc<dyn Fn() -> String + Send + Sync>) {
    if addr.port() == 0 {
        return;
    }
    tokio::spawn(async move {
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let encode = encode.clone();
                    async move { encode() }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route("/livez", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ok" }));
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(%addr, error = %e, "the metrics endpoint stopped");
                }
            }
            Err(e) => tracing::error!(%addr, error = %e, "cannot serve metrics"),
        }
    });
}

/// Serves `/metrics` and the health endpoints over HTTPS on `addr`, in the background, as
/// upstream's kube-scheduler and kube-controller-manager do (port 0 disables it): with
/// `--tls-cert-file`, or else a self-signed certificate made at start; the health checks
/// answer anyone, `/metrics` only clients the API server says may `get /metrics` (see
/// [`delegated`]).
pub fn serve_secure_health_and_metrics(
    addr: SocketAddr,
    encode: Arc<dyn Fn() -> String + Send + Sync>,
    serving: &flags::ServingFlags,
    client: kube::Client,
    component: &str,
) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let given = if serving.tls_cert_file.is_some() { serving.serving()? } else { None };
    let tls = match given {
        Some(tls) => tls,
        None => {
            let client_ca = serving.client_ca_file.as_deref().map(tls::ClientCa::from_file).transpose()?;
            let mut names = vec!["localhost".to_owned(), component.to_owned()];
            let mut ips = vec![addr.ip()];
            if addr.ip().is_unspecified() {
                ips = vec![std::net::Ipv4Addr::LOCALHOST.into()];
                names.extend(std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()));
            }
            let (cert, key) = pki::self_signed(component, &names, &ips)?;
            let slot = Arc::new(tls::CertSlot::default());
            slot.set_pem(&cert, &key)?;
            tracing::info!(%addr, "serving with a self-signed certificate (no --tls-cert-file)");
            tls::Serving::rotating(slot, client_ca)?
        }
    };
    let delegated = delegated::Delegated::new(client);
    let metrics = Router::new()
        .route(
            "/metrics",
            get(move || {
                let encode = encode.clone();
                async move { encode() }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(delegated, delegated::guard));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .merge(metrics);
    tokio::spawn(async move {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => serve::serve(listener, app, Some(tls)).await,
            Err(e) => tracing::error!(%addr, error = %e, "cannot serve metrics"),
        }
    });
    Ok(())
}

/// Logs through `tracing` to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
}

/// The Prometheus text exposition of a registry.
pub fn encode_metrics(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
