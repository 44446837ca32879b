//! The `kube-dns` binary.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use component_base::flags::ClientFlags;

/// Serves the cluster's DNS names (`svc.ns.svc.cluster.local`, headless endpoints, SRV,
/// PTR) from a watch of Services and EndpointSlices, and forwards other names.
#[derive(Parser, Debug)]
#[command(name = "kube-dns", version)]
struct Args {
    #[command(flatten)]
    client: ClientFlags,
    /// Where to answer, over UDP and TCP.
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: SocketAddr,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Resolvers for other names (ip:port, comma-separated); default: the host's
    /// resolv.conf (systemd-resolved's own list when its 127.0.0.53 stub is there).
    #[arg(long, value_delimiter = ',')]
    upstream: Vec<SocketAddr>,
    /// Where `/metrics` and `/healthz` are served (0 disables).
    #[arg(long, default_value = "127.0.0.1:9153")]
    metrics_bind_address: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    component_base::init_logging();
    let args = Args::parse();
    let upstream = if args.upstream.is_empty() {
        let stub = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut list = kube_dns::upstream_from_resolv_conf(&stub);
        if list.is_empty() {
            let resolved = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or_default();
            list = kube_dns::upstream_from_resolv_conf(&resolved);
        }
        list
    } else {
        args.upstream
    };
    if upstream.is_empty() {
        tracing::warn!("no upstream resolver: names outside the cluster get SERVFAIL");
    }
    let client = args.client.client().await?;
    let metrics = std::sync::Arc::new(kube_dns::Metrics::default());
    let m = metrics.clone();
    component_base::serve_health_and_metrics(args.metrics_bind_address, std::sync::Arc::new(move || m.encode()));
    let config = kube_dns::Config { domain: args.cluster_domain, listen: args.listen, upstream };
    tokio::select! {
        r = kube_dns::serve(client, config, metrics) => r.context("kube-dns stopped"),
        () = component_base::shutdown_signal() => Ok(()),
    }
}
