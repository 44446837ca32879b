//! The `kube-scheduler` binary.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use component_base::flags::{ClientFlags, LeaderElectionFlags};
use scheduler::{metrics, run};

/// Places pending pods on nodes.
#[derive(Parser, Debug)]
#[command(name = "kube-scheduler", version)]
struct Args {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    election: LeaderElectionFlags,
    /// The `spec.schedulerName` this scheduler serves.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    /// Bindings in flight at once.
    #[arg(long, default_value_t = 256)]
    binding_concurrency: usize,
    /// Address of the metrics and health endpoints.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Port of the metrics and health endpoints (HTTPS; 0 disables). `/metrics` answers
    /// only clients the API server lets `get /metrics` (a certificate of --client-ca-file,
    /// or a bearer token it accepts).
    #[arg(long, alias = "port", default_value_t = 10259)]
    secure_port: u16,
    /// The endpoint's certificate (default: a self-signed one made at start) and the CA
    /// whose client certificates it accepts.
    #[command(flatten)]
    serving: component_base::flags::ServingFlags,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    component_base::init_logging();
    let args = Args::parse();
    let election = args.election.config("kube-scheduler")?;
    let client = args.client.client().await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let m = metrics.clone();
    component_base::serve_secure_health_and_metrics(
        SocketAddr::new(args.bind_address, args.secure_port),
        Arc::new(move || m.encode()),
        &args.serving,
        client.clone(),
        "kube-scheduler",
    )?;
    let config = run::Config {
        scheduler_name: args.scheduler_name,
        binding_concurrency: args.binding_concurrency,
        ..Default::default()
    };
    scheduler::start(client, config, election, metrics, component_base::shutdown_signal())
        .await
        .context("kube-scheduler stopped")
}
