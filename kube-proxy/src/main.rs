//! The `kube-proxy` binary: one per node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use component_base::flags::{ClientFlags, parse_duration};
use kube_proxy::{Config, Metrics, Proxier, rules};

/// Programs this node's kernel (nftables) so that Services' cluster IPs and node ports reach
/// their endpoints.
#[derive(Parser, Debug)]
#[command(name = "kube-proxy", version)]
struct Args {
    #[command(flatten)]
    client: ClientFlags,
    /// This node's name, for `internalTrafficPolicy`/`externalTrafficPolicy: Local`
    /// (default: the host name).
    #[arg(long)]
    hostname_override: Option<String>,
    /// The pod network: traffic from outside it to a cluster IP is masqueraded.
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// The longest the rules go without a full rewrite.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    sync_period: Duration,
    /// The shortest time between two writes; changes in between are written together.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    min_sync_period: Duration,
    /// Where `/metrics` is served (0 disables).
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_bind_address: SocketAddr,
    /// Where `/healthz` is served (0 disables).
    #[arg(long, default_value = "0.0.0.0:10256")]
    healthz_bind_address: SocketAddr,
    /// The nft program.
    #[arg(long, default_value = "nft")]
    nft: String,
    /// Remove kube-proxy's rules and exit.
    #[arg(long)]
    cleanup: bool,
}

fn parse_cidr(text: &str) -> anyhow::Result<(std::net::Ipv4Addr, u8)> {
    let (ip, bits) = text.split_once('/').with_context(|| format!("--cluster-cidr {text:?} is not a CIDR"))?;
    let bits: u8 = bits.parse().with_context(|| format!("--cluster-cidr {text:?}"))?;
    anyhow::ensure!(bits <= 32, "--cluster-cidr {text:?}: the prefix is longer than 32 bits");
    Ok((ip.parse().with_context(|| format!("--cluster-cidr {text:?}"))?, bits))
}

/// `/healthz` as upstream's kube-proxy answers it: 200 while the rules are current, 503 once
/// they have not been written (or found current) for `within`, with the times in JSON.
fn serve_healthz(addr: SocketAddr, metrics: Arc<Metrics>, within: Duration) {
    if addr.port() == 0 {
        return;
    }
    let app = axum::Router::new().route(
        "/healthz",
        axum::routing::get(move || {
            let (healthy, body) = metrics.health(within);
            let code = if healthy { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
            async move { (code, axum::Json(body)) }
        }),
    );
    tokio::spawn(async move {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(%addr, error = %e, "the health endpoint stopped");
                }
            }
            Err(e) => tracing::error!(%addr, error = %e, "cannot serve /healthz"),
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    component_base::init_logging();
    let args = Args::parse();
    if args.cleanup {
        kube_proxy::apply(&args.nft, &rules::cleanup()).await?;
        println!("kube-proxy's rules are removed");
        return Ok(());
    }
    let node = rules::Node {
        name: args.hostname_override.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned()
        }),
        cluster_cidr: args.cluster_cidr.as_deref().map(parse_cidr).transpose()?,
    };
    let client = args.client.client().await?;
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    component_base::serve_health_and_metrics(args.metrics_bind_address, Arc::new(move || m.encode()));
    serve_healthz(args.healthz_bind_address, metrics.clone(), 2 * args.sync_period);
    let config = Config { node, sync_period: args.sync_period, min_sync_period: args.min_sync_period, nft: args.nft };
    tracing::info!(node = %config.node.name, "kube-proxy starting (nftables)");
    tokio::select! {
        r = Proxier::new(client, config, metrics).run() => r.context("kube-proxy stopped"),
        () = component_base::shutdown_signal() => {
            // The rules stay: established connections and new ones keep working until the
            // next kube-proxy writes its own.
            Ok(())
        }
    }
}
